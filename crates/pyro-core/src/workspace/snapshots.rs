//! Snapshots and reset: whole-disk states of a workspace.
//!
//! A workspace's disk is a chain of qcow2 layers over the environment's
//! base image. Taking a snapshot freezes the image the VM writes to (the
//! supervisor flushes the guest and switches the VM onto a new overlay over
//! it, through QMP; a stopped workspace just gets the new overlay) and names
//! the frozen layer. The state right after create is such a layer too, the
//! baseline. Reset throws the writable top away and boots a fresh overlay
//! over the chosen layer: installed packages, files anywhere, everything is
//! as it was. Layers nothing refers to any more are deleted.

use std::collections::HashSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::time::Duration;

use pyro_util::fsutil::FileLock;

use super::store::{is_valid_name, new_id, now, SnapshotRecord, WorkspaceRecord, WorkspaceStore};
use super::{WorkspaceError, CONTROL};
use crate::{Error, Pyro};

/// Where frozen layers and new tops live, inside the workspace directory.
const LAYERS: &str = "layers";
/// The name a snapshot may not take: `reset` without `--snapshot` means it.
const BASELINE: &str = "baseline";

/// Why a snapshot call failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("snapshot '{name}' already exists in workspace '{workspace}'; delete it first or pick another name")]
    Exists { name: String, workspace: String },
    #[error("no snapshot '{name}' in workspace '{workspace}'; see them with: pyro workspace snapshot list {workspace}")]
    Unknown { name: String, workspace: String },
    #[error("invalid snapshot name '{name}': use 1-63 letters, digits, '.', '_' or '-' (and not 'baseline')")]
    BadName { name: String },
    #[error("workspace '{workspace}' has no baseline to reset to (it predates snapshots); reset to a named snapshot instead")]
    NoBaseline { workspace: String },
    #[error("taking the disk snapshot failed: {0}")]
    Take(String),
}

impl From<SnapshotError> for Error {
    fn from(error: SnapshotError) -> Self {
        Error::Workspace(WorkspaceError::Snapshot(error))
    }
}

impl Pyro {
    /// Names the current whole-disk state of a workspace.
    pub fn workspace_snapshot_create(
        &self,
        query: &str,
        name: &str,
    ) -> Result<SnapshotRecord, Error> {
        if !is_valid_name(name) || name == BASELINE {
            return Err(SnapshotError::BadName { name: name.into() }.into());
        }
        let store = self.workspaces()?;
        let record = store.observe(&store.resolve(query)?.id)?;
        let _ops = ops_lock(&store, &record.id)?;
        if record.snapshots.iter().any(|s| s.name == name) {
            return Err(SnapshotError::Exists {
                name: name.into(),
                workspace: record.display_name().into(),
            }
            .into());
        }
        let layer = freeze_top(&store, &record)?;
        let snapshot = SnapshotRecord {
            name: name.to_string(),
            layer,
            created_at: now(),
        };
        let saved = snapshot.clone();
        store.update(&record.id, move |record| {
            record.snapshots.push(saved);
            Ok(())
        })?;
        let event = super::events::EventKind::Snapshot { name: name.into() };
        super::events::record(&store.dir(&record.id), event);
        Ok(snapshot)
    }

    /// The named snapshots of a workspace, oldest first.
    pub fn workspace_snapshot_list(&self, query: &str) -> Result<Vec<SnapshotRecord>, Error> {
        let store = self.workspaces()?;
        Ok(store.resolve(query)?.snapshots)
    }

    /// Forgets a snapshot and deletes the layers only it kept.
    pub fn workspace_snapshot_delete(&self, query: &str, name: &str) -> Result<(), Error> {
        let store = self.workspaces()?;
        let record = store.resolve(query)?;
        let _ops = ops_lock(&store, &record.id)?;
        if !record.snapshots.iter().any(|s| s.name == name) {
            return Err(SnapshotError::Unknown {
                name: name.into(),
                workspace: record.display_name().into(),
            }
            .into());
        }
        let record = store.update(&record.id, |record| {
            record.snapshots.retain(|s| s.name != name);
            Ok(())
        })?;
        collect_garbage(&store.dir(&record.id), &record);
        let event = super::events::EventKind::SnapshotDelete { name: name.into() };
        super::events::record(&store.dir(&record.id), event);
        Ok(())
    }

    /// Puts the whole disk back to the baseline (the state right after
    /// create) or to a named snapshot, and boots it. Running commands end.
    pub async fn workspace_reset(
        &self,
        query: &str,
        snapshot: Option<&str>,
    ) -> Result<WorkspaceRecord, Error> {
        let store = self.workspaces()?;
        let record = store.resolve(query)?;
        let dir = store.dir(&record.id);
        {
            let _ops = ops_lock(&store, &record.id)?;
            let target = match snapshot {
                Some(name) => record
                    .snapshots
                    .iter()
                    .find(|s| s.name == name)
                    .map(|s| s.layer.clone())
                    .ok_or_else(|| SnapshotError::Unknown {
                        name: name.into(),
                        workspace: record.display_name().into(),
                    })?,
                None => record
                    .baseline_layer
                    .clone()
                    .ok_or_else(|| SnapshotError::NoBaseline {
                        workspace: record.display_name().into(),
                    })?,
            };
            // The writable top is thrown away: no clean shutdown needed.
            self.kill_supervisor(&store, &record)?;
            super::sessions::end_all(&dir, "the workspace was reset");
            let top = format!("{LAYERS}/{}.qcow2", new_id());
            fs_err::create_dir_all(dir.join(LAYERS)).map_err(|source| WorkspaceError::Io {
                path: dir.join(LAYERS),
                source,
            })?;
            pyro_vmm::disk::create_overlay(
                &dir.join(&target),
                pyro_vmm::DiskFormat::Qcow2,
                &dir.join(&top),
            )
            .map_err(|e| SnapshotError::Take(e.to_string()))?;
            let record = store.update(&record.id, |record| {
                record.active_disk = top;
                Ok(())
            })?;
            collect_garbage(&dir, &record);
        }
        let record = self.workspace_start(&record.id)?;
        if snapshot.is_some() {
            // The diff baseline follows the reset; the disk baseline stays
            // the state right after create.
            let guest = self.connect_workspace(&record.id).await?;
            super::diff::record_baseline(&guest).await?;
        }
        let snapshot = snapshot.map(str::to_string);
        super::events::record(&dir, super::events::EventKind::Reset { snapshot });
        Ok(store.read(&record.id)?)
    }

    /// Freezes the state right after create as the workspace's baseline.
    pub(crate) fn take_baseline(&self, store: &WorkspaceStore, id: &str) -> Result<(), Error> {
        let record = store.read(id)?;
        let _ops = ops_lock(store, id)?;
        let layer = freeze_top(store, &record)?;
        store.update(id, move |record| {
            record.baseline_layer = Some(layer);
            Ok(())
        })?;
        Ok(())
    }
}

/// Freezes the workspace's current top layer and moves writes to a new one;
/// returns the frozen layer's file (relative to the workspace dir).
fn freeze_top(store: &WorkspaceStore, record: &WorkspaceRecord) -> Result<String, Error> {
    let dir = store.dir(&record.id);
    fs_err::create_dir_all(dir.join(LAYERS)).map_err(|source| WorkspaceError::Io {
        path: dir.join(LAYERS),
        source,
    })?;
    let frozen = record.active_disk.clone();
    let top = format!("{LAYERS}/{}.qcow2", new_id());
    if store.supervisor_alive(&record.id)? {
        ask_supervisor(&dir, &top)?;
    } else {
        pyro_vmm::disk::create_overlay(
            &dir.join(&frozen),
            pyro_vmm::DiskFormat::Qcow2,
            &dir.join(&top),
        )
        .map_err(|e| SnapshotError::Take(e.to_string()))?;
    }
    store.update(&record.id, |record| {
        record.active_disk = top;
        Ok(())
    })?;
    Ok(frozen)
}

/// Asks the running supervisor to switch the VM onto `top`.
fn ask_supervisor(dir: &Path, top: &str) -> Result<(), Error> {
    let fail = |message: String| -> Error { SnapshotError::Take(message).into() };
    let stream = std::os::unix::net::UnixStream::connect(dir.join(CONTROL))
        .map_err(|e| fail(format!("the supervisor does not answer ({e})")))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .map_err(|e| fail(e.to_string()))?;
    let mut request = serde_json::json!({ "op": "snapshot", "new_top": top }).to_string();
    request.push('\n');
    (&stream)
        .write_all(request.as_bytes())
        .map_err(|e| fail(e.to_string()))?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .map_err(|e| fail(e.to_string()))?;
    match serde_json::from_str(&line) {
        Ok(super::control::ControlReply::Ok(_)) => Ok(()),
        Ok(super::control::ControlReply::Error(error)) => Err(fail(error.to_string())),
        Err(_) => Err(fail(format!("unexpected reply {line:?}"))),
    }
}

/// Serialises snapshot and reset calls on one workspace.
fn ops_lock(store: &WorkspaceStore, id: &str) -> Result<FileLock, Error> {
    let path = store.dir(id).join("ops.lock");
    Ok(FileLock::acquire(&path, true).map_err(|source| WorkspaceError::Io { path, source })?)
}

/// Deletes disk layers that neither the top, the baseline nor a snapshot
/// needs (directly or as a backing file further down their chains).
fn collect_garbage(dir: &Path, record: &WorkspaceRecord) {
    let mut roots = vec![record.active_disk.clone()];
    roots.extend(record.baseline_layer.clone());
    roots.extend(record.snapshots.iter().map(|s| s.layer.clone()));
    let mut needed = HashSet::new();
    for root in roots {
        match backing_chain(&dir.join(&root)) {
            Some(chain) => needed.extend(chain),
            // When the chain cannot be read, keep everything.
            None => return,
        }
    }
    let mut candidates = vec![dir.join(super::DISK)];
    if let Ok(entries) = std::fs::read_dir(dir.join(LAYERS)) {
        candidates.extend(entries.flatten().map(|e| e.path()));
    }
    for candidate in candidates {
        let canonical = std::fs::canonicalize(&candidate).unwrap_or(candidate.clone());
        if candidate.exists() && !needed.contains(&canonical) {
            let _ = std::fs::remove_file(&candidate);
        }
    }
}

/// `qemu-img info` of a whole chain, the image after `--`.
fn backing_chain_args(image: &Path) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> =
        ["info", "-U", "--backing-chain", "--output=json", "--"]
            .map(Into::into)
            .to_vec();
    args.push(image.into());
    args
}

/// Every file in an image's backing chain (itself first), canonical paths.
fn backing_chain(image: &Path) -> Option<Vec<std::path::PathBuf>> {
    let output = std::process::Command::new("qemu-img")
        .args(backing_chain_args(image))
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    let chain: Vec<serde_json::Value> = serde_json::from_slice(&output.stdout).ok()?;
    Some(
        chain
            .iter()
            .filter_map(|info| info["filename"].as_str())
            .map(|file| std::fs::canonicalize(file).unwrap_or_else(|_| file.into()))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn an_image_path_that_looks_like_an_option_is_an_operand() {
        let args = super::backing_chain_args(std::path::Path::new("-image"));
        let args: Vec<_> = args.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(args[args.len() - 2..], ["--", "-image"]);
    }
}
