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

use std::collections::BTreeSet;
use std::io::Read;
use std::time::Instant;

use pyro_patch::{Change, DiffStat, Failure, MemoryTree, ParseError};
use pyro_protocol::{
    ErrorKind, ExecRequest, FileInfo, FrameKind, Message, MAX_PAYLOAD_LEN, STDIN_WINDOW,
};
use serde::Serialize;

use super::WorkspaceError;
use crate::guest::{is_terminal, ExecEvent, Guest, GuestError, RequestStream};
use crate::{Error, Pyro};

pub use pyro_protocol::{DirEntry, FileKind};

/// Largest file `workspace_file_read` returns unless asked otherwise.
pub const DEFAULT_READ_LIMIT: u64 = 16 * 1024 * 1024;
/// Largest file a patch may touch (it is held in memory, old and new).
pub const PATCH_READ_LIMIT: u64 = 64 * 1024 * 1024;
/// Most entries one listing returns; `truncated` says when there were more.
pub const LIST_LIMIT: u64 = 10_000;
/// Bytes per `File` frame of a write: the largest frame (measured: 256 KiB
/// frames write ~30% faster than 128 KiB ones under TCG).
const WRITE_CHUNK: usize = MAX_PAYLOAD_LEN;

/// Why a file operation failed. Messages name the path and the fix.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error(
        "no such file in /workspace: {path}; list files with: pyro workspace file list {workspace}"
    )]
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
    #[error("patch partly applied: {done} done, then writing {path} failed; check the workspace (e.g. pyro workspace exec {workspace} -- git status)")]
    Partial {
        workspace: String,
        done: String,
        path: String,
        #[source]
        source: Box<Error>,
    },
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
    pub workspace: String,
    pub path: String,
    pub bytes: u64,
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
    pub workspace: String,
    pub files: Vec<PatchedFile>,
    /// Git's wording: `2 files changed, 3 insertions(+), 1 deletion(-)`.
    pub stat: String,
    pub files_changed: usize,
    pub insertions: usize,
    pub deletions: usize,
    pub hunks_applied: usize,
    pub offsets: Vec<HunkOffset>,
    pub duration_ms: u64,
}

impl Pyro {
    /// Lists `path` (relative to /workspace; empty or `.` for the root),
    /// walking subdirectories when `recursive` (never through symlinks).
    pub async fn workspace_file_list(
        &self,
        query: &str,
        path: &str,
        recursive: bool,
    ) -> Result<Listing, Error> {
        let files = Files::connect(self, query).await?;
        let path = if path.is_empty() { "." } else { path };
        let mut request = files
            .open(&Message::ListDir {
                path: path.to_string(),
                recursive,
                max_entries: LIST_LIMIT,
                root: None,
            })
            .await?;
        let mut listing = Listing {
            path: path.to_string(),
            entries: Vec::new(),
            truncated: false,
        };
        loop {
            match files.next_message(&mut request, path).await? {
                Message::DirEntries { entries, truncated } => {
                    listing.entries.extend(entries);
                    listing.truncated |= truncated;
                }
                Message::Done { .. } => return Ok(listing),
                _ => {}
            }
        }
    }

    /// The content of one file; refused (with the agent's advice) when it
    /// is over `max_bytes`, [`DEFAULT_READ_LIMIT`] when `None`.
    pub async fn workspace_file_read(
        &self,
        query: &str,
        path: &str,
        max_bytes: Option<u64>,
    ) -> Result<Vec<u8>, Error> {
        let files = Files::connect(self, query).await?;
        let mut content = Vec::new();
        files
            .read(path, max_bytes.unwrap_or(DEFAULT_READ_LIMIT), &mut content)
            .await?;
        Ok(content)
    }

    /// Replaces (or creates, with its parent directories) one file with
    /// what `content` yields, atomically. `mode` is the permission bits
    /// (e.g. `0o755`); when `None` an existing file keeps its own and a new
    /// one gets 0o644. The source is read one chunk at a time, on the
    /// calling task.
    pub async fn workspace_file_write(
        &self,
        query: &str,
        path: &str,
        content: &mut (dyn Read + Send),
        mode: Option<u32>,
    ) -> Result<WriteReport, Error> {
        let started = Instant::now();
        if let Some(mode) = mode.filter(|mode| *mode > 0o7777) {
            return Err(Error::InvalidRequest(format!(
                "mode {mode:o} is not a permission mode; use octal bits like 644 or 755"
            )));
        }
        let files = Files::connect(self, query).await?;
        let bytes = files.write(path, content, mode).await?;
        self.record_activity(query);
        let event = super::events::EventKind::FileWrite {
            path: path.to_string(),
            bytes,
        };
        self.record_event(query, event);
        Ok(WriteReport {
            workspace: query.to_string(),
            path: path.to_string(),
            bytes,
            duration_ms: elapsed_ms(started),
        })
    }

    /// Applies a unified diff (plain or git-style, several files) to
    /// /workspace, all or nothing: if any hunk of any file fails, nothing is
    /// written and [`FilesError::Rejected`] lists every failing hunk.
    pub async fn workspace_patch_apply(
        &self,
        query: &str,
        patch_text: &[u8],
    ) -> Result<PatchReport, Error> {
        let started = Instant::now();
        let patch = pyro_patch::parse(patch_text).map_err(FilesError::Parse)?;
        let files = Files::connect(self, query).await?;

        // Every path the patch names, as the workspace has it now.
        let mut tree = MemoryTree::new();
        let paths: BTreeSet<&str> = patch
            .files
            .iter()
            .flat_map(|file| [file.old_path.as_deref(), file.new_path.as_deref()])
            .flatten()
            // `apply` reports unsafe paths itself; never send them.
            .filter(|path| pyro_patch::check_path(path).is_ok())
            .collect();
        for path in paths {
            let Some(info) = files.stat(path).await? else {
                continue;
            };
            match info.kind {
                FileKind::File => {}
                FileKind::Symlink => return Err(FilesError::Symlink { path: path.into() }.into()),
                _ => return Err(FilesError::NotAFile { path: path.into() }.into()),
            }
            let mut content = Vec::new();
            files.read(path, PATCH_READ_LIMIT, &mut content).await?;
            tree.insert(path, content, git_mode(info.mode));
        }

        let applied = pyro_patch::apply(&patch, &tree);
        let named = || patch.files.iter().map(|file| file.display_path());
        if applied.is_err() {
            self.record_event(query, super::events::EventKind::patch(named(), false));
        }
        let applied = applied.map_err(|error| match error {
            pyro_patch::ApplyError::Rejected(failures) => FilesError::Rejected { failures },
            // The tree is in memory: reads cannot fail.
            other => FilesError::Agent {
                message: other.to_string(),
            },
        })?;
        for change in &applied.changes {
            if let Change::Write {
                path,
                mode: Some(mode),
                ..
            } = change
            {
                if mode & 0o170000 != 0o100000 {
                    return Err(FilesError::UnsupportedMode {
                        path: path.clone(),
                        mode: *mode,
                    }
                    .into());
                }
            }
        }

        // Deletes first (a file may give way to a directory), all at once.
        let deletes: Vec<&str> = applied
            .changes
            .iter()
            .filter_map(|change| match change {
                Change::Delete { path } => Some(path.as_str()),
                Change::Write { .. } => None,
            })
            .collect();
        if !deletes.is_empty() {
            // Each was stat'ed above as a regular file beneath /workspace.
            files.remove(&deletes).await?;
        }
        let mut done_paths: Vec<String> = deletes.iter().map(|p| format!("deleted {p}")).collect();
        for change in &applied.changes {
            let Change::Write {
                path,
                content,
                mode,
            } = change
            else {
                continue;
            };
            let mut source: &[u8] = content;
            let written = files
                .write(path, &mut source, mode.map(|mode| mode & 0o7777))
                .await;
            if let Err(error) = written {
                self.record_activity(query);
                return Err(FilesError::Partial {
                    workspace: query.to_string(),
                    done: if done_paths.is_empty() {
                        "nothing".to_string()
                    } else {
                        done_paths.join(", ")
                    },
                    path: path.clone(),
                    source: Box::new(error),
                }
                .into());
            }
            done_paths.push(format!("wrote {path}"));
        }
        self.record_activity(query);
        self.record_event(query, super::events::EventKind::patch(named(), true));

        let stat = DiffStat::of(&patch);
        Ok(PatchReport {
            workspace: query.to_string(),
            files: patch
                .files
                .iter()
                .map(|file| {
                    let file_stat = DiffStat::of_file(file);
                    let (action, from) = match file.kind {
                        pyro_patch::FileKind::Modify => ("modified", None),
                        pyro_patch::FileKind::Create => ("created", None),
                        pyro_patch::FileKind::Delete => ("deleted", None),
                        pyro_patch::FileKind::Rename => ("renamed", file.old_path.clone()),
                        pyro_patch::FileKind::Copy => ("copied", file.old_path.clone()),
                    };
                    PatchedFile {
                        path: file.display_path().to_string(),
                        action,
                        from,
                        insertions: file_stat.insertions,
                        deletions: file_stat.deletions,
                    }
                })
                .collect(),
            stat: stat.to_string(),
            files_changed: stat.files_changed,
            insertions: stat.insertions,
            deletions: stat.deletions,
            hunks_applied: patch.files.iter().map(|file| file.hunks.len()).sum(),
            offsets: applied
                .offsets
                .into_iter()
                .map(|offset| HunkOffset {
                    path: offset.path,
                    hunk: offset.hunk,
                    offset: offset.offset,
                })
                .collect(),
            duration_ms: elapsed_ms(started),
        })
    }
}

/// A guest channel to one workspace, for file requests.
struct Files {
    guest: Guest,
    /// The workspace as the caller named it, for messages.
    workspace: String,
}

impl Files {
    async fn connect(pyro: &Pyro, query: &str) -> Result<Files, Error> {
        Ok(Files {
            guest: pyro.connect_workspace(query).await?,
            workspace: query.to_string(),
        })
    }

    async fn open(&self, message: &Message) -> Result<RequestStream, Error> {
        self.guest.open(message).await.map_err(guest_error)
    }

    /// The next message of a file request, with an `Error` turned into a
    /// [`FilesError`] about `path`. Data frames are skipped.
    async fn next_message(
        &self,
        request: &mut RequestStream,
        path: &str,
    ) -> Result<Message, Error> {
        loop {
            let frame = request.next_frame().await.map_err(guest_error)?;
            if frame.kind != FrameKind::Message {
                continue;
            }
            return match frame
                .message()
                .map_err(|e| Error::Guest(GuestError::Protocol(e)))?
            {
                Message::Error { kind, message } => {
                    Err(agent_error(&self.workspace, path, kind, message).into())
                }
                message => Ok(message),
            };
        }
    }

    /// `path`'s metadata, or `None` when there is no such file.
    async fn stat(&self, path: &str) -> Result<Option<FileInfo>, Error> {
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
                Err(Error::Files(FilesError::NotFound { .. })) => return Ok(None),
                Err(error) => return Err(error),
            }
        }
    }

    /// Appends `path`'s content to `content`.
    async fn read(&self, path: &str, max_bytes: u64, content: &mut Vec<u8>) -> Result<(), Error> {
        let mut request = self
            .open(&Message::ReadFile {
                path: path.to_string(),
                max_bytes,
                root: None,
            })
            .await?;
        loop {
            let frame = request.next_frame().await.map_err(guest_error)?;
            if frame.kind == FrameKind::File {
                content.extend_from_slice(&frame.payload);
                continue;
            }
            if frame.kind != FrameKind::Message {
                continue;
            }
            match frame
                .message()
                .map_err(|e| Error::Guest(GuestError::Protocol(e)))?
            {
                Message::Error { kind, message } => {
                    return Err(agent_error(&self.workspace, path, kind, message).into())
                }
                Message::Done { .. } => return Ok(()),
                _ => {}
            }
        }
    }

    /// Streams `source` into `path` under the agent's window; returns the
    /// bytes the agent wrote.
    async fn write(
        &self,
        path: &str,
        source: &mut (dyn Read + Send),
        mode: Option<u32>,
    ) -> Result<u64, Error> {
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
        loop {
            let n = match read_some(source, &mut chunk) {
                Ok(n) => n,
                Err(source) => {
                    // Cancel: the agent keeps the old file.
                    let _ = request
                        .send(&Message::Signal {
                            signal: libc::SIGTERM,
                            foreground: false,
                        })
                        .await;
                    return Err(FilesError::Source {
                        path: path.to_string(),
                        source,
                    }
                    .into());
                }
            };
            // Take whatever the agent already said (acks, an early refusal)
            // without waiting, then wait while the window is full.
            while let Some(frame) = poll_frame(&mut request).await? {
                in_flight -= self.write_progress(&frame, path)?.min(in_flight);
            }
            while in_flight + n as u64 > STDIN_WINDOW {
                let frame = request.next_frame().await.map_err(guest_error)?;
                in_flight -= self.write_progress(&frame, path)?.min(in_flight);
            }
            request
                .send_data(FrameKind::File, &chunk[..n])
                .await
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
    fn write_progress(&self, frame: &pyro_protocol::Frame, path: &str) -> Result<u64, Error> {
        if frame.kind != FrameKind::Message {
            return Ok(0);
        }
        match frame
            .message()
            .map_err(|e| Error::Guest(GuestError::Protocol(e)))?
        {
            Message::Ack { bytes } => Ok(bytes),
            Message::Error { kind, message } => {
                Err(agent_error(&self.workspace, path, kind, message).into())
            }
            _ if is_terminal(frame) => Err(FilesError::Agent {
                message: format!("the agent ended the write of {path} before its end"),
            }
            .into()),
            _ => Ok(0),
        }
    }

    /// Deletes regular files by path relative to /workspace. The protocol
    /// has no delete request; callers pass only paths the agent has just
    /// stat'ed (so beneath /workspace) that passed `check_path`.
    async fn remove(&self, paths: &[&str]) -> Result<(), Error> {
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
        let detail = loop {
            match exec.next().await.map_err(guest_error)? {
                ExecEvent::Stderr(bytes) => stderr.extend_from_slice(&bytes),
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
        }
        .into())
    }
}

/// The next frame if one is already queued.
async fn poll_frame(request: &mut RequestStream) -> Result<Option<pyro_protocol::Frame>, Error> {
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

fn guest_error(error: GuestError) -> Error {
    match error {
        GuestError::Disconnected => Error::Workspace(WorkspaceError::GoneDuringExec),
        other => Error::Guest(other),
    }
}

/// Git's mode for a regular file with permission bits `mode`.
fn git_mode(mode: u32) -> u32 {
    if mode & 0o111 != 0 {
        pyro_patch::MODE_EXECUTABLE
    } else {
        pyro_patch::MODE_FILE
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    started.elapsed().as_millis() as u64
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
        assert_eq!(
            missing.to_string(),
            "no such file in /workspace: x; list files with: pyro workspace file list ws"
        );
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
