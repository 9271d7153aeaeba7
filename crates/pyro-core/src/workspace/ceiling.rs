//! A workspace's ceiling on host bytes: its disk layers, memory states and
//! everything else in its directory stay under it together.
//!
//! The VM's own writes are held by a file-size limit on its process
//! ([`file_budget`]: the ceiling less what the workspace holds besides its
//! top layer), so a guest that fills its disk gets a write error in the
//! guest, and the host keeps its bytes. What the host itself is about to
//! write for it (a memory state) is checked first ([`check`]).

use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use pyro_util::human_bytes;

use super::store::{WorkspaceRecord, WorkspaceStore};
use super::{host_bytes, WorkspaceError};

/// The ceiling of a workspace made without one: twice the environment's
/// disk (one full disk and one full snapshot of it).
pub const DEFAULT_MAX_HOST_BYTES: u64 = 2 * pyro_env::rootfs::VIRTUAL_SIZE;

/// The ceiling of a workspace made without one, whose disk is
/// `disk_bytes` (`None`: the environment's): twice its disk.
pub(crate) fn default_for(disk_bytes: Option<u64>) -> u64 {
    disk_bytes.map_or(DEFAULT_MAX_HOST_BYTES, |disk| disk.saturating_mul(2))
}

/// The ceiling of `record`.
pub(crate) fn of(record: &WorkspaceRecord) -> u64 {
    record
        .max_host_bytes
        .unwrap_or_else(|| default_for(record.disk_bytes))
}

/// How large the VM may grow any file it writes: the ceiling less what
/// the workspace holds besides its top layer, and never less than the top
/// already is (its blocks can still be rewritten).
pub(crate) fn file_budget(dir: &Path, record: &WorkspaceRecord) -> u64 {
    let held = host_bytes::of_dir(dir).total();
    let top = std::fs::metadata(dir.join(&record.active_disk)).ok();
    let (top_blocks, top_size) = top.map_or((0, 0), |meta| (meta.blocks() * 512, meta.len()));
    let others = held.saturating_sub(top_blocks);
    of(record).saturating_sub(others).max(top_size)
}

/// Fails when `adding` bytes more (for `what`) would take the workspace
/// past its ceiling.
pub(crate) fn check(
    dir: &Path,
    record: &WorkspaceRecord,
    adding: u64,
    what: &str,
) -> Result<(), WorkspaceError> {
    let held = host_bytes::of_dir(dir).total();
    let ceiling = of(record);
    if held.saturating_add(adding) <= ceiling {
        return Ok(());
    }
    Err(WorkspaceError::OverCeiling {
        name: record.display_name().to_string(),
        held: human_bytes(held),
        what: what.to_string(),
        adding: human_bytes(adding),
        ceiling: human_bytes(ceiling),
    })
}

/// Fails unless both the host disk has room for `needed` bytes more (for
/// `what`) and the workspace stays under its ceiling with them.
pub(crate) fn ensure_room(
    dir: &Path,
    record: &WorkspaceRecord,
    needed: u64,
    what: &str,
) -> Result<(), WorkspaceError> {
    host_bytes::ensure_room(dir, needed, what)?;
    check(dir, record, needed, what)
}

/// How often a supervisor brings its VM's file-size limit up to date (a
/// snapshot deleted gives room back).
pub(crate) const REFRESH: std::time::Duration = std::time::Duration::from_secs(15);

/// Limits the VM's file sizes to workspace `id`'s budget under its ceiling.
pub(crate) fn limit_files(vm: &mut dyn pyro_vmm::Vm, store: &WorkspaceStore, id: &str, dir: &Path) {
    if let Ok(record) = store.read(id) {
        if let Err(error) = vm.limit_file_size(file_budget(dir, &record)) {
            eprintln!("pyro: {}", pyro_util::error_chain(&error));
        }
    }
}
