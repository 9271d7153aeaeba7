//! Messages carried in `Message` frames, JSON-encoded and tagged by `type`.

use serde::{Deserialize, Serialize};

/// Every message either side may send. Which side sends which is noted on
/// each variant; a peer answers a message it should not receive with
/// `Error { kind: Unsupported }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Message {
    /// Both ways, id 0. Guest → host: sent when the agent opens its port and
    /// in answer to the host's `Hello`. Host → guest: sets the guest clock.
    Hello {
        generation: u32,
        /// Guest only: version of the agent binary.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent_version: Option<String>,
        /// Guest only: milliseconds since the guest kernel started.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uptime_ms: Option<u64>,
        /// Host only: wall-clock time, milliseconds since the Unix epoch.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        time_unix_ms: Option<u64>,
    },
    /// Host → guest: start a command under the frame's request id.
    Exec(ExecRequest),
    /// Guest → host: the command of this request id started.
    Started { pid: u32 },
    /// Host → guest: deliver a signal to the command's process group.
    Signal { signal: i32 },
    /// Guest → host: the command of this request id ended; no more frames
    /// follow for the id. Output frames all precede it.
    Exited(ExitStatus),
    /// Guest → host: the request of this id failed before or instead of
    /// running. Ends the request like `Exited`.
    Error { kind: ErrorKind, message: String },
    /// Host → guest, id 0: flush disks and power the VM off. The agent
    /// answers `PoweringOff` first.
    PowerOff,
    /// Guest → host: the agent is about to power off.
    PoweringOff,
    /// A message type this build does not know.
    #[serde(other)]
    Unknown,
}

/// A command to run in the guest.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExecRequest {
    /// Program and arguments; `argv[0]` is looked up in `PATH`.
    pub argv: Vec<String>,
    /// Working directory; the agent uses `/workspace` when absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cwd: Option<String>,
    /// Extra environment variables, applied over the agent's base environment.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<(String, String)>,
    /// Kill the command's process group after this many milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timeout_ms: Option<u64>,
    /// Whether the host will send stdin frames; otherwise stdin is /dev/null.
    pub stdin: bool,
}

/// How a command ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExitStatus {
    /// Exit code when the command exited normally.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<i32>,
    /// Signal number when a signal ended it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// The agent killed it because `timeout_ms` passed.
    pub timed_out: bool,
    /// Wall time from start to exit, in milliseconds.
    pub duration_ms: u64,
}

impl ExitStatus {
    /// Shell-style status: the code, or 128 + signal.
    pub fn shell_code(&self) -> i32 {
        match (self.code, self.signal) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            (None, None) => 1,
        }
    }
}

/// Class of a request failure, so the host can map it to exit codes and advice.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The program was not found (shell exit code 127).
    NotFound,
    /// The program or working directory is not accessible (126).
    PermissionDenied,
    /// The request was malformed (empty argv, reused id, bad cwd …).
    InvalidRequest,
    /// The agent does not know this request.
    Unsupported,
    /// Any other failure inside the guest.
    Internal,
    /// A kind this build does not know.
    #[serde(other)]
    Other,
}
