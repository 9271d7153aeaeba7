//! Helpers for tests that drive `pyro mcp serve` with rmcp's client.

use std::path::Path;

use rmcp::model::{CallToolRequestParams, CallToolResult};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::Value;

use super::pyro_bin;

pub type Client = RunningService<RoleClient, ()>;

/// Starts `pyro mcp serve <args>` in `cwd` with `PYRO_HOME=home`.
pub async fn serve(home: &Path, cwd: &Path, args: &[&str]) -> Client {
    let mut command = tokio::process::Command::new(pyro_bin());
    command
        .args(["mcp", "serve"])
        .args(args)
        .current_dir(cwd)
        .env("PYRO_HOME", home);
    let transport = TokioChildProcess::new(command).expect("spawn pyro mcp serve");
    ().serve(transport).await.expect("initialize")
}

pub async fn call<S: rmcp::service::Service<RoleClient>>(
    client: &RunningService<RoleClient, S>,
    tool: &str,
    arguments: Value,
) -> CallToolResult {
    let Value::Object(arguments) = arguments else {
        panic!("arguments must be an object")
    };
    client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(arguments))
        .await
        .unwrap_or_else(|e| panic!("{tool}: protocol error {e}"))
}

/// Calls `tool`, asserts it succeeded, returns its structured content.
pub async fn tool_ok<S: rmcp::service::Service<RoleClient>>(
    client: &RunningService<RoleClient, S>,
    tool: &str,
    arguments: Value,
) -> Value {
    let result = call(client, tool, arguments).await;
    assert_ne!(
        result.is_error,
        Some(true),
        "{tool} failed: {}",
        text(&result)
    );
    result
        .structured_content
        .unwrap_or_else(|| panic!("{tool}: no structured content"))
}

/// Calls `tool`, asserts it failed as a tool result, returns its text.
pub async fn tool_err<S: rmcp::service::Service<RoleClient>>(
    client: &RunningService<RoleClient, S>,
    tool: &str,
    arguments: Value,
) -> String {
    let result = call(client, tool, arguments).await;
    assert_eq!(
        result.is_error,
        Some(true),
        "{tool} did not fail: {}",
        text(&result)
    );
    text(&result)
}

pub fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect()
}
