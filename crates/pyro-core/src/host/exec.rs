//! Running one command over the guest channel: stdin fed under the ack
//! window, output streamed to a sink, and how it ended.

use std::time::Duration;

use pyro_protocol::{ErrorKind, ExecRequest, ExitStatus};
use serde::Serialize;

use super::guest::{ExecEvent, ExecStream, Guest, GuestError};
use super::input::Input;

/// Extra time the host grants past the agent's own timeout before it stops
/// waiting for the agent and kills the VM.
pub(crate) const TIMEOUT_GRACE: Duration = Duration::from_secs(10);

/// Time a killed guest command gets to report its end.
const KILL_GRACE: Duration = Duration::from_secs(5);

/// Kills a guest command the host gave up on (SIGKILL to its process
/// group) and waits briefly for its end, so it neither runs on nor keeps
/// writing into a stream nobody reads.
pub(crate) async fn kill(stream: &mut ExecStream) {
    // Bounded too: a guest that stopped reading blocks the write.
    let _ = tokio::time::timeout(KILL_GRACE, async {
        stream.signal(libc::SIGKILL).await?;
        while let Ok(event) = stream.next().await {
            if matches!(event, ExecEvent::Exited(_) | ExecEvent::Failed { .. }) {
                break;
            }
        }
        Ok::<(), GuestError>(())
    })
    .await;
}

/// Where a run's output goes as it arrives.
pub trait OutputSink {
    /// Bytes the command wrote to its standard output.
    fn stdout(&mut self, bytes: &[u8]);
    /// Bytes the command wrote to its standard error.
    fn stderr(&mut self, bytes: &[u8]);
}

/// A sink that keeps everything: for library callers that want a
/// command's output as a whole (mind its size).
#[derive(Debug, Default, Clone)]
pub struct CollectOutput {
    /// Everything on standard output.
    pub stdout: Vec<u8>,
    /// Everything on standard error.
    pub stderr: Vec<u8>,
}

impl CollectOutput {
    /// Standard output as text (lossy UTF-8).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }
}

impl OutputSink for CollectOutput {
    fn stdout(&mut self, bytes: &[u8]) {
        self.stdout.extend_from_slice(bytes);
    }
    fn stderr(&mut self, bytes: &[u8]) {
        self.stderr.extend_from_slice(bytes);
    }
}

/// How the command ended.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "end", rename_all = "snake_case")]
pub enum RunEnd {
    /// It ran to an exit (possibly killed by its timeout: `status.timed_out`).
    Exited {
        /// Exit code or signal, and whether the timeout killed it.
        status: ExitStatus,
    },
    /// It could not start (not found, not executable, bad cwd).
    Failed {
        /// Why, as a kind.
        kind: ErrorKind,
        /// Why, in words.
        message: String,
    },
    /// The caller cancelled the run (Ctrl-C).
    Cancelled,
}

impl RunEnd {
    /// The process exit code for this ending: the command's own, else 124
    /// on timeout, 126 not executable, 127 not found, 130 cancelled, 125
    /// otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
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
}

/// Sends the exec and pumps its events into `sink` until it ends.
pub(crate) async fn drive_exec(
    guest: &Guest,
    mut exec: ExecRequest,
    input: &Input,
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
            ExecEvent::Started => {}
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
