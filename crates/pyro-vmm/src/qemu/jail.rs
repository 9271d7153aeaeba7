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

/// What confines the VMs this process starts, for `pyro doctor`.
#[derive(Debug, Clone)]
pub struct Confinement {
    /// The seccomp sandbox: `Ok` with what it denies, or why it is off.
    pub seccomp: Result<String, String>,
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
            Err("turned off by PYRO_QEMU_SANDBOX=off".to_string())
        } else {
            let output = Command::new(binary)
                .args(["-sandbox", SANDBOX, "-version"])
                .stdin(Stdio::null())
                .output();
            match output {
                Ok(out) if out.status.success() => Ok(
                    "on: obsolete, privilege-raising, process-spawning and resource-control system calls are denied"
                        .to_string(),
                ),
                Ok(out) => Err(format!(
                    "this QEMU refuses it ({}); VMs will not start until PYRO_QEMU_SANDBOX=off is set",
                    String::from_utf8_lossy(&out.stderr).trim()
                )),
                Err(error) => Err(format!("cannot run {}: {error}", binary.display())),
            }
        };
        let privileges = match pyro_util::fsutil::is_root() {
            true => "runs as root with no capabilities (empty bounding set) and NoNewPrivs",
            false => "runs as this user, without capabilities, with NoNewPrivs",
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

/// Runs in the forked child before exec: only the `inherited` descriptors
/// stay open across the exec, privileges go, and the child's life is tied
/// to `owner`. Only async-signal-safe system calls.
pub(crate) fn prepare_child(owner: libc::pid_t, inherited: &[RawFd]) -> std::io::Result<()> {
    pyro_util::fds::close_on_exec_from(3);
    for &fd in inherited {
        // SAFETY: fd is an open descriptor of this process; clearing
        // FD_CLOEXEC only makes QEMU inherit it.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    drop_privileges()?;
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

/// `NoNewPrivs`, and for root an empty bounding set and no inheritable or
/// ambient capabilities, so the exec'd program holds none.
fn drop_privileges() -> std::io::Result<()> {
    // SAFETY: prctl and capget/capset with valid pointers to local structs.
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 {
            return Err(std::io::Error::last_os_error());
        }
        if libc::geteuid() != 0 {
            return Ok(());
        }
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        );
        let mut cap = 0;
        while libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) == 0 {
            cap += 1;
        }
        if cap == 0 {
            return Err(std::io::Error::last_os_error());
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
