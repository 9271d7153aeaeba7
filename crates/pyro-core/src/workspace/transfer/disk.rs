//! Trees across the VM's transfer disk: the guest's `tar` reads or writes
//! the raw device (`/dev/vdc`) while the host's side is a file, so the
//! archive never crosses the guest channel.

use std::io::{Read, Write};
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use pyro_protocol::{ErrorKind, ExecRequest};
use pyro_transfer::PackOptions;

use super::watchdog::{transfer_quiet, Watchdog};
use super::{
    guest_is_dir, keep_tail, tar_argv, tar_said, unpack_options, untar_argv, TransferError, CHUNK,
};
use crate::host::exec::kill;
use crate::host::guest::{ExecEvent, Guest};

/// The guest's half of an export through its transfer slot: the guest's
/// `tar -c` of `/workspace/<path>` written onto `device`. Answers whether
/// the path is a directory, for [`unpack_image`].
pub(crate) async fn export_to_device(
    guest: &Guest,
    path: &str,
    device: &str,
    watch: Progress<'_>,
) -> Result<bool, TransferError> {
    let full = format!("/workspace/{path}");
    let is_dir = guest_is_dir(guest, &full).await?;
    let failed = |said: String| TransferError::Export(format!("tar in the guest failed: {said}"));
    run_tar(guest, tar_argv(&full, device), failed, watch).await?;
    Ok(is_dir)
}

/// The host's half: unpacks the archive the guest wrote into `image` (at
/// most `limit` bytes of it, as hostile as any stream from the guest) to
/// `output`.
pub(crate) async fn unpack_image(
    image: &Path,
    limit: u64,
    output: &Path,
    is_dir: bool,
    skip_git_metadata: bool,
) -> Result<pyro_transfer::UnpackReport, TransferError> {
    let (image, output) = (image.to_path_buf(), output.to_path_buf());
    let options = unpack_options(is_dir, skip_git_metadata);
    tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(&image).map_err(|e| e.to_string())?;
        // Even an empty directory's archive starts with a header: zeros
        // there mean the guest's writes never reached the disk.
        let mut first = [0u8; 512];
        std::os::unix::fs::FileExt::read_exact_at(&file, &mut first, 0)
            .map_err(|e| e.to_string())?;
        if first.iter().all(|&b| b == 0) {
            return Err("the guest's tar wrote nothing onto the transfer disk".to_string());
        }
        let reader = std::io::BufReader::with_capacity(CHUNK, file.take(limit));
        pyro_transfer::unpack(reader, &output, &options).map_err(|e| pyro_util::error_chain(&e))
    })
    .await
    .map_err(|_| TransferError::Export("the unpacker panicked".into()))?
    .map_err(TransferError::Export)
}

/// Runs a guest `tar` script to its end; `failed` makes the error of what
/// it printed on stderr (its tail), else of its exit code. `watch` says
/// how the guest shows progress: blocks landing in the slot's file (an
/// export), or none (a push, whose quiet limit is then its size's due).
async fn run_tar(
    guest: &Guest,
    argv: Vec<String>,
    failed: impl Fn(String) -> TransferError,
    watch: Progress<'_>,
) -> Result<(), TransferError> {
    let mut stream = guest
        .exec(ExecRequest {
            argv,
            ..ExecRequest::default()
        })
        .await?;
    let quiet = match watch {
        Progress::Image(_) => transfer_quiet(),
        Progress::None { bytes } => transfer_quiet() + Duration::from_secs(bytes / SLOWEST_GUEST),
    };
    let watchdog = Watchdog::new(quiet);
    let mut written = 0;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut stderr = Vec::new();
    loop {
        let event = tokio::select! {
            event = stream.next() => event?,
            why = watchdog.fired() => {
                kill(&mut stream).await;
                return Err(failed(format!("{why}; it was stopped")));
            }
            _ = tick.tick() => {
                if let Progress::Image(image) = watch {
                    let now = std::fs::metadata(image).map_or(0, |m| m.blocks());
                    if now > written {
                        written = now;
                        watchdog.progress();
                    }
                }
                continue;
            }
        };
        match event {
            ExecEvent::Stderr(bytes) => keep_tail(&mut stderr, &bytes),
            ExecEvent::Exited(status) if status.shell_code() == 0 => return Ok(()),
            ExecEvent::Exited(status) => {
                return Err(failed(tar_said(status.shell_code(), &stderr)))
            }
            ExecEvent::Failed {
                kind: ErrorKind::NotFound,
                ..
            } => return Err(failed("the environment has no tar".into())),
            ExecEvent::Failed { message, .. } => return Err(failed(message)),
            _ => {}
        }
    }
}

/// How the guest's half of a disk transfer shows progress.
#[derive(Clone, Copy)]
pub(crate) enum Progress<'a> {
    /// Blocks land in this file (the slot's, during an export).
    Image(&'a Path),
    /// Nothing shows until the end: the guest reads `bytes` off the slot.
    None { bytes: u64 },
}

/// Bytes per second the slowest guest moves through `tar` (a tenth of what
/// emulation measured), for the quiet limit of a transfer that shows no
/// progress.
const SLOWEST_GUEST: u64 = 4 << 20;

/// Packs `source` into `image` (an empty file, written from its start),
/// at most `limit` bytes of archive. `Ok(None)` when the file cannot take
/// it: the archive is larger, the host's disk is full, or `stop` was set
/// (the call that asked is gone).
pub(crate) async fn pack_to_image(
    source: &Path,
    image: std::fs::File,
    limit: u64,
    stop: Arc<AtomicBool>,
) -> Result<Option<pyro_transfer::PackReport>, TransferError> {
    super::source_dir(source)?;
    let source = source.to_path_buf();
    tokio::task::spawn_blocking(move || {
        let failed = Arc::new(AtomicBool::new(false));
        let writer = Bounded {
            file: image,
            room: limit,
            failed: failed.clone(),
            stop,
        };
        match pyro_transfer::pack_dir(&source, writer, &PackOptions::default()) {
            Ok(report) => Ok(Some(report)),
            Err(_) if failed.load(Ordering::Relaxed) => Ok(None),
            Err(e) => Err(TransferError::Pack {
                path: source,
                message: pyro_util::error_chain(&e),
            }),
        }
    })
    .await
    .map_err(|_| TransferError::GuestTar("packing the tree stopped".into()))?
}

/// The guest's half of a push through a device: its `tar -x` reads the
/// archive (`bytes` of content) off `device` into `target` (created if
/// missing).
pub(crate) async fn push_from_device(
    guest: &Guest,
    target: &str,
    device: &str,
    bytes: u64,
) -> Result<(), TransferError> {
    let watch = Progress::None { bytes };
    run_tar(
        guest,
        untar_argv(target, device),
        TransferError::GuestTar,
        watch,
    )
    .await
}

/// A file written from its start that refuses to grow past `room` bytes
/// (`StorageFull`), like the disk it stands for, and stops when `stop` is
/// set (`BrokenPipe`: never `Interrupted`, which `write_all` retries). Any failure of its own sets `failed`: the tree was readable, the
/// file could not take it.
struct Bounded {
    file: std::fs::File,
    room: u64,
    failed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
}

impl Write for Bounded {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        let refused = match () {
            _ if self.stop.load(Ordering::Relaxed) => Some(std::io::ErrorKind::BrokenPipe),
            _ if data.len() as u64 > self.room => Some(std::io::ErrorKind::StorageFull),
            _ => None,
        };
        let written = match refused {
            Some(kind) => Err(kind.into()),
            None => self.file.write(data),
        };
        match written {
            Ok(written) => {
                self.room -= written as u64;
                Ok(written)
            }
            Err(error) => {
                self.failed.store(true, Ordering::Relaxed);
                Err(error)
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_pack_larger_than_the_image_is_none_and_a_smaller_one_fits() {
        let tree = tempfile::tempdir().unwrap();
        std::fs::write(tree.path().join("a"), vec![7u8; 100_000]).unwrap();
        let image = || tempfile::tempfile().unwrap();
        let go = || Arc::new(AtomicBool::new(false));
        let small = pack_to_image(tree.path(), image(), 64 * 1024, go()).await;
        assert!(matches!(small, Ok(None)), "{small:?}");
        let fits = pack_to_image(tree.path(), image(), 1 << 20, go()).await;
        let report = fits.unwrap().unwrap();
        assert_eq!((report.files, report.bytes), (1, 100_000));
        let stopped = pack_to_image(
            tree.path(),
            image(),
            1 << 20,
            Arc::new(AtomicBool::new(true)),
        );
        assert!(matches!(stopped.await, Ok(None)));
        let missing = pack_to_image(&tree.path().join("nope"), image(), 1 << 20, go()).await;
        assert!(matches!(missing, Err(TransferError::NotADirectory { .. })));
    }
}
