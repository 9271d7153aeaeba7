//! What confines the VMs this process starts, as `pyro doctor` reports
//! it: QEMU's seccomp sandbox, its privileges, its jail, and what is not
//! in force and why.

use std::path::Path;
use std::process::{Command, Stdio};

use super::jail::jail_wanted;
use super::vmuser::{VmUser, VM_UID_BASE, VM_USER};

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
                "a uid of its own per VM (from {VM_UID_BASE}) in group {VM_USER} (gid {}), its own mount namespace, holding only its files (system libraries, devices, its kernel and disks), and empty network, IPC and UTS namespaces",
                user.gid
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

const CAP_SETPCAP: u32 = 8;
