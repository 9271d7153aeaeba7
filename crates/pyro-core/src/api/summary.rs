//! `workspace summary`: what the agent ran and changed since the last
//! reset, folded from the event log and the diff (see the workspace's
//! `summary` module).

use super::error::Error;
use super::Pyro;
use crate::workspace::events;
use crate::workspace::summary::{since, synthesise, FileSource, WorkspaceSummary};
use crate::workspace::WorkspaceState;

impl Pyro {
    /// What happened in a workspace since its last reset (or creation):
    /// commands, changed files, services, snapshots, syncs and exports.
    pub async fn workspace_summary(&self, query: &str) -> Result<WorkspaceSummary, Error> {
        let record = self.workspace_status(query)?;
        let events = events::read_since_reset(&self.store()?.dir(&record.id));
        let files = match &record.state {
            WorkspaceState::Running => match self.workspace_diff(&record.id).await {
                Ok(report) => FileSource::Diff(report.files),
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
            state: record.state.label().to_string(),
            since: since(&events),
            activity: synthesise(&events, files),
        })
    }
}
