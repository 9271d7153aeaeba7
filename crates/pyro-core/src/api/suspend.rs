//! Stop: suspend (the VM's memory to disk, no process left) or power off;
//! and the resume any call on a suspended workspace makes.

use std::time::Duration;

use super::error::Error;
use super::Pyro;
use crate::supervisor::{client, launch};
use crate::workspace::layers::{self, SUSPEND_MEMORY};
use crate::workspace::store::{WorkspaceRecord, WorkspaceState};
use crate::workspace::{events, WorkspaceError};

/// How long a power-off waits for the guest before killing.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

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
        let record = store.observe(&store.resolve(query)?.id)?;
        let dir = store.dir(&record.id);
        let suspended = matches!(record.state, WorkspaceState::Suspended { .. });
        if how == StopMode::Suspend && store.supervisor_alive(&record.id)? {
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
            while store.supervisor_alive(&record.id)? {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
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

    /// Resumes a suspended workspace for a call on it.
    pub(crate) async fn resume_for_call(&self, id: &str) -> Result<WorkspaceRecord, Error> {
        let store = self.store()?;
        // One resume at a time: a second call waits, then finds it running.
        let _ops = layers::ops_lock(&store, id).await?;
        let record = store.observe(id)?;
        if !matches!(record.state, WorkspaceState::Suspended { .. }) {
            return Ok(record);
        }
        match self.workspace_start(id).await {
            // Another call resumed it first.
            Err(Error::Workspace(WorkspaceError::AlreadyRunning { .. })) => {
                Ok(self.store()?.observe(id)?)
            }
            other => other,
        }
    }
}
