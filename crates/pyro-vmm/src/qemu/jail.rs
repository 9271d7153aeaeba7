//! What confines QEMU, modelled on Firecracker's jailer: a device model
//! bug must not hand a hostile guest the host.
//!
//! In force on every launch:
//! - **seccomp**: `-sandbox on,obsolete=deny,elevateprivileges=deny,
//!   spawn=deny,resourcecontrol=deny` (`PYRO_QEMU_SANDBOX=off` for a QEMU
//!   built without seccomp);
//! - **descriptors**: QEMU gets its guest channels and nothing else, even
//!   what pyro's own caller left open;
//! - **privileges**: `NoNewPrivs`, and when pyro runs as root, an empty
//!   capability bounding set (no capability survives the exec);
//! - **a jail**, when pyro runs as root (`PYRO_QEMU_JAIL=off` turns it
//!   off): QEMU runs as the unprivileged user `pyro-vm` (made by
//!   `scripts/install-deps`; uid 0 without capabilities when it is
//!   missing), in its own mount namespace holding only its files
//!   ([`super::mounts`]), and its own empty network, IPC and UTS
//!   namespaces: its guest channels and network are descriptors.
//!
//! Not yet: a cgroup; [`Confinement`] says so to `pyro doctor`.

use std::os::fd::RawFd;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::mounts::{Access, JailRoot};
use crate::{Accel, EngineError, GuestRam, RootDisk, SeedDisk, VmSpec};

/// The system user a jailed QEMU runs as.
pub const VM_USER: &str = "pyro-vm";

/// The `-sandbox` option every VM gets.
const SANDBOX: &str = "on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny";

/// Whether QEMU's seccomp sandbox is asked for (`PYRO_QEMU_SANDBOX=off`
/// turns it off, for a QEMU built without seccomp).
pub(crate) fn sandbox_wanted() -> bool {
    std::env::var("PYRO_QEMU_SANDBOX").map_or(true, |v| v.trim() != "off")
}

/// `-sandbox …` for QEMU's command line, when wanted.
pub(crate) fn sandbox_args() -> Vec<String> {
    match sandbox_wanted() {
        true => vec!["-sandbox".into(), SANDBOX.into()],
        false => Vec::new(),
    }
}

/// Whether QEMU's seccomp sandbox is in force.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seccomp {
    /// On, denying what the text says.
    On(String),
    /// Off: `PYRO_QEMU_SANDBOX=off`.
    TurnedOff,
    /// Wanted, but this QEMU refuses the option (what it said): VMs do not
    /// start until it is turned off.
    Refused(String),
    /// QEMU could not be asked.
    Unknown(String),
}

/// What confines the VMs this process starts, for `pyro doctor`.
#[derive(Debug, Clone)]
pub struct Confinement {
    /// The seccomp sandbox.
    pub seccomp: Seccomp,
    /// Capabilities and `NoNewPrivs`.
    pub privileges: String,
    /// The jail in force (user, namespaces), if any.
    pub jail: Option<String>,
    /// What is not confined yet, and why.
    pub missing: Vec<Gap>,
}

impl Confinement {
    /// Probes `binary` for seccomp support (`-sandbox … -version` parses
    /// the option and exits).
    pub fn probe(binary: &Path) -> Self {
        let seccomp = if !sandbox_wanted() {
            Seccomp::TurnedOff
        } else {
            let output = Command::new(binary)
                .args(["-sandbox", SANDBOX, "-version"])
                .stdin(Stdio::null())
                .output();
            match output {
                Ok(out) if out.status.success() => Seccomp::On(
                    "obsolete, privilege-raising, process-spawning and resource-control system calls are denied"
                        .to_string(),
                ),
                Ok(out) => Seccomp::Refused(String::from_utf8_lossy(&out.stderr).trim().to_string()),
                Err(error) => Seccomp::Unknown(format!("cannot run {}: {error}", binary.display())),
            }
        };
        let root = pyro_util::fsutil::is_root();
        let user = VmUser::lookup();
        let privileges = match (root, has_capability(CAP_SETPCAP), jail_wanted() && user.is_some()) {
            (true, true, true) => "has no capabilities (an empty bounding set, and a uid that is not 0) and NoNewPrivs",
            (true, true, false) => "runs as root with no capabilities (empty bounding set; the two that pass file permissions stay only when its files lie in another user's directories) and NoNewPrivs",
            (true, false, _) => "keeps this process's bounding set: without CAP_SETPCAP (a container that drops it) pyro cannot empty it; NoNewPrivs holds",
            (false, _, _) => "runs as this user, without capabilities (no ambient ones), with NoNewPrivs",
        };
        let mut missing = Vec::new();
        let jail = match (root, jail_wanted(), user) {
            (false, _, _) => {
                missing.push(Gap {
                    what: "a jail (its own user, mount and network namespaces): pyro is not root, and QEMU runs as this user".into(),
                    fix: "nothing to do; run pyro as root (or with sudo) for the jail".into(),
                });
                None
            }
            (true, false, _) => {
                missing.push(Gap {
                    what: "a jail: turned off (PYRO_QEMU_JAIL=off)".into(),
                    fix: "unset PYRO_QEMU_JAIL to turn it back on".into(),
                });
                None
            }
            (true, true, None) => {
                missing.push(Gap {
                    what: format!("an unprivileged user: there is no user {VM_USER}, so QEMU keeps uid 0 (without capabilities) in its jail"),
                    fix: "make it with: sudo ./scripts/install-deps".into(),
                });
                Some("its own mount namespace, holding only its files (system libraries, devices, its kernel and disks), and empty network, IPC and UTS namespaces".to_string())
            }
            (true, true, Some(user)) => Some(format!(
                "user {VM_USER} (uid {}), its own mount namespace, holding only its files (system libraries, devices, its kernel and disks), and empty network, IPC and UTS namespaces",
                user.uid
            )),
        };
        missing.push(Gap {
            what: cgroup_state(),
            fix: "nothing to do: the guest's memory is fixed by the VM's size".into(),
        });
        Confinement {
            seccomp,
            privileges: format!("{privileges}; it inherits only its guest channels"),
            jail,
            missing,
        }
    }
}

/// A part of the confinement that is not in force, and what to do.
#[derive(Debug, Clone)]
pub struct Gap {
    pub what: String,
    pub fix: String,
}

/// Whether QEMU is to be jailed when pyro runs as root
/// (`PYRO_QEMU_JAIL=off` turns it off).
pub(crate) fn jail_wanted() -> bool {
    std::env::var("PYRO_QEMU_JAIL").map_or(true, |v| v.trim() != "off")
}

/// The user a jailed QEMU runs as, from `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VmUser {
    pub uid: u32,
    pub gid: u32,
}

impl VmUser {
    pub(crate) fn lookup() -> Option<VmUser> {
        let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
        Self::parse(&passwd)
    }

    fn parse(passwd: &str) -> Option<VmUser> {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                [name, _, uid, gid, ..] if *name == VM_USER => Some(VmUser {
                    uid: uid.parse().ok().filter(|&uid| uid != 0)?,
                    gid: gid.parse().ok().filter(|&gid| gid != 0)?,
                }),
                _ => None,
            }
        })
    }
}

/// How one QEMU launch is confined beyond seccomp and capabilities.
#[derive(Default)]
pub(crate) struct Jail {
    root: Option<JailRoot>,
    /// uid, gid and supplementary groups to switch to.
    user: Option<(libc::uid_t, libc::gid_t, Vec<libc::gid_t>)>,
}

impl Jail {
    /// The jail for `spec` when pyro is root and the jail is wanted:
    /// QEMU's files bound read-only but for its disk's top layer and RAM
    /// file, which are handed to `pyro-vm` when it is used. `binary`
    /// outside `/usr` is bound with its directory.
    pub(crate) fn plan(spec: &VmSpec, binary: &Path) -> Result<Jail, EngineError> {
        if !pyro_util::fsutil::is_root() || !jail_wanted() {
            return Ok(Jail::default());
        }
        let failed = |source: std::io::Error| EngineError::Jail(source.to_string());
        let mut paths: Vec<(PathBuf, Access)> = vec![
            (spec.kernel.clone(), Access::Read),
            (spec.initramfs.clone(), Access::Read),
        ];
        let mut writable = Vec::new();
        match &spec.root_disk {
            Some(RootDisk::Persistent { path, .. }) => {
                writable.push(path.clone());
                paths.extend(chain(path).map_err(failed)?);
            }
            Some(RootDisk::Ephemeral { base, .. }) => {
                paths.push((base.clone(), Access::Read));
                paths.extend(chain(base).map_err(failed)?);
            }
            None => {}
        }
        if let Some(SeedDisk::Image { path, .. }) = &spec.seed_disk {
            paths.push((path.clone(), Access::Read));
        }
        if let GuestRam::File { path, shared } = &spec.ram {
            if *shared && !path.exists() {
                // QEMU would make it; its jail holds only what exists.
                std::fs::File::create(path).map_err(|e| {
                    failed(std::io::Error::new(
                        e.kind(),
                        format!("{}: {e}", path.display()),
                    ))
                })?;
            }
            writable.push(path.clone());
        }
        if !binary.starts_with("/usr") {
            let dir = binary.parent().unwrap_or(Path::new("/"));
            paths.push((dir.to_path_buf(), Access::Programs));
        }
        let kvm = spec.accel == Accel::Kvm;
        let user = VmUser::lookup().and_then(|user| switch_to(&user, &writable, kvm));
        paths.extend(writable.into_iter().map(|path| (path, Access::Write)));
        let root = JailRoot::plan(&paths, kvm).map_err(failed)?;
        Ok(Jail {
            root: Some(root),
            user,
        })
    }
}

impl Jail {
    /// Whether QEMU is jailed at all.
    pub(crate) fn is_some(&self) -> bool {
        self.root.is_some()
    }

    /// Whether QEMU runs as the unprivileged user.
    pub(crate) fn switches_user(&self) -> bool {
        self.user.is_some()
    }
}

/// The files below `image` in its backing chain, read-only.
fn chain(image: &Path) -> std::io::Result<Vec<(PathBuf, Access)>> {
    Ok(crate::qcow2::backing_files(image)?
        .into_iter()
        .map(|path| (path, Access::Read))
        .collect())
}

/// What switching to `user` takes: the `writable` files handed to it
/// (those root or it owns; a file of another user, `sudo pyro` with a
/// user's store, keeps QEMU at uid 0), and with KVM the group that may
/// open `/dev/kvm` (none may: uid 0 it is).
fn switch_to(
    user: &VmUser,
    writable: &[PathBuf],
    kvm: bool,
) -> Option<(libc::uid_t, libc::gid_t, Vec<libc::gid_t>)> {
    let mut groups = Vec::new();
    if kvm {
        let device = std::fs::metadata("/dev/kvm").ok()?;
        match device.mode() {
            mode if mode & 0o006 == 0o006 => {}
            mode if mode & 0o060 == 0o060 && device.gid() != 0 => groups.push(device.gid()),
            _ => return None,
        }
    }
    let owners_ok = writable.iter().all(|path| {
        std::fs::metadata(path).is_ok_and(|meta| meta.uid() == 0 || meta.uid() == user.uid)
    });
    if !owners_ok {
        return None;
    }
    for path in writable {
        std::os::unix::fs::chown(path, Some(user.uid), Some(user.gid)).ok()?;
    }
    Some((user.uid, user.gid, groups))
}

/// Whether this process holds capability `cap` in its effective set.
fn has_capability(cap: u32) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|set| set & (1 << cap) != 0)
}

/// Whether a per-VM cgroup could be made here.
fn cgroup_state() -> String {
    let controllers = std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers");
    match controllers {
        Ok(list) if list.contains("memory") && list.contains("pids") => {
            "a cgroup per VM (memory, pids ceilings): cgroup v2 is here, pyro does not use it yet".into()
        }
        _ => "a cgroup per VM (memory, pids ceilings): this host has no cgroup v2 with the memory and pids controllers".into(),
    }
}

/// The `RLIMIT_FSIZE` that caps files at `bytes`, keeping this process's
/// hard limit (QEMU's seccomp sandbox denies it any change; the owner
/// lowers or raises the soft one with [`set_file_size_limit`]).
pub(crate) fn file_size_rlimit(bytes: u64) -> libc::rlimit {
    let mut current = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: getrlimit fills a live struct.
    unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut current) };
    libc::rlimit {
        rlim_cur: bytes.min(current.rlim_max),
        rlim_max: current.rlim_max,
    }
}

/// Sets the soft `RLIMIT_FSIZE` of the running process `pid`.
pub(crate) fn set_file_size_limit(pid: u32, bytes: u64) -> std::io::Result<()> {
    let limit = file_size_rlimit(bytes);
    // SAFETY: prlimit with a live struct and no old-value pointer.
    match unsafe {
        libc::prlimit(
            pid as libc::pid_t,
            libc::RLIMIT_FSIZE,
            &limit,
            std::ptr::null_mut(),
        )
    } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Whether a root QEMU must keep the right to pass file permissions: some
/// file it opens lies in a directory root does not own (`sudo pyro` with a
/// user's cache or home, 0700), where root's ownership alone gets nowhere.
pub(crate) fn needs_dac(paths: &[&Path]) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    pyro_util::fsutil::is_root()
        && paths.iter().any(|path| {
            path.ancestors()
                .filter_map(|p| std::fs::metadata(p).ok())
                .any(|meta| meta.uid() != 0)
        })
}

/// Runs in the forked child before exec: only the `inherited` descriptors
/// stay open across the exec, privileges go (all of them, or all but the
/// two that pass file permissions with `keep_dac`), and the child's life
/// is tied to `owner`. Only async-signal-safe system calls.
pub(crate) fn prepare_child(
    owner: libc::pid_t,
    inherited: &[RawFd],
    keep_dac: bool,
    jail: &Jail,
    file_size_limit: Option<libc::rlimit>,
) -> std::io::Result<()> {
    pyro_util::fds::close_on_exec_from(3);
    if let Some(limit) = file_size_limit {
        // SAFETY: setrlimit with a live struct; SIG_IGN for SIGXFSZ (kept
        // across exec), so a write past the limit fails instead of
        // killing QEMU.
        unsafe {
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        }
    }
    for &fd in inherited {
        // SAFETY: fd is an open descriptor of this process; clearing
        // FD_CLOEXEC only makes QEMU inherit it.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    if let Some(root) = &jail.root {
        root.enter()?;
    }
    drop_privileges(keep_dac)?;
    if let Some((uid, gid, groups)) = &jail.user {
        // SAFETY: set*id calls with plain values and a live slice. Root
        // (which just entered the jail) may make them; every uid changes,
        // so no capability is kept.
        unsafe {
            if libc::setgroups(groups.len(), groups.as_ptr()) < 0
                || libc::setgid(*gid) < 0
                || libc::setuid(*uid) < 0
            {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    // Set after the user switch, which clears it. SAFETY: plain prctl/setpgid/getppid calls with constant arguments.
    unsafe {
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // The owner may have died between fork and prctl.
        if libc::getppid() != owner {
            libc::kill(libc::getpid(), libc::SIGKILL);
        }
        // Own process group: a terminal's Ctrl-C goes to pyro, which decides.
        if libc::setpgid(0, 0) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

/// `NoNewPrivs`, no ambient capabilities, and for root an empty bounding
/// set (but for the two that pass file permissions, with `keep_dac`) and
/// no inheritable capabilities, so the exec'd program holds none. A root
/// without `CAP_SETPCAP` (some containers) cannot empty its bounding set;
/// `pyro doctor` says so.
fn drop_privileges(keep_dac: bool) -> std::io::Result<()> {
    // SAFETY: prctl and capget/capset with valid pointers to local structs.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
        if libc::geteuid() != 0 {
            return Ok(());
        }
        for cap in 0..64 {
            if keep_dac && (cap == CAP_DAC_OVERRIDE || cap == CAP_DAC_READ_SEARCH) {
                continue;
            }
            if libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) < 0 {
                match std::io::Error::last_os_error().raw_os_error() {
                    // Past the kernel's last capability.
                    Some(libc::EINVAL) => break,
                    // No CAP_SETPCAP: the set stays as it is.
                    Some(libc::EPERM) => return Ok(()),
                    _ => return Err(std::io::Error::last_os_error()),
                }
            }
        }
        // The inheritable set, which the bounding set does not cover.
        let mut header = CapHeader {
            version: LINUX_CAPABILITY_VERSION_3,
            pid: 0,
        };
        let mut data = [CapData::default(); 2];
        if libc::syscall(libc::SYS_capget, &mut header, data.as_mut_ptr()) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        for set in &mut data {
            set.inheritable = 0;
        }
        if libc::syscall(libc::SYS_capset, &mut header, data.as_ptr()) < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

const CAP_DAC_OVERRIDE: libc::c_int = 1;
const CAP_DAC_READ_SEARCH: libc::c_int = 2;
const CAP_SETPCAP: u32 = 8;

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}
