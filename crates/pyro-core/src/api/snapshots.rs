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
use crate::supervisor::protocol::SessionError;
use crate::supervisor::registry;
use crate::workspace::ceiling;
use crate::workspace::layers::{self, ops_lock, SnapshotError, BASELINE};
use crate::workspace::store::{
    is_valid_name, now, RestoredSessions, ResumePoint, SnapshotRecord, WorkspaceRecord,
    WorkspaceState, WorkspaceStore,
};
use crate::workspace::{diff, events, WorkspaceError};

/// What a reset did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ResetReport {
    /// The workspace as it is now.
    #[serde(flatten)]
    pub workspace: WorkspaceRecord,
    /// Shells (ids) and services (names) that were running and ended.
    pub ended: RestoredSessions,
    /// Those the snapshot's memory has running again.
    pub restored: RestoredSessions,
}

impl Pyro {
    /// Names the current state of a workspace: its whole disk, and unless
    /// `disk_only`, the memory of its running VM with its shells and
    /// services (a reset to it has them running again). A stopped
    /// workspace has no memory to keep: its snapshot is of the disk.
    pub async fn workspace_snapshot_create(
        &self,
        query: &str,
        name: &str,
        disk_only: bool,
    ) -> Result<SnapshotRecord, Error> {
        if !is_valid_name(name) || name == BASELINE {
            return Err(SnapshotError::BadName { name: name.into() }.into());
        }
        let store = self.store()?;
        let id = store.resolve(query)?.id;
        let _in_use = self.in_use(&id).await?;
        let mut record = store.observe(&id)?;
        // A suspended workspace's memory is kept by resuming it.
        if !disk_only && matches!(record.state, WorkspaceState::Suspended { .. }) {
            record = self.resume_for_call(&id).await?;
        }
        let _ops = ops_lock(&store, &record.id).await?;
        if record.snapshots.iter().any(|s| s.name == name) {
            return Err(SnapshotError::Exists {
                name: name.into(),
                workspace: record.display_name().into(),
            }
            .into());
        }
        let memory = (!disk_only).then(|| layers::snapshot_memory(name));
        // Only a running VM has memory to save (as it is now, under the lock).
        let running = store.read(&record.id)?.state == WorkspaceState::Running;
        let needed = match memory.is_some() && running {
            true => record.memory_bytes() + LAYER_ROOM,
            false => LAYER_ROOM,
        };
        ceiling::ensure_room(
            &store.dir(&record.id),
            &record,
            needed,
            &format!("snapshot '{name}'"),
        )?;
        let baseline_stash = self.stash_baseline(&store, &record).await;
        let frozen = freeze_top(&store, &record, memory.as_deref())
            .await
            .map_err(|error| error.named(name))?;
        let snapshot = SnapshotRecord {
            name: name.to_string(),
            layer: frozen.layer,
            created_at: now(),
            memory: frozen.memory,
            baseline_stash,
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
    /// create) or to a named snapshot, and starts it. A snapshot with
    /// memory is restored whole: the shells and services it ran run
    /// again. Everything else running ends; the report says which.
    pub async fn workspace_reset(
        &self,
        query: &str,
        snapshot: Option<&str>,
    ) -> Result<ResetReport, Error> {
        let store = self.store()?;
        let record = store.observe(&store.resolve(query)?.id)?;
        if record.cut_short() {
            return Err(WorkspaceError::CutShort {
                name: record.display_name().to_string(),
            }
            .into());
        }
        let dir = store.dir(&record.id);
        let running_before = registry::live_sessions(&dir);
        {
            let _ops = ops_lock(&store, &record.id).await?;
            let (target, memory) = match snapshot {
                Some(name) => record
                    .snapshots
                    .iter()
                    .find(|s| s.name == name)
                    .map(|s| (s.layer.clone(), s.memory.clone()))
                    .ok_or_else(|| SnapshotError::Unknown {
                        name: name.into(),
                        workspace: record.display_name().into(),
                    })?,
                None => record
                    .baseline_layer
                    .clone()
                    .map(|layer| (layer, None))
                    .ok_or_else(|| SnapshotError::NoBaseline {
                        workspace: record.display_name().into(),
                    })?,
            };
            // The writable top is thrown away: no clean shutdown needed.
            self.end_vm(&store, &record, "the workspace was reset")
                .await?;
            let top = layers::new_top(&dir)?;
            layers::overlay(&dir, &target, &top)?;
            let resume = match (snapshot, memory) {
                (Some(_), Some(memory)) => Some(ResumePoint::Memory {
                    dir: memory,
                    below: Some(dir.join(&target)),
                    once: false,
                }),
                // The baseline of an unseeded warm create is its template.
                (None, _) => self.baseline_resume(&record),
                (Some(_), None) => None,
            };
            let record = store.update(&record.id, |record| {
                record.active_disk = top;
                record.resume_from = resume;
                Ok(())
            })?;
            layers::collect_garbage(&dir, &record);
        }
        let record = self.workspace_start(&record.id).await?;
        if let Some(name) = snapshot {
            // The diff baseline follows the reset; the disk baseline stays
            // the state right after create.
            let stash = record
                .snapshots
                .iter()
                .find(|s| s.name == name)
                .and_then(|s| s.baseline_stash.clone());
            let guest = self.connect_workspace(&record.id).await?;
            diff::baseline_after_restore(&guest, stash.as_deref()).await?;
        }
        let snapshot = snapshot.map(str::to_string);
        events::record(&dir, events::EventKind::Reset { snapshot });
        let workspace = store.read(&record.id)?;
        let restored = workspace
            .last_boot
            .as_ref()
            .and_then(|boot| boot.restored.clone())
            .unwrap_or_default();
        let ended = RestoredSessions {
            shells: running_before
                .shells
                .into_iter()
                .filter(|s| !restored.shells.contains(s))
                .collect(),
            services: running_before
                .services
                .into_iter()
                .filter(|s| !restored.services.contains(s))
                .collect(),
        };
        Ok(ResetReport {
            workspace,
            ended,
            restored,
        })
    }

    /// Has a running workspace's guest stash its diff baseline as it is
    /// now, for a reset to (or a fork of) the state about to be frozen;
    /// returns its token. Best effort: without one, the reset records.
    pub(crate) async fn stash_baseline(
        &self,
        store: &WorkspaceStore,
        record: &WorkspaceRecord,
    ) -> Option<String> {
        // Never a resume here: the caller holds the ops lock it takes.
        let record = store.observe(&record.id).ok()?;
        if record.state != WorkspaceState::Running {
            return None;
        }
        let guest = self
            .connect_running(&record, &store.dir(&record.id))
            .await
            .ok()?;
        let token = crate::workspace::store::new_id();
        diff::stash_baseline(&guest, &token).await.ok()?;
        Some(token)
    }

    /// Freezes the state right after create as the workspace's baseline.
    pub(crate) async fn take_baseline(
        &self,
        store: &WorkspaceStore,
        id: &str,
    ) -> Result<(), Error> {
        let record = store.read(id)?;
        let _ops = ops_lock(store, id).await?;
        let frozen = freeze_top(store, &record, None)
            .await
            .map_err(|error| error.named(BASELINE))?;
        store.update(id, move |record| {
            record.baseline_layer = Some(frozen.layer);
            Ok(())
        })?;
        Ok(())
    }
}

/// Room a new disk layer wants on the host, at least: its metadata and the
/// first writes after it.
const LAYER_ROOM: u64 = 64 << 20;

/// Whether the workspace's supervisor is gone, after a call to it failed:
/// a killed process closes its sockets a moment before the kernel lets go
/// of its lock, so this looks a few times before it answers no.
async fn supervisor_died(store: &WorkspaceStore, id: &str) -> bool {
    for _ in 0..50 {
        if !store.supervisor_alive(id).unwrap_or(true) {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

/// Why [`freeze_top`] failed.
pub(crate) enum Frozen {
    Failed(Error),
    /// The disk was frozen (and the workspace moved on to a new top), but
    /// its memory could not be saved: why.
    NoMemory(String),
    /// The supervisor died while it froze the top; the record still
    /// names the state before, and what it left half-made is gone. The
    /// workspace's display name.
    SupervisorDied(String),
}

impl Frozen {
    /// The facade's error, for the snapshot `name`.
    fn named(self, name: &str) -> Error {
        match self {
            Frozen::Failed(error) => error,
            Frozen::NoMemory(why) => SnapshotError::Memory {
                name: name.into(),
                why,
            }
            .into(),
            Frozen::SupervisorDied(workspace) => SnapshotError::SupervisorDied {
                name: name.into(),
                workspace,
            }
            .into(),
        }
    }
}

impl<E: Into<Error>> From<E> for Frozen {
    fn from(error: E) -> Self {
        Frozen::Failed(error.into())
    }
}

/// A top layer frozen by [`freeze_top`].
pub(crate) struct FrozenTop {
    /// The frozen layer's file, relative to the workspace dir.
    pub(crate) layer: String,
    /// The memory state directory, when one was saved.
    pub(crate) memory: Option<String>,
    /// How long the VM was paused to save it.
    pub(crate) paused_ms: Option<u64>,
}

/// Freezes the workspace's current top layer and moves writes to a new
/// one: through the running supervisor (guest flushed, QMP), or directly
/// on a stopped workspace. With `memory`, a running VM's memory and
/// sessions are saved in that directory too (relative to the workspace
/// dir), live: the VM is paused only for the final copy.
pub(crate) async fn freeze_top(
    store: &WorkspaceStore,
    record: &WorkspaceRecord,
    memory: Option<&str>,
) -> Result<FrozenTop, Frozen> {
    let dir = store.dir(&record.id);
    let frozen = record.active_disk.clone();
    let top = layers::new_top(&dir)?;
    let mut done = client::Frozen::default();
    if store.supervisor_alive(&record.id)? {
        // The supervisor records the new top itself once the VM uses it.
        done = match client::snapshot(&dir, &top, memory).await {
            Ok(done) => done,
            Err(SessionError::Supervisor(_)) if supervisor_died(store, &record.id).await => {
                // It died meanwhile: the record still names the frozen top
                // (the VM's writes since the guest's sync die with it), and
                // the layer or memory it was making goes.
                if let Ok(now) = store.observe(&record.id) {
                    layers::collect_garbage(&dir, &now);
                }
                return Err(Frozen::SupervisorDied(record.display_name().to_string()));
            }
            Err(error) => return Err(error.into()),
        };
    } else {
        layers::overlay(&dir, &frozen, &top)?;
        store.update(&record.id, |record| {
            record.active_disk = top;
            Ok(())
        })?;
        // Written by no VM again (its next start settles it too).
        let _ = pyro_vmm::qemu::freeze_layer(&dir.join(&frozen));
    }
    match done.memory_failed {
        Some(why) => Err(Frozen::NoMemory(why)),
        None => Ok(FrozenTop {
            layer: frozen,
            // Saved exactly when the supervisor reports the save's pause
            // (a stopped workspace has no memory to keep).
            memory: done.paused_ms.and(memory.map(str::to_string)),
            paused_ms: done.paused_ms,
        }),
    }
}
