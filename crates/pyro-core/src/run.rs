//! `pyro run`: one command in a throw-away VM.
//!
//! Boot, exec, stream, tear down. The VM is killed on every path: the
//! command's exit, a timeout, cancellation (Ctrl-C), an error, and, through
//! the engine's parent-death signal, the death of this process. Its root
//! disk is an ephemeral layer that vanishes with it.

use std::future::Future;
use std::time::{Duration, Instant};

use pyro_protocol::{ErrorKind, ExecRequest, ExitStatus};
use pyro_vmm::{Accel, DiskFormat, RootDisk, VmSpec};
use serde::Serialize;

use crate::boot::boot;
use crate::guest::{ExecEvent, GuestError};
use crate::{Error, Pyro};

/// Extra time the host grants past the agent's own timeout before it stops
/// waiting for the agent and kills the VM.
pub(crate) const TIMEOUT_GRACE: Duration = Duration::from_secs(10);

/// Smallest VM memory accepted (MiB); below it Debian's kernel cannot even
/// unpack its initramfs.
pub const MIN_MEMORY_MIB: u32 = 128;
/// Most vCPUs accepted.
pub const MAX_CPUS: u32 = 64;

/// What to run and in what VM.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub env: String,
    pub argv: Vec<String>,
    /// Stop the command after this long (boot time is not counted).
    pub timeout: Option<Duration>,
    pub cpus: u32,
    pub memory_mib: u32,
    pub env_vars: Vec<(String, String)>,
    /// The command's standard input (none: `/dev/null`).
    pub stdin: crate::Input,
}

impl RunRequest {
    pub const DEFAULT_CPUS: u32 = 1;
    pub const DEFAULT_MEMORY_MIB: u32 = 1024;

    pub fn new(env: impl Into<String>, argv: Vec<String>) -> Self {
        RunRequest {
            env: env.into(),
            argv,
            timeout: None,
            cpus: Self::DEFAULT_CPUS,
            memory_mib: Self::DEFAULT_MEMORY_MIB,
            env_vars: Vec::new(),
            stdin: crate::Input::default(),
        }
    }

    fn validate(&self) -> Result<(), Error> {
        if self.argv.is_empty() {
            return Err(Error::InvalidRequest(
                "no command given; put it after `--`, e.g. pyro run debian:12 -- uname -a".into(),
            ));
        }
        validate_size(self.cpus, self.memory_mib)?;
        if self.timeout == Some(Duration::ZERO) {
            return Err(Error::InvalidRequest(
                "--timeout must be at least 1 second".into(),
            ));
        }
        Ok(())
    }
}

/// Checks VM sizes before anything boots.
pub(crate) fn validate_size(cpus: u32, memory_mib: u32) -> Result<(), Error> {
    if memory_mib < MIN_MEMORY_MIB {
        return Err(Error::InvalidRequest(format!(
            "--memory {memory_mib} MiB is too small to boot; use at least {MIN_MEMORY_MIB}"
        )));
    }
    if cpus == 0 || cpus > MAX_CPUS {
        return Err(Error::InvalidRequest(format!(
            "--cpus must be between 1 and {MAX_CPUS}, not {cpus}"
        )));
    }
    Ok(())
}

/// The process exit code for how a command ended: its own, else 124 on
/// timeout, 126 not executable, 127 not found, 130 cancelled, 125 otherwise.
pub(crate) fn exit_code(end: &RunEnd) -> i32 {
    match end {
        RunEnd::Exited { status } if status.timed_out => 124,
        RunEnd::Exited { status } => status.shell_code(),
        RunEnd::Failed {
            kind: ErrorKind::NotFound,
            ..
        } => 127,
        RunEnd::Failed {
            kind: ErrorKind::PermissionDenied,
            ..
        } => 126,
        RunEnd::Failed { .. } => 125,
        RunEnd::Cancelled => 130,
    }
}

/// Where a run's output goes as it arrives.
pub trait OutputSink {
    fn stdout(&mut self, bytes: &[u8]);
    fn stderr(&mut self, bytes: &[u8]);
}

/// How the command ended.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "end", rename_all = "snake_case")]
pub enum RunEnd {
    /// It ran to an exit (possibly killed by its timeout: `status.timed_out`).
    Exited { status: ExitStatus },
    /// It could not start (not found, not executable, bad cwd).
    Failed { kind: ErrorKind, message: String },
    /// The caller cancelled the run (Ctrl-C).
    Cancelled,
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    #[serde(flatten)]
    pub end: RunEnd,
    pub env: String,
    pub accel: Accel,
    /// VM start until the agent answered.
    pub boot_ms: u64,
    /// From boot to the end of the command.
    pub total_ms: u64,
}

impl RunReport {
    /// The process exit code a front end should use: the command's own, else
    /// 124 on timeout, 126 not executable, 127 not found, 130 cancelled.
    pub fn exit_code(&self) -> i32 {
        exit_code(&self.end)
    }
}

impl Pyro {
    /// Runs one command in a fresh VM of `request.env`, streaming its output
    /// to `sink`. `cancel` resolving stops the run at once.
    pub async fn run(
        &self,
        request: &RunRequest,
        sink: &mut dyn OutputSink,
        cancel: impl Future<Output = ()>,
    ) -> Result<RunReport, Error> {
        request.validate()?;
        let started = Instant::now();
        let store = self.env_store()?;
        let artifacts = store.boot_artifacts(&request.env, crate::agent_image::AGENT)?;
        let engine = self.engine()?;
        let accel = self.accel_for(&engine, &store, &artifacts.kernel);
        let spec = VmSpec {
            kernel: artifacts.kernel.clone(),
            initramfs: artifacts.initramfs.clone(),
            root_disk: Some(RootDisk::Ephemeral {
                base: artifacts.rootfs.clone(),
                format: DiskFormat::Qcow2,
            }),
            cpus: request.cpus,
            memory_mib: request.memory_mib,
            extra_cmdline: Vec::new(),
            accel: accel.chosen,
            restore_from: None,
            console_log: None,
        };

        tokio::pin!(cancel);
        let booted = tokio::select! {
            booted = boot(&engine, &spec) => booted?,
            _ = &mut cancel => {
                return Ok(RunReport {
                    end: RunEnd::Cancelled,
                    env: request.env.clone(),
                    accel: accel.chosen,
                    boot_ms: 0,
                    total_ms: started.elapsed().as_millis() as u64,
                });
            }
        };
        let mut vm = booted.vm;
        let boot_ms = booted.ready_after.as_millis() as u64;
        let exec = ExecRequest {
            argv: request.argv.clone(),
            cwd: None,
            env: request.env_vars.clone(),
            timeout_ms: request.timeout.map(|t| t.as_millis() as u64),
            stdin: false,
            pty: None,
        };
        let host_deadline = request.timeout.map(|t| t + TIMEOUT_GRACE);
        let end = {
            let result = tokio::select! {
                end = drive_exec(&booted.guest, exec, &request.stdin, sink, host_deadline) => end,
                _ = &mut cancel => Ok(RunEnd::Cancelled),
            };
            match result {
                Ok(end) => end,
                Err(GuestError::Disconnected) => {
                    let exit = vm.wait_timeout(Duration::from_secs(1));
                    vm.kill();
                    let console = vm.console();
                    return Err(Error::VmCrashed {
                        exit: exit
                            .as_ref()
                            .map(crate::boot::describe_exit)
                            .unwrap_or_else(|| "it stopped answering and was killed".into()),
                        diagnosis: console.diagnose(),
                        console_tail: console.tail(12),
                    });
                }
                Err(other) => {
                    vm.kill();
                    return Err(Error::Guest(other));
                }
            }
        };
        // The disk is throw-away: no need for an orderly power-off.
        vm.kill();
        Ok(RunReport {
            end,
            env: request.env.clone(),
            accel: accel.chosen,
            boot_ms,
            total_ms: started.elapsed().as_millis() as u64,
        })
    }
}

/// Sends the exec and pumps its events into `sink` until it ends.
pub(crate) async fn drive_exec(
    guest: &crate::guest::Guest,
    mut exec: ExecRequest,
    input: &crate::Input,
    sink: &mut dyn OutputSink,
    host_deadline: Option<Duration>,
) -> Result<RunEnd, GuestError> {
    let timeout = exec.timeout_ms;
    let mut input = input.start();
    exec.stdin = input.is_some();
    let mut stream = guest.exec(exec).await?;
    let deadline = host_deadline.map(|d| tokio::time::Instant::now() + d);
    // Stdin bytes sent and not yet acked: at most the window.
    let mut in_flight: u64 = 0;
    loop {
        let next = async {
            loop {
                let room = in_flight < pyro_protocol::STDIN_WINDOW;
                tokio::select! {
                    chunk = recv(&mut input), if room && input.is_some() => match chunk {
                        Some(chunk) => {
                            in_flight += chunk.len() as u64;
                            stream.write_stdin(&chunk).await?;
                        }
                        None => {
                            input = None;
                            stream.write_stdin(&[]).await?;
                        }
                    },
                    event = stream.next() => return event,
                }
            }
        };
        let event = match deadline {
            Some(deadline) => match tokio::time::timeout_at(deadline, next).await {
                Ok(event) => event?,
                // The agent did not enforce the timeout (wedged guest):
                // report it as a timeout all the same; the caller kills the VM.
                Err(_) => {
                    return Ok(RunEnd::Exited {
                        status: ExitStatus {
                            timed_out: true,
                            duration_ms: timeout.unwrap_or_default(),
                            ..ExitStatus::default()
                        },
                    })
                }
            },
            None => next.await?,
        };
        match event {
            ExecEvent::Started { .. } => {}
            ExecEvent::Ack(bytes) => in_flight = in_flight.saturating_sub(bytes),
            ExecEvent::Stdout(bytes) => sink.stdout(&bytes),
            ExecEvent::Stderr(bytes) => sink.stderr(&bytes),
            ExecEvent::Exited(status) => return Ok(RunEnd::Exited { status }),
            ExecEvent::Failed { kind, message } => return Ok(RunEnd::Failed { kind, message }),
        }
    }
}

/// The next chunk of input (`None` at its end); pending forever without
/// input, so a `select!` branch on it stays quiet.
async fn recv(input: &mut Option<tokio::sync::mpsc::Receiver<Vec<u8>>>) -> Option<Vec<u8>> {
    match input {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
