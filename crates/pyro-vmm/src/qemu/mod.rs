//! The QEMU `microvm` engine.
//!
//! One `qemu-system-x86_64` process per VM, `-M microvm` (virtio-mmio found
//! through ACPI, no firmware), direct boot of an uncompressed `vmlinux`. The
//! guest channels are Unix socket pairs whose far ends QEMU inherits as file
//! descriptors (`-chardev socket,fd=N`): nothing is ever created on disk for
//! them, so nothing can be left behind. An ephemeral root disk uses QEMU's
//! `snapshot=on`, whose temporary overlay QEMU unlinks right after opening it.

mod args;
mod qmp;

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixStream;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::console::ConsoleLog;
use crate::{Engine, EngineError, Vm, VmExit, VmSpec};

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
        let fds = args::ChannelFds {
            console: console_guest.as_raw_fd(),
            agent: agent_guest.as_raw_fd(),
            monitor: monitor_guest.as_raw_fd(),
            network: network.as_ref().map(|(_, guest)| guest.as_raw_fd()),
        };
        let mut inherited = vec![fds.console, fds.agent, fds.monitor];
        inherited.extend(fds.network);
        let argv = args::qemu_args(spec, &fds);

        let mut command = Command::new(&self.install.binary);
        command
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let owner = std::process::id() as libc::pid_t;
        // SAFETY: the closure runs in the forked child before exec and calls
        // only async-signal-safe functions (fcntl, prctl, getppid, setpgid,
        // kill) on values captured by copy.
        unsafe {
            command.pre_exec(move || prepare_child(owner, &inherited));
        }
        let mut child = command.spawn().map_err(|source| EngineError::Spawn {
            binary: self.install.binary.display().to_string(),
            source,
        })?;
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
        };
        if let Some(state) = &spec.restore_from {
            // On failure `vm` is dropped, which kills QEMU.
            vm.restore(state)?;
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

/// Runs in the forked child: hands it the guest channel descriptors and ties
/// its life to the owner.
fn prepare_child(owner: libc::pid_t, inherited: &[RawFd]) -> std::io::Result<()> {
    for &fd in inherited {
        // SAFETY: fd is an open descriptor of this process; clearing
        // FD_CLOEXEC only makes QEMU inherit it.
        if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
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

    /// Polls `query-migrate` until the migration ends.
    fn wait_migration(&mut self, action: &'static str) -> Result<(), EngineError> {
        let deadline = Instant::now() + MIGRATION_TIMEOUT;
        loop {
            let status = self.command(action, "query-migrate", serde_json::json!({}))?;
            match status["status"].as_str() {
                Some("completed") => return Ok(()),
                Some("failed") | Some("cancelled") => {
                    return Err(EngineError::Migration(
                        status["error-desc"]
                            .as_str()
                            .unwrap_or("QEMU reported failure")
                            .to_string(),
                    ))
                }
                _ if Instant::now() > deadline => {
                    return Err(EngineError::Migration(format!(
                        "not done after {}s",
                        MIGRATION_TIMEOUT.as_secs()
                    )))
                }
                _ => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }

    /// Leaves shared RAM out of the migration stream (`x-ignore-shared`):
    /// its file holds it. Both ends of a stream must agree.
    fn ignore_shared_ram(&mut self, action: &'static str, on: bool) -> Result<(), EngineError> {
        self.command(
            action,
            "migrate-set-capabilities",
            serde_json::json!({
                "capabilities": [{ "capability": "x-ignore-shared", "state": on }]
            }),
        )
        .map(drop)
    }

    fn restore(&mut self, state: &Path) -> Result<(), EngineError> {
        if self.ram_in_file.is_some() {
            self.ignore_shared_ram("restore", true)?;
        }
        let uri = restore_uri(state);
        self.command(
            "restore",
            "migrate-incoming",
            serde_json::json!({ "uri": uri }),
        )?;
        self.wait_migration("restore")?;
        self.resume()
    }
    /// Migrates the paused VM into `part`, which becomes `state` once whole.
    fn write_state(&mut self, state: &Path, part: &Path) -> Result<(), EngineError> {
        let uri = save_uri(state, part);
        self.command("save", "migrate", serde_json::json!({ "uri": uri }))?;
        self.wait_migration("save")?;
        // QEMU calls the migration done once it has written the stream;
        // `cat` may still be writing it. The file appears under its name
        // only after cat saw the end, and `part` goes when cat failed
        // (see `save_uri`).
        let deadline = Instant::now() + MONITOR_TIMEOUT;
        while !state.exists() {
            if !part.exists() && !state.exists() {
                return Err(EngineError::Migration(
                    "writing the saved state failed (is the host disk full?)".into(),
                ));
            }
            if Instant::now() > deadline {
                return Err(EngineError::Migration(
                    "the saved state was not complete in time".into(),
                ));
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        Ok(())
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
        merged.push_text(&stderr);
        merged
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
        self.pause()?;
        // QEMU's default bandwidth cap makes saving several times slower.
        self.command(
            "save",
            "migrate-set-parameters",
            serde_json::json!({ "max-bandwidth": 64u64 << 30 }),
        )?;
        // Set either way: a VM restored from a template has it on from its
        // restore, and a stream saved with it on needs it on to load.
        self.ignore_shared_ram("save", self.ram_in_file == Some(true))?;
        let _ = std::fs::remove_file(state);
        let part = part_path(state);
        // Only its owner reads a VM's memory: `cat >` keeps this mode.
        let created = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&part);
        let saved = created
            .map_err(|e| EngineError::Migration(format!("cannot create {}: {e}", part.display())))
            .and_then(|_| self.write_state(state, &part));
        if saved.is_err() {
            let _ = std::fs::remove_file(&part);
        }
        saved
    }

    fn snapshot_disk(&mut self, new_top: &Path) -> Result<(), EngineError> {
        self.pause()?;
        let switched = self.switch_disk(new_top);
        // Resume whatever happened: a failed snapshot leaves the VM as it was.
        let resumed = self.resume();
        switched.and(resumed)
    }

    fn pause(&mut self) -> Result<(), EngineError> {
        self.command("pause", "stop", serde_json::json!({}))
            .map(drop)
    }

    fn switch_disk(&mut self, new_top: &Path) -> Result<(), EngineError> {
        self.command(
            "snapshot the disk of",
            "blockdev-snapshot-sync",
            serde_json::json!({
                "device": "root",
                "snapshot-file": new_top.display().to_string(),
                "format": "qcow2",
            }),
        )
        .map(drop)
    }

    fn resume(&mut self) -> Result<(), EngineError> {
        self.command("resume", "cont", serde_json::json!({}))
            .map(|_| ())
    }
}

/// QEMU's `exec:` migration reading a saved state: `cat < 'P'`, so a path
/// that starts with `-` is no option of cat's.
fn restore_uri(state: &Path) -> String {
    format!("exec:cat < {}", shell_quote(state))
}

/// Where a state is written until it is whole: `STATE.part`.
fn part_path(state: &Path) -> PathBuf {
    state.with_file_name(format!(
        "{}.part",
        state.file_name().unwrap_or_default().to_string_lossy()
    ))
}

/// QEMU's `exec:` migration writing a state: into `part`, renamed to
/// `state` once the stream has ended, so a file under the name is whole;
/// removed when writing it failed (a full disk).
fn save_uri(state: &Path, part: &Path) -> String {
    let (part, state) = (shell_quote(part), shell_quote(state));
    format!("exec:cat > {part} && mv -f -- {part} {state} || rm -f -- {part}")
}

/// Quotes a path for the `sh -c` that QEMU's `exec:` migration runs.
fn shell_quote(path: &Path) -> String {
    format!("'{}'", path.display().to_string().replace('\'', "'\\''"))
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
    fn quotes_paths_for_the_shell() {
        assert_eq!(shell_quote(Path::new("/a b/it's")), "'/a b/it'\\''s'");
    }

    #[test]
    fn migration_paths_that_look_like_options_are_redirections() {
        // Run the very command QEMU would: cat must read the file, not
        // take "-n" as its option.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("-n"), "state").unwrap();
        let uri = restore_uri(Path::new("-n"));
        let shell = uri.strip_prefix("exec:").unwrap();
        let out = std::process::Command::new("sh")
            .args(["-c", shell])
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.stdout, b"state");
        assert_eq!(
            save_uri(Path::new("-n"), &part_path(Path::new("-n"))),
            "exec:cat > '-n.part' && mv -f -- '-n.part' '-n' || rm -f -- '-n.part'"
        );
    }

    #[test]
    fn parses_the_version_line() {
        let text = "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright";
        assert_eq!(parse_version(text).as_deref(), Some("7.2.22"));
        assert_eq!(parse_version("garbage"), None);
    }
}
