//! Files under /workspace: list, read, write, and patch apply.
//!
//! Every operation goes through the workspace's guest agent on a channel
//! from its supervisor, so confinement is the guest kernel's (`openat2` with
//! `RESOLVE_BENEATH`): `..`, absolute paths elsewhere and symlinks leading
//! out of /workspace are refused there, not by string checks here.
//!
//! Writes stream: at most one chunk of the source is in memory, and at most
//! [`STDIN_WINDOW`] bytes are sent but not yet acknowledged by the agent.
//! Each file is replaced atomically by the agent (temporary file, rename).
//!
//! A patch is computed in full before anything is written: every file it
//! names is read into a [`MemoryTree`], [`pyro_patch::apply`] produces the
//! new contents or names every failing hunk, and only a patch that applies
//! as a whole is written back — deletes first (one `rm` in the guest, on
//! paths the agent has just stat'ed, so known to lie beneath /workspace),
//! then one atomic `WriteFile` per file. The protocol has no delete or
//! multi-file transaction, so a failure *while writing* (disk full, VM
//! gone) can leave some files written; the error then says which.

use std::io::Read;

use pyro_patch::{Failure, ParseError};
use pyro_protocol::{
    ErrorKind, ExecRequest, FileInfo, FrameKind, Message, MAX_PAYLOAD_LEN, STDIN_WINDOW,
};
use serde::Serialize;

use crate::host::guest::{is_terminal, ExecEvent, Guest, GuestError, RequestStream};

pub use pyro_protocol::{DirEntry, FileKind};

/// Largest file `workspace_file_read` returns unless asked otherwise.
pub const DEFAULT_READ_LIMIT: u64 = 16 * 1024 * 1024;
/// Largest file a patch may touch (it is held in memory, old and new).
pub const PATCH_READ_LIMIT: u64 = 64 * 1024 * 1024;
/// Largest patch `patch apply` takes: four times the largest patch `diff`
/// prints. With [`PATCH_TREE_LIMIT`] it bounds the host's memory while a
/// patch applies (the text, its parse, the files old and new).
pub const MAX_PATCH_BYTES: u64 = 32 * 1024 * 1024;
/// Bytes of workspace files one patch may touch, in all.
pub const PATCH_TREE_LIMIT: u64 = 128 * 1024 * 1024;
/// Largest content one `file write` sends; a larger file goes in by
/// `sync push` of a directory that holds it.
pub const MAX_FILE_WRITE: u64 = 1 << 30;
/// Most entries one listing returns; `truncated` says when there were more.
pub const LIST_LIMIT: u64 = 10_000;
/// Bytes per `File` frame of a write: the largest frame (measured: 256 KiB
/// frames write ~30% faster than 128 KiB ones under TCG).
const WRITE_CHUNK: usize = MAX_PAYLOAD_LEN;

/// Why a file operation failed. Messages name the path and the fix.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // Each variant says what it is in its message.
pub enum FilesError {
    #[error("no such file in /workspace: {path}")]
    NotFound { workspace: String, path: String },
    /// The agent's own message: `path escapes /workspace: PATH`.
    #[error("{message}; use a path inside /workspace")]
    Escapes { message: String },
    /// A request the agent refused (a directory, over the size limit, …);
    /// its message says what to do.
    #[error("{message}")]
    Refused { message: String },
    #[error("permission denied in /workspace: {message}")]
    PermissionDenied { message: String },
    #[error("writing {path} was cancelled; it keeps its old content")]
    Cancelled { path: String },
    #[error("the guest agent failed: {message}")]
    Agent { message: String },
    #[error("the content for {path} is more than {limit}, the most one file write takes; the file keeps its old content")]
    WriteTooLarge {
        workspace: String,
        path: String,
        limit: String,
    },
    #[error("the patch is more than {limit}, the most one patch may be; nothing was changed. Split it into smaller patches")]
    PatchTooLarge { limit: String },
    #[error("the files this patch changes hold more than {limit} in all, the most one patch may touch; nothing was changed. Split it into patches over fewer files")]
    PatchTreeTooLarge { limit: String },
    #[error("cannot read the content to write to {path}")]
    Source {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is a symlink; patch the file it points to instead")]
    Symlink { path: String },
    #[error("{path} is not a regular file; a patch can only change regular files")]
    NotAFile { path: String },
    #[error("{path}: mode {mode:o} is not supported; a patch can only create regular files (100644 or 100755)")]
    UnsupportedMode { path: String, mode: u32 },
    #[error("malformed patch")]
    Parse(#[source] ParseError),
    #[error("patch does not apply; nothing was changed:{}", list_failures(.failures))]
    Rejected { failures: Vec<Failure> },
    #[error("deleting {paths} failed ({detail}); nothing else was changed")]
    Delete { paths: String, detail: String },
    #[error("patch partly applied: {done} done, then writing {path} failed")]
    Partial {
        workspace: String,
        done: String,
        path: String,
        #[source]
        source: Box<FilesError>,
    },
    #[error("the workspace was stopped or deleted while the command ran")]
    Gone,
    #[error(transparent)]
    Channel(GuestError),
}

fn list_failures(failures: &[Failure]) -> String {
    failures.iter().map(|f| format!("\n  {f}")).collect()
}

/// A directory listing.
#[derive(Debug, Clone, Serialize)]
pub struct Listing {
    /// The path listed, as asked (`.` for /workspace itself).
    pub path: String,
    /// Depth first, each directory's names in byte order; paths relative
    /// to /workspace.
    pub entries: Vec<DirEntry>,
    /// The listing stopped at [`LIST_LIMIT`] entries.
    pub truncated: bool,
}

/// What a write did.
#[derive(Debug, Clone, Serialize)]
pub struct WriteReport {
    /// The workspace, as the caller named it.
    pub workspace: String,
    /// The file, relative to /workspace.
    pub path: String,
    /// Bytes written.
    pub bytes: u64,
    /// How long it took.
    pub duration_ms: u64,
}

/// What a patch did to one file.
#[derive(Debug, Clone, Serialize)]
pub struct PatchedFile {
    /// The file's path after the patch (before it, for a deletion).
    pub path: String,
    /// `modified`, `created`, `deleted`, `renamed` or `copied`.
    pub action: &'static str,
    /// The source of a rename or copy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    pub insertions: usize,
    pub deletions: usize,
}

/// A hunk that applied away from the line its header states.
#[derive(Debug, Clone, Serialize)]
pub struct HunkOffset {
    pub path: String,
    /// 1-based hunk number within its file.
    pub hunk: usize,
    /// Lines away from the stated position (negative: earlier).
    pub offset: isize,
}

/// What an applied patch did.
#[derive(Debug, Clone, Serialize)]
pub struct PatchReport {
    /// The workspace, as the caller named it.
    pub workspace: String,
    /// Each file the patch touched.
    pub files: Vec<PatchedFile>,
    /// Git's wording: `2 files changed, 3 insertions(+), 1 deletion(-)`.
    pub stat: String,
    /// How many files changed.
    pub files_changed: usize,
    /// Lines added.
    pub insertions: usize,
    /// Lines removed.
    pub deletions: usize,
    /// Hunks applied.
    pub hunks_applied: usize,
    /// Hunks that applied away from their stated line.
    pub offsets: Vec<HunkOffset>,
    /// How long it took.
    pub duration_ms: u64,
}

/// A guest channel to one workspace, for file requests.
pub(crate) struct Files {
    guest: Guest,
    /// The workspace as the caller named it, for messages.
    workspace: String,
}

impl Files {
    /// File requests on `guest`, of the workspace the caller calls
    /// `workspace`.
    pub(crate) fn new(guest: Guest, workspace: &str) -> Files {
        Files {
            guest,
            workspace: workspace.to_string(),
        }
    }

    pub(crate) async fn open(&self, message: &Message) -> Result<FileRequest, FilesError> {
        let stream = self.guest.open(message).await.map_err(guest_error)?;
        Ok(FileRequest {
            stream,
            deadline: tokio::time::Instant::now() + FILE_DEADLINE,
        })
    }

    /// The next message of a file request, with an `Error` turned into a
    /// [`FilesError`] about `path`. Data frames are skipped.
    pub(crate) async fn next_message(
        &self,
        request: &mut FileRequest,
        path: &str,
    ) -> Result<Message, FilesError> {
        loop {
            let frame = next_frame(request).await?;
            if frame.kind != FrameKind::Message {
                continue;
            }
            return match frame
                .message()
                .map_err(|e| FilesError::Channel(GuestError::Protocol(e)))?
            {
                Message::Error { kind, message } => {
                    Err(agent_error(&self.workspace, path, kind, message))
                }
                message => Ok(message),
            };
        }
    }

    /// `path`'s metadata, or `None` when there is no such file.
    pub(crate) async fn stat(&self, path: &str) -> Result<Option<FileInfo>, FilesError> {
        let mut request = self
            .open(&Message::Stat {
                path: path.to_string(),
                root: None,
            })
            .await?;
        let mut info = None;
        loop {
            match self.next_message(&mut request, path).await {
                Ok(Message::FileInfo(found)) => info = Some(found),
                Ok(Message::Done { .. }) => return Ok(info),
                Ok(_) => {}
                Err(FilesError::NotFound { .. }) => return Ok(None),
                Err(error) => return Err(error),
            }
        }
    }

    /// Appends `path`'s content to `content`.
    pub(crate) async fn read(
        &self,
        path: &str,
        max_bytes: u64,
        content: &mut Vec<u8>,
    ) -> Result<(), FilesError> {
        let mut request = self
            .open(&Message::ReadFile {
                path: path.to_string(),
                max_bytes,
                root: None,
            })
            .await?;
        let start = content.len() as u64;
        loop {
            let frame = next_frame(&mut request).await?;
            if frame.kind == FrameKind::File {
                // The agent refuses a larger file; a hostile one may not.
                if content.len() as u64 - start + frame.payload.len() as u64 > max_bytes {
                    return Err(FilesError::Agent {
                        message: format!(
                            "the guest sent more than the {max_bytes} bytes asked for of {path}"
                        ),
                    });
                }
                content.extend_from_slice(&frame.payload);
                continue;
            }
            if frame.kind != FrameKind::Message {
                continue;
            }
            match frame
                .message()
                .map_err(|e| FilesError::Channel(GuestError::Protocol(e)))?
            {
                Message::Error { kind, message } => {
                    return Err(agent_error(&self.workspace, path, kind, message))
                }
                Message::Done { .. } => return Ok(()),
                _ => {}
            }
        }
    }

    /// Streams `source` into `path` under the agent's window; returns the
    /// bytes the agent wrote.
    pub(crate) async fn write(
        &self,
        path: &str,
        source: &mut (dyn Read + Send),
        mode: Option<u32>,
    ) -> Result<u64, FilesError> {
        let mut request = self
            .open(&Message::WriteFile {
                path: path.to_string(),
                mode,
                create_parents: true,
                root: None,
            })
            .await?;
        let mut chunk = vec![0u8; WRITE_CHUNK];
        let mut in_flight: u64 = 0;
        let mut sent: u64 = 0;
        loop {
            let read = match read_some(source, &mut chunk) {
                Ok(n) if sent + n as u64 <= MAX_FILE_WRITE => Ok(n),
                Ok(_) => Err(FilesError::WriteTooLarge {
                    workspace: self.workspace.clone(),
                    path: path.to_string(),
                    limit: pyro_util::human_bytes(MAX_FILE_WRITE),
                }),
                Err(source) => Err(FilesError::Source {
                    path: path.to_string(),
                    source,
                }),
            };
            let n = match read {
                Ok(n) => n,
                Err(error) => {
                    // Cancel: the agent keeps the old file.
                    let _ = request
                        .send(&Message::Signal {
                            signal: libc::SIGTERM,
                            foreground: false,
                        })
                        .await;
                    return Err(error);
                }
            };
            sent += n as u64;
            // Take whatever the agent already said (acks, an early refusal)
            // without waiting, then wait while the window is full.
            while let Some(frame) = poll_frame(&mut request).await? {
                in_flight -= self.write_progress(&frame, path)?.min(in_flight);
            }
            while in_flight + n as u64 > STDIN_WINDOW {
                let frame = next_frame(&mut request).await?;
                in_flight -= self.write_progress(&frame, path)?.min(in_flight);
            }
            // A guest that stopped reading blocks the write: bounded.
            tokio::time::timeout(FILE_QUIET, request.send_data(FrameKind::File, &chunk[..n]))
                .await
                .map_err(|_| FilesError::Channel(GuestError::NoAnswer("a file write")))?
                .map_err(guest_error)?;
            if n == 0 {
                break;
            }
            in_flight += n as u64;
        }
        loop {
            match self.next_message(&mut request, path).await? {
                Message::Done { bytes } => return Ok(bytes.unwrap_or_default()),
                _ => continue,
            }
        }
    }

    /// Bytes acknowledged by `frame` of a write; an `Error` or an early
    /// `Done` ends the write.
    fn write_progress(&self, frame: &pyro_protocol::Frame, path: &str) -> Result<u64, FilesError> {
        if frame.kind != FrameKind::Message {
            return Ok(0);
        }
        match frame
            .message()
            .map_err(|e| FilesError::Channel(GuestError::Protocol(e)))?
        {
            Message::Ack { bytes } => Ok(bytes),
            Message::Error { kind, message } => {
                Err(agent_error(&self.workspace, path, kind, message))
            }
            _ if is_terminal(frame) => Err(FilesError::Agent {
                message: format!("the agent ended the write of {path} before its end"),
            }),
            _ => Ok(0),
        }
    }

    /// Deletes regular files by path relative to /workspace. The protocol
    /// has no delete request; callers pass only paths the agent has just
    /// stat'ed (so beneath /workspace) that passed `check_path`.
    pub(crate) async fn remove(&self, paths: &[&str]) -> Result<(), FilesError> {
        let mut argv = vec!["rm".to_string(), "-f".to_string(), "--".to_string()];
        argv.extend(paths.iter().map(|path| path.to_string()));
        let mut exec = self
            .guest
            .exec(ExecRequest {
                argv,
                cwd: Some("/workspace".to_string()),
                timeout_ms: Some(60_000),
                ..ExecRequest::default()
            })
            .await
            .map_err(guest_error)?;
        let mut stderr = Vec::new();
        let deadline = tokio::time::Instant::now() + FILE_QUIET;
        let detail = loop {
            let event = tokio::time::timeout_at(deadline, exec.next()).await;
            let Ok(event) = event else {
                crate::host::exec::kill(&mut exec).await;
                break format!("rm did not finish within {} s", FILE_QUIET.as_secs());
            };
            match event.map_err(guest_error)? {
                ExecEvent::Stderr(bytes) if stderr.len() < 8192 => stderr.extend_from_slice(&bytes),
                ExecEvent::Exited(status) if status.shell_code() == 0 => return Ok(()),
                ExecEvent::Exited(status) => {
                    let text = String::from_utf8_lossy(&stderr).trim().to_string();
                    break format!("rm exited {}: {text}", status.shell_code());
                }
                ExecEvent::Failed { message, .. } => break message,
                _ => {}
            }
        };
        Err(FilesError::Delete {
            paths: paths.join(", "),
            detail,
        })
    }
}

/// How long a file request waits for the agent's next frame: it answers
/// within milliseconds, and each frame is at most a chunk.
const FILE_QUIET: std::time::Duration = std::time::Duration::from_secs(120);
/// How long one file request may take in all, however the agent chatters:
/// a 1 GiB write at emulation's slowest is minutes.
const FILE_DEADLINE: std::time::Duration = std::time::Duration::from_secs(30 * 60);

/// A file request on the guest channel, with its deadline.
pub(crate) struct FileRequest {
    stream: RequestStream,
    deadline: tokio::time::Instant,
}

impl std::ops::Deref for FileRequest {
    type Target = RequestStream;
    fn deref(&self) -> &RequestStream {
        &self.stream
    }
}

impl std::ops::DerefMut for FileRequest {
    fn deref_mut(&mut self) -> &mut RequestStream {
        &mut self.stream
    }
}

/// The request's next frame, unless the agent stays silent past
/// [`FILE_QUIET`] or the request runs past its deadline (a stalled or
/// hostile guest).
async fn next_frame(request: &mut FileRequest) -> Result<pyro_protocol::Frame, FilesError> {
    let until = request
        .deadline
        .min(tokio::time::Instant::now() + FILE_QUIET);
    match tokio::time::timeout_at(until, request.stream.next_frame()).await {
        Ok(frame) => frame.map_err(guest_error),
        Err(_) => Err(FilesError::Channel(GuestError::NoAnswer("a file request"))),
    }
}

/// The next frame if one is already queued.
async fn poll_frame(request: &mut FileRequest) -> Result<Option<pyro_protocol::Frame>, FilesError> {
    tokio::select! {
        biased;
        frame = request.next_frame() => frame.map(Some).map_err(guest_error),
        _ = std::future::ready(()) => Ok(None),
    }
}

/// Fills as much of `buf` as one read gives; 0 at end of input.
fn read_some(source: &mut (dyn Read + Send), buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match source.read(buf) {
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            result => return result,
        }
    }
}

/// The failure the agent reported for a request about `path`.
fn agent_error(workspace: &str, path: &str, kind: ErrorKind, message: String) -> FilesError {
    match kind {
        ErrorKind::NotFound => FilesError::NotFound {
            workspace: workspace.to_string(),
            path: path.to_string(),
        },
        ErrorKind::InvalidRequest if message.starts_with("path escapes ") => {
            FilesError::Escapes { message }
        }
        ErrorKind::InvalidRequest => FilesError::Refused { message },
        ErrorKind::PermissionDenied => FilesError::PermissionDenied { message },
        ErrorKind::Cancelled => FilesError::Cancelled {
            path: path.to_string(),
        },
        ErrorKind::Unsupported => FilesError::Agent {
            message: format!("{message}; recreate the workspace with this pyro's environment"),
        },
        _ => FilesError::Agent { message },
    }
}

fn guest_error(error: GuestError) -> FilesError {
    match error {
        GuestError::Disconnected => FilesError::Gone,
        other => FilesError::Channel(other),
    }
}

/// Git's mode for a regular file with permission bits `mode`.
pub(crate) fn git_mode(mode: u32) -> u32 {
    if mode & 0o111 != 0 {
        pyro_patch::MODE_EXECUTABLE
    } else {
        pyro_patch::MODE_FILE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn executable_bits_make_an_executable_git_mode() {
        assert_eq!(git_mode(0o644), 0o100644);
        assert_eq!(git_mode(0o600), 0o100644);
        assert_eq!(git_mode(0o755), 0o100755);
        assert_eq!(git_mode(0o700), 0o100755);
    }

    #[test]
    fn agent_errors_say_what_to_do() {
        let missing = agent_error("ws", "x", ErrorKind::NotFound, "x: gone".into());
        assert_eq!(missing.to_string(), "no such file in /workspace: x");
        let escape = agent_error(
            "ws",
            "../etc/passwd",
            ErrorKind::InvalidRequest,
            "path escapes /workspace: ../etc/passwd".into(),
        );
        assert!(matches!(escape, FilesError::Escapes { .. }));
        assert!(escape
            .to_string()
            .starts_with("path escapes /workspace: ../etc/passwd"));
    }
}
