//! The offline disk tools of `workspace-full`: any path on the disk of a
//! workspace that is not running, read by a throw-away helper VM without
//! starting the workspace.

use std::path::PathBuf;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::output::{schema, Out, ToolResult};
use crate::tools_files::ExportResult;
use crate::PyroServer;

/// Arguments of `workspace_disk_list` and `workspace_disk_read`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskPathParams {
    /// The workspace id or name; it must be stopped, suspended or crashed.
    pub workspace: String,
    /// Any path on its disk: absolute ("/etc/os-release", "/var/log"), or relative to
    /// /workspace.
    pub path: String,
}

/// Arguments of `workspace_disk_export`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DiskExportParams {
    /// The workspace id or name; it must be stopped, suspended or crashed.
    pub workspace: String,
    /// A file or directory anywhere on its disk: absolute, or relative to /workspace.
    pub path: String,
    /// Where to put it on the host, inside the server's project (or a directory the user
    /// allowed): a path that does not exist yet (or an empty directory).
    pub output: String,
}

/// One entry of a directory on the disk.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DiskEntryOut {
    /// Its name in the directory.
    pub name: String,
    /// "file", "dir", "symlink" or "other".
    pub kind: String,
    /// Size in bytes.
    pub size: u64,
    /// Permission bits, octal, e.g. "0644".
    pub mode: String,
}

/// A directory on the disk.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DiskListOut {
    /// The directory, absolute.
    pub path: String,
    /// Its entries, by name.
    pub entries: Vec<DiskEntryOut>,
    /// True when there were more entries than one listing returns.
    pub truncated: bool,
}

/// A file read off the disk.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DiskReadOut {
    /// The file, absolute.
    pub path: String,
    /// Its content as text (invalid UTF-8 replaced); copy binary files out with
    /// workspace_disk_export.
    pub content: String,
    /// Its size in bytes.
    pub size: u64,
    /// Bytes of it not in `content` (each result holds at most 64 KiB).
    pub truncated_bytes: u64,
}

#[tool_router(router = disk_router, vis = "pub(crate)")]
impl PyroServer {
    /// List a directory on the disk of a workspace that is not running (stopped, suspended
    /// or crashed), without starting it: any path, not only /workspace. Takes a few seconds
    /// (a helper VM reads the disk). For a running workspace use workspace_file_list.
    #[tool(
        output_schema = schema::<DiskListOut>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn workspace_disk_list(
        &self,
        Parameters(params): Parameters<DiskPathParams>,
    ) -> ToolResult<DiskListOut> {
        let listing = self
            .pyro
            .workspace_disk_list(&params.workspace, &params.path)
            .await?;
        let mut text = format!("{} ({} entries)", listing.path, listing.entries.len());
        let entries = listing
            .entries
            .into_iter()
            .map(|entry| {
                text.push_str(&format!(
                    "\n{} {} {}",
                    entry.kind,
                    entry.size,
                    pyro_util::text::visible(&entry.name)
                ));
                DiskEntryOut {
                    name: entry.name,
                    kind: entry.kind.to_string(),
                    size: entry.size,
                    mode: format!("{:04o}", entry.mode),
                }
            })
            .collect();
        let out = DiskListOut {
            path: listing.path,
            entries,
            truncated: listing.truncated,
        };
        Ok(Out::new(text, out))
    }

    /// Read a file (its first 64 KiB) on the disk of a workspace that is not running, without
    /// starting it: any path, e.g. "/etc/os-release" or "/var/log/app.log". Takes a few
    /// seconds. For a running workspace use workspace_file_read.
    #[tool(
        output_schema = schema::<DiskReadOut>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn workspace_disk_read(
        &self,
        Parameters(params): Parameters<DiskPathParams>,
    ) -> ToolResult<DiskReadOut> {
        let file = self
            .pyro
            .workspace_disk_read(&params.workspace, &params.path)
            .await?;
        // One tool result holds at most STREAM_CAP bytes of it: the disk is
        // the guest's, and a large file goes out with workspace_disk_export.
        let shown = &file.content[..file.content.len().min(crate::STREAM_CAP)];
        let content = String::from_utf8_lossy(shown).into_owned();
        let truncated_bytes = file.size - shown.len() as u64;
        let mut text = content.clone();
        if truncated_bytes > 0 {
            text.push_str(&format!(
                "\n[{truncated_bytes} more bytes: copy the file out with workspace_disk_export]"
            ));
        }
        let out = DiskReadOut {
            path: file.path,
            content,
            size: file.size,
            truncated_bytes,
        };
        Ok(Out::new(text, out))
    }

    /// Copy a file or directory off the disk of a workspace that is not running to a new
    /// path on the host, without starting it: any path on its disk (absolute, or relative
    /// to /workspace).
    #[tool(
        output_schema = schema::<ExportResult>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false)
    )]
    async fn workspace_disk_export(
        &self,
        Parameters(params): Parameters<DiskExportParams>,
    ) -> ToolResult<ExportResult> {
        let output = PathBuf::from(&params.output);
        let report = self
            .pyro
            .workspace_disk_export(&params.workspace, &params.path, &output)
            .await?;
        Ok(ExportResult::out(report, params.output, "off the disk to"))
    }
}
