//! How tool results are shaped: structured content (with an output schema)
//! plus a short text for the model, errors as `is_error` results, and caps on
//! large output.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pyro_core::Action;
use rmcp::handler::server::tool::IntoCallToolResult;
use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock, JsonObject};
use schemars::JsonSchema;
use serde::Serialize;

/// Most bytes of one output stream (stdout, stderr, a file, a diff) a tool
/// returns in one call.
pub const STREAM_CAP: usize = 64 * 1024;

/// A successful tool result: `value` becomes the structured content, `text`
/// the one text block a model reads.
pub struct Out<T> {
    pub text: String,
    pub value: T,
}

impl<T> Out<T> {
    pub fn new(text: impl Into<String>, value: T) -> Self {
        Out {
            text: text.into(),
            value,
        }
    }
}

impl<T: Serialize> IntoCallToolResult for Out<T> {
    fn into_call_tool_result(self) -> Result<CallToolResponse, rmcp::ErrorData> {
        let mut value = serde_json::to_value(self.value)
            .map_err(|e| rmcp::ErrorData::internal_error(e.to_string(), None))?;
        // Absent rather than null: the listed schemas are non-nullable.
        crate::portable::drop_nulls(&mut value);
        let mut result = CallToolResult::success(vec![ContentBlock::text(self.text)]);
        result.structured_content = Some(value);
        Ok(result.into())
    }
}

/// Says in a tool's result that the call resumed suspended workspaces: a
/// line in its text, and `resumed` in its structured content.
pub fn note_resumes(
    mut response: CallToolResponse,
    resumed: &[pyro_core::Resumed],
) -> CallToolResponse {
    if resumed.is_empty() {
        return response;
    }
    if let CallToolResponse::Complete(result) = &mut response {
        for resumed in resumed {
            result
                .content
                .push(ContentBlock::text(format!("note: {}", resumed.line())));
        }
        if let Some(serde_json::Value::Object(object)) = &mut result.structured_content {
            if let Ok(value) = serde_json::to_value(resumed) {
                object.insert("resumed".into(), value);
            }
        }
    }
    response
}

/// A failure the model can act on: an `is_error` tool result carrying the
/// facade's message.
#[derive(Debug)]
pub struct ToolError(pub String);

impl IntoCallToolResult for ToolError {
    fn into_call_tool_result(self) -> Result<CallToolResponse, rmcp::ErrorData> {
        // A message may quote the guest: its escapes stay visible text.
        let text = pyro_util::text::visible_lines(&self.0).into_owned();
        Ok(CallToolResult::error(vec![ContentBlock::text(text)]).into())
    }
}

impl From<pyro_core::Error> for ToolError {
    fn from(error: pyro_core::Error) -> Self {
        let mut message = pyro_util::error_chain(&error);
        if let Some(hint) = error.hint() {
            message.push_str("; ");
            message.push_str(&hint.render(tool_call));
        }
        ToolError(message)
    }
}

impl From<pyro_core::InvalidRequest> for ToolError {
    fn from(error: pyro_core::InvalidRequest) -> Self {
        pyro_core::Error::from(error).into()
    }
}

tokio::task_local! {
    /// The tools the server answering this call offers: a hint names a
    /// tool outside them as one this server lacks. Set around each call
    /// by [`offering`]; unset (every tool assumed) elsewhere.
    static OFFERED: Arc<Vec<String>>;
}

/// Runs `call` with `tools` as the tools hints may name.
pub async fn offering<F: std::future::Future>(tools: Arc<Vec<String>>, call: F) -> F::Output {
    OFFERED.scope(tools, call).await
}

/// Whether this server offers `tool` (true outside [`offering`]).
fn offered(tool: &str) -> bool {
    OFFERED
        .try_with(|tools| tools.iter().any(|t| t == tool))
        .unwrap_or(true)
}

/// Said of a tool a hint names that this server's profile lacks.
const NOT_OFFERED: &str =
    "this server does not offer it: the user can restart it with --profile workspace-full";

/// A next step in the words of this server: the tool to call, with the
/// arguments that matter.
fn tool_call(action: &Action) -> String {
    let call = |tool: &str, args: String| {
        let mut notes: Vec<String> = Vec::new();
        if !args.is_empty() {
            notes.push(args);
        }
        if !offered(tool) {
            notes.push(NOT_OFFERED.into());
        }
        if notes.is_empty() {
            tool.to_string()
        } else {
            format!("{tool} ({})", notes.join("; "))
        }
    };
    let on = |tool: &str, workspace: &str| call(tool, format!("workspace \"{workspace}\""));
    let maybe_on = |tool: &str, workspace: &Option<String>| match workspace {
        Some(workspace) => on(tool, workspace),
        None => call(tool, String::new()),
    };
    match action {
        Action::ListWorkspaces => call("workspace_list", String::new()),
        Action::StartWorkspace { workspace } => on("workspace_start", workspace),
        Action::PowerOffWorkspace { workspace } => call(
            "workspace_stop",
            format!("workspace \"{workspace}\", power_off true"),
        ),
        Action::WorkspaceLogs { workspace } => maybe_on("workspace_logs", workspace),
        Action::WorkspaceStatus { workspace } => maybe_on("workspace_status", workspace),
        Action::ListFiles { workspace } => on("workspace_file_list", workspace),
        Action::SyncPush { workspace } => on("workspace_sync_push", workspace),
        Action::Exec { workspace, command } => call(
            "workspace_exec",
            format!("workspace \"{workspace}\", command \"{command}\""),
        ),
        Action::ListSnapshots { workspace } => on("workspace_snapshot_list", workspace),
        Action::ListShells { workspace } => on("workspace_shell_list", workspace),
        Action::OpenShell { workspace } => on("workspace_shell_open", workspace),
        Action::CloseShell { workspace } => on("workspace_shell_close", workspace),
        Action::SignalShell {
            workspace,
            shell,
            signal,
        } => call(
            "workspace_shell_signal",
            format!("workspace \"{workspace}\", shell \"{shell}\", signal \"{signal}\""),
        ),
        Action::ListServices { workspace } => on("workspace_service_list", workspace),
        Action::StopService { workspace, service } => call(
            "workspace_service_stop",
            format!("workspace \"{workspace}\", name \"{service}\""),
        ),
        // Only the user can pull or allow: the command to ask them for.
        Action::PullEnv { env, force: false } => user_runs(&format!("pyro env pull {env}")),
        Action::PullEnv { env, force: true } => user_runs(&format!("pyro env pull {env} --force")),
        Action::PullEnvAsRoot { env } => user_runs(&format!("sudo pyro env pull {env}")),
        Action::AllowHostPath => {
            "`pyro mcp serve --allow-host-path DIR` (the user restarts this server with it)".into()
        }
    }
}

/// A host command no tool can run, for the model to ask the user for.
fn user_runs(command: &str) -> String {
    format!("`{command}` (no tool does this: ask the user to run it on the host)")
}

/// The error when the VM thread is gone (it panicked).
pub fn gone() -> ToolError {
    ToolError("internal error: the pyro MCP server's VM thread stopped; restart the server".into())
}

/// What every tool returns.
pub type ToolResult<T> = Result<Out<T>, ToolError>;

/// The output schema of a tool returning `T`.
pub fn schema<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    rmcp::handler::server::common::schema_for_output::<T>()
}

/// A byte stream cut to [`STREAM_CAP`]: the text kept and how much was left.
#[derive(Debug, Default, Serialize, JsonSchema)]
pub struct Capped {
    /// The bytes kept (lossy UTF-8), at most 64 KiB.
    pub text: String,
    /// Bytes that were cut off the end and are not in `text`.
    pub truncated_bytes: u64,
}

/// Collects a stream up to [`STREAM_CAP`], counting what it drops.
#[derive(Debug, Default)]
pub struct CapBuffer {
    kept: Vec<u8>,
    dropped: u64,
}

impl CapBuffer {
    pub fn push(&mut self, bytes: &[u8]) {
        let room = STREAM_CAP.saturating_sub(self.kept.len());
        let take = room.min(bytes.len());
        self.kept.extend_from_slice(&bytes[..take]);
        self.dropped += (bytes.len() - take) as u64;
    }

    pub fn finish(self) -> Capped {
        Capped {
            text: String::from_utf8_lossy(&self.kept).into_owned(),
            truncated_bytes: self.dropped,
        }
    }
}

/// Two capped streams, for `OutputSink`.
#[derive(Debug, Default)]
pub struct CapSink {
    pub stdout: CapBuffer,
    pub stderr: CapBuffer,
    /// Bytes seen on both streams so far (kept or not), for progress.
    pub seen: Arc<AtomicU64>,
}

impl pyro_core::OutputSink for CapSink {
    fn stdout(&mut self, bytes: &[u8]) {
        self.seen.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.stdout.push(bytes);
    }
    fn stderr(&mut self, bytes: &[u8]) {
        self.seen.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        self.stderr.push(bytes);
    }
}

/// The text block for a command's output: each non-empty stream with its
/// truncation marker.
pub fn streams_text(stdout: &Capped, stderr: &Capped) -> String {
    let mut text = String::new();
    for (name, stream) in [("stdout", stdout), ("stderr", stderr)] {
        if stream.text.is_empty() && stream.truncated_bytes == 0 {
            continue;
        }
        text.push_str(&format!("--- {name} ---\n{}", stream.text));
        if !stream.text.ends_with('\n') {
            text.push('\n');
        }
        if stream.truncated_bytes > 0 {
            text.push_str(&format!(
                "[{name} truncated: {} more bytes; rerun with a narrower command or redirect \
                 to a file and read it with workspace_file_read]\n",
                stream.truncated_bytes
            ));
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hints_name_only_the_tools_this_server_offers() {
        let logs = Action::WorkspaceLogs {
            workspace: Some("api".into()),
        };
        assert_eq!(tool_call(&logs), "workspace_logs (workspace \"api\")");
        let core = Arc::new(vec!["workspace_list".to_string()]);
        let (logs_text, list_text) = offering(core, async {
            (tool_call(&logs), tool_call(&Action::ListWorkspaces))
        })
        .await;
        assert!(
            logs_text
                .starts_with("workspace_logs (workspace \"api\"; this server does not offer it"),
            "{logs_text}"
        );
        assert_eq!(list_text, "workspace_list");
        let pull = tool_call(&Action::PullEnv {
            env: "debian:12".into(),
            force: false,
        });
        assert!(
            pull.starts_with("`pyro env pull debian:12` (no tool"),
            "{pull}"
        );
    }

    #[test]
    fn cap_buffer_keeps_the_head_and_counts_the_rest() {
        let mut buffer = CapBuffer::default();
        buffer.push(&vec![b'a'; STREAM_CAP - 1]);
        buffer.push(b"bcd");
        let capped = buffer.finish();
        assert_eq!(capped.text.len(), STREAM_CAP);
        assert!(capped.text.ends_with('b'));
        assert_eq!(capped.truncated_bytes, 2);
        let text = streams_text(&capped, &Capped::default());
        assert!(text.contains("stdout truncated: 2 more bytes"), "{text}");
        assert!(!text.contains("stderr"));
    }
}
