//! The disks QEMU is handed while it runs: a new layer when the root disk
//! is frozen (in the layer directory its jail holds, handed to its uid),
//! the transfer slot's image and the throw-away overlay of an ephemeral
//! root disk (descriptors, `add-fd` and `/dev/fdset/N` or inherited: its
//! jail holds neither path).

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use super::{QemuVm, QmpError};
use crate::EngineError;

/// A throw-away qcow2 overlay over `base`, made in `$TMPDIR` (else
/// `/var/tmp`, as QEMU's own `snapshot=on` does), opened and unlinked at
/// once: it lives as long as QEMU holds it.
pub(super) fn ephemeral_overlay(
    base: &Path,
    format: crate::DiskFormat,
) -> Result<std::fs::File, EngineError> {
    use std::os::unix::fs::DirBuilderExt as _;
    let tmp = std::env::var_os("TMPDIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp"));
    let failed = |path: &Path, source: std::io::Error| EngineError::Open {
        path: path.to_path_buf(),
        source,
    };
    // A directory of its own, made here (never one another user planted),
    // that nobody else may enter while the overlay is in it.
    let dir = tmp.join(format!(
        "pyro-ephemeral-{}",
        pyro_util::fsutil::unique_suffix()
    ));
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(|e| failed(&dir, e))?;
    let overlay = dir.join("overlay.qcow2");
    let base = std::path::absolute(base).unwrap_or_else(|_| base.to_path_buf());
    let made = crate::disk::create_overlay(&base, format, &overlay).map_err(EngineError::Layer);
    let opened = made.and_then(|()| {
        std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&overlay)
            .map_err(|e| failed(&overlay, e))
    });
    let _ = std::fs::remove_file(&overlay);
    let _ = std::fs::remove_dir(&dir);
    opened
}

impl QemuVm {
    /// Points the transfer slot at `file`, or back at zeros.
    pub(super) fn point_transfer(&mut self, file: Option<&Path>) -> Result<(), EngineError> {
        use super::args::{TRANSFER_NODE, TRANSFER_ZEROS};
        let action = "attach a transfer disk to";
        let child = match file {
            Some(file) => {
                self.transfer.1 += 1;
                let node = format!("xfer-file-{}", self.transfer.1);
                let fdset = self.hand_over(action, file)?;
                let added = self.command(
                    action,
                    "blockdev-add",
                    serde_json::json!({
                        "driver": "file",
                        "node-name": node,
                        "filename": format!("/dev/fdset/{fdset}"),
                    }),
                );
                // The node holds its own copy; the set is no longer needed.
                let _ = self.command(
                    action,
                    "remove-fd",
                    serde_json::json!({ "fdset-id": fdset }),
                );
                added?;
                node
            }
            None => TRANSFER_ZEROS.to_string(),
        };
        let reopened = self.command(
            action,
            "blockdev-reopen",
            serde_json::json!({
                "options": [{"driver": "raw", "node-name": TRANSFER_NODE, "file": child}],
            }),
        );
        // The node no longer read (the new one when the swap failed).
        let unused = match &reopened {
            Ok(_) => std::mem::replace(&mut self.transfer.0, file.map(|_| child)),
            Err(_) => file.map(|_| child),
        };
        if let Some(node) = unused {
            let _ = self.command(
                action,
                "blockdev-del",
                serde_json::json!({ "node-name": node }),
            );
        }
        reopened.map(drop)
    }

    /// The root disk's virtual size, as QEMU reports it.
    pub(super) fn root_virtual_size(&mut self, action: &'static str) -> Result<u64, EngineError> {
        let blocks = self.command(action, "query-block", serde_json::json!({}))?;
        blocks
            .as_array()
            .into_iter()
            .flatten()
            .find(|block| block["device"] == "root")
            .and_then(|block| block["inserted"]["image"]["virtual-size"].as_u64())
            .ok_or(EngineError::NoPersistentDisk)
    }

    /// Grows the root disk's top layer to `bytes`; the guest's device
    /// sees the new size at once.
    pub(super) fn resize_root(&mut self, bytes: u64) -> Result<(), EngineError> {
        self.top.as_ref().ok_or(EngineError::NoPersistentDisk)?;
        self.command(
            "grow the disk of",
            "block_resize",
            serde_json::json!({ "device": "root", "size": bytes }),
        )
        .map(drop)
    }

    /// Makes `new_top` a layer over the VM's current top, naming it
    /// relative to itself (QEMU's own overlays would name it by its
    /// absolute path). The VM may run: the top is not opened.
    pub(super) fn make_layer(&mut self, new_top: &Path) -> Result<(), EngineError> {
        let current = self.top.clone().ok_or(EngineError::NoPersistentDisk)?;
        let size = self.root_virtual_size("snapshot the disk of")?;
        crate::disk::create_layer(&current, new_top, Some(size)).map_err(EngineError::Layer)
    }

    /// On a paused VM: freezes the root disk as it is and moves its
    /// writes onto `new_top`, made by [`QemuVm::make_layer`]; removes it
    /// when that fails.
    pub(super) fn attach_layer(&mut self, new_top: &Path) -> Result<(), EngineError> {
        let action = "snapshot the disk of";
        // The layer directory is in QEMU's jail; the new layer is its to
        // write (the one it leaves goes to the keeper once frozen).
        if let Some((uid, gid)) = self.owner {
            if let Err(source) = std::os::unix::fs::lchown(new_top, Some(uid), Some(gid)) {
                let _ = std::fs::remove_file(new_top);
                return Err(EngineError::Open {
                    path: new_top.to_path_buf(),
                    source,
                });
            }
        }
        let switched = self.command(
            action,
            "blockdev-snapshot-sync",
            serde_json::json!({
                "device": "root",
                "snapshot-file": new_top.display().to_string(),
                "format": "qcow2",
                "mode": "existing",
            }),
        );
        match switched {
            Ok(_) => {
                self.top = Some(new_top.to_path_buf());
                Ok(())
            }
            Err(error) => {
                // Refused: QEMU never opened it. Otherwise it may write to it.
                if let EngineError::Monitor {
                    source: QmpError::Refused { .. },
                    ..
                } = &error
                {
                    let _ = std::fs::remove_file(new_top);
                }
                Err(error)
            }
        }
    }

    /// Hands QEMU `file`, opened for reading and writing, in a new
    /// descriptor set; returns the set's id, for `/dev/fdset/ID`. QEMU's
    /// jail does not hold the file's path. Remove the set (`remove-fd`)
    /// once a node opened it: the node keeps its own copy.
    fn hand_over(&mut self, action: &'static str, file: &Path) -> Result<u64, EngineError> {
        let writable = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(file)
            .map_err(|source| EngineError::Open {
                path: file.to_path_buf(),
                source,
            })?;
        let added = self
            .qmp(action)?
            .execute_with_fd("add-fd", serde_json::json!({}), writable.as_raw_fd())
            .map_err(|source| EngineError::Monitor { action, source })?;
        added["fdset-id"]
            .as_u64()
            .ok_or_else(|| EngineError::Monitor {
                action,
                source: QmpError::Refused {
                    command: "add-fd".into(),
                    message: format!("no fdset-id in its answer {added}"),
                },
            })
    }
}
