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

use super::error::Error;
use super::Pyro;
use crate::supervisor::client;
use crate::workspace::layers::{self, ops_lock, SnapshotError, BASELINE};
use crate::workspace::store::{
    is_valid_name, now, SnapshotRecord, WorkspaceRecord, WorkspaceStore,
};
use crate::workspace::{diff, events};

impl Pyro {
    /// Names the current whole-disk state of a workspace.
    pub async fn workspace_snapshot_create(
        &self,
        query: &str,
        name: &str,
    ) -> Result<SnapshotRecord, Error> {
        if !is_valid_name(name) || name == BASELINE {
            return Err(SnapshotError::BadName { name: name.into() }.into());
        }
        let store = self.store()?;
        let record = store.observe(&store.resolve(query)?.id)?;
        let _ops = ops_lock(&store, &record.id).await?;
        if record.snapshots.iter().any(|s| s.name == name) {
            return Err(SnapshotError::Exists {
                name: name.into(),
                workspace: record.display_name().into(),
            }
            .into());
        }
        let layer = freeze_top(&store, &record).await?;
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
        let event = events::EventKind::Snapshot { name: name.into() };
        events::record(&store.dir(&record.id), event);
        Ok(snapshot)
    }

    /// The named snapshots of a workspace, oldest first.
    pub fn workspace_snapshot_list(&self, query: &str) -> Result<Vec<SnapshotRecord>, Error> {
        Ok(self.store()?.resolve(query)?.snapshots)
    }

    /// Forgets a snapshot and deletes the layers only it kept.
    pub async fn workspace_snapshot_delete(&self, query: &str, name: &str) -> Result<(), Error> {
        let store = self.store()?;
        let record = store.resolve(query)?;
        let _ops = ops_lock(&store, &record.id).await?;
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
        layers::collect_garbage(&store.dir(&record.id), &record);
        let event = events::EventKind::SnapshotDelete { name: name.into() };
        events::record(&store.dir(&record.id), event);
        Ok(())
    }

    /// Puts the whole disk back to the baseline (the state right after
    /// create) or to a named snapshot, and boots it. Running commands end.
    pub async fn workspace_reset(
        &self,
        query: &str,
        snapshot: Option<&str>,
    ) -> Result<WorkspaceRecord, Error> {
        let store = self.store()?;
        let record = store.resolve(query)?;
        let dir = store.dir(&record.id);
        {
            let _ops = ops_lock(&store, &record.id).await?;
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
            self.end_vm(&store, &record, "the workspace was reset")
                .await?;
            let top = layers::new_top(&dir)?;
            layers::overlay(&dir, &target, &top)?;
            // The baseline of an unseeded warm create is its template.
            let resume = snapshot
                .is_none()
                .then(|| self.baseline_resume(&record))
                .flatten();
            let record = store.update(&record.id, |record| {
                record.active_disk = top;
                record.resume_from = resume;
                Ok(())
            })?;
            layers::collect_garbage(&dir, &record);
        }
        let record = self.workspace_start(&record.id).await?;
        if snapshot.is_some() {
            // The diff baseline follows the reset; the disk baseline stays
            // the state right after create.
            let guest = self.connect_workspace(&record.id).await?;
            diff::record_baseline(&guest).await?;
        }
        let snapshot = snapshot.map(str::to_string);
        events::record(&dir, events::EventKind::Reset { snapshot });
        Ok(store.read(&record.id)?)
    }

    /// Freezes the state right after create as the workspace's baseline.
    pub(crate) async fn take_baseline(
        &self,
        store: &WorkspaceStore,
        id: &str,
    ) -> Result<(), Error> {
        let record = store.read(id)?;
        let _ops = ops_lock(store, id).await?;
        let layer = freeze_top(store, &record).await?;
        store.update(id, move |record| {
            record.baseline_layer = Some(layer);
            Ok(())
        })?;
        Ok(())
    }
}

/// Freezes the workspace's current top layer and moves writes to a new
/// one: through the running supervisor (guest flushed, QMP), or directly
/// on a stopped workspace. Returns the frozen layer's file (relative to
/// the workspace dir).
async fn freeze_top(store: &WorkspaceStore, record: &WorkspaceRecord) -> Result<String, Error> {
    let dir = store.dir(&record.id);
    let frozen = record.active_disk.clone();
    let top = layers::new_top(&dir)?;
    if store.supervisor_alive(&record.id)? {
        client::snapshot(&dir, &top).await?;
    } else {
        layers::overlay(&dir, &frozen, &top)?;
    }
    store.update(&record.id, |record| {
        record.active_disk = top;
        Ok(())
    })?;
    Ok(frozen)
}
