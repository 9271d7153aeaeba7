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
//!   capability bounding set (no capability survives the exec: QEMU keeps
//!   uid 0's file ownership, nothing more).
//!
//! Not yet: an unprivileged user, a mount namespace exposing only QEMU's
//! files, and a cgroup; [`Confinement`] says so to `pyro doctor`.

use std::os::fd::RawFd;
use std::path::Path;
use std::process::{Command, Stdio};

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
    /// What is not confined yet, and why.
    pub missing: Vec<String>,
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
        let privileges = match (pyro_util::fsutil::is_root(), has_capability(CAP_SETPCAP)) {
            (true, true) => "runs as root with no capabilities (empty bounding set; the two that pass file permissions stay only when its files lie in another user's directories) and NoNewPrivs",
            (true, false) => "runs as root with this process's capabilities: without CAP_SETPCAP (a container that drops it) pyro cannot empty the bounding set; NoNewPrivs holds",
            (false, _) => "runs as this user, without capabilities (no ambient ones), with NoNewPrivs",
        };
        Confinement {
            seccomp,
            privileges: format!("{privileges}; it inherits only its guest channels"),
            missing: vec![
                "an unprivileged user for QEMU and a mount namespace exposing only its files: not yet built".into(),
                cgroup_state(),
            ],
        }
    }
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
            "a cgroup per VM (memory, pids): cgroup v2 is here, pyro does not use it yet".into()
        }
        _ => "a cgroup per VM: this host has no cgroup v2 with the memory and pids controllers"
            .into(),
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
) -> std::io::Result<()> {
    pyro_util::fds::close_on_exec_from(3);
    for &fd in inherited {
        // SAFETY: fd is an open descriptor of this process; clearing
        // FD_CLOEXEC only makes QEMU inherit it.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    drop_privileges(keep_dac)?;
    // SAFETY: plain prctl/setpgid/getppid calls with constant arguments.
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
