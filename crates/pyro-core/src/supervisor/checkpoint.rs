//! Saving a running VM whole: its memory and devices, and the shells and
//! services the supervisor keeps in it, so that a later supervisor (after
//! a suspend, a reset to a memory snapshot) restores it and carries on.
//!
//! A memory state is a directory:
//!
//! - `sessions.json`: the [`Manifest`], written first;
//! - `logs/NAME.log`: each running service's log as it was;
//! - `state`: the VM's saved state (QEMU's migration stream: zero pages
//!   take a few bytes each), written last and renamed into place once
//!   whole. A directory without it is not a state and is never restored.
//!
//! The guest is quiesced for the save ([`Guest::quiesce`]): the channel is
//! at a frame boundary both ways, so the restored agent and the new
//! supervisor pick the stream up where it was, on the same request ids.
//!
//! A suspend saves a paused VM that then ends ([`save_and_stop`]); a
//! snapshot or a fork saves a running one live ([`save_running`]), which
//! pauses it only for the final copy, and moves its disk onto a new top
//! layer in that pause.

use std::path::Path;
use std::time::Duration;

use pyro_util::fsutil::{write_atomic, Owner};
use pyro_vmm::Vm;
use serde::{Deserialize, Serialize};

use super::dispatch::{SavedSessions, Sessions};
use super::protocol::{Frozen, SessionError};
use crate::host::guest::{Adoption, ExecEvent, Guest, GuestError};
use crate::workspace::store::{now, ResumePoint, WorkspaceState, WorkspaceStore};
use pyro_protocol::ExecRequest;

/// The VM state file in a memory state directory.
pub(crate) const STATE: &str = "state";
/// The manifest in a memory state directory.
pub(crate) const MANIFEST: &str = "sessions.json";
/// The tag in a memory state's machine key (see `Machine::template_key`).
pub(crate) const MEMORY_TAG: &str = "pyro-memory-state-1";
/// How long the guest's `sync` before a save may take.
const SYNC_LIMIT: Duration = Duration::from_secs(60);
/// How long the guest may take to trim its disk (tens of milliseconds,
/// measured under emulation).
const TRIM_LIMIT: Duration = Duration::from_secs(10);

/// What a memory state holds besides the VM.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Manifest {
    /// The machine the state belongs to: a VM of another machine (another
    /// kernel, QEMU, size) cannot load it.
    pub(crate) machine: String,
    /// When it was saved (RFC 3339).
    pub(crate) saved_at: String,
    /// The guest channel's next request id, and the ids in flight.
    pub(crate) next_id: u32,
    pub(crate) in_flight: Vec<u32>,
    /// The shells and services running at the time.
    pub(crate) sessions: SavedSessions,
}

impl Manifest {
    /// Reads the manifest of the complete memory state in `dir`.
    pub(crate) fn load(dir: &Path) -> Result<Manifest, String> {
        if !dir.join(STATE).is_file() {
            return Err("the saved memory is missing (the save did not finish)".into());
        }
        let bytes = std::fs::read(dir.join(MANIFEST))
            .map_err(|e| format!("cannot read {}: {e}", dir.join(MANIFEST).display()))?;
        serde_json::from_slice(&bytes).map_err(|e| format!("the saved sessions are corrupt: {e}"))
    }

    /// The requests a guest restored from this state runs.
    pub(crate) fn adoption(&self) -> Adoption {
        Adoption {
            ids: self.in_flight.clone(),
            next_id: self.next_id,
        }
    }
}

/// Why a save failed; `disk_switched` when the VM had moved onto the new
/// top layer before it did (the caller must record that).
#[derive(Debug)]
pub(crate) struct SaveFailed {
    pub(crate) why: String,
    pub(crate) disk_switched: bool,
}

impl SaveFailed {
    fn before_disk(why: String) -> Self {
        SaveFailed {
            why,
            disk_switched: false,
        }
    }
}

/// Saves the VM into the memory state directory `dir` (made afresh) and
/// ends it there: the VM is left paused and the guest quiesced, for the
/// caller to end (a suspend). On failure the VM runs on.
async fn save_and_stop(
    vm: &mut dyn Vm,
    guest: &Guest,
    sessions: &Sessions,
    (machine, dir): (&str, &Path),
) -> Result<(), SaveFailed> {
    prepare(guest).await?;
    let written = write_manifest(guest, sessions, (machine, dir)).and_then(|()| {
        vm.save(&dir.join(STATE))
            .map_err(|e| pyro_util::error_chain(&e))
    });
    if let Err(why) = written {
        let _ = std::fs::remove_dir_all(dir);
        carry_on(vm, guest).await;
        return Err(SaveFailed::before_disk(why));
    }
    Ok(())
}

/// Saves the running VM into the memory state directory `dir` (made
/// afresh) while it runs on, first (at the instant the memory is taken)
/// moving its disk onto `new_top` when given (a snapshot, a fork). The
/// VM and the guest carry on either way. Returns how long the VM was
/// paused.
async fn save_running(
    vm: &mut dyn Vm,
    guest: &Guest,
    sessions: &Sessions,
    (machine, dir): (&str, &Path),
    new_top: Option<&Path>,
) -> Result<Duration, SaveFailed> {
    prepare(guest).await?;
    let saved = match write_manifest(guest, sessions, (machine, dir)) {
        Err(why) => Err(SaveFailed::before_disk(why)),
        Ok(()) => vm
            .save_live(&dir.join(STATE), new_top)
            .map_err(|failed| SaveFailed {
                why: pyro_util::error_chain(&failed),
                disk_switched: failed.disk_switched,
            }),
    };
    if saved.is_err() {
        let _ = std::fs::remove_dir_all(dir);
    }
    if let Err(e) = guest.unquiesce().await {
        eprintln!("pyro: the guest agent did not resume: {e}");
    }
    saved
}

/// Suspends the VM into the memory state `state` (relative to the
/// workspace dir) and records the workspace as suspended; the caller
/// ends the VM then. On failure the VM runs on.
pub(super) async fn suspend(
    vm: &mut dyn Vm,
    (guest, sessions): (&Guest, &Sessions),
    (store, id): (&WorkspaceStore, &str),
    (machine, state): (&str, &str),
) -> Result<(), SessionError> {
    let dir = store.dir(id).join(state);
    save_and_stop(vm, guest, sessions, (machine, &dir))
        .await
        .map_err(|failed| SessionError::Invalid(failed.why))?;
    let recorded = store.update(id, |record| {
        if record.cut_short() {
            // Half made: nothing to resume; it stays crashed for delete.
            return Ok(());
        }
        record.state = WorkspaceState::Suspended { since: now() };
        record.supervisor_pid = None;
        record.resume_from = Some(ResumePoint::Memory {
            dir: state.to_string(),
            below: None,
            once: true,
        });
        Ok(())
    });
    if let Err(error) = recorded {
        // Not recorded, not suspended: the VM runs on.
        let _ = std::fs::remove_dir_all(&dir);
        carry_on(vm, guest).await;
        return Err(SessionError::Internal(pyro_util::error_chain(&error)));
    }
    Ok(())
}

/// A disk snapshot onto `new_top` (relative to the workspace dir `dir`),
/// with the VM's memory and sessions in directory `memory` when given
/// (see [`Frozen`]).
pub(super) async fn snapshot(
    vm: &mut dyn Vm,
    (guest, sessions): (&Guest, &Sessions),
    (machine, dir): (&str, &Path),
    new_top: &str,
    memory: Option<&str>,
) -> Result<Frozen, SessionError> {
    let top = dir.join(new_top);
    let Some(memory) = memory else {
        // Push the guest's dirty pages to the disk first, so the frozen
        // layer holds everything written so far.
        flush(guest).await;
        return vm
            .snapshot_disk(&top)
            .map(|()| Frozen::default())
            .map_err(|e| SessionError::Invalid(pyro_util::error_chain(&e)));
    };
    let target = dir.join(memory);
    match save_running(vm, guest, sessions, (machine, &target), Some(&top)).await {
        Ok(paused) => Ok(Frozen {
            memory_failed: None,
            paused_ms: Some(paused.as_millis() as u64),
        }),
        Err(failed) if failed.disk_switched => Ok(Frozen {
            memory_failed: Some(failed.why),
            paused_ms: None,
        }),
        Err(failed) => Err(SessionError::Invalid(failed.why)),
    }
}

/// Records that the VM writes to `new_top` from now on (whether or not
/// the caller hears the answer), and gives the layer that froze to the
/// keeper of frozen layers: nobody is to write it again.
pub(super) fn record_new_top(store: &WorkspaceStore, id: &str, dir: &Path, new_top: &str) {
    let mut frozen = None;
    let _ = store.update(id, |record| {
        frozen = Some(std::mem::replace(
            &mut record.active_disk,
            new_top.to_string(),
        ));
        Ok(())
    });
    if let Some(frozen) = frozen {
        if let Err(error) = pyro_vmm::qemu::freeze_layer(&dir.join(frozen)) {
            eprintln!(
                "pyro: a frozen layer stays writable to its VM until it starts again: {error}"
            );
        }
    }
}

/// Flushes the guest's dirty pages to its disk, then gives the blocks it
/// freed back to the host (`fstrim /`: the root disk holds every write,
/// `/workspace`'s overlay included), so a layer about to freeze keeps
/// neither lost writes nor deleted files' bytes. Each step is bounded; a
/// guest without `fstrim` only keeps its freed blocks.
pub(crate) async fn flush(guest: &Guest) {
    let _ = tokio::time::timeout(SYNC_LIMIT, guest.sync()).await;
    let trim = async {
        // The agent ends it at the limit too: none is left running.
        let request = ExecRequest {
            argv: vec!["fstrim".into(), "/".into()],
            timeout_ms: Some(TRIM_LIMIT.as_millis() as u64),
            ..ExecRequest::default()
        };
        let mut stream = guest.exec(request).await?;
        loop {
            if let ExecEvent::Exited(_) | ExecEvent::Failed { .. } = stream.next().await? {
                return Ok::<(), GuestError>(());
            }
        }
    };
    let _ = tokio::time::timeout(TRIM_LIMIT + Duration::from_secs(2), trim).await;
}

/// Flushes the guest's disk (should the memory ever fail to load, the
/// disk below holds everything written so far) and quiesces its channel.
async fn prepare(guest: &Guest) -> Result<(), SaveFailed> {
    flush(guest).await;
    guest
        .quiesce()
        .await
        .map_err(|e| SaveFailed::before_disk(format!("the guest agent could not be paused: {e}")))
}

/// The manifest and the service logs, written before the VM state.
fn write_manifest(
    guest: &Guest,
    sessions: &Sessions,
    (machine, dir): (&str, &Path),
) -> Result<(), String> {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    let manifest = Manifest {
        machine: machine.to_string(),
        saved_at: now(),
        next_id: guest.next_request_id(),
        in_flight: guest.live_requests(),
        sessions: sessions.checkpoint(dir)?,
    };
    let bytes = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
    write_atomic(&dir.join(MANIFEST), &bytes, 0o600, Owner::default())
        .map_err(|e| format!("cannot write the saved sessions: {e}"))
}

/// Lets a paused VM and its quiesced guest run on (after a save that
/// failed).
async fn carry_on(vm: &mut dyn Vm, guest: &Guest) {
    if let Err(e) = vm.resume() {
        eprintln!(
            "pyro: resuming the VM failed: {}",
            pyro_util::error_chain(&e)
        );
    }
    if let Err(e) = guest.unquiesce().await {
        eprintln!("pyro: the guest agent did not resume: {e}");
    }
}
