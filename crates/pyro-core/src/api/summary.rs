//! `workspace summary`: what the agent ran and changed since the last
//! reset, folded from the event log and the diff (see the workspace's
//! `summary` module).

use super::error::Error;
use super::Pyro;
use crate::workspace::summary::{since, synthesise, FileSource, WorkspaceSummary};
use crate::workspace::WorkspaceState;
use crate::workspace::{events, secrets};

impl Pyro {
    /// What happened in a workspace since its last reset (or creation):
    /// commands, changed files, services, snapshots, syncs and exports.
    pub async fn workspace_summary(&self, query: &str) -> Result<WorkspaceSummary, Error> {
        let record = self.workspace_status(query)?;
        let dir = self.store()?.dir(&record.id);
        // Events are stored redacted; file names come from the guest now.
        let events = events::read_since_reset(&dir);
        let secrets = secrets::secrets(&dir);
        let files = match &record.state {
            WorkspaceState::Running => match self.workspace_diff(&record.id).await {
                Ok(mut report) => {
                    for file in &mut report.files {
                        file.path = secrets.redact(&file.path);
                        file.old_path = file.old_path.as_deref().map(|p| secrets.redact(p));
                    }
                    FileSource::Diff(report.files)
                }
                Err(error) => FileSource::Unavailable(format!("no diff: {error}")),
            },
            state => FileSource::Unavailable(format!(
                "no diff: the workspace is {}; start it for the exact changes",
                state.label()
            )),
        };
        Ok(WorkspaceSummary {
            workspace: record.id.clone(),
            name: record.name.clone(),
            env: record.env.clone(),
            mode: record.mode.as_ref().map(|mode| mode.name),
            state: record.state.label().to_string(),
            since: since(&events),
            activity: synthesise(&events, files),
        })
    }
}
