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
    /// Host → guest, id 0, right after the hellos: who this guest is, and
    /// fresh entropy. The agent sets the hostname, writes `/etc/machine-id`
    /// and mixes `entropy` into the kernel's pool, then reseeds it: a guest
    /// restored from a memory image shared by many (a warm template) draws
    /// random bytes of its own. No answer.
    Identity {
        hostname: String,
        /// 32 lowercase hex digits.
        machine_id: String,
        /// Hex-encoded random bytes from the host.
        entropy: String,
    },
    /// Host → guest: start a command under the frame's request id.
    Exec(ExecRequest),
    /// Guest → host: the command of this request id started.
    Started { pid: u32 },
    /// Host → guest: deliver a signal to the command's process group. On a
    /// `WriteFile` any signal cancels it: the agent answers
    /// `Error { kind: Cancelled }` and the old file stays as it was. On a
    /// pty exec see `foreground`.
    Signal {
        signal: i32,
        /// On a pty exec: only the terminal's foreground job gets it (what a
        /// key like Ctrl-C would hit; the shell itself when nothing else
        /// runs). When false, `SIGKILL` and `SIGHUP` also reach the
        /// command's own group. Ignored for commands without a terminal.
        #[serde(default, skip_serializing_if = "is_false")]
        foreground: bool,
    },
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
    /// Host → guest, id 0: the host is about to save the VM's state (a
    /// memory snapshot, a suspend, a fork). The agent answers `Quiesced`
    /// and then writes nothing more until the host's next `Hello`: the
    /// frames it queues meanwhile wait in guest memory. The host sends
    /// nothing after `Quiesce` until that `Hello` either, so the saved
    /// stream is at a frame boundary both ways and everything the host
    /// sent before was read.
    Quiesce,
    /// Guest → host, id 0: the answer to `Quiesce`, the last frame before
    /// the next `Hello`.
    Quiesced,
    /// Guest → host: `bytes` more bytes of the host's data frames for this
    /// request (stdin or file) reached their destination, or were dropped
    /// because it is gone (a command that closed its stdin). Counts since the
    /// previous `Ack` of the id, not a running total. The host keeps at most
    /// [`STDIN_WINDOW`](crate::STDIN_WINDOW) un-acked bytes in flight.
    Ack { bytes: u64 },
    /// Host → guest: send the content of one file. Answered by `FileInfo`,
    /// then its bytes as `File` data frames, then `Done { bytes }`; or by one
    /// `Error` (missing, a directory, over `max_bytes`, escaping the root).
    ReadFile {
        /// Relative to the root; an absolute path must lie under the root.
        path: String,
        /// Refuse files larger than this, before sending any data.
        max_bytes: u64,
        /// Directory paths are confined to; `/workspace` when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        root: Option<String>,
    },
    /// Host → guest: replace one file atomically with the bytes of the `File`
    /// data frames the host sends next on this id (an empty frame ends them),
    /// flow-controlled by `Ack` like stdin. Answered by `Done { bytes }` once
    /// the file is in place, or by one `Error` (the old content is kept).
    WriteFile {
        /// Relative to the root; an absolute path must lie under the root.
        path: String,
        /// Permission bits; when absent an existing file keeps its own and a
        /// new one gets 0o644.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mode: Option<u32>,
        /// Create missing parent directories (0o755), all beneath the root.
        #[serde(default)]
        create_parents: bool,
        /// Directory paths are confined to; `/workspace` when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        root: Option<String>,
    },
    /// Host → guest: list a directory. Answered by one or more `DirEntries`,
    /// then `Done`; or by one `Error`.
    ListDir {
        /// Relative to the root; empty or `.` is the root itself.
        #[serde(default)]
        path: String,
        /// Walk subdirectories too (never through symlinks).
        #[serde(default)]
        recursive: bool,
        /// Stop after this many entries and set `truncated`.
        max_entries: u64,
        /// Directory paths are confined to; `/workspace` when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        root: Option<String>,
    },
    /// Host → guest: describe one path without following a final symlink.
    /// Answered by `FileInfo` then `Done`, or by one `Error`.
    Stat {
        /// Relative to the root; empty or `.` is the root itself.
        path: String,
        /// Directory paths are confined to; `/workspace` when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        root: Option<String>,
    },
    /// Guest → host: what `ReadFile` is about to send, or what `Stat` found.
    FileInfo(FileInfo),
    /// Guest → host: a slice of a `ListDir` listing, in listing order.
    DirEntries {
        entries: Vec<DirEntry>,
        /// The listing stopped at `max_entries`; set on the last slice.
        #[serde(default)]
        truncated: bool,
    },
    /// Guest → host: the request of this id succeeded; no more frames follow
    /// for the id. Ends file requests as `Exited` ends commands.
    Done {
        /// File bytes read or written, where that applies.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        bytes: Option<u64>,
    },
    /// Host → guest, on the id of a running `Exec` that has a `pty`: set the
    /// terminal's window size (the kernel sends `SIGWINCH` to its foreground
    /// job). Ignored on any other id; never answered.
    Resize { rows: u16, cols: u16 },
    /// Host → guest, on a fresh request id: check once whether something is
    /// ready. Answered by `Done {}` when it is, or by
    /// `Error { kind: NotReady }` saying why not.
    Probe(Probe),
    /// Host → guest, on a fresh request id: bring the network device up as
    /// [`crate::net`] lays it out. With `host_ca` the host then sends its CA
    /// bundle as `File` data frames (an empty frame ends them, at most
    /// [`STDIN_WINDOW`](crate::STDIN_WINDOW) bytes, so no `Ack` is awaited);
    /// the guest trusts it in addition to its own. `env` is added to the
    /// environment of every command started from then on. Answered by
    /// `Done {}` or one `Error`.
    NetworkUp {
        #[serde(default)]
        host_ca: bool,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        env: Vec<(String, String)>,
        /// The NIC's own MAC (`xx:xx:xx:xx:xx:xx`), set before the link
        /// comes up: a guest restored from a shared template has the
        /// template's.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        mac: Option<String>,
    },
    /// A message type this build does not know.
    #[serde(other)]
    Unknown,
}

/// The size of a pseudo-terminal, in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PtySize {
    pub rows: u16,
    pub cols: u16,
}

/// One readiness check, run by the agent inside the guest. Tagged by
/// `kind` on the wire (inside the `probe` message).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Probe {
    /// Passes when a TCP connection to `host:port` succeeds within 1 s.
    Tcp {
        port: u16,
        /// An IP literal or `localhost`; `127.0.0.1` when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        host: Option<String>,
    },
    /// Passes when `GET url` (HTTP/1.0, 2 s in all) answers a status from
    /// 200 to 399. Only `http://HOST[:PORT]/PATH` with `HOST` an IP literal
    /// or `localhost`; other URLs are refused as invalid.
    Http { url: String },
    /// Passes when the path exists. Absolute, or relative to `/workspace`.
    File { path: String },
    /// A probe kind this build does not know.
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
    /// Ignored with a `pty`, whose stdin is always open.
    pub stdin: bool,
    /// Run on a new pseudo-terminal of this size instead of pipes: the
    /// command's stdin, stdout and stderr are the terminal, all its output
    /// arrives as stdout frames, and `TERM` defaults to `xterm-256color`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pty: Option<PtySize>,
}

/// What kind of file a path names (not following a final symlink).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FileKind {
    File,
    Dir,
    Symlink,
    /// A device, FIFO or socket; or a kind this build does not know.
    #[serde(other)]
    Other,
}

/// One file's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileInfo {
    pub kind: FileKind,
    /// Size in bytes (of the link text, for a symlink).
    pub size: u64,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Where a symlink points, as written in the link.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symlink_target: Option<String>,
}

/// One entry of a `ListDir` listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirEntry {
    /// Relative to the root, `/`-separated; names that are not UTF-8 are
    /// shown with U+FFFD in place of the bad bytes.
    pub path: String,
    pub kind: FileKind,
    pub size: u64,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symlink_target: Option<String>,
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
    /// The program (127) or the file was not found.
    NotFound,
    /// The program, working directory (126) or file is not accessible.
    PermissionDenied,
    /// The request was malformed (empty argv, reused id, bad cwd, a path
    /// escaping its root, a file over the size limit, more data in flight
    /// than the window allows …).
    InvalidRequest,
    /// The agent does not know this request.
    Unsupported,
    /// Any other failure inside the guest.
    Internal,
    /// The host cancelled the request (`Signal` on a `WriteFile`).
    Cancelled,
    /// A `Probe` ran and did not pass; the message says why.
    NotReady,
    /// A kind this build does not know.
    #[serde(other)]
    Other,
}

fn is_false(value: &bool) -> bool {
    !*value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_exec_without_pty_decodes_as_pipes() {
        let old = br#"{"type":"exec","argv":["true"],"stdin":true}"#;
        let Message::Exec(request) = serde_json::from_slice(old).unwrap() else {
            panic!("not an exec");
        };
        assert_eq!(request.pty, None);
        assert!(request.stdin);
    }

    #[test]
    fn probes_nest_their_kind_inside_the_message() {
        let probe = Message::Probe(Probe::Http {
            url: "http://127.0.0.1/".into(),
        });
        let json = serde_json::to_string(&probe).unwrap();
        assert_eq!(
            json,
            r#"{"type":"probe","kind":"http","url":"http://127.0.0.1/"}"#
        );
        assert_eq!(serde_json::from_str::<Message>(&json).unwrap(), probe);
        let default_host = r#"{"type":"probe","kind":"tcp","port":22}"#;
        assert_eq!(
            serde_json::from_str::<Message>(default_host).unwrap(),
            Message::Probe(Probe::Tcp {
                port: 22,
                host: None
            })
        );
        let missing_port = r#"{"type":"probe","kind":"tcp"}"#;
        assert!(serde_json::from_str::<Message>(missing_port).is_err());
    }

    #[test]
    fn resize_and_not_ready_round_trip() {
        for message in [
            Message::Resize { rows: 1, cols: 2 },
            Message::Error {
                kind: ErrorKind::NotReady,
                message: "connection refused".into(),
            },
        ] {
            let json = serde_json::to_vec(&message).unwrap();
            assert_eq!(serde_json::from_slice::<Message>(&json).unwrap(), message);
        }
    }
}
