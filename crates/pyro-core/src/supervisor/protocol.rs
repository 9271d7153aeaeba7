//! The supervisor's control protocol: what a `pyro` process asks a
//! workspace's supervisor over `control.sock`, and what it answers.
//!
//! One JSON request line, one JSON reply line, per connection. Disk
//! snapshots need the VM itself, so the supervisor's main loop answers
//! them; shells and services are answered by a task per connection, so a
//! shell read that waits for its program to go idle, or a service start
//! that waits for readiness, never holds anyone else up. Replies are
//! `{"ok": VALUE}` or `{"error": SessionError}`, so the caller gets the
//! very error the supervisor raised.
//!
//! Everything here is serde-only data: the types of requests and replies
//! (shells, services, logs) and the limits both sides hold to. It depends
//! on no other module of this crate; [`super::client`] is the only code
//! that opens the socket, [`super::dispatch`] the code that answers it.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

/// Open shells a workspace may have at once.
pub const MAX_OPEN_SHELLS: usize = 32;
/// Largest single write to a shell.
pub const MAX_WRITE: usize = 64 * 1024;
/// Largest terminal: the emulator keeps rows x cols cells.
pub const MAX_ROWS: u16 = 500;
/// Widest terminal.
pub const MAX_COLS: u16 = 1000;
/// Services a workspace may run at once.
pub const MAX_SERVICES: usize = 64;
/// The longest any shell or service call waits (a read, a readiness
/// check, a stop's grace), whatever it is asked.
pub const LONGEST_WAIT: Duration = Duration::from_secs(3600);
/// How long a control call may take beyond the work it asks for.
pub(crate) const CALL_SLACK: Duration = Duration::from_secs(30);
/// Lines `service logs` shows when asked for neither lines nor an offset.
pub const DEFAULT_LOG_LINES: usize = 50;
/// How long a connection has to send its request.
pub(crate) const REQUEST_LIMIT: Duration = Duration::from_secs(5);

/// A request on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum ControlRequest {
    /// Flush the guest, freeze the disk as it is and continue on `new_top`
    /// (relative to the workspace dir); with `memory`, save the VM's
    /// memory and sessions in that directory too, live (the VM is paused
    /// only for the final copy, and the disk frozen in that pause).
    /// Answered with a [`Frozen`].
    Snapshot {
        new_top: String,
        #[serde(default)]
        memory: Option<String>,
    },
    /// Save the VM whole into directory `dir` (relative to the workspace
    /// dir), record the workspace as suspended, and end: no VM, no
    /// supervisor. On failure the VM runs on.
    Suspend {
        dir: String,
    },
    /// Point the VM's transfer slot at raw image `file` (relative to the
    /// workspace dir), or back at zeros. Answered with `true`.
    TransferDisk {
        file: Option<String>,
    },
    ShellOpen {
        cwd: Option<String>,
        rows: u16,
        cols: u16,
        /// Extra variables (secrets a call named); never recorded.
        #[serde(default)]
        env: Vec<(String, String)>,
    },
    ShellRead {
        shell: String,
        wait_idle_ms: u64,
        timeout_ms: u64,
        raw: bool,
    },
    ShellWrite {
        shell: String,
        data: String,
        /// Named keys after `data`, encoded for the terminal's mode.
        #[serde(default)]
        keys: Vec<String>,
    },
    ShellSignal {
        shell: String,
        signal: i32,
    },
    ShellResize {
        shell: String,
        rows: u16,
        cols: u16,
    },
    ShellClose {
        shell: String,
    },
    ShellList,
    ServiceStart(ServiceSpec),
    ServiceList,
    ServiceStatus {
        name: String,
    },
    ServiceLogs {
        name: String,
        tail_lines: Option<usize>,
        since_offset: Option<u64>,
        max_bytes: u64,
    },
    ServiceStop {
        name: String,
        grace_ms: u64,
    },
    /// Suspend the workspace after this many seconds without a call
    /// (none: never by itself).
    IdleTimeout {
        seconds: Option<u64>,
    },
    /// Replace the running network's policy.
    NetworkPolicy(pyro_net::Policy),
    /// Bind a host port and forward it into the guest.
    PortPublish {
        port: pyro_net::Publish,
    },
    /// Close a published port, bound at this address.
    PortUnpublish {
        bound: std::net::SocketAddrV4,
    },
}

/// What a [`ControlRequest::Snapshot`] did: the disk is frozen either way.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct Frozen {
    /// Why the memory could not be saved, when it was asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) memory_failed: Option<String>,
    /// How long the VM was paused for a memory save, milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) paused_ms: Option<u64>,
}

/// A reply on the control socket.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ControlReply {
    Ok(serde_json::Value),
    Error(SessionError),
}

impl ControlReply {
    pub(crate) fn from_result<T: Serialize>(result: Result<T, SessionError>) -> Self {
        match result.map(|value| serde_json::to_value(value)) {
            Ok(Ok(value)) => ControlReply::Ok(value),
            Ok(Err(e)) => ControlReply::Error(SessionError::Internal(e.to_string())),
            Err(error) => ControlReply::Error(error),
        }
    }
}

/// Why a shell or service call failed. Messages say what to do next.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
#[allow(missing_docs)] // Each variant says what it is in its message.
pub enum SessionError {
    #[error("no shell '{shell}' in workspace '{workspace}'")]
    UnknownShell { shell: String, workspace: String },
    #[error("shell '{shell}' has {how}")]
    ShellGone {
        shell: String,
        workspace: String,
        how: String,
    },
    #[error("workspace '{workspace}' already has {limit} open shells")]
    TooManyShells { workspace: String, limit: usize },
    #[error("shell '{shell}' is not reading its input ({pending} bytes still pending)")]
    ShellBusy {
        shell: String,
        #[serde(default)]
        workspace: String,
        pending: u64,
    },
    #[error("no service '{name}' in workspace '{workspace}'")]
    UnknownService { name: String, workspace: String },
    #[error("service '{name}' is already running")]
    ServiceRunning { name: String, workspace: String },
    #[error("invalid service name '{name}': use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit")]
    BadServiceName { name: String },
    #[error("service '{name}' {reason}{}", log_tail(.last_lines))]
    ServiceFailed {
        name: String,
        reason: String,
        last_lines: Vec<String>,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("the workspace's supervisor did not answer ({0})")]
    Supervisor(String),
    #[error("the workspace's VM went away ({0})")]
    VmGone(String),
    #[error("internal error in the workspace's supervisor: {0}")]
    Internal(String),
}

fn log_tail(lines: &[String]) -> String {
    if lines.is_empty() {
        return "; it printed nothing".to_string();
    }
    let mut text = String::from("; its last log lines:");
    for line in lines {
        text.push_str("\n  ");
        text.push_str(line);
    }
    text
}

/// Where a shell stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ShellState {
    /// It runs.
    Open,
    /// Its program exited by itself (`exit`, Ctrl-D).
    Exited {
        /// Its exit code, when it exited.
        exit_code: Option<i32>,
        /// The signal that killed it, when one did.
        signal: Option<i32>,
    },
    /// Someone closed it.
    Closed,
    /// The VM under it went away (stop, reset, crash).
    Ended {
        /// What ended it, and when.
        reason: String,
    },
}

impl ShellState {
    /// Whether it still runs.
    pub fn is_open(&self) -> bool {
        matches!(self, ShellState::Open)
    }

    /// "exited (code 0)", "been closed", "ended: the workspace was reset …".
    pub fn describe(&self) -> String {
        match self {
            ShellState::Open => "open".into(),
            ShellState::Exited {
                exit_code: Some(code),
                ..
            } => format!("exited (code {code})"),
            ShellState::Exited {
                signal: Some(signal),
                ..
            } => format!("exited (killed by signal {signal})"),
            ShellState::Exited { .. } => "exited".into(),
            ShellState::Closed => "been closed".into(),
            ShellState::Ended { reason } => format!("ended: {reason}"),
        }
    }
}

/// One shell, as listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShellInfo {
    /// Its id (`s1`, `s2`, ...), never reused.
    pub id: String,
    /// The directory it started in (`/workspace` when not given).
    pub cwd: Option<String>,
    /// Terminal rows.
    pub rows: u16,
    /// Terminal columns.
    pub cols: u16,
    /// When it was opened (RFC 3339).
    pub opened_at: String,
    /// Where it stands.
    #[serde(flatten)]
    pub state: ShellState,
}

/// What one read returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShellRead {
    /// The shell read.
    pub shell: String,
    /// New or changed text since the previous read (raw bytes, lossily
    /// decoded, in raw mode).
    pub text: String,
    /// A full-screen program (vi, top) is showing: `text` is its screen.
    pub full_screen: bool,
    /// The shell had gone quiet when the read returned; false when the time
    /// limit cut the wait short (the program is still printing).
    pub idle: bool,
    /// Lines (bytes, in raw mode) that fell out of the bounded history since
    /// the previous read.
    pub dropped: u64,
    /// Where it stands.
    #[serde(flatten)]
    pub state: ShellState,
}

/// Refuses terminal sizes outside 1x1 ..= MAX_ROWS x MAX_COLS.
pub(crate) fn check_size(rows: u16, cols: u16) -> Result<(), SessionError> {
    if (1..=MAX_ROWS).contains(&rows) && (1..=MAX_COLS).contains(&cols) {
        return Ok(());
    }
    Err(SessionError::Invalid(format!(
        "a terminal of {rows} rows and {cols} columns is not possible; use 1-{MAX_ROWS} rows and 1-{MAX_COLS} columns"
    )))
}

/// How a service shows it is ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Readiness {
    /// This file exists (absolute, or relative to /workspace).
    File {
        /// The file.
        path: String,
    },
    /// Something accepts connections on this TCP port of the guest's
    /// loopback.
    Tcp {
        /// The port.
        port: u16,
    },
    /// This http:// URL in the guest answers with a 2xx or 3xx status.
    Http {
        /// The URL.
        url: String,
    },
    /// This shell command exits 0 in the guest.
    Command {
        /// The shell command line.
        command: String,
    },
}

impl Readiness {
    /// The guest port it checks, for a TCP port or an http:// URL.
    pub fn port(&self) -> Option<u16> {
        match self {
            Readiness::Tcp { port } => Some(*port),
            Readiness::Http { url } => {
                let rest = url.strip_prefix("http://")?;
                let authority = rest.split(['/', '?', '#']).next()?;
                match authority.rsplit_once(':') {
                    Some((_, port)) => port.parse().ok(),
                    None => Some(80),
                }
            }
            Readiness::File { .. } | Readiness::Command { .. } => None,
        }
    }

    /// How it reads in messages, e.g. "tcp port 8000".
    pub fn describe(&self) -> String {
        match self {
            Readiness::File { path } => format!("file {path}"),
            Readiness::Tcp { port } => format!("tcp port {port}"),
            Readiness::Http { url } => format!("http {url}"),
            Readiness::Command { command } => format!("command `{command}`"),
        }
    }
}

/// What `service start` asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// Its name, unique in the workspace.
    pub name: String,
    /// The command and its arguments.
    pub argv: Vec<String>,
    /// Its working directory (default `/workspace`).
    pub cwd: Option<String>,
    /// Never recorded anywhere: only the names reach the service's record.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Secrets to add to `env` (`NAME` or `ENVVAR=NAME`); the facade puts
    /// their values in before the spec leaves it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_env: Vec<String>,
    /// How it shows it is ready; none: ready once started.
    pub readiness: Option<Readiness>,
    /// How long it may take to get ready.
    pub ready_timeout_ms: u64,
}

/// Where a service stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ServiceState {
    /// Started, not ready yet.
    Starting,
    /// Ready (or started, when it has no readiness check) and running.
    Running,
    /// Exited with a failure, never became ready, or could not start.
    Failed {
        /// Why, in words.
        reason: String,
        /// Its exit code, when it exited.
        exit_code: Option<i32>,
        /// The signal that killed it, when one did.
        signal: Option<i32>,
    },
    /// Exited by itself with status 0.
    Exited,
    /// Stopped on request; `killed` when it ignored SIGTERM.
    Stopped {
        /// It ignored SIGTERM and was killed.
        killed: bool,
    },
    /// The VM under it went away (stop, reset, crash).
    Ended {
        /// What ended it, and when.
        reason: String,
    },
}

impl ServiceState {
    /// Whether it still runs (starting or running).
    pub fn is_live(&self) -> bool {
        matches!(self, ServiceState::Starting | ServiceState::Running)
    }

    /// One word: `starting`, `running`, `failed`, `exited`, `stopped`, `ended`.
    pub fn label(&self) -> &'static str {
        match self {
            ServiceState::Starting => "starting",
            ServiceState::Running => "running",
            ServiceState::Failed { .. } => "failed",
            ServiceState::Exited => "exited",
            ServiceState::Stopped { .. } => "stopped",
            ServiceState::Ended { .. } => "ended",
        }
    }
}

/// One service, as listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceInfo {
    /// Its name, unique in the workspace.
    pub name: String,
    /// The command line, secrets redacted.
    pub command: String,
    /// Its working directory (default `/workspace`).
    pub cwd: Option<String>,
    /// Names of the extra environment variables (never their values).
    #[serde(default)]
    pub env_names: Vec<String>,
    /// How it shows it is ready; none: ready once started.
    pub readiness: Option<Readiness>,
    /// When it was (last) started (RFC 3339).
    pub started_at: String,
    /// Milliseconds from start until it was ready.
    pub ready_after_ms: Option<u64>,
    /// When it ended, if it did.
    pub ended_at: Option<String>,
    /// Where it stands.
    #[serde(flatten)]
    pub state: ServiceState,
    /// Bytes it printed in all.
    pub log_bytes: u64,
    /// Of those, bytes no longer kept (the log is bounded).
    pub log_dropped: u64,
    /// Host URLs of published ports that lead to its readiness port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
}

/// A slice of a service's log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogRead {
    /// The log text (lossy UTF-8).
    pub text: String,
    /// Offset of the first byte of `text`.
    pub start_offset: u64,
    /// Offset just past `text`: pass it as `since` to follow the log.
    pub end_offset: u64,
    /// Bytes between the requested start and `start_offset` that are no
    /// longer kept (the log is bounded).
    pub skipped: u64,
    /// More was available than `max_bytes` allowed; read on from `end_offset`.
    pub truncated: bool,
}

/// Which part of a log to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogRange {
    /// The last N lines.
    Tail(usize),
    /// Everything from this absolute offset on.
    Since(u64),
}

/// Reads one request line from a control connection (the caller has
/// `limit` to send it).
pub(crate) async fn read_request(
    reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
    limit: Duration,
) -> Result<ControlRequest, SessionError> {
    let mut line = String::new();
    let mut bounded = reader.take(MAX_REQUEST_BYTES);
    match tokio::time::timeout(limit, bounded.read_line(&mut line)).await {
        Ok(Ok(_)) if !line.ends_with('\n') && line.len() as u64 >= MAX_REQUEST_BYTES => Err(
            SessionError::Invalid(format!("control request over {MAX_REQUEST_BYTES} bytes")),
        ),
        Ok(Ok(n)) if n > 0 => serde_json::from_str(&line)
            .map_err(|e| SessionError::Invalid(format!("bad control request: {e}"))),
        _ => Err(SessionError::Invalid("no control request".into())),
    }
}

/// Largest request line: a shell write (64 KiB) with every byte escaped
/// fits.
const MAX_REQUEST_BYTES: u64 = 1024 * 1024;

/// Writes one reply line.
pub(crate) async fn write_reply(
    writer: &mut tokio::net::unix::OwnedWriteHalf,
    reply: ControlReply,
) {
    let mut bytes = serde_json::to_vec(&reply).unwrap_or_else(|e| {
        let error = SessionError::Internal(format!("cannot encode the reply: {e}"));
        serde_json::to_vec(&ControlReply::Error(error)).unwrap_or_default()
    });
    bytes.push(b'\n');
    let _ = writer.write_all(&bytes).await;
}

/// The fuzzing harness of the control socket's messages (`fuzz/`): any
/// bytes either fail to decode or decode to a message that encodes and
/// decodes again to the same JSON.
#[doc(hidden)]
pub fn fuzz_control(data: &[u8]) {
    fn round_trip<T: serde::Serialize + serde::de::DeserializeOwned>(data: &[u8]) {
        if let Ok(message) = serde_json::from_slice::<T>(data) {
            let once = serde_json::to_value(&message).expect("a message encodes");
            let again: T = serde_json::from_value(once.clone()).expect("what encodes decodes");
            assert_eq!(serde_json::to_value(&again).expect("encodes"), once);
        }
    }
    round_trip::<ControlRequest>(data);
    round_trip::<ControlReply>(data);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_crosses_the_control_socket() {
        let errors = [
            SessionError::UnknownShell {
                shell: "s1".into(),
                workspace: "w".into(),
            },
            SessionError::ServiceFailed {
                name: "web".into(),
                reason: "exited with code 3".into(),
                last_lines: vec!["boom".into()],
            },
            SessionError::Invalid("bad".into()),
            SessionError::Supervisor("gone".into()),
            SessionError::VmGone("closed".into()),
            SessionError::Internal("oops".into()),
        ];
        for error in errors {
            let line = serde_json::to_string(&ControlReply::Error(error.clone())).unwrap();
            match serde_json::from_str::<ControlReply>(&line).unwrap() {
                ControlReply::Error(back) => assert_eq!(back.to_string(), error.to_string()),
                ControlReply::Ok(_) => panic!("{line}"),
            }
        }
    }

    #[test]
    fn network_requests_cross_the_control_socket() {
        let port = pyro_net::Publish::parse("0:8000").unwrap();
        let requests = [
            ControlRequest::NetworkPolicy(pyro_net::Policy {
                enabled: true,
                allow: Vec::new(),
            }),
            ControlRequest::PortPublish { port },
            ControlRequest::PortUnpublish {
                bound: "127.0.0.1:8080".parse().unwrap(),
            },
        ];
        for request in requests {
            let line = serde_json::to_string(&request).unwrap();
            let back: ControlRequest = serde_json::from_str(&line).unwrap();
            assert_eq!(serde_json::to_string(&back).unwrap(), line);
        }
    }
}
