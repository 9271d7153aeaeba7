//! Trees across the VM boundary: seeding and `sync push` (host → guest) and
//! `export` (guest → host).
//!
//! Both directions are tar archives read or written by the guest's own
//! `tar`, either on the VM's transfer disk (`api::transfer_slot`) or as a
//! stream through an exec. In, the host packs the tree (`pyro-transfer`,
//! constant memory) into the disk's file or feeds it as stdin under the
//! agent's ack window, so a 200 MB tree never sits in memory on either
//! side; out, what the guest's `tar -c` wrote is unpacked on the host by
//! `pyro-transfer`, which treats it as hostile (no name, link or size the
//! guest chooses lands outside the output path).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use pyro_protocol::{ErrorKind, ExecRequest, STDIN_WINDOW};
use pyro_transfer::{Expect, PackOptions, UnpackOptions};
use serde::Serialize;
use tokio::sync::mpsc;

use crate::host::guest::{ExecEvent, Guest, GuestError};

mod disk;
mod watchdog;
use crate::host::exec::kill;
pub(crate) use disk::{export_to_device, pack_to_image, push_from_device, unpack_image, Progress};
use watchdog::{transfer_quiet, Watchdog};

/// Bytes of one stdin chunk.
const CHUNK: usize = 64 * 1024;
/// Chunks buffered between the packing thread and the sender.
const CHUNKS_IN_FLIGHT: usize = 8;
/// Bytes of a failing guest `tar`'s stderr kept for the error message.
const STDERR_KEPT: usize = 8 * 1024;
/// After its archive ended, the guest's `tar` has this long, and this
/// many more bytes (its last record's padding), to exit.
const AFTER_END_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
const AFTER_END_BYTES: u64 = 1 << 20;

/// Why a transfer failed.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // Each variant says what it is in its message.
pub enum TransferError {
    #[error("{path} is not a directory; seed and sync from a directory")]
    NotADirectory { path: PathBuf },
    #[error("path '{path}' is not inside /workspace: use a relative path without '..'")]
    OutsideWorkspace { path: String },
    #[error("could not pack {path}: {message}")]
    Pack { path: PathBuf, message: String },
    #[error("copying into the guest failed: {0}")]
    GuestTar(String),
    #[error("export failed: {0}")]
    Export(String),
    #[error("{0}")]
    Image(String),
    #[error("mounting the seed disk in the guest failed: {0}")]
    SeedMount(String),
    #[error(transparent)]
    Channel(#[from] GuestError),
}

/// What a transfer moved.
#[derive(Debug, Clone, Serialize)]
pub struct TransferReport {
    /// Files copied.
    pub files: u64,
    /// Bytes of file content copied.
    pub bytes: u64,
    /// How long it took.
    pub duration_ms: u64,
    /// Entries an export left out: devices, FIFOs, links pointing out of
    /// it, git metadata.
    #[serde(skip_serializing_if = "is_zero")]
    pub skipped: u64,
    /// What an export left out and why, one line each (the first
    /// [`pyro_transfer::MAX_WARNINGS`], then a tally).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub left_out: Vec<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

impl TransferReport {
    /// The report of an export the unpacker wrote, begun at `started`.
    pub(crate) fn unpacked(report: pyro_transfer::UnpackReport, started: Instant) -> Self {
        TransferReport {
            files: report.files,
            bytes: report.bytes,
            duration_ms: started.elapsed().as_millis() as u64,
            skipped: report.skipped_special + report.skipped_symlinks + report.skipped_git,
            left_out: report.warnings,
        }
    }

    /// The report of a push the packer wrote, begun at `started`.
    pub(crate) fn packed(report: pyro_transfer::PackReport, started: Instant) -> Self {
        TransferReport {
            files: report.files,
            bytes: report.bytes,
            duration_ms: started.elapsed().as_millis() as u64,
            skipped: 0,
            left_out: Vec::new(),
        }
    }

    /// `12 files, 3400 bytes`, and `; 2 entries left out` when some were.
    pub fn tally(&self) -> String {
        let plural = |n: u64, one: &str, many: &str| match n {
            1 => format!("1 {one}"),
            n => format!("{n} {many}"),
        };
        let mut text = format!(
            "{}, {}",
            plural(self.files, "file", "files"),
            plural(self.bytes, "byte", "bytes")
        );
        if self.skipped > 0 {
            text.push_str(&format!(
                "; {} left out",
                plural(self.skipped, "entry", "entries")
            ));
        }
        text
    }
}

/// Copies `/workspace/<path>` (relative, checked) out of the guest to
/// `output` on the host through the guest's `tar -c`, unpacked by
/// `pyro-transfer`, which treats the stream as hostile; `skip_git_metadata`
/// leaves `.git` members out.
pub(crate) async fn export_tree(
    guest: &Guest,
    path: &str,
    output: &Path,
    skip_git_metadata: bool,
) -> Result<TransferReport, TransferError> {
    let full = format!("/workspace/{path}");
    export_tree_at(guest, &full, output, skip_git_metadata).await
}

/// [`export_tree`] of the guest's absolute path `full`, which may be
/// anywhere in its filesystem (the offline disk tools' helper VM).
pub(crate) async fn export_tree_at(
    guest: &Guest,
    full: &str,
    output: &Path,
    skip_git_metadata: bool,
) -> Result<TransferReport, TransferError> {
    let started = Instant::now();
    let is_dir = guest_is_dir(guest, full).await?;
    let argv = tar_argv(full, "-");
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
    let output_path = output.to_path_buf();
    let options = unpack_options(is_dir, skip_git_metadata);
    let unpacker = std::thread::spawn(move || {
        let result = pyro_transfer::unpack(ChannelReader::new(rx), &output_path, &options);
        result.map_err(|e| pyro_util::error_chain(&e))
    });
    let mut stream = guest
        .exec(ExecRequest {
            argv,
            ..ExecRequest::default()
        })
        .await?;
    let stalled = |why: String| TransferError::Export(format!("{why}; it was stopped"));
    let watchdog = Watchdog::new(transfer_quiet());
    let mut stderr = Vec::new();
    let mut unpacker = Some(unpacker);
    // The unpacker's result once it stopped reading, and what came after.
    let mut unpacked = None;
    let mut after_end: u64 = 0;
    let status = loop {
        let event = tokio::select! {
            event = stream.next() => event?,
            why = watchdog.fired() => {
                kill(&mut stream).await;
                return Err(stalled(why));
            }
        };
        watchdog.progress();
        match event {
            ExecEvent::Stdout(bytes) if unpacked.is_none() => {
                if tx.send(bytes).is_ok() {
                    continue;
                }
                // The unpacker stopped: a refusal ends the guest's tar at
                // once; a finished archive leaves it its padding to send.
                let result = join(unpacker.take())?;
                if let Err(message) = result {
                    kill(&mut stream).await;
                    return Err(TransferError::Export(message));
                }
                unpacked = Some(result);
                watchdog.end_within(AFTER_END_GRACE);
            }
            ExecEvent::Stdout(bytes) => {
                after_end += bytes.len() as u64;
                if after_end > AFTER_END_BYTES {
                    kill(&mut stream).await;
                    return Err(stalled(
                        "the guest's tar went on writing after its archive ended".into(),
                    ));
                }
            }
            ExecEvent::Stderr(bytes) => keep_tail(&mut stderr, &bytes),
            ExecEvent::Exited(status) => break status,
            ExecEvent::Failed { message, .. } => return Err(TransferError::Export(message)),
            ExecEvent::Started | ExecEvent::Ack(_) => {}
        }
    };
    drop(tx);
    let unpacked = match unpacked {
        Some(result) => result,
        None => join(unpacker.take())?,
    };
    if status.shell_code() != 0 {
        let said = tar_said(status.shell_code(), &stderr);
        return Err(TransferError::Export(format!(
            "tar in the guest failed: {said}"
        )));
    }
    let report = unpacked.map_err(TransferError::Export)?;
    Ok(TransferReport::unpacked(report, started))
}

/// The unpacker thread's result; `None` (already taken) cannot happen.
fn join(
    unpacker: Option<std::thread::JoinHandle<Result<pyro_transfer::UnpackReport, String>>>,
) -> Result<Result<pyro_transfer::UnpackReport, String>, TransferError> {
    let panicked = || TransferError::Export("the unpacker panicked".into());
    unpacker
        .ok_or_else(panicked)?
        .join()
        .map_err(|_| panicked())
}

/// `sh -c` running the guest's `tar -c` of `full` into `archive` (`-` for
/// stdout, or a device): `-C parent name` for a file, `-C dir .` for a
/// directory, so the output is the thing itself, not a tree around it.
/// Written to a device, the archive is synced before the shell exits.
fn tar_argv(full: &str, archive: &str) -> Vec<String> {
    // Onto a device, 1 MiB records: a third of the time of tar's 10 KiB.
    let script = r#"p="$1"; a="$2"; b=20; [ "$a" = - ] || b=2048
if [ -d "$p" ]; then tar -c -b "$b" -f "$a" -C "$p" .; else tar -c -b "$b" -f "$a" -C "$(dirname "$p")" -- "$(basename "$p")"; fi || exit
[ "$a" = - ] || sync"#;
    ["sh", "-c", script, "sh", full, archive]
        .map(String::from)
        .to_vec()
}

fn unpack_options(is_dir: bool, skip_git_metadata: bool) -> UnpackOptions {
    UnpackOptions {
        expect: if is_dir { Expect::Dir } else { Expect::File },
        skip_git_metadata,
        ..UnpackOptions::default()
    }
}

/// Packs `source` into the guest directory `target` (created if missing)
/// through the guest's `tar -x`.
pub(crate) async fn push_tree_into(
    guest: &Guest,
    source: &Path,
    target: &str,
) -> Result<TransferReport, TransferError> {
    source_dir(source)?;
    let started = Instant::now();
    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(CHUNKS_IN_FLIGHT);
    let source_owned = source.to_path_buf();
    let packer = std::thread::spawn(move || {
        let writer = ChannelWriter {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        pyro_transfer::pack_dir(&source_owned, writer, &PackOptions::default())
            .map_err(|e| pyro_util::error_chain(&e))
    });
    let mut stream = guest
        .exec(ExecRequest {
            argv: untar_argv(target, "-"),
            stdin: true,
            ..ExecRequest::default()
        })
        .await?;
    let mut in_flight: u64 = 0;
    let mut input_done = false;
    let mut stderr = Vec::new();
    let watchdog = Watchdog::new(transfer_quiet());
    let status = loop {
        tokio::select! {
            why = watchdog.fired() => {
                kill(&mut stream).await;
                return Err(TransferError::GuestTar(format!("{why}; it was stopped")));
            }
            chunk = rx.recv(), if !input_done && in_flight < STDIN_WINDOW => {
                match chunk {
                    Some(chunk) => {
                        in_flight += chunk.len() as u64;
                        watchdog.write(stream.write_stdin(&chunk)).await?;
                    }
                    None => {
                        input_done = true;
                        watchdog.write(stream.write_stdin(&[])).await?;
                    }
                }
            }
            event = stream.next() => match event? {
                ExecEvent::Ack(bytes) => {
                    watchdog.progress();
                    in_flight = in_flight.saturating_sub(bytes);
                }
                ExecEvent::Stderr(bytes) => keep_tail(&mut stderr, &bytes),
                ExecEvent::Exited(status) => break status,
                ExecEvent::Failed { kind: ErrorKind::NotFound, .. } => {
                    return Err(TransferError::GuestTar("the environment has no tar".into()))
                }
                ExecEvent::Failed { message, .. } => return Err(TransferError::GuestTar(message)),
                ExecEvent::Stdout(_) | ExecEvent::Started => {}
            }
        }
    };
    drop(rx);
    let packed = packer.join().map_err(|_| TransferError::Pack {
        path: source.to_path_buf(),
        message: "the packer panicked".into(),
    })?;
    let report = packed.map_err(|message| TransferError::Pack {
        path: source.to_path_buf(),
        message,
    })?;
    if status.shell_code() != 0 {
        return Err(TransferError::GuestTar(tar_said(
            status.shell_code(),
            &stderr,
        )));
    }
    Ok(TransferReport::packed(report, started))
}

/// What a failed guest `tar` said: its stderr, else its exit code.
fn tar_said(code: i32, stderr: &[u8]) -> String {
    let said = String::from_utf8_lossy(stderr).trim().to_string();
    match said.is_empty() {
        true => format!("the guest's tar exited {code}"),
        false => said,
    }
}

/// Checks that `source` is a directory, with the OS's reason when it
/// cannot even be looked at (a name too long, no permission).
pub(crate) fn source_dir(source: &Path) -> Result<(), TransferError> {
    match std::fs::metadata(source) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(TransferError::Pack {
            path: source.to_path_buf(),
            message: error.to_string(),
        }),
        _ => Err(TransferError::NotADirectory {
            path: source.to_path_buf(),
        }),
    }
}

/// `sh -c` running the guest's `tar -x` of `archive` (`-` for stdin, or a
/// device, read in 1 MiB records) into `target`, made if missing.
fn untar_argv(target: &str, archive: &str) -> Vec<String> {
    // Off a device, the guest's cached blocks of an earlier transfer are
    // dropped first (Linux drops them on the last close too).
    let script = r#"b=20; [ "$2" = - ] || { b=2048; blockdev --flushbufs "$2" 2>/dev/null; }
mkdir -p -- "$1" && exec tar -x -p --no-same-owner -b "$b" -f "$2" -C "$1""#;
    ["sh", "-c", script, "sh", target, archive]
        .map(String::from)
        .to_vec()
}

async fn guest_is_dir(guest: &Guest, path: &str) -> Result<bool, TransferError> {
    let mut stream = guest
        .exec(ExecRequest {
            argv: vec!["test".into(), "-d".into(), path.into()],
            ..ExecRequest::default()
        })
        .await?;
    let answer = tokio::time::timeout(transfer_quiet(), async {
        loop {
            match stream.next().await? {
                ExecEvent::Exited(status) => return Ok(status.shell_code() == 0),
                ExecEvent::Failed { message, .. } => return Err(TransferError::Export(message)),
                _ => {}
            }
        }
    })
    .await;
    match answer {
        Ok(answer) => answer,
        Err(_) => {
            kill(&mut stream).await;
            Err(TransferError::Export(format!(
                "the guest's `test -d {path}` did not answer within {} s; it was stopped",
                transfer_quiet().as_secs()
            )))
        }
    }
}

/// A path under /workspace given relative (or as `/workspace/...`), with no
/// `..`; returned relative, without a trailing slash.
pub(crate) fn workspace_path(path: &str) -> Result<String, TransferError> {
    let relative = path
        .strip_prefix("/workspace")
        .filter(|rest| rest.is_empty() || rest.starts_with('/'))
        .unwrap_or(path)
        .trim_start_matches('/');
    let outside = || TransferError::OutsideWorkspace {
        path: path.to_string(),
    };
    let under_workspace = path == "/workspace" || path.starts_with("/workspace/");
    if path.starts_with('/') && !under_workspace {
        return Err(outside());
    }
    let mut parts = Vec::new();
    for part in relative.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(outside()),
            part => parts.push(part),
        }
    }
    Ok(parts.join("/"))
}

fn keep_tail(kept: &mut Vec<u8>, bytes: &[u8]) {
    kept.extend_from_slice(bytes);
    if kept.len() > STDERR_KEPT {
        let excess = kept.len() - STDERR_KEPT;
        kept.drain(..excess);
    }
}

/// A `Write` that hands fixed-size chunks to an async receiver, blocking
/// when it is `CHUNKS_IN_FLIGHT` behind: the packer runs at the guest's pace.
struct ChannelWriter {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn flush_chunk(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx.blocking_send(chunk).map_err(|_| {
            std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the guest stopped reading")
        })
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let room = CHUNK - self.buf.len();
        let taken = room.min(data.len());
        self.buf.extend_from_slice(&data[..taken]);
        if self.buf.len() == CHUNK {
            self.flush_chunk()?;
        }
        Ok(taken)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.flush_chunk()
    }
}

impl Drop for ChannelWriter {
    fn drop(&mut self) {
        let _ = self.flush_chunk();
    }
}

/// A `Read` over chunks from a channel; EOF when the sender is gone.
struct ChannelReader {
    rx: std::sync::mpsc::Receiver<Vec<u8>>,
    current: Vec<u8>,
    offset: usize,
}

impl ChannelReader {
    fn new(rx: std::sync::mpsc::Receiver<Vec<u8>>) -> Self {
        ChannelReader {
            rx,
            current: Vec::new(),
            offset: 0,
        }
    }
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        while self.offset == self.current.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.current = chunk;
                    self.offset = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.current.len() - self.offset);
        out[..n].copy_from_slice(&self.current[self.offset..self.offset + n]);
        self.offset += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_paths_stay_inside() {
        assert_eq!(workspace_path("a/b/").unwrap(), "a/b");
        assert_eq!(workspace_path("/workspace/a/./b").unwrap(), "a/b");
        assert_eq!(workspace_path("/workspace").unwrap(), "");
        assert_eq!(workspace_path("").unwrap(), "");
        for bad in ["../x", "a/../../x", "/etc/passwd", "/workspacex/y"] {
            assert!(workspace_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn channel_reader_and_writer_carry_bytes_in_order() {
        let (tx, rx) = std::sync::mpsc::sync_channel(2);
        std::thread::spawn(move || {
            for chunk in [b"ab".to_vec(), b"".to_vec(), b"cde".to_vec()] {
                tx.send(chunk).unwrap();
            }
        });
        let mut text = String::new();
        ChannelReader::new(rx).read_to_string(&mut text).unwrap();
        assert_eq!(text, "abcde");
    }
}
