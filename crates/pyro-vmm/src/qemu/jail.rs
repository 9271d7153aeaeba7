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
//!   off): QEMU runs as a uid of its own in the group of `pyro-vm` (made
//!   by `scripts/install-deps`; uid 0 without capabilities when it is
//!   missing; [`super::vmuser`]), in its own mount namespace holding only
//!   its files ([`super::mounts`]), and its own empty network, IPC and
//!   UTS namespaces: its guest channels and network are descriptors.
//!
//! Not yet: a cgroup; `pyro doctor` says so ([`super::confinement`]).

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};

use super::mounts::{Access, JailRoot};
use super::vmuser::{self, UidSlot, VmUser};
use crate::{Accel, EngineError, GuestRam, RootDisk, SeedDisk, VmSpec};

/// Whether QEMU is to be jailed when pyro runs as root
/// (`PYRO_QEMU_JAIL=off` turns it off).
pub(crate) fn jail_wanted() -> bool {
    std::env::var("PYRO_QEMU_JAIL").map_or(true, |v| v.trim() != "off")
}

/// How one QEMU launch is confined beyond seccomp and capabilities.
#[derive(Default)]
pub(crate) struct Jail {
    root: Option<JailRoot>,
    /// uid, gid and supplementary groups to switch to.
    user: Option<(libc::uid_t, libc::gid_t, Vec<libc::gid_t>)>,
    /// The uid's lock, held as long as the VM runs.
    slot: Option<UidSlot>,
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
        let unusable = |source: std::io::Error| EngineError::UnusableDisk(source.to_string());
        let mut paths: Vec<(PathBuf, Access)> = vec![
            (spec.kernel.clone(), Access::Read),
            (spec.initramfs.clone(), Access::Read),
        ];
        let mut writable = Vec::new();
        let mut group_writable = Vec::new();
        match &spec.root_disk {
            Some(RootDisk::Persistent { path, .. }) => {
                writable.push(path.clone());
                paths.extend(chain(path, &spec.disk_roots).map_err(unusable)?);
            }
            Some(RootDisk::Ephemeral { base, .. }) => {
                paths.push((base.clone(), Access::Read));
                paths.extend(chain(base, &spec.disk_roots).map_err(unusable)?);
            }
            None => {}
        }
        if let Some(dir) = &spec.layer_dir {
            paths.push((dir.clone(), Access::Layers));
        }
        if let Some(SeedDisk::Image { path, .. }) = &spec.seed_disk {
            paths.push((path.clone(), Access::Read));
        }
        if let GuestRam::File { path, shared } = &spec.ram {
            if *shared && !path.exists() {
                // QEMU would make it; its jail holds only what exists.
                std::fs::File::create(path)
                    .map_err(pyro_util::fsutil::naming(path))
                    .map_err(failed)?;
            }
            match shared {
                // The image being made: this VM's alone.
                true => writable.push(path.clone()),
                // A template's, mapped privately by every VM restored from
                // it at once: its group's to open (QEMU 7.2 opens it for
                // writing), never one VM's uid.
                false => group_writable.push(path.clone()),
            }
        }
        // `/bin/qemu…` is `/usr/bin/qemu…` on a merged `/usr`.
        let binary = std::fs::canonicalize(binary).map_err(failed)?;
        if !binary.starts_with("/usr") {
            let dir = binary.parent().unwrap_or(Path::new("/"));
            paths.push((dir.to_path_buf(), Access::Programs));
        }
        let kvm = spec.accel == Accel::Kvm;
        if let Some(dir) = &spec.layer_dir {
            vmuser::settle_layers(dir, &writable, VmUser::lookup().as_ref()).map_err(failed)?;
        }
        let (user, slot) = switch_user(&writable, &group_writable, kvm).map_err(failed)?;
        paths.extend(
            writable
                .into_iter()
                .chain(group_writable)
                .map(|path| (path, Access::Write)),
        );
        let root = JailRoot::plan(&paths, kvm).map_err(failed)?;
        Ok(Jail {
            root: Some(root),
            user,
            slot,
        })
    }
}

impl Jail {
    /// Whether QEMU is jailed at all.
    pub(crate) fn is_some(&self) -> bool {
        self.root.is_some()
    }

    /// Whether QEMU runs as an unprivileged uid.
    pub(crate) fn switches_user(&self) -> bool {
        self.user.is_some()
    }

    /// The uid and gid QEMU runs as, when not root: what new layers are
    /// handed to.
    pub(crate) fn owner(&self) -> Option<(u32, u32)> {
        self.user.as_ref().map(|(uid, gid, _)| (*uid, *gid))
    }

    /// The lock on QEMU's uid, to hold as long as the VM runs.
    pub(crate) fn take_slot(&mut self) -> Option<UidSlot> {
        self.slot.take()
    }
}

/// The files below `image` in its backing chain, read-only: regular
/// files inside `roots` (pyro's stores) only. The headers name them, and
/// a QEMU that broke out of its device model may have written a header.
fn chain(image: &Path, roots: &[PathBuf]) -> std::io::Result<Vec<(PathBuf, Access)>> {
    let roots: Vec<PathBuf> = roots
        .iter()
        .filter_map(|root| std::fs::canonicalize(root).ok())
        .collect();
    // Each file is judged before it is opened.
    let inside = |real: &Path| {
        match roots.iter().any(|root| real.starts_with(root)) {
        true => Ok(true),
        false => Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!(
                "{} names {} as a backing file, which is not a file in pyro's stores: refused (a header rewritten, perhaps by a VM that broke out)",
                image.display(),
                real.display()
            ),
        )),
    }
    };
    Ok(crate::qcow2::backing_chain(image, inside)?
        .into_iter()
        .skip(1)
        .map(|image| (image.filename, Access::Read))
        .collect())
}

/// Who QEMU runs as: a uid of its own in `pyro-vm`'s group, its
/// `writable` files handed to it; or, when that cannot be (no such user,
/// no uid free, KVM no group may open, a file of another user), uid 0
/// without capabilities, with the files a VM's uid held handed back to
/// root. The supervisor's log says why.
#[allow(clippy::type_complexity)]
fn switch_user(
    writable: &[PathBuf],
    group_writable: &[PathBuf],
    kvm: bool,
) -> std::io::Result<(
    Option<(libc::uid_t, libc::gid_t, Vec<libc::gid_t>)>,
    Option<UidSlot>,
)> {
    let user = VmUser::lookup();
    let why = match (&user, vmuser::kvm_groups(kvm)) {
        (None, _) => format!("there is no user {}", vmuser::VM_USER),
        (Some(_), None) => "no group may open /dev/kvm".to_string(),
        (Some(user), Some(groups)) => match UidSlot::acquire() {
            Ok(slot) => {
                if vmuser::hand_files(group_writable, Some((0, user.gid)), Some(user), true)?
                    && vmuser::hand_files(writable, Some((slot.uid, user.gid)), Some(user), false)?
                {
                    return Ok((Some((slot.uid, user.gid, groups)), Some(slot)));
                }
                "a file it writes is not root's to hand over (another user's, in a directory another user owns, linked twice, or not a regular file)".to_string()
            }
            Err(error) => format!("no uid for it: {error}"),
        },
    };
    vmuser::hand_files(writable, None, user.as_ref(), false)?;
    // A template's RAM file stays its group's: other launches use it now.
    let group = user.as_ref().map(|user| (0, user.gid));
    vmuser::hand_files(group_writable, group, user.as_ref(), true)?;
    eprintln!("pyro: QEMU runs as uid 0 without capabilities: {why}");
    Ok((None, None))
}

/// The `RLIMIT_FSIZE` that caps files at `bytes`. As root both limits
/// are set, so QEMU cannot lift its own (root keeps the right to move
/// them, [`set_file_size_limit`]); otherwise only the soft one, under
/// this process's hard limit.
pub(crate) fn file_size_rlimit(bytes: u64) -> libc::rlimit {
    let mut current = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: getrlimit fills a live struct.
    unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut current) };
    match pyro_util::fsutil::is_root() {
        true => libc::rlimit {
            rlim_cur: bytes,
            rlim_max: bytes,
        },
        false => libc::rlimit {
            rlim_cur: bytes.min(current.rlim_max),
            rlim_max: current.rlim_max,
        },
    }
}

/// Sets the `RLIMIT_FSIZE` of the running process `pid`.
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
/// file it opens lies in a directory neither root nor the keeper owns
/// (`sudo pyro` with a user's cache or home, 0700), where root's
/// ownership alone gets nowhere.
pub(crate) fn needs_dac(paths: &[&Path]) -> bool {
    use std::os::unix::fs::MetadataExt as _;
    pyro_util::fsutil::is_root()
        && paths.iter().any(|path| {
            path.ancestors()
                .filter_map(|p| std::fs::metadata(p).ok())
                .any(|meta| meta.uid() != 0 && meta.uid() != vmuser::KEEPER_UID)
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
