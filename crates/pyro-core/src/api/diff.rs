//! `workspace diff`: what changed in /workspace since its baseline (see
//! the workspace's `diff` module for how it is computed in the guest).

use super::error::Error;
use super::Pyro;
use crate::workspace::diff::{self, DiffReport};

impl Pyro {
    /// The changes in /workspace since its baseline, as a unified diff and
    /// per file.
    pub async fn workspace_diff(&self, query: &str) -> Result<DiffReport, Error> {
        let record = self.workspace_status(query)?;
        let guest = self.connect_workspace(query).await?;
        let report = diff::compute(&guest, record.display_name(), &record.env).await?;
        self.record_activity(query);
        Ok(report)
    }
}
