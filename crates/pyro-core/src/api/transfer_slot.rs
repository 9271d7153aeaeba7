//! The VM's transfer slot, held by one `export` or `sync push` at a time:
//! a sparse file in the workspace directory that the supervisor swaps in
//! for the slot's zeros while the guest reads or writes it as a raw disk.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use pyro_util::fsutil::FileLock;

use crate::host::template::TRANSFER_SLOT_BYTES;
use crate::supervisor::client;

/// The transfer slot's file, in the workspace directory, while a transfer
/// uses it.
const TRANSFER_IMAGE: &str = "transfer.img";
/// Held by the transfer using the slot.
const TRANSFER_LOCK: &str = "transfer.lock";

/// The slot, taken: its lock, and its file (removed when dropped; dropped
/// while the slot is on it, as a cancelled call does, the slot goes back
/// to zeros in the background).
pub(super) struct TransferSlot {
    lock: Option<FileLock>,
    dir: PathBuf,
    image: PathBuf,
    /// The file, opened once: a writer still running after its call was
    /// dropped writes here, never into the next transfer's file.
    file: std::fs::File,
    /// Set when dropped: a writer of the file stops.
    stop: Arc<AtomicBool>,
    attached: bool,
}

impl TransferSlot {
    /// The bytes the guest sees on the slot's device.
    pub(super) const BYTES: u64 = TRANSFER_SLOT_BYTES;

    /// Waits for the slot, puts it back on zeros (a transfer cut short may
    /// have left it on its file) and makes an empty sparse file for it.
    pub(super) async fn take(dir: &Path) -> Result<Self, String> {
        let lock_path = dir.join(TRANSFER_LOCK);
        let lock = tokio::task::spawn_blocking(move || {
            FileLock::acquire_within(
                &lock_path,
                true,
                crate::workspace::layers::OPS_LOCK_PATIENCE,
            )
        })
        .await
        .map_err(|_| "waiting for the transfer slot failed".to_string())?
        .map_err(|e| format!("locking the transfer slot: {e}"))?;
        client::set_transfer_disk(dir, None)
            .await
            .map_err(|e| format!("resetting the transfer disk: {e}"))?;
        let image = dir.join(TRANSFER_IMAGE);
        let _ = std::fs::remove_file(&image);
        let file = std::fs::File::create(&image)
            .and_then(|file| file.set_len(Self::BYTES).map(|()| file))
            .map_err(|e| format!("making the transfer disk {}: {e}", image.display()))?;
        Ok(TransferSlot {
            lock: Some(lock),
            dir: dir.to_path_buf(),
            image,
            file,
            stop: Arc::new(AtomicBool::new(false)),
            attached: false,
        })
    }

    /// The file the slot will carry.
    pub(super) fn image(&self) -> &Path {
        &self.image
    }

    /// A handle on the file for a writer, and the flag that stops it once
    /// the slot is dropped.
    pub(super) fn writer(&self) -> Result<(std::fs::File, Arc<AtomicBool>), String> {
        let file = self
            .file
            .try_clone()
            .map_err(|e| format!("opening the transfer disk: {e}"))?;
        Ok((file, self.stop.clone()))
    }

    /// Puts the file on the slot.
    pub(super) async fn attach(&mut self) -> Result<(), String> {
        // Marked first: a call cancelled while attaching still detaches.
        self.attached = true;
        let attached = client::set_transfer_disk(&self.dir, Some(TRANSFER_IMAGE)).await;
        self.attached = attached.is_ok();
        attached.map_err(|e| format!("attaching the transfer disk: {e}"))
    }

    /// Puts the slot back on zeros: after it, the guest's writes are in the
    /// file and no later write of the guest reaches it.
    pub(super) async fn detach(&mut self) -> Result<(), String> {
        let detached = client::set_transfer_disk(&self.dir, None).await;
        if detached.is_ok() {
            self.attached = false;
        }
        detached.map_err(|e| format!("detaching the transfer disk: {e}"))
    }
}

impl Drop for TransferSlot {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = std::fs::remove_file(&self.image);
        if !self.attached {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        // The lock goes with the task: no other transfer takes the slot
        // before it is back on zeros.
        let (dir, lock) = (self.dir.clone(), self.lock.take());
        runtime.spawn(async move {
            let _ = client::set_transfer_disk(&dir, None).await;
            drop(lock);
        });
    }
}
