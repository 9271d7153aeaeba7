//! The review summary (`workspace-core`).

use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Serialize;

use crate::output::{schema, Out, ToolError, ToolResult};
use crate::tools_core::WorkspaceParams;
use crate::PyroServer;

/// What happened in a workspace since its last reset.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SummaryOut {
    /// Commands run since the last reset (or create).
    pub commands_run: usize,
    /// Of those, how many failed.
    pub commands_failed: usize,
    /// Files changed, from the real diff against the baseline.
    pub files_changed: usize,
    /// The whole summary, as `pyro workspace summary --json` prints it: `since`, `commands`
    /// (failures first, each with exit code and duration), `files`, `services` with their
    /// state, `snapshots_taken`, `syncs`, `exports`.
    pub details: serde_json::Value,
}

#[tool_router(router = summary_router, vis = "pub(crate)")]
impl PyroServer {
    /// Review what was done in a workspace since its last reset (or create): commands run
    /// (failures first), files changed (from the real diff), services and their state,
    /// snapshots and exports. Use it before reporting back, or to pick up a task.
    #[tool(
        output_schema = schema::<SummaryOut>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn workspace_summary(
        &self,
        Parameters(params): Parameters<WorkspaceParams>,
    ) -> ToolResult<SummaryOut> {
        let summary = self.pyro.workspace_summary(&params.workspace).await?;
        let text = summary.render_text();
        let out = SummaryOut {
            commands_run: summary.activity.commands_run,
            commands_failed: summary.activity.commands_failed,
            files_changed: summary.activity.files.len(),
            details: serde_json::to_value(&summary)
                .map_err(|e| ToolError(format!("internal error: {e}")))?,
        };
        Ok(Out::new(text, out))
    }
}
