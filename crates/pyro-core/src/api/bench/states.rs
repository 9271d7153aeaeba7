//! Memory-state rows: a reset to a snapshot with a running service, a
//! fork until the fork answers (and the parent's pause), a start after a
//! suspend; and the MCP rows of a running workspace: `workspace_exec` of
//! `true` and a file read, over one `pyro mcp serve`.

use std::ffi::OsStr;
use std::path::Path;
use std::time::Instant;

use super::floor::McpServer;
use super::{run_once, run_output, BenchOptions, Samples};
use crate::api::error::Error;

/// Calls over MCP per row: the median is of 20.
const MCP_CALLS: usize = 20;

/// Every row, in a throw-away home of its own.
pub(super) async fn rows(
    options: &BenchOptions,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Vec<Samples>, Error> {
    let home = tempfile::tempdir().map_err(|e| Error::Benchmark(format!("scratch home: {e}")))?;
    let envs = [("PYRO_HOME", home.path().as_os_str())];
    let program = options.program.as_os_str();
    let pyro = |args: &[&str]| {
        let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        let label = format!("pyro {}", args.join(" "));
        async move { run_once(&label, program, &args, &envs).await }
    };
    let runs = options.runs;
    let env = options.env.as_str();
    pyro(&["workspace", "create", env, "--name", "web"]).await?;
    pyro(&[
        "workspace",
        "service",
        "start",
        "web",
        "http",
        "--ready-http",
        "http://127.0.0.1:8000/",
        "--",
        "python3",
        "-m",
        "http.server",
        "8000",
    ])
    .await?;
    pyro(&["workspace", "snapshot", "create", "web", "serving"]).await?;

    progress(&format!(
        "reset to a snapshot with a running service, {runs} runs"
    ));
    let mut reset = Samples::new("`reset --snapshot` (a service running in it) + first exec");
    for _ in 0..runs {
        let back = pyro(&["workspace", "reset", "web", "--snapshot", "serving"]).await?;
        reset.push(back + pyro(&["workspace", "exec", "web", "--", "true"]).await?);
    }

    progress(&format!("fork until the fork answers, {runs} runs"));
    let mut fork = Samples::new("`workspace fork` + first exec in the fork");
    let mut paused = Samples::new("parent's pause during fork (ms; value)");
    for i in 0..runs {
        let name = format!("fork-{i}");
        let args = ["workspace", "fork", "web", "--name", &name, "--json"];
        let (took, json) = run_output("pyro workspace fork", program, &args, &envs).await?;
        fork.push(took + pyro(&["workspace", "exec", &name, "--", "true"]).await?);
        let report: serde_json::Value = serde_json::from_slice(&json)
            .map_err(|e| Error::Benchmark(format!("fork --json: {e}")))?;
        if let Some(ms) = report["parent_paused_ms"].as_u64() {
            paused.millis.push(ms as f64);
        }
        pyro(&["workspace", "delete", &name]).await?;
    }

    progress(&format!("start after suspend, {runs} runs"));
    let mut start = Samples::new("`start` after suspend (a service running) + first exec");
    let mut suspend = Samples::new("`stop` (suspend: memory to disk)");
    for _ in 0..runs {
        suspend.push(pyro(&["workspace", "stop", "web"]).await?);
        let up = pyro(&["workspace", "start", "web"]).await?;
        start.push(up + pyro(&["workspace", "exec", "web", "--", "true"]).await?);
    }

    progress(&format!(
        "MCP calls on a running workspace, {MCP_CALLS} each"
    ));
    pyro(&[
        "workspace",
        "exec",
        "web",
        "--",
        "sh",
        "-c",
        "echo hi > /workspace/f",
    ])
    .await?;
    let mcp = mcp_calls(program, home.path()).await?;
    pyro(&["workspace", "delete", "web"]).await?;
    let mut rows = vec![reset, fork, paused, suspend, start];
    rows.extend(mcp);
    Ok(rows)
}

/// `workspace_exec` of `true` and `workspace_file_read` on workspace
/// `web`, each [`MCP_CALLS`] times over one server.
async fn mcp_calls(program: &OsStr, home: &Path) -> Result<Vec<Samples>, Error> {
    let mut server = McpServer::start(program, Some(home)).await?;
    let calls = [
        (
            "MCP `workspace_exec` round trip (`true`)",
            "workspace_exec",
            serde_json::json!({ "workspace": "web", "command": "true" }),
        ),
        (
            "MCP `workspace_file_read` round trip (a small file)",
            "workspace_file_read",
            serde_json::json!({ "workspace": "web", "path": "f" }),
        ),
    ];
    let mut rows = Vec::new();
    for (label, tool, arguments) in calls {
        let mut samples = Samples::new(label);
        // One call first: the server's first use of the workspace.
        for n in 0..=MCP_CALLS {
            let call = serde_json::json!({ "name": tool, "arguments": arguments });
            let started = Instant::now();
            let result = server.request("tools/call", call).await?;
            let took = started.elapsed();
            if result["isError"] == true {
                server.stop().await;
                return Err(Error::Benchmark(format!("MCP {tool} failed: {result}")));
            }
            if n > 0 {
                samples.push(took);
            }
        }
        rows.push(samples);
    }
    server.stop().await;
    Ok(rows)
}
