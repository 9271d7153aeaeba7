//! Trees across the VM boundary: `sync push` (host → guest) and `export`
//! (guest → host), with every host path checked against what the caller
//! may use.

use std::path::Path;
use std::time::Instant;

use super::error::Error;
use super::host_paths::HostPathUse;
use super::Pyro;
use crate::host::template::TRANSFER_SLOT_BYTES;
use crate::supervisor::client;
use crate::workspace::events::EventKind;
use crate::workspace::transfer::{self, workspace_path, TransferError, TransferReport};

/// The transfer slot's file, in the workspace directory, while an export
/// uses it.
const TRANSFER_IMAGE: &str = "transfer.img";
/// Held by the export using the slot (one at a time).
const TRANSFER_LOCK: &str = "transfer.lock";

impl Pyro {
    /// Copies a host directory into `/workspace/<dest>` (created if needed).
    pub async fn workspace_sync_push(
        &self,
        query: &str,
        source: &Path,
        dest: Option<&str>,
    ) -> Result<TransferReport, Error> {
        let dest = workspace_path(dest.unwrap_or(""))?;
        let source = &self.host_paths.check(HostPathUse::SyncSource, source)?;
        let guest = self.connect_workspace(query).await?;
        let report = transfer::push_tree(&guest, source, &dest).await?;
        self.record_activity(query);
        let event = EventKind::SyncPush {
            source: source.display().to_string(),
            destination: format!("/workspace/{dest}"),
        };
        self.record_event(query, event);
        Ok(report)
    }

    /// Copies `/workspace/<path>` (a file or a directory) to `output` on the
    /// host. `output` must not exist yet (or be an empty directory).
    pub async fn workspace_export(
        &self,
        query: &str,
        path: &str,
        output: &Path,
    ) -> Result<TransferReport, Error> {
        let path = workspace_path(path)?;
        let output = self.host_paths.check_export(output)?;
        let skip_git_metadata = self.host_paths.is_confined();
        let guest = self.connect_workspace(query).await?;
        let store = self.store()?;
        let record = store.resolve(query)?;
        let by_disk = match record.seed_slot {
            true => {
                let dir = store.dir(&record.id);
                Some(export_by_disk(&guest, &dir, &path, &output, skip_git_metadata).await)
            }
            // Made before transfer slots: the archive streams.
            false => None,
        };
        let report = match by_disk {
            Some(Err(Error::Transfer(TransferError::Export(message))))
                if message.contains("No space left on device") =>
            {
                // Larger than the transfer disk: the archive streams.
                transfer::export_tree(&guest, &path, &output, skip_git_metadata).await?
            }
            Some(done) => done?,
            None => transfer::export_tree(&guest, &path, &output, skip_git_metadata).await?,
        };
        self.record_activity(query);
        let event = EventKind::Export {
            path,
            output: output.display().to_string(),
        };
        self.record_event(query, event);
        Ok(report)
    }
}

/// `export` through the VM's transfer slot: an empty sparse file becomes
/// the slot, the guest's `tar -c` writes onto the raw device, and the host
/// unpacks the file as hostile input. The archive never crosses the
/// guest channel, whose framing under emulation is the slow part.
async fn export_by_disk(
    guest: &crate::host::guest::Guest,
    dir: &Path,
    path: &str,
    output: &Path,
    skip_git_metadata: bool,
) -> Result<TransferReport, Error> {
    let started = Instant::now();
    let lock_path = dir.join(TRANSFER_LOCK);
    let _slot =
        tokio::task::spawn_blocking(move || pyro_util::fsutil::FileLock::acquire(&lock_path, true))
            .await
            .map_err(|_| TransferError::Export("waiting for the transfer slot failed".into()))?
            .map_err(|e| TransferError::Export(format!("locking the transfer slot: {e}")))?;
    // An export cut short (Ctrl-C) may have left the slot on its file:
    // back to zeros, which lets QEMU close it, and the file goes.
    client::set_transfer_disk(dir, None)
        .await
        .map_err(|e| TransferError::Export(format!("resetting the transfer disk: {e}")))?;
    let mut image = Scratch {
        file: dir.join(TRANSFER_IMAGE),
        dir: dir.to_path_buf(),
        attached: false,
    };
    let _ = std::fs::remove_file(&image.file);
    std::fs::File::create(&image.file)
        .and_then(|file| file.set_len(TRANSFER_SLOT_BYTES))
        .map_err(|e| TransferError::Export(format!("making the transfer disk: {e}")))?;
    let attach = client::set_transfer_disk(dir, Some(TRANSFER_IMAGE)).await;
    image.attached = attach.is_ok();
    let written = match attach {
        Ok(()) => {
            let device = pyro_protocol::seed::TRANSFER_DEVICE;
            transfer::export_to_device(guest, path, device).await
        }
        Err(error) => Err(TransferError::Export(format!(
            "attaching the transfer disk: {error}"
        ))),
    };
    let detached = client::set_transfer_disk(dir, None).await;
    image.attached = false;
    let is_dir = written?;
    detached.map_err(|e| TransferError::Export(format!("detaching the transfer disk: {e}")))?;
    let report = transfer::unpack_image(
        &image.file,
        TRANSFER_SLOT_BYTES,
        output,
        is_dir,
        skip_git_metadata,
    )
    .await?;
    Ok(TransferReport {
        files: report.files,
        bytes: report.bytes,
        duration_ms: started.elapsed().as_millis() as u64,
        left_out: report.warnings,
    })
}

/// The transfer file, removed when dropped; dropped while the slot is on
/// it (a cancelled call), the slot goes back to zeros in the background.
struct Scratch {
    file: std::path::PathBuf,
    dir: std::path::PathBuf,
    attached: bool,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.attached {
            let dir = self.dir.clone();
            runtime.spawn(async move {
                let _ = client::set_transfer_disk(&dir, None).await;
            });
        }
    }
}
