//! The QEMU `microvm` engine.
//!
//! One `qemu-system-x86_64` process per VM, `-M microvm` (virtio-mmio found
//! through ACPI, no firmware), direct boot of an uncompressed `vmlinux`. The
//! guest channels are Unix socket pairs whose far ends QEMU inherits as file
//! descriptors (`-chardev socket,fd=N`): nothing is ever created on disk for
//! them, so nothing can be left behind. An ephemeral root disk is a
//! throw-away overlay pyro makes, opens and unlinks at once, and hands
//! QEMU as a descriptor; so is a transfer image while it runs (`add-fd`
//! over the monitor, opened as `/dev/fdset/N`), whose path its jail
//! ([`jail`]) does not hold. A snapshot's new layer is made in the
//! workspace's layer directory, which the jail binds.

mod args;
mod confinement;
mod disks;
mod jail;
mod migrate;
mod mounts;
mod qmp;
mod vmuser;

use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::console::ConsoleLog;
use crate::{Engine, EngineError, Vm, VmExit, VmSpec};
pub use confinement::{Confinement, Gap, Seccomp};
pub use vmuser::{freeze_layer, KEEPER_UID, VM_UID_BASE, VM_USER};

pub use args::{kernel_cmdline, machine_signature};
pub use qmp::QmpError;

use qmp::Qmp;

/// How long QMP may take to answer one command.
const MONITOR_TIMEOUT: Duration = Duration::from_secs(30);
/// How long saving or restoring the VM state may take.
const MIGRATION_TIMEOUT: Duration = Duration::from_secs(300);

/// Name of the QEMU binary looked up on `PATH` (override: `PYRO_QEMU`).
pub const QEMU_BINARY: &str = "qemu-system-x86_64";

/// A QEMU binary found on this host.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QemuInstall {
    pub binary: PathBuf,
    /// `7.2.22` from `QEMU emulator version 7.2.22 (Debian …)`.
    pub version: Option<String>,
}

impl QemuInstall {
    /// Finds QEMU: `$PYRO_QEMU` if set, else the first `qemu-system-x86_64` on `PATH`.
    pub fn locate() -> Result<Self, EngineError> {
        let binary = match std::env::var_os("PYRO_QEMU") {
            Some(path) => PathBuf::from(path),
            None => find_on_path(QEMU_BINARY).ok_or_else(|| EngineError::QemuMissing {
                binary: QEMU_BINARY.into(),
            })?,
        };
        if !binary.is_file() {
            return Err(EngineError::QemuMissing {
                binary: binary.display().to_string(),
            });
        }
        Ok(QemuInstall {
            binary,
            version: None,
        })
    }

    /// Asks the binary for its version (spawns it once; for diagnostics only).
    pub fn with_version(mut self) -> Self {
        let output = Command::new(&self.binary)
            .arg("--version")
            .stdin(Stdio::null())
            .output();
        if let Ok(output) = output {
            let text = String::from_utf8_lossy(&output.stdout);
            self.version = parse_version(&text);
        }
        self
    }
}

fn parse_version(text: &str) -> Option<String> {
    let rest = text.lines().next()?.split("version ").nth(1)?;
    rest.split_whitespace().next().map(str::to_string)
}

fn find_on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    })
}

/// Boots VMs with QEMU.
#[derive(Debug, Clone)]
pub struct QemuEngine {
    install: QemuInstall,
}

impl QemuEngine {
    pub fn new(install: QemuInstall) -> Self {
        QemuEngine { install }
    }

    /// Locates QEMU on this host.
    pub fn locate() -> Result<Self, EngineError> {
        QemuInstall::locate().map(Self::new)
    }

    pub fn install(&self) -> &QemuInstall {
        &self.install
    }
}

impl Engine for QemuEngine {
    fn name(&self) -> &'static str {
        "qemu"
    }

    fn start(&self, spec: &VmSpec) -> Result<Box<dyn Vm>, EngineError> {
        check_exists("kernel", &spec.kernel)?;
        check_exists("initramfs", &spec.initramfs)?;
        if let Some(disk) = &spec.root_disk {
            let (crate::RootDisk::Ephemeral { base: path, .. }
            | crate::RootDisk::Persistent { path, .. }) = disk;
            check_exists("root disk", path)?;
        }
        if let Some(crate::SeedDisk::Image { path, .. }) = &spec.seed_disk {
            check_exists("seed disk", path)?;
        }
        if let Some(state) = &spec.restore_from {
            check_exists("saved VM state", state)?;
        }
        // A shared file is the image being made; QEMU creates it.
        if let crate::GuestRam::File {
            path,
            shared: false,
        } = &spec.ram
        {
            check_exists("guest memory image", path)?;
        }
        let (console_host, console_guest) = UnixStream::pair().map_err(EngineError::Channel)?;
        let (agent_host, agent_guest) = UnixStream::pair().map_err(EngineError::Channel)?;
        let (monitor_host, monitor_guest) = UnixStream::pair().map_err(EngineError::Channel)?;
        let network = match spec.network {
            true => Some(UnixStream::pair().map_err(EngineError::Channel)?),
            false => None,
        };
        let ephemeral = match &spec.root_disk {
            Some(crate::RootDisk::Ephemeral { base, format }) => {
                Some(disks::ephemeral_overlay(base, *format)?)
            }
            _ => None,
        };
        let fds = args::ChannelFds {
            console: console_guest.as_raw_fd(),
            agent: agent_guest.as_raw_fd(),
            monitor: monitor_guest.as_raw_fd(),
            network: network.as_ref().map(|(_, guest)| guest.as_raw_fd()),
            ephemeral: ephemeral.as_ref().map(|file| file.as_raw_fd()),
        };
        let mut inherited = vec![fds.console, fds.agent, fds.monitor];
        inherited.extend(fds.network);
        inherited.extend(fds.ephemeral);
        // QEMU reads a saved state straight from the file: through a pipe
        // its loader waits for the pipe at every 64 KiB.
        let saved_state = match &spec.restore_from {
            Some(state) => Some(std::fs::File::open(state).map_err(|source| {
                EngineError::Migration(format!("cannot open {}: {source}", state.display()))
            })?),
            None => None,
        };
        inherited.extend(saved_state.as_ref().map(|file| file.as_raw_fd()));
        let argv = args::qemu_args(spec, &fds);

        // The path QEMU's jail binds (`/bin/qemu…` is `/usr/bin/qemu…`).
        let binary = std::fs::canonicalize(&self.install.binary)
            .unwrap_or_else(|_| self.install.binary.clone());
        let mut command = Command::new(&binary);
        command
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let owner = std::process::id() as libc::pid_t;
        let mut opened = vec![spec.kernel.as_path(), spec.initramfs.as_path()];
        if let Some(
            crate::RootDisk::Ephemeral { base: path, .. }
            | crate::RootDisk::Persistent { path, .. },
        ) = &spec.root_disk
        {
            opened.push(path);
        }
        if let crate::GuestRam::File { path, .. } = &spec.ram {
            opened.push(path);
        }
        let mut jail = jail::Jail::plan(spec, &binary)?;
        let uid_slot = jail.take_slot();
        let vm_owner = jail.owner();
        // A QEMU that stays uid 0 keeps the right to pass file permissions
        // only where its files need it.
        let keep_dac = !jail.switches_user() && jail::needs_dac(&opened);
        let jailed = jail.is_some();
        let file_size_limit = spec.file_size_limit.map(jail::file_size_rlimit);
        // SAFETY: the closure runs in the forked child before exec and calls
        // only async-signal-safe functions (fcntl, prctl, close_range,
        // capget/capset, unshare, mount, mkdir, open, symlink, pivot_root,
        // set*id, getppid, setpgid, kill) on values made before the fork.
        unsafe {
            command.pre_exec(move || {
                jail::prepare_child(owner, &inherited, keep_dac, &jail, file_size_limit)
            });
        }
        let mut child = command.spawn().map_err(|source| match jailed {
            true => EngineError::Jail(format!(
                "{} did not start in it: {source}",
                self.install.binary.display()
            )),
            false => EngineError::Spawn {
                binary: self.install.binary.display().to_string(),
                source,
            },
        })?;
        drop(ephemeral);
        drop(console_guest);
        drop(agent_guest);
        drop(monitor_guest);
        let network = network.map(|(host, _guest)| host);
        let stderr = StderrTail::capture(child.stderr.take());
        let console_file = spec.console_log.as_ref().and_then(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .ok()
        });
        let mut vm = QemuVm {
            child,
            agent: Some(agent_host),
            console: ConsoleLog::capture(console_host, console_file),
            stderr,
            monitor: Some(monitor_host),
            network,
            qmp: None,
            exited: None,
            ram_in_file: match spec.ram {
                crate::GuestRam::Anonymous => None,
                crate::GuestRam::File { shared, .. } => Some(shared),
            },
            paused_switchover: false,
            top: match &spec.root_disk {
                Some(crate::RootDisk::Persistent { path, .. }) => Some(path.clone()),
                _ => None,
            },
            transfer: (None, 0),
            owner: vm_owner,
            _uid_slot: uid_slot,
        };
        if let Some(state) = &saved_state {
            // On failure `vm` is dropped, which kills QEMU.
            vm.restore(state.as_raw_fd())?;
        }
        Ok(Box::new(vm))
    }
}

fn check_exists(what: &'static str, path: &Path) -> Result<(), EngineError> {
    if path.exists() {
        Ok(())
    } else {
        Err(EngineError::MissingFile {
            what,
            path: path.to_path_buf(),
        })
    }
}

/// Keeps the last lines QEMU wrote to stderr (its own errors: bad options,
/// an image it cannot open) for error messages.
#[derive(Debug, Clone, Default)]
struct StderrTail(ConsoleLog);

impl StderrTail {
    fn capture(stderr: Option<std::process::ChildStderr>) -> Self {
        match stderr {
            Some(stderr) => StderrTail(ConsoleLog::capture(stderr, None)),
            None => StderrTail::default(),
        }
    }
}

struct QemuVm {
    child: Child,
    agent: Option<UnixStream>,
    console: ConsoleLog,
    stderr: StderrTail,
    /// The monitor socket until the first QMP use connects it.
    monitor: Option<UnixStream>,
    /// The host end of the guest NIC until the owner takes it.
    network: Option<UnixStream>,
    qmp: Option<Qmp>,
    exited: Option<VmExit>,
    /// `Some(shared)` when the guest RAM is mapped from a file.
    ram_in_file: Option<bool>,
    /// Whether `pause-before-switchover` is on (a live save set it).
    paused_switchover: bool,
    /// The image the VM writes its persistent root disk to.
    top: Option<PathBuf>,
    /// The node of the file the transfer slot reads now, and how many
    /// have been attached (node names are never reused).
    transfer: (Option<String>, u64),
    /// The uid and gid a jailed QEMU runs as: new layers are handed to it.
    owner: Option<(u32, u32)>,
    /// The lock on the uid a jailed QEMU runs as.
    _uid_slot: Option<vmuser::UidSlot>,
}

impl QemuVm {
    fn qmp(&mut self, action: &'static str) -> Result<&mut Qmp, EngineError> {
        if self.qmp.is_none() {
            let stream = self.monitor.take().ok_or(EngineError::Monitor {
                action,
                source: QmpError::Closed,
            })?;
            let qmp = Qmp::connect(stream, MONITOR_TIMEOUT)
                .map_err(|source| EngineError::Monitor { action, source })?;
            self.qmp = Some(qmp);
        }
        Ok(self.qmp.as_mut().expect("connected above"))
    }

    fn command(
        &mut self,
        action: &'static str,
        command: &str,
        arguments: serde_json::Value,
    ) -> Result<serde_json::Value, EngineError> {
        self.qmp(action)?
            .execute(command, arguments)
            .map_err(|source| EngineError::Monitor { action, source })
    }

    fn record(&mut self, status: std::process::ExitStatus) -> VmExit {
        let exit = VmExit {
            code: status.code(),
            signal: status.signal(),
        };
        self.exited = Some(exit.clone());
        exit
    }
}

impl Vm for QemuVm {
    fn pid(&self) -> u32 {
        self.child.id()
    }

    fn take_agent_stream(&mut self) -> Option<UnixStream> {
        self.agent.take()
    }

    fn take_network_link(&mut self) -> Option<UnixStream> {
        self.network.take()
    }

    fn console(&self) -> ConsoleLog {
        // QEMU's own complaints come first in importance: append them.
        let stderr = self.stderr.0.text();
        if stderr.trim().is_empty() {
            return self.console.clone();
        }
        let merged = ConsoleLog::default();
        merged.push_text(&self.console.text());
        for line in stderr.lines() {
            merged.push_text(&format!("\n[qemu] {line}"));
        }
        merged
    }

    fn engine_said(&self) -> String {
        self.stderr.0.text()
    }

    fn kill(&mut self) {
        if self.exited.is_some() {
            return;
        }
        let _ = self.child.kill();
        if let Ok(status) = self.child.wait() {
            self.record(status);
        }
    }

    fn wait_timeout(&mut self, timeout: Duration) -> Option<VmExit> {
        if let Some(exit) = &self.exited {
            return Some(exit.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(self.record(status)),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                _ => return None,
            }
        }
    }

    fn save(&mut self, state: &Path) -> Result<(), EngineError> {
        self.save_paused(state)
    }

    fn save_live(
        &mut self,
        state: &Path,
        new_top: Option<&Path>,
    ) -> Result<Duration, crate::LiveSaveFailed> {
        self.save_live_running(state, new_top)
    }

    fn snapshot_disk(&mut self, new_top: &Path) -> Result<(), EngineError> {
        self.make_layer(new_top)?;
        if let Err(error) = self.pause_vm() {
            let _ = std::fs::remove_file(new_top);
            return Err(error);
        }
        let switched = self.attach_layer(new_top);
        // Resume whatever happened: a failed snapshot leaves the VM as it was.
        let resumed = self.resume_vm();
        switched.and(resumed)
    }

    fn pause(&mut self) -> Result<(), EngineError> {
        self.pause_vm()
    }

    fn root_size(&mut self) -> Result<u64, EngineError> {
        self.root_virtual_size("read the disk size of")
    }

    fn grow_root(&mut self, bytes: u64) -> Result<(), EngineError> {
        self.resize_root(bytes)
    }

    fn limit_file_size(&mut self, bytes: u64) -> Result<(), EngineError> {
        if self.exited.is_some() {
            return Ok(());
        }
        jail::set_file_size_limit(self.child.id(), bytes).map_err(EngineError::Limit)
    }

    fn set_transfer_disk(&mut self, file: Option<&Path>) -> Result<(), EngineError> {
        self.point_transfer(file)
    }

    fn resume(&mut self) -> Result<(), EngineError> {
        self.resume_vm()
    }
}

impl QemuVm {
    fn pause_vm(&mut self) -> Result<(), EngineError> {
        self.command("pause", "stop", serde_json::json!({}))
            .map(drop)
    }

    fn resume_vm(&mut self) -> Result<(), EngineError> {
        self.command("resume", "cont", serde_json::json!({}))
            .map(drop)
    }
}

impl Drop for QemuVm {
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_version_line() {
        let text = "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright";
        assert_eq!(parse_version(text).as_deref(), Some("7.2.22"));
        assert_eq!(parse_version("garbage"), None);
    }
}
