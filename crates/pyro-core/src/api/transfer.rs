//! Trees across the VM boundary: `sync push` (host → guest) and `export`
//! (guest → host), with every host path checked against what the caller
//! may use.

use std::path::Path;
use std::time::Instant;

use super::error::Error;
use super::host_paths::HostPathUse;
use super::transfer_slot::TransferSlot;
use super::Pyro;
use crate::workspace::events::EventKind;
use crate::workspace::transfer::{self, workspace_path, TransferError, TransferReport};
use pyro_protocol::seed::TRANSFER_DEVICE;

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
        let record = self.store()?.resolve(query)?;
        let target = format!("/workspace/{dest}");
        let by_disk = match record.seed_slot {
            true => {
                let dir = self.store()?.dir(&record.id);
                push_by_disk(&guest, &dir, source, &target).await?
            }
            // Made before transfer slots.
            false => None,
        };
        let report = match by_disk {
            Some(report) => report,
            // Larger than the transfer disk, or no slot: the archive streams.
            None => transfer::push_tree_into(&guest, source, &target).await?,
        };
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
    let mut slot = TransferSlot::take(dir)
        .await
        .map_err(TransferError::Export)?;
    let attached = slot.attach().await.map_err(TransferError::Export);
    let written = match attached {
        Ok(()) => {
            let watch = transfer::Progress::Image(slot.image());
            transfer::export_to_device(guest, path, TRANSFER_DEVICE, watch).await
        }
        Err(error) => Err(error),
    };
    let detached = slot.detach().await;
    let is_dir = written?;
    detached.map_err(TransferError::Export)?;
    let report = transfer::unpack_image(
        slot.image(),
        TransferSlot::BYTES,
        output,
        is_dir,
        skip_git_metadata,
    )
    .await?;
    Ok(TransferReport::unpacked(report, started))
}

/// `sync push` through the VM's transfer slot: the host packs the tree
/// into the slot's file, and the guest's `tar -x` reads the raw device.
/// `Ok(None)` when the slot cannot carry it (the archive is larger than
/// the slot, the host's disk is full, the supervisor cannot swap the
/// slot): nothing reached the guest, and the caller streams instead.
async fn push_by_disk(
    guest: &crate::host::guest::Guest,
    dir: &Path,
    source: &Path,
    target: &str,
) -> Result<Option<TransferReport>, Error> {
    let started = Instant::now();
    let Ok(mut slot) = TransferSlot::take(dir).await else {
        return Ok(None);
    };
    let Ok((file, stop)) = slot.writer() else {
        return Ok(None);
    };
    let packed = transfer::pack_to_image(source, file, TransferSlot::BYTES, stop).await?;
    let Some(packed) = packed else {
        return Ok(None);
    };
    if slot.attach().await.is_err() {
        return Ok(None);
    }
    let read = transfer::push_from_device(guest, target, TRANSFER_DEVICE, packed.bytes).await;
    let detached = slot.detach().await;
    read?;
    detached.map_err(TransferError::GuestTar)?;
    Ok(Some(TransferReport::packed(packed, started)))
}
