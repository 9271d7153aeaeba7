//! Trees across the VM boundary: `sync push` (host → guest) and `export`
//! (guest → host), with every host path checked against what the caller
//! may use.

use std::path::Path;

use super::error::Error;
use super::host_paths::HostPathUse;
use super::Pyro;
use crate::workspace::events::EventKind;
use crate::workspace::transfer::{self, workspace_path, TransferReport};

impl Pyro {
    /// Copies a host directory into `/workspace/<dest>` (created if needed).
    pub async fn workspace_sync_push(
        &self,
        query: &str,
        source: &Path,
        dest: Option<&str>,
    ) -> Result<TransferReport, Error> {
        let dest = workspace_path(dest.unwrap_or(""))?;
        let source = &self.host_paths.check(HostPathUse::SyncSource, source)?;
        let guest = self.connect_workspace(query).await?;
        let report = transfer::push_tree(&guest, source, &dest).await?;
        self.record_activity(query);
        let event = EventKind::SyncPush {
            source: source.display().to_string(),
            destination: format!("/workspace/{dest}"),
        };
        self.record_event(query, event);
        Ok(report)
    }

    /// Copies `/workspace/<path>` (a file or a directory) to `output` on the
    /// host. `output` must not exist yet (or be an empty directory).
    pub async fn workspace_export(
        &self,
        query: &str,
        path: &str,
        output: &Path,
    ) -> Result<TransferReport, Error> {
        let path = workspace_path(path)?;
        let output = self.host_paths.check_export(output)?;
        let skip_git_metadata = self.host_paths.is_confined();
        let guest = self.connect_workspace(query).await?;
        let report = transfer::export_tree(&guest, &path, &output, skip_git_metadata).await?;
        self.record_activity(query);
        let event = EventKind::Export {
            path,
            output: output.display().to_string(),
        };
        self.record_event(query, event);
        Ok(report)
    }
}
