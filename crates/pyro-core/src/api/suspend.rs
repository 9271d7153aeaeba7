//! Stop: suspend (the VM's memory to disk, no process left) or power off;
//! the idle timeout, after which a workspace's supervisor suspends it; and
//! the resume any call on a suspended workspace makes, which the caller
//! can learn of ([`noting_resumes`]) to say so in its result.

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pyro_util::fsutil::FileLock;
use serde::Serialize;

use super::error::Error;
use super::Pyro;
use crate::supervisor::{client, launch};
use crate::workspace::layers::{self, SUSPEND_MEMORY};
use crate::workspace::store::{WorkspaceRecord, WorkspaceState};
use crate::workspace::{events, WorkspaceError};

/// How long a power-off waits for the guest before killing: well past the
/// supervisor's flush (a sync of up to 60 s, a trim of up to 12 s) and its
/// power-off grace (15 s), so a slow flush is never cut off.
const STOP_TIMEOUT: Duration = Duration::from_secs(120);

/// How `workspace stop` ends a workspace's VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StopMode {
    /// Save its memory to disk and end every process: `start`, or any
    /// call on it, resumes it with every process alive.
    #[default]
    Suspend,
    /// Power the guest off cleanly: processes end, the disk stays.
    PowerOff,
}

impl Pyro {
    /// Stops a workspace: suspends it, or powers it off.
    pub async fn workspace_stop(
        &self,
        query: &str,
        how: StopMode,
    ) -> Result<WorkspaceRecord, Error> {
        let store = self.store()?;
        let id = store.resolve(query)?.id;
        // Its supervisor does not suspend it by itself meanwhile.
        let _in_use = self.in_use(&id).await?;
        let record = store.observe(&id)?;
        let dir = store.dir(&record.id);
        let suspended = matches!(record.state, WorkspaceState::Suspended { .. });
        if how == StopMode::Suspend && store.supervisor_alive(&record.id)? {
            // Its memory goes to the host disk: only with room for it.
            let what = format!(
                "suspending workspace '{}' (its memory)",
                record.display_name()
            );
            let memory = record.memory_bytes();
            crate::workspace::ceiling::ensure_room(&dir, &record, memory, &what)?;
            if let Err(error) = client::suspend(&dir, SUSPEND_MEMORY).await {
                // The answer may be what was lost, not the suspend.
                let now = store.read(&record.id)?;
                if !matches!(now.state, WorkspaceState::Suspended { .. }) {
                    return Err(WorkspaceError::SuspendFailed {
                        name: record.display_name().to_string(),
                        why: error.to_string(),
                    }
                    .into());
                }
            }
            // It recorded the suspend before it answered; it ends now.
            launch::until_gone(&store, &record.id, launch::SUPERVISOR_EXIT).await?;
            events::record(&dir, events::EventKind::Suspended);
            return Ok(store.read(&record.id)?);
        }
        if how == StopMode::Suspend && suspended {
            return Ok(record);
        }
        launch::stop(&store, &record, STOP_TIMEOUT).await?;
        let stopped = store.update(&record.id, |record| {
            record.state = WorkspaceState::Stopped;
            record.supervisor_pid = None;
            // A suspended VM powered off: its saved memory is forgotten.
            if suspended {
                record.resume_from = None;
            }
            Ok(())
        })?;
        if suspended {
            crate::supervisor::registry::end_all(&dir, "the workspace was powered off");
            layers::collect_garbage(&dir, &stopped);
        }
        events::record(&dir, events::EventKind::Stopped);
        Ok(stopped)
    }

    /// Resumes a suspended workspace for a call on it, and notes it for
    /// the call's result ([`noting_resumes`]).
    pub(crate) async fn resume_for_call(&self, id: &str) -> Result<WorkspaceRecord, Error> {
        let store = self.store()?;
        // One resume at a time: a second call waits, then finds it running.
        let _ops = layers::ops_lock(&store, id).await?;
        let record = store.observe(id)?;
        let WorkspaceState::Suspended { since } = &record.state else {
            return Ok(record);
        };
        let since = since.clone();
        let resumed = match self.start_locked(id).await {
            // Another call resumed it first.
            Err(Error::Workspace(WorkspaceError::AlreadyRunning { .. })) => {
                return Ok(self.store()?.observe(id)?)
            }
            other => other?,
        };
        let _ = RESUMES.try_with(|notes| {
            notes.0.lock().expect("notes").push(Resumed {
                workspace: resumed.display_name().to_string(),
                suspended_since: since,
                ready_ms: resumed.last_boot.as_ref().map_or(0, |boot| boot.ready_ms),
            })
        });
        Ok(resumed)
    }

    /// Sets or clears a workspace's idle timeout; a running supervisor
    /// follows it at once.
    pub(crate) async fn set_idle_timeout(
        &self,
        id: &str,
        timeout: Option<Duration>,
    ) -> Result<WorkspaceRecord, Error> {
        let store = self.store()?;
        let _in_use = self.in_use(id).await?;
        let seconds = timeout.map(|timeout| timeout.as_secs());
        let record = store.update(id, |record| {
            record.idle_timeout_secs = seconds;
            Ok(())
        })?;
        if store.supervisor_alive(id)? {
            client::set_idle_timeout(&store.dir(id), seconds).await?;
        }
        Ok(record)
    }

    /// Takes workspace `id`'s use lock (shared) for a call that reaches
    /// its supervisor: an idle suspend cannot begin meanwhile, so the
    /// call either finds it running or suspended, never half-gone.
    pub(crate) async fn in_use(&self, id: &str) -> Result<FileLock, Error> {
        let store = self.store()?;
        let path = store.use_lock_path(id);
        Ok(layers::wait_for_lock(&path, false, layers::OPS_LOCK_PATIENCE).await?)
    }
}

/// A suspended workspace that a call resumed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Resumed {
    /// Its name, or id.
    pub workspace: String,
    /// Since when it was suspended (RFC 3339).
    pub suspended_since: String,
    /// How long its restore took, milliseconds.
    pub ready_ms: u64,
}

impl Resumed {
    /// `workspace 'api' was suspended (since ...); resumed it in 80 ms`.
    pub fn line(&self) -> String {
        format!(
            "workspace '{}' was suspended (since {}); this call resumed it in {} ms, with every process",
            self.workspace, self.suspended_since, self.ready_ms
        )
    }
}

/// Where the resumes of one call are noted.
#[derive(Debug, Clone, Default)]
pub struct ResumeNotes(Arc<Mutex<Vec<Resumed>>>);

tokio::task_local! {
    static RESUMES: ResumeNotes;
}

impl ResumeNotes {
    /// The notes of the call running now, to carry into another task
    /// ([`ResumeNotes::scope`]); `None` outside [`noting_resumes`].
    pub fn current() -> Option<ResumeNotes> {
        RESUMES.try_with(Clone::clone).ok()
    }

    /// Runs `call` noting its resumes here.
    pub async fn scope<F: Future>(self, call: F) -> F::Output {
        RESUMES.scope(self, call).await
    }
}

/// Runs one facade call, and returns with its output the suspended
/// workspaces it resumed on the way (front ends say so in the result).
pub async fn noting_resumes<F: Future>(call: F) -> (F::Output, Vec<Resumed>) {
    let notes = ResumeNotes::default();
    let output = notes.clone().scope(call).await;
    let resumed = std::mem::take(&mut *notes.0.lock().expect("notes"));
    (output, resumed)
}
