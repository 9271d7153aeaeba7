//! Fork: a new workspace that is a copy-on-write twin of a running one
//! (its memory and disk at one instant), or of one of its snapshots.
//!
//! The parent's supervisor saves its VM live and, in the pause at the end
//! of the save, freezes its disk and moves the parent onto a new top
//! layer ([`freeze_top`]). The frozen layer and every layer under it are
//! hard-linked into the new workspace (they are never written again), the
//! saved memory is moved there, and the new workspace starts by restoring
//! it over a fresh top of its own: the same processes, shells and
//! services, its own id, hostname, machine-id, RNG and MAC. Its baseline
//! is the state at the fork, so its diff starts empty.

use serde::Serialize;

use super::error::Error;
use super::snapshots::{freeze_top, Frozen};
use super::Pyro;
use crate::host::network::PublishedPort;
use crate::supervisor::launch;
use crate::workspace::layers::{self, ops_lock, SnapshotError, MEMORY};
use crate::workspace::store::{
    self, validate_name, RestoredSessions, ResumePoint, WorkspaceRecord, WorkspaceState,
    WorkspaceStore,
};
use crate::workspace::{diff, events, secrets, WorkspaceError, SEED_IMAGE};

/// Where a fork's memory state lies in the new workspace.
const FORK_MEMORY: &str = "memory/fork";

/// What `workspace fork` asks for.
#[derive(Debug, Clone, Default)]
pub struct ForkRequest {
    /// The new workspace's unique name.
    pub name: Option<String>,
    /// Fork this snapshot of the workspace instead of its running VM (the
    /// workspace need not run).
    pub snapshot: Option<String>,
}

/// What a fork made.
#[derive(Debug, Clone, Serialize)]
pub struct ForkReport {
    /// The new workspace.
    #[serde(flatten)]
    pub workspace: WorkspaceRecord,
    /// The id of the workspace it was forked from.
    pub forked_from: String,
    /// The snapshot it was forked from; none: the running VM.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// How long the parent's VM was paused to save its state.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_paused_ms: Option<u64>,
    /// The shells (ids) and services (names) running in the fork.
    pub restored: RestoredSessions,
    /// The parent's published ports on fixed host ports, which stay with
    /// it (ports it picked itself get free ports of the fork's own).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ports_left: Vec<String>,
}

/// The state a fork is made from, once frozen in the parent.
struct Source {
    /// The frozen disk layer (relative to the parent's directory).
    layer: String,
    /// The memory state: a directory in the parent's, and whether it
    /// belongs to the fork (moved) or to a snapshot (linked).
    memory: Option<(String, bool)>,
    paused_ms: Option<u64>,
    /// The diff baseline stashed on its disk (see `diff::stash_baseline`).
    baseline_stash: Option<String>,
}

impl Pyro {
    /// Makes a new workspace from the running VM of `query` (resumed
    /// first when suspended), or from its snapshot `request.snapshot`.
    /// The parent runs on, paused only for the end of the save.
    pub async fn workspace_fork(
        &self,
        query: &str,
        request: &ForkRequest,
    ) -> Result<ForkReport, Error> {
        let store = self.store()?;
        // Before the parent is frozen for nothing (the create below checks
        // again, under the names lock).
        if let Some(name) = &request.name {
            validate_name(name)?;
            if store
                .list()?
                .iter()
                .any(|r| r.name.as_deref() == Some(name))
            {
                return Err(WorkspaceError::NameTaken { name: name.clone() }.into());
            }
        }
        // Held throughout: the parent is not suspended for being idle meanwhile.
        let (parent, _in_use) = match &request.snapshot {
            Some(_) => (store.observe(&store.resolve(query)?.id)?, None),
            None => match self.running_workspace(query).await {
                Ok((record, _, in_use)) => (record, Some(in_use)),
                Err(Error::Workspace(WorkspaceError::Stopped { name })) => {
                    return Err(WorkspaceError::ForkStopped { name }.into())
                }
                Err(error) => return Err(error),
            },
        };
        // Checked before anything is made.
        let env_store = self.env_store()?;
        env_store.boot_artifacts(&parent.env, crate::host::agent_image::AGENT)?;

        let (child, ports_left) = child_record(&parent, request.name.clone());
        let (child_dir, _creating) = store.create(&child)?;
        // Its top, made last: until then the record names a disk that is
        // not there, so nothing can start it on the linked layers, which
        // the parent shares.
        let top = child.active_disk.clone();
        let made = self
            .make_fork(&store, &parent, (&child, &top), request.snapshot.as_deref())
            .await;
        let (paused_ms, restored) = match made {
            Ok(made) => made,
            Err(error) => {
                let _ = self.workspace_delete(&child.id).await;
                return Err(Error::ForkFailed(Box::new(error)));
            }
        };
        let parent_dir = store.dir(&parent.id);
        events::record(
            &parent_dir,
            events::EventKind::Forked {
                workspace: child.id.clone(),
            },
        );
        events::record(
            &child_dir,
            events::EventKind::ForkedFrom {
                workspace: parent.id.clone(),
                snapshot: request.snapshot.clone(),
            },
        );
        let workspace = match store.created(&child.id) {
            Ok(workspace) => workspace,
            Err(error) => {
                let _ = self.workspace_delete(&child.id).await;
                return Err(Error::ForkFailed(Box::new(error.into())));
            }
        };
        Ok(ForkReport {
            workspace,
            forked_from: parent.id,
            snapshot: request.snapshot.clone(),
            parent_paused_ms: paused_ms,
            restored,
            ports_left,
        })
    }

    /// Freezes the parent's state, puts it into the new workspace, starts
    /// it and records its baseline. Returns the parent's pause and what
    /// runs in the fork.
    async fn make_fork(
        &self,
        store: &WorkspaceStore,
        parent: &WorkspaceRecord,
        (child, top): (&WorkspaceRecord, &str),
        snapshot: Option<&str>,
    ) -> Result<(Option<u64>, RestoredSessions), Error> {
        let (parent_dir, child_dir) = (store.dir(&parent.id), store.dir(&child.id));
        let secrets = secrets::load(&parent_dir).map_err(|source| WorkspaceError::Io {
            path: secrets::path_for(&parent_dir),
            source,
        })?;
        if !secrets.is_empty() {
            secrets::save(&child_dir, &secrets).map_err(|source| WorkspaceError::Io {
                path: secrets::path_for(&child_dir),
                source,
            })?;
        }
        self.env_store()?.pin(&child.id, &child.env)?;
        let source = {
            let _ops = ops_lock(store, &parent.id).await?;
            if snapshot.is_none() {
                let what = format!("forking workspace '{}' (its memory)", parent.display_name());
                let memory = parent.memory_bytes();
                crate::workspace::ceiling::ensure_room(&parent_dir, parent, memory, &what)?;
            }
            let memory = format!("{MEMORY}/fork-{}", child.id);
            let taken = match frozen_source(store, parent, &memory, snapshot).await {
                Ok(source) => take_source(&parent_dir, &child_dir, &source).map(|()| source),
                Err(error) => Err(error),
            };
            // Moved, or to go (a save cut short leaves its part): it was
            // the fork's alone.
            let _ = pyro_util::fsutil::remove_tree(&parent_dir.join(memory));
            taken?
        };
        layers::overlay(&child_dir, &source.layer, top)?;
        let resume = source.memory.as_ref().map(|_| ResumePoint::Memory {
            dir: FORK_MEMORY.to_string(),
            below: Some(child_dir.join(&source.layer)),
            once: true,
        });
        let record = store.update(&child.id, |record| {
            record.baseline_layer = Some(source.layer.clone());
            record.resume_from = resume;
            Ok(())
        })?;
        launch::spawn(&self.cache_dir, store, &record).await?;
        // The diff starts from the state at the fork.
        let guest = self.connect_workspace(&child.id).await?;
        diff::baseline_after_restore(&guest, source.baseline_stash.as_deref()).await?;
        let restored = store
            .read(&child.id)?
            .last_boot
            .and_then(|boot| boot.restored)
            .unwrap_or_default();
        Ok((source.paused_ms, restored))
    }
}

/// The new workspace's first record: the parent's environment, size,
/// labels and network (its published ports on fixed host ports left to
/// the parent, listed), nothing of its history. Returns the ports left.
fn child_record(parent: &WorkspaceRecord, name: Option<String>) -> (WorkspaceRecord, Vec<String>) {
    let mut network = parent.network.clone();
    let (picked, fixed): (Vec<PublishedPort>, Vec<PublishedPort>) =
        network.ports.drain(..).partition(|port| port.picked);
    network.ports = picked
        .into_iter()
        .map(|port| {
            let mut asked = port.port;
            asked.host_port = 0;
            PublishedPort::asked(asked)
        })
        .collect();
    let record = WorkspaceRecord {
        id: store::new_id(),
        name,
        env: parent.env.clone(),
        labels: parent.labels.clone(),
        // A fork keeps its parent's mode (its secrets are the parent's).
        mode: parent.mode.clone(),
        cpus: parent.cpus,
        memory_mib: parent.memory_mib,
        created_at: store::now(),
        last_activity_at: store::now(),
        state: WorkspaceState::Starting,
        supervisor_pid: None,
        active_disk: layers::top_name(),
        baseline_layer: None,
        snapshots: Vec::new(),
        network,
        idle_timeout_secs: parent.idle_timeout_secs,
        max_host_bytes: parent.max_host_bytes,
        disk_bytes: parent.disk_bytes,
        resume_from: None,
        baseline_template: None,
        last_boot: None,
        host_memory: None,
        host_bytes: None,
        creating: false,
        seed_slot: parent.seed_slot,
        seed: parent.seed.clone(),
    };
    (record, fixed.iter().map(PublishedPort::describe).collect())
}

/// Freezes what the fork is made of: the parent's running VM (its memory
/// saved live into the parent's directory `memory`, the fork's alone), or
/// its snapshot `snapshot`.
async fn frozen_source(
    store: &WorkspaceStore,
    parent: &WorkspaceRecord,
    memory: &str,
    snapshot: Option<&str>,
) -> Result<Source, Error> {
    if let Some(name) = snapshot {
        let snapshot = parent
            .snapshots
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| SnapshotError::Unknown {
                name: name.into(),
                workspace: parent.display_name().into(),
            })?;
        return Ok(Source {
            layer: snapshot.layer.clone(),
            memory: snapshot.memory.clone().map(|memory| (memory, false)),
            paused_ms: None,
            baseline_stash: snapshot.baseline_stash.clone(),
        });
    }
    // The record as it is now, under the lock: a snapshot or reset may
    // have moved its top since.
    let parent = store.observe(&parent.id)?;
    if parent.state != WorkspaceState::Running {
        return Err(WorkspaceError::ForkStopped {
            name: parent.display_name().to_string(),
        }
        .into());
    }
    let frozen = freeze_top(store, &parent, Some(memory))
        .await
        .map_err(|error| match error {
            Frozen::Failed(error) => error,
            Frozen::NoMemory(why) => WorkspaceError::ForkMemory {
                name: parent.display_name().to_string(),
                why,
            }
            .into(),
            Frozen::SupervisorDied(name) => WorkspaceError::ForkMemory {
                name,
                why: "its supervisor died while its state was saved".into(),
            }
            .into(),
        })?;
    // No memory: its supervisor was gone by the time it was asked.
    let Some(memory) = frozen.memory else {
        return Err(WorkspaceError::ForkMemory {
            name: parent.display_name().to_string(),
            why: "its VM stopped meanwhile".into(),
        }
        .into());
    };
    // No stash: the fork records its baseline once it runs, exactly at
    // the instant of the fork (and sooner than a stash and its adoption).
    Ok(Source {
        layer: frozen.layer,
        memory: Some((memory, true)),
        paused_ms: frozen.paused_ms,
        baseline_stash: None,
    })
}

/// Puts the source's disk layers and memory into the new workspace: the
/// layers linked, the memory moved (the fork's own) or linked (a
/// snapshot's).
fn take_source(
    parent_dir: &std::path::Path,
    child_dir: &std::path::Path,
    source: &Source,
) -> Result<(), Error> {
    layers::link_chain(parent_dir, child_dir, &source.layer)?;
    // The seed image is never written: both workspaces read the one file.
    let seed = parent_dir.join(SEED_IMAGE);
    if seed.exists() {
        let to = child_dir.join(SEED_IMAGE);
        fs_err::hard_link(&seed, &to).map_err(|source| WorkspaceError::Io { path: to, source })?;
    }
    let Some((memory, own)) = &source.memory else {
        return Ok(());
    };
    let (from, to) = (parent_dir.join(memory), child_dir.join(FORK_MEMORY));
    let io = |path: &std::path::Path| {
        let path = path.to_path_buf();
        move |source| WorkspaceError::Io { path, source }
    };
    fs_err::create_dir_all(child_dir.join(MEMORY)).map_err(io(&child_dir.join(MEMORY)))?;
    if *own {
        fs_err::rename(&from, &to).map_err(io(&to))?;
    } else {
        link_tree(&from, &to).map_err(io(&to))?;
    }
    Ok(())
}

/// Hard-links every file under `from` into `to` (made), keeping the tree.
fn link_tree(from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            link_tree(&entry.path(), &target)?;
        } else {
            std::fs::hard_link(entry.path(), target)?;
        }
    }
    Ok(())
}
