//! The `workspace-core` file tools: list, read, write, patch, diff, export.

use pyro_util::text::visible;
use std::path::PathBuf;

use pyro_core::params::DEFAULT_READ_LIMIT;
use pyro_core::TransferReport;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, RoleServer};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::output::{schema, Out, ToolResult, STREAM_CAP};
use crate::progress::Progress;
use crate::PyroServer;

/// Arguments of `workspace_file_list`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileListParams {
    /// The workspace id or name.
    pub workspace: String,
    /// A directory relative to /workspace (default: /workspace itself).
    #[serde(default)]
    pub path: String,
    /// Also list subdirectories, recursively (never through symlinks).
    #[serde(default)]
    pub recursive: bool,
}

/// One directory entry.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Entry {
    /// Path relative to the listed directory.
    pub path: String,
    /// `file`, `dir`, `symlink` or `other`.
    pub kind: String,
    /// Size in bytes.
    pub size: u64,
}

/// A directory listing.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FileListResult {
    /// The listed directory, relative to /workspace.
    pub path: String,
    /// Its entries.
    pub entries: Vec<Entry>,
    /// True when there were more entries than one listing returns.
    pub truncated: bool,
}

/// Arguments of `workspace_file_read`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileReadParams {
    /// The workspace id or name.
    pub workspace: String,
    /// A file path relative to /workspace.
    pub path: String,
    /// Byte offset to start reading at (default 0); use it to page through large files.
    #[serde(default)]
    pub offset: u64,
    /// Most bytes to return (default and maximum 65536).
    pub max_bytes: Option<u64>,
}

/// Part or all of a file.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FileReadResult {
    /// The path read, relative to /workspace.
    pub path: String,
    /// The bytes from `offset` (lossy UTF-8).
    pub content: String,
    /// Where `content` starts in the file.
    pub offset: u64,
    /// The file's size in bytes.
    pub size: u64,
    /// Bytes after `content`; read them with offset = next_offset.
    pub remaining_bytes: u64,
    /// The offset to continue at, when bytes remain.
    pub next_offset: Option<u64>,
    /// True when the bytes are not valid UTF-8 (shown with U+FFFD).
    pub binary: bool,
}

/// Arguments of `workspace_file_write`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FileWriteParams {
    /// The workspace id or name.
    pub workspace: String,
    /// A file path relative to /workspace; parent directories are created.
    pub path: String,
    /// The whole new content of the file (text).
    pub content: String,
    /// Permission bits in octal, e.g. "755"; default keeps an existing file's, 644 for a new one.
    pub mode: Option<String>,
}

/// What a write did.
#[derive(Debug, Serialize, JsonSchema)]
pub struct FileWriteResult {
    /// The path written, relative to /workspace.
    pub path: String,
    /// Bytes written.
    pub bytes: u64,
}

/// Arguments of `workspace_patch_apply`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchParams {
    /// The workspace id or name.
    pub workspace: String,
    /// A unified diff (plain or git-style; several files at once), paths relative to /workspace.
    pub patch: String,
}

/// One file a patch changed.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PatchedFile {
    /// The path, relative to /workspace.
    pub path: String,
    /// `modified`, `created`, `deleted` or `renamed`.
    pub action: String,
    /// Lines added.
    pub insertions: usize,
    /// Lines removed.
    pub deletions: usize,
}

/// What a patch did.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PatchResult {
    /// The files changed.
    pub files: Vec<PatchedFile>,
    /// A diffstat-like summary.
    pub stat: String,
    /// Hunks applied.
    pub hunks_applied: usize,
}

/// Arguments of `workspace_export`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportParams {
    /// The workspace id or name.
    pub workspace: String,
    /// A file or directory relative to /workspace ("." for all of it).
    pub path: String,
    /// Where to put it on the host, inside the server's project (or a directory the user allowed): a path that does not exist yet (or an empty directory).
    pub output: String,
}

/// What an export copied.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ExportResult {
    /// The host path written.
    pub output: String,
    /// Files copied.
    pub files: u64,
    /// Bytes copied.
    pub bytes: u64,
    /// Entries left out (git metadata, devices, FIFOs, links pointing outside).
    pub skipped: u64,
    /// What was left out and why, one line each.
    pub left_out: Vec<String>,
}

/// A changed file in a diff.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DiffFile {
    /// The path, relative to /workspace.
    pub path: String,
    /// `added`, `deleted`, `modified`, `renamed`, …
    pub status: String,
    /// Lines added.
    pub insertions: u64,
    /// Lines removed.
    pub deletions: u64,
}

/// Changes since the baseline.
#[derive(Debug, Serialize, JsonSchema)]
pub struct DiffResult {
    /// The files changed.
    pub files: Vec<DiffFile>,
    /// Lines added in all.
    pub insertions: u64,
    /// Lines removed in all.
    pub deletions: u64,
    /// The unified diff (first 64 KiB).
    pub patch: String,
    /// Bytes of the diff not in `patch`; read single files with workspace_file_read.
    pub truncated_bytes: u64,
}

#[tool_router(router = files_router, vis = "pub(crate)")]
impl PyroServer {
    /// List the files in a directory of /workspace (optionally recursive). Use it to explore
    /// the project before reading files.
    #[tool(
        output_schema = schema::<FileListResult>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn workspace_file_list(
        &self,
        Parameters(params): Parameters<FileListParams>,
    ) -> ToolResult<FileListResult> {
        let listing = self
            .pyro
            .workspace_file_list(&params.workspace, &params.path, params.recursive)
            .await?;
        let entries: Vec<Entry> = listing
            .entries
            .into_iter()
            .map(|e| Entry {
                path: e.path,
                kind: serde_json::to_value(e.kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_else(|| "other".into()),
                size: e.size,
            })
            .collect();
        let mut text: String = entries
            .iter()
            .map(|e| match e.kind.as_str() {
                "dir" => format!("{}/\n", visible(&e.path)),
                _ => format!("{}\n", visible(&e.path)),
            })
            .collect();
        if listing.truncated {
            text.push_str("[listing truncated: list a subdirectory instead]\n");
        }
        Ok(Out::new(
            text,
            FileListResult {
                path: listing.path,
                entries,
                truncated: listing.truncated,
            },
        ))
    }

    /// Read a file of /workspace as text, up to 64 KiB per call; for larger files continue
    /// with `offset` = the returned next_offset.
    #[tool(
        output_schema = schema::<FileReadResult>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn workspace_file_read(
        &self,
        Parameters(params): Parameters<FileReadParams>,
    ) -> ToolResult<FileReadResult> {
        let bytes = self
            .pyro
            .workspace_file_read(&params.workspace, &params.path, Some(DEFAULT_READ_LIMIT))
            .await?;
        let size = bytes.len() as u64;
        let max = params
            .max_bytes
            .unwrap_or(STREAM_CAP as u64)
            .min(STREAM_CAP as u64);
        let start = params.offset.min(size);
        let end = (start + max).min(size);
        let slice = &bytes[start as usize..end as usize];
        let binary = std::str::from_utf8(slice).is_err();
        let content = String::from_utf8_lossy(slice).into_owned();
        let remaining = size - end;
        let mut text = content.clone();
        if remaining > 0 {
            text.push_str(&format!(
                "\n[truncated: {remaining} more bytes; call workspace_file_read with offset={end}]"
            ));
        }
        Ok(Out::new(
            text,
            FileReadResult {
                path: params.path,
                content,
                offset: start,
                size,
                remaining_bytes: remaining,
                next_offset: (remaining > 0).then_some(end),
                binary,
            },
        ))
    }

    /// Create or replace a whole file in /workspace (atomically). For small edits to an
    /// existing file prefer workspace_patch_apply.
    #[tool(
        output_schema = schema::<FileWriteResult>(),
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn workspace_file_write(
        &self,
        Parameters(params): Parameters<FileWriteParams>,
    ) -> ToolResult<FileWriteResult> {
        let mode = match params.mode.as_deref() {
            None => None,
            Some(text) => Some(u32::from_str_radix(text, 8).map_err(|_| {
                crate::output::ToolError(format!(
                    "mode '{text}' is not octal permission bits; use e.g. \"644\" or \"755\""
                ))
            })?),
        };
        let mut content = params.content.as_bytes();
        let report = self
            .pyro
            .workspace_file_write(&params.workspace, &params.path, &mut content, mode)
            .await?;
        Ok(Out::new(
            format!("wrote {} bytes to {}", report.bytes, report.path),
            FileWriteResult {
                path: report.path,
                bytes: report.bytes,
            },
        ))
    }

    /// Apply a unified diff to files in /workspace, all or nothing: if any hunk fails nothing
    /// changes and the error lists every failing hunk. The best way to edit existing files.
    #[tool(
        output_schema = schema::<PatchResult>(),
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false)
    )]
    async fn workspace_patch_apply(
        &self,
        Parameters(params): Parameters<PatchParams>,
    ) -> ToolResult<PatchResult> {
        let report = self
            .pyro
            .workspace_patch_apply(&params.workspace, params.patch.as_bytes())
            .await?;
        let files = report
            .files
            .into_iter()
            .map(|f| PatchedFile {
                path: f.path,
                action: f.action.to_string(),
                insertions: f.insertions,
                deletions: f.deletions,
            })
            .collect();
        Ok(Out::new(
            format!("patch applied:\n{}", report.stat),
            PatchResult {
                files,
                stat: report.stat,
                hunks_applied: report.hunks_applied,
            },
        ))
    }

    /// Show what changed in /workspace since the baseline (create or last reset) as a unified
    /// diff (first 64 KiB). Use it to review your work before exporting.
    #[tool(
        output_schema = schema::<DiffResult>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn workspace_diff(
        &self,
        Parameters(params): Parameters<super::tools_core::WorkspaceParams>,
    ) -> ToolResult<DiffResult> {
        let report = self.pyro.workspace_diff(&params.workspace).await?;
        let mut buffer = crate::output::CapBuffer::default();
        buffer.push(report.patch.as_bytes());
        let capped = buffer.finish();
        let extra = report.patch_bytes.saturating_sub(report.patch.len() as u64);
        let truncated_bytes = capped.truncated_bytes + extra;
        let files: Vec<DiffFile> = report
            .files
            .into_iter()
            .map(|f| DiffFile {
                status: f.status.label().to_string(),
                path: f.path,
                insertions: f.insertions,
                deletions: f.deletions,
            })
            .collect();
        let mut text = if files.is_empty() {
            "no changes since the baseline\n".to_string()
        } else {
            format!(
                "{} files changed, +{} -{}\n{}",
                files.len(),
                report.insertions,
                report.deletions,
                capped.text
            )
        };
        if truncated_bytes > 0 {
            text.push_str(&format!(
                "\n[diff truncated: {truncated_bytes} more bytes; read the changed files with \
                 workspace_file_read]"
            ));
        }
        Ok(Out::new(
            text,
            DiffResult {
                files,
                insertions: report.insertions,
                deletions: report.deletions,
                patch: capped.text,
                truncated_bytes,
            },
        ))
    }

    /// Copy a file or directory out of /workspace to a new path on the host, to hand results
    /// back to the user.
    #[tool(
        output_schema = schema::<ExportResult>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false)
    )]
    async fn workspace_export(
        &self,
        Parameters(params): Parameters<ExportParams>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult<ExportResult> {
        let output = PathBuf::from(&params.output);
        let progress = Progress::new(&context);
        progress.stage("copying out of the guest");
        let exported = progress
            .with_heartbeat(
                self.pyro
                    .workspace_export(&params.workspace, &params.path, &output),
                |elapsed| format!("exporting ({}s)", elapsed.as_secs()),
            )
            .await;
        progress.done().await;
        Ok(ExportResult::out(exported?, params.output, "to"))
    }
}

impl ExportResult {
    /// The tool result of an export to `output`: "exported `to` OUTPUT (N
    /// files, B bytes; K entries left out)", then what was left out and
    /// why, a line each.
    pub(crate) fn out(report: TransferReport, output: String, to: &str) -> Out<ExportResult> {
        let mut text = format!("exported {to} {output} ({})", report.tally());
        for line in &report.left_out {
            text.push('\n');
            text.push_str(line);
        }
        let result = ExportResult {
            output,
            files: report.files,
            bytes: report.bytes,
            skipped: report.skipped,
            left_out: report.left_out,
        };
        Out::new(text, result)
    }
}
