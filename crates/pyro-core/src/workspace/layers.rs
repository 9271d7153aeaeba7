//! Disk layers of a workspace: a chain of qcow2 files over the
//! environment's base image, each snapshot and the baseline naming a
//! frozen one, the VM writing to the top.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use pyro_util::fsutil::FileLock;

use super::store::{new_id, WorkspaceRecord, WorkspaceStore};
use super::{WorkspaceError, DISK, TEMPLATE_DISK};

/// Where frozen layers and new tops live, inside the workspace directory.
pub(crate) const LAYERS: &str = "layers";

/// Where a workspace's disk files live in its `dir`: its first layer (a
/// cold one's, or a warm one's copy of its template's disk) and the
/// layers directory. The only files of it a backing chain may name
/// (never its record, sockets or secrets).
pub(crate) fn disk_files(dir: &Path) -> [PathBuf; 3] {
    [dir.join(DISK), dir.join(TEMPLATE_DISK), dir.join(LAYERS)]
}

/// The name a snapshot may not take: `reset` without a snapshot means it.
pub(crate) const BASELINE: &str = "baseline";

/// Why a snapshot call failed.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // Each variant says what it is in its message.
pub enum SnapshotError {
    #[error("snapshot '{name}' already exists in workspace '{workspace}'; delete it first or pick another name")]
    Exists { name: String, workspace: String },
    #[error("no snapshot '{name}' in workspace '{workspace}'")]
    Unknown { name: String, workspace: String },
    #[error("invalid snapshot name '{name}': use 1-63 letters, digits, '.', '_' or '-' (and not 'baseline')")]
    BadName { name: String },
    #[error("workspace '{workspace}' has no baseline to reset to (it predates snapshots); reset to a named snapshot instead")]
    NoBaseline { workspace: String },
    #[error("snapshot '{name}' was not taken: saving the VM's memory failed: {why}; free host disk space, or take a disk-only snapshot (--disk-only)")]
    Memory { name: String, why: String },
    #[error("the supervisor of workspace '{workspace}' died during snapshot '{name}'; the snapshot was not taken, and the workspace crashed with its disk as the guest had last synced it")]
    SupervisorDied { name: String, workspace: String },
    #[error("making the disk layer failed")]
    Layer(#[source] pyro_vmm::disk::DiskError),
    #[error(transparent)]
    Store(#[from] WorkspaceError),
}

/// A new layer's file name (relative to the workspace dir), with
/// `layers/` made.
pub(crate) fn new_top(dir: &Path) -> Result<String, WorkspaceError> {
    fs_err::create_dir_all(dir.join(LAYERS)).map_err(|source| WorkspaceError::Io {
        path: dir.join(LAYERS),
        source,
    })?;
    Ok(top_name())
}

/// A new layer's file name, relative to the workspace dir.
pub(crate) fn top_name() -> String {
    format!("{LAYERS}/{}.qcow2", new_id())
}

/// Writes `top` (relative to `dir`) as a fresh overlay over `below`,
/// which it names relative to itself: the chain stays whole when linked
/// into another workspace (a fork).
pub(crate) fn overlay(dir: &Path, below: &str, top: &str) -> Result<(), SnapshotError> {
    pyro_vmm::disk::create_layer(&dir.join(below), &dir.join(top), None)
        .map_err(SnapshotError::Layer)
}

/// Serialises snapshot and reset calls on one workspace. The holder keeps
/// it across awaits (a snapshot through the supervisor, a reset's VM
/// stop), so waiting for it never blocks a runtime thread: it polls.
pub(crate) async fn ops_lock(store: &WorkspaceStore, id: &str) -> Result<FileLock, WorkspaceError> {
    wait_for_lock(&store.dir(id).join("ops.lock"), true, OPS_LOCK_PATIENCE).await
}

/// How long an operation waits for another on the same workspace: longer
/// than the longest holder's own deadlines (a transfer's 30 minutes plus
/// its packing, a snapshot's baseline stash and memory save).
pub(crate) const OPS_LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(45 * 60);

/// Polls for the lock at `path` until it is free, at most `patience`;
/// never blocks a runtime thread. Past `patience` the error names the
/// holder.
pub(crate) async fn wait_for_lock(
    path: &Path,
    exclusive: bool,
    patience: std::time::Duration,
) -> Result<FileLock, WorkspaceError> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        let lock = FileLock::try_acquire(path, exclusive)
            .map_err(|source| WorkspaceError::lock(path.to_path_buf(), source))?;
        if let Some(lock) = lock {
            return Ok(lock);
        }
        if tokio::time::Instant::now() >= deadline {
            let source = pyro_util::fsutil::lock_timeout(path, patience);
            return Err(WorkspaceError::lock(path.to_path_buf(), source));
        }
        tokio::time::sleep(LOCK_POLL).await;
    }
}

/// How often a waiter for a lock tries again.
const LOCK_POLL: std::time::Duration = std::time::Duration::from_millis(5);

/// Deletes disk layers that neither the top, the baseline nor a snapshot
/// needs (directly or as a backing file further down their chains).
pub(crate) fn collect_garbage(dir: &Path, record: &WorkspaceRecord) {
    let mut roots = vec![record.active_disk.clone()];
    roots.extend(record.baseline_layer.clone());
    roots.extend(record.snapshots.iter().map(|s| s.layer.clone()));
    let mut needed = HashSet::new();
    for root in roots {
        match backing_chain(dir, &dir.join(&root)) {
            Some(chain) => needed.extend(chain),
            // When the chain cannot be read, keep everything.
            None => return,
        }
    }
    let mut candidates = vec![dir.join(DISK)];
    if let Ok(entries) = std::fs::read_dir(dir.join(LAYERS)) {
        candidates.extend(entries.flatten().map(|e| e.path()));
    }
    for candidate in candidates {
        let canonical = std::fs::canonicalize(&candidate).unwrap_or(candidate.clone());
        if candidate.exists() && !needed.contains(&canonical) {
            let _ = std::fs::remove_file(&candidate);
        }
    }
    collect_memory(dir, record);
}

/// Where memory states live, inside the workspace dir.
pub(crate) const MEMORY: &str = "memory";

/// The memory state directory of snapshot `name` (relative).
pub(crate) fn snapshot_memory(name: &str) -> String {
    format!("{MEMORY}/snapshot-{name}")
}

/// The memory state directory of a suspend (relative).
pub(crate) const SUSPEND_MEMORY: &str = "memory/suspend";

/// Deletes the memory states nothing refers to.
fn collect_memory(dir: &Path, record: &WorkspaceRecord) {
    let mut needed: HashSet<String> = record
        .snapshots
        .iter()
        .filter_map(|s| s.memory.clone())
        .collect();
    if let Some(crate::workspace::store::ResumePoint::Memory { dir, .. }) = &record.resume_from {
        needed.insert(dir.clone());
    }
    let Ok(entries) = std::fs::read_dir(dir.join(MEMORY)) else {
        return;
    };
    for entry in entries.flatten() {
        let relative = format!("{MEMORY}/{}", entry.file_name().to_string_lossy());
        if !needed.contains(&relative) {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// Puts the frozen layer `layer` of the workspace in `from`, and every
/// layer under it inside `from`, into the workspace in `to` at the same
/// relative paths (a fork). Frozen layers are never written again, so
/// they are hard-linked: both workspaces hold the same files, and either
/// can be deleted. A layer that names the one below by its absolute path
/// inside `from` (made before layers named theirs relative) is copied
/// instead, and the copy made to name it relative.
pub(crate) fn link_chain(from: &Path, to: &Path, layer: &str) -> Result<(), WorkspaceError> {
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| WorkspaceError::Io { path, source }
    };
    let from = std::fs::canonicalize(from).map_err(io(from))?;
    let top = from.join(layer);
    // The chain ends at the environment's image, shared by all (or at a
    // file that is no disk of the workspace's, which its jail refuses).
    let chain = pyro_vmm::qcow2::backing_chain(&top, in_disk_files(&from))
        .map_err(|source| WorkspaceError::Io { path: top, source })?;
    for image in chain {
        let file = std::fs::canonicalize(&image.filename).map_err(io(&image.filename))?;
        let Ok(relative) = file.strip_prefix(&from) else {
            break;
        };
        let target = to.join(relative);
        if let Some(parent) = target.parent() {
            fs_err::create_dir_all(parent).map_err(io(parent))?;
        }
        // A layer naming the one below by its absolute path in `from`.
        let absolute_below = image
            .backing
            .as_deref()
            .map(Path::new)
            .filter(|backing| backing.is_absolute())
            .and_then(|backing| std::fs::canonicalize(backing).ok())
            .and_then(|below| Some(below.strip_prefix(&from).ok()?.to_path_buf()));
        match absolute_below {
            Some(below) => {
                fs_err::copy(&file, &target).map_err(io(&target))?;
                pyro_vmm::disk::rebase(&target, &to.join(below)).map_err(WorkspaceError::Disk)?;
            }
            None => fs_err::hard_link(&file, &target).map_err(io(&target))?,
        }
    }
    Ok(())
}

/// Whether a canonical path is one of the disk files of the workspace in
/// (canonical) `dir`: what a backing chain may go on through.
fn in_disk_files(dir: &Path) -> impl Fn(&Path) -> std::io::Result<bool> {
    let files = disk_files(dir);
    move |real| Ok(files.iter().any(|file| real.starts_with(file)))
}

/// Every file of an image's backing chain (itself first) inside the
/// workspace's `dir`, canonical paths; the headers are read, never
/// trusted (a QEMU that broke out may have written its top's).
fn backing_chain(dir: &Path, image: &Path) -> Option<Vec<PathBuf>> {
    let dir = std::fs::canonicalize(dir).ok()?;
    Some(
        pyro_vmm::qcow2::backing_chain(image, in_disk_files(&dir))
            .ok()?
            .into_iter()
            .map(|info| std::fs::canonicalize(&info.filename).unwrap_or(info.filename))
            .collect(),
    )
}
