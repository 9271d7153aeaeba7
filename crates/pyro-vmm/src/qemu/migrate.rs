//! Saving and restoring a QEMU VM's state through migration to a file.
//!
//! A save is a migration into `STATE.part`, whose descriptor QEMU gets
//! over the monitor (`getfd`, `fd:` URI), renamed to `STATE` once QEMU
//! reports the migration completed, so a file under the state's name is
//! always whole. A restore starts QEMU with `-incoming defer` and
//! the state file open as an inherited descriptor, and migrates in from
//! `fd:N`: QEMU reads the file itself.
//!
//! There are two ways to save:
//!
//! - **paused** ([`Vm::save`]): the VM is stopped first and the whole
//!   state written while it waits (a suspend: the VM ends after);
//! - **live** ([`Vm::save_live`]): QEMU's pre-copy writes the RAM while
//!   the guest runs, then stops it for the last dirty pages and the
//!   devices. `pause-before-switchover` holds the migration at that
//!   point, the VM stopped, so the root disk is switched onto a new
//!   overlay exactly where the memory is taken: the frozen layer and the
//!   saved memory are one instant. The guest is paused only for that
//!   final stretch (a fork, a snapshot with memory).

use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::{QemuVm, MIGRATION_TIMEOUT};
use crate::{EngineError, LiveSaveFailed};

/// How long a live save lets the guest run while its RAM is copied; a
/// guest that dirties memory faster than it is written is then stopped,
/// and the save finishes paused.
const CONVERGE_LIMIT: Duration = Duration::from_secs(3);
/// The longest pause QEMU may plan for the final copy of a live save.
const DOWNTIME_LIMIT_MS: u64 = 10;
/// How often a migration's progress is polled (each poll takes QEMU's
/// global lock; the pause at the end lasts at least until one sees it).
const POLL: Duration = Duration::from_millis(2);
/// The name QEMU keeps the state file's descriptor under.
const STATE_FD: &str = "pyro-state";

impl QemuVm {
    /// Polls `query-migrate` until the migration ends.
    pub(super) fn wait_migration(&mut self, action: &'static str) -> Result<(), EngineError> {
        let deadline = Instant::now() + MIGRATION_TIMEOUT;
        loop {
            let status = self.command(action, "query-migrate", serde_json::json!({}))?;
            match status["status"].as_str() {
                Some("completed") => return Ok(()),
                Some("failed") | Some("cancelled") => return Err(migration_failed(&status)),
                _ if Instant::now() > deadline => return Err(too_slow()),
                _ => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    }

    /// Sets the migration capabilities a save or restore needs:
    /// `x-ignore-shared` leaves RAM in a shared file out of the stream
    /// (both ends of a stream must agree), and `pause-before-switchover`
    /// holds a live save with the VM stopped before its last stretch.
    fn capabilities(
        &mut self,
        action: &'static str,
        ignore_shared: bool,
        pause_before_switchover: bool,
    ) -> Result<(), EngineError> {
        let mut capabilities =
            vec![serde_json::json!({ "capability": "x-ignore-shared", "state": ignore_shared })];
        if pause_before_switchover {
            capabilities.push(serde_json::json!({
                "capability": "pause-before-switchover", "state": true
            }));
        } else if self.paused_switchover {
            capabilities.push(serde_json::json!({
                "capability": "pause-before-switchover", "state": false
            }));
        }
        self.command(
            action,
            "migrate-set-capabilities",
            serde_json::json!({ "capabilities": capabilities }),
        )?;
        self.paused_switchover = pause_before_switchover;
        Ok(())
    }

    /// Loads the saved state QEMU inherited as descriptor `state` (QEMU
    /// closes it when done).
    pub(super) fn restore(&mut self, state: RawFd) -> Result<(), EngineError> {
        if self.ram_in_file.is_some() {
            self.capabilities("restore", true, false)?;
        }
        let uri = format!("fd:{state}");
        self.command(
            "restore",
            "migrate-incoming",
            serde_json::json!({ "uri": uri }),
        )?;
        self.wait_migration("restore")?;
        self.resume_vm()
    }

    /// Sets up a save into `state`: parameters, capabilities, and the
    /// `.part` file (mode 0600: only its owner reads a VM's memory), handed
    /// to QEMU as descriptor `pyro-state`. Returns the part's path.
    fn prepare_save(&mut self, state: &Path, live: bool) -> Result<PathBuf, EngineError> {
        let mut parameters = serde_json::json!({ "max-bandwidth": 64u64 << 30 });
        if live {
            parameters["downtime-limit"] = DOWNTIME_LIMIT_MS.into();
        }
        // QEMU's default bandwidth cap makes saving several times slower.
        self.command("save", "migrate-set-parameters", parameters)?;
        // Set either way: a VM restored from a template has it on from its
        // restore, and a stream saved with it on needs it on to load.
        self.capabilities("save", self.ram_in_file == Some(true), live)?;
        let _ = std::fs::remove_file(state);
        let part = part_path(state);
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&part)
            .map_err(|e| {
                EngineError::Migration(format!("cannot create {}: {e}", part.display()))
            })?;
        let handed = self
            .qmp("save")?
            .execute_with_fd(
                "getfd",
                serde_json::json!({ "fdname": STATE_FD }),
                file.as_raw_fd(),
            )
            .map_err(|source| EngineError::Monitor {
                action: "save",
                source,
            });
        if let Err(error) = handed {
            let _ = std::fs::remove_file(&part);
            return Err(error);
        }
        Ok(part)
    }

    /// Starts the migration into the prepared part file.
    fn migrate_out(&mut self) -> Result<(), EngineError> {
        let uri = format!("fd:{STATE_FD}");
        self.command("save", "migrate", serde_json::json!({ "uri": uri }))
            .map(drop)
    }

    /// The paused save ([`crate::Vm::save`]).
    pub(super) fn save_paused(&mut self, state: &Path) -> Result<(), EngineError> {
        self.pause_vm()?;
        let part = self.prepare_save(state, false)?;
        let written = self
            .migrate_out()
            .and_then(|()| self.wait_migration("save"))
            .and_then(|()| publish(&part, state));
        if written.is_err() {
            let _ = std::fs::remove_file(&part);
        }
        written
    }

    /// The live save ([`crate::Vm::save_live`]); the VM runs on after it,
    /// whatever happened.
    pub(super) fn save_live_running(
        &mut self,
        state: &Path,
        new_top: Option<&Path>,
    ) -> Result<Duration, LiveSaveFailed> {
        let failed = |error, disk_switched| LiveSaveFailed {
            error,
            disk_switched,
        };
        if let Some(top) = new_top {
            self.make_layer(top).map_err(|error| failed(error, false))?;
        }
        let part = match self.prepare_save(state, true) {
            Ok(part) => part,
            Err(error) => {
                if let Some(top) = new_top {
                    let _ = std::fs::remove_file(top);
                }
                return Err(failed(error, false));
            }
        };
        let mut progress = Live::default();
        // The error, and whether the migration began (else nothing ends).
        let ended = match self.migrate_out() {
            Ok(()) => self
                .drive_live(&mut progress, new_top)
                .map_err(|error| (error, true)),
            Err(error) => Err((error, false)),
        };
        if let Err((error, begun)) = ended {
            if begun {
                let _ = self.command("save", "migrate_cancel", serde_json::json!({}));
                let _ = self.wait_migration("save");
            }
            let _ = std::fs::remove_file(&part);
            if let (Some(top), false) = (new_top, progress.switched) {
                let _ = std::fs::remove_file(top);
            }
            // Whatever state the migration left it in, the VM runs on.
            let _ = self.resume_vm();
            return Err(failed(error, progress.switched));
        }
        let resumed = self.resume_vm();
        let paused = progress.paused();
        let written = publish(&part, state);
        if written.is_err() {
            let _ = std::fs::remove_file(&part);
        }
        resumed
            .and(written)
            .map_err(|error| failed(error, progress.switched))?;
        Ok(paused)
    }

    /// Follows a live migration to its end: stops a guest that does not
    /// converge, and at the switch-over point moves the disk onto
    /// `new_top` before letting it finish.
    fn drive_live(&mut self, live: &mut Live, new_top: Option<&Path>) -> Result<(), EngineError> {
        let started = Instant::now();
        loop {
            let status = self.command("save", "query-migrate", serde_json::json!({}))?;
            match status["status"].as_str() {
                // Once: the state may still read so right after the continue.
                Some("pre-switchover") if !live.continued => {
                    live.stopped.get_or_insert_with(Instant::now);
                    if let (Some(top), false) = (new_top, live.switched) {
                        self.attach_layer(top)?;
                        live.switched = true;
                    }
                    self.command(
                        "save",
                        "migrate-continue",
                        serde_json::json!({ "state": "pre-switchover" }),
                    )?;
                    live.continued = true;
                }
                Some("completed") => {
                    live.downtime = status["downtime"].as_u64().map(Duration::from_millis);
                    live.completed = Some(Instant::now());
                    return Ok(());
                }
                Some("failed") | Some("cancelled") => return Err(migration_failed(&status)),
                _ if started.elapsed() > MIGRATION_TIMEOUT => return Err(too_slow()),
                _ => {
                    if live.stopped.is_none() && started.elapsed() > CONVERGE_LIMIT {
                        self.pause_vm()?;
                        live.stopped = Some(Instant::now());
                    }
                    std::thread::sleep(POLL);
                }
            }
        }
    }
}

/// What a live save saw of its own pause.
#[derive(Default)]
struct Live {
    /// When the VM was first seen stopped (or stopped by us).
    stopped: Option<Instant>,
    /// QEMU's own count of the pause, from the stop to the end.
    downtime: Option<Duration>,
    completed: Option<Instant>,
    switched: bool,
    continued: bool,
}

impl Live {
    /// From the VM's stop until now (it has just been resumed): QEMU's
    /// downtime plus what passed since the end, or our own clock when
    /// that is longer.
    fn paused(&self) -> Duration {
        let ours = self.stopped.map(|at| at.elapsed()).unwrap_or_default();
        let qemus = match (self.downtime, self.completed) {
            (Some(downtime), Some(completed)) => downtime + completed.elapsed(),
            _ => Duration::ZERO,
        };
        ours.max(qemus)
    }
}

fn migration_failed(status: &serde_json::Value) -> EngineError {
    EngineError::Migration(
        status["error-desc"]
            .as_str()
            .unwrap_or("QEMU reported failure")
            .to_string(),
    )
}

fn too_slow() -> EngineError {
    EngineError::Migration(format!("not done after {}s", MIGRATION_TIMEOUT.as_secs()))
}

/// Gives a whole saved state its name: QEMU reported the migration
/// completed, so every byte of it is in `part`. A state under its own name
/// is always whole; one cut short stays a `.part` and is removed.
fn publish(part: &Path, state: &Path) -> Result<(), EngineError> {
    std::fs::rename(part, state).map_err(|e| {
        EngineError::Migration(format!(
            "cannot name the saved state {}: {e}",
            state.display()
        ))
    })
}

/// Where a state is written until it is whole: `STATE.part`.
fn part_path(state: &Path) -> PathBuf {
    state.with_file_name(format!(
        "{}.part",
        state.file_name().unwrap_or_default().to_string_lossy()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_state_is_written_under_a_part_name() {
        assert_eq!(part_path(Path::new("/m/state")), Path::new("/m/state.part"));
    }

    #[test]
    fn a_live_pause_counts_from_the_stop() {
        let live = Live {
            stopped: Some(Instant::now() - Duration::from_millis(40)),
            downtime: Some(Duration::from_millis(30)),
            completed: Some(Instant::now()),
            switched: true,
            continued: true,
        };
        let paused = live.paused();
        assert!(paused >= Duration::from_millis(40), "{paused:?}");
        assert!(paused < Duration::from_secs(5), "{paused:?}");
        assert_eq!(Live::default().paused(), Duration::ZERO);
    }
}
