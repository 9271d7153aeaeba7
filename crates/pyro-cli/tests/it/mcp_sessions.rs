//! Shells, services and the summary through `pyro mcp serve`, driven by
//! rmcp's client over stdio against a real VM: a python3 REPL in a shell, a
//! `\r` progress bar, an HTTP service ready by URL and reachable with curl,
//! a failing service with its logs, and the summary listing what happened.
//!
//! Run with: `cargo test -p pyro-cli --test it mcp_sessions::`.

use std::time::{Duration, Instant};

use crate::support::mcp::*;
use crate::support::*;
use serde_json::json;

/// Reads a shell until its accumulated text contains `needle`.
async fn read_until(client: &Client, ws: &str, shell: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = String::new();
    while !seen.contains(needle) {
        assert!(
            Instant::now() < deadline,
            "never saw {needle:?}; saw:\n{seen}"
        );
        let read = tool_ok(
            client,
            "workspace_shell_read",
            json!({"workspace": ws, "shell": shell, "wait_idle_ms": 300}),
        )
        .await;
        seen.push_str(read["text"].as_str().unwrap());
        seen.push('\n');
    }
    seen
}

async fn line(client: &Client, ws: &str, shell: &str, text: &str) {
    tool_ok(
        client,
        "workspace_shell_write",
        json!({"workspace": ws, "shell": shell, "line": text}),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shells_services_and_summary_through_mcp() {
    let home = TestHome::new();
    let client = serve(home.path(), home.path(), &["--profile", "workspace-full"]).await;
    let created = tool_ok(&client, "workspace_create", json!({"env": "debian:12"})).await;
    let ws = created["id"].as_str().unwrap().to_string();

    // A shell: python3 interactively, then a progress bar.
    let shell = tool_ok(&client, "workspace_shell_open", json!({"workspace": ws})).await;
    let shell = shell["shell"].as_str().unwrap().to_string();
    read_until(&client, &ws, &shell, "#").await;
    line(&client, &ws, &shell, "python3 -q").await;
    read_until(&client, &ws, &shell, ">>>").await;
    line(&client, &ws, &shell, "print(6 * 7)").await;
    let seen = read_until(&client, &ws, &shell, "42").await;
    assert!(!seen.contains('\x1b'), "{seen:?}");
    tool_ok(
        &client,
        "workspace_shell_write",
        json!({"workspace": ws, "shell": shell, "keys": ["ctrl-d"]}),
    )
    .await;
    line(
        &client,
        &ws,
        &shell,
        "for p in 0 50 100; do printf '\\rdone %3d%%' $p; sleep 0.1; done; echo",
    )
    .await;
    let seen = read_until(&client, &ws, &shell, "done 100%").await;
    assert!(!seen.contains("done  50%"), "{seen}");
    let closed = tool_ok(
        &client,
        "workspace_shell_close",
        json!({"workspace": ws, "shell": shell}),
    )
    .await;
    assert_eq!(closed["state"], "closed");
    let gone = call(
        &client,
        "workspace_shell_read",
        json!({"workspace": ws, "shell": shell}),
    )
    .await;
    assert_eq!(gone.is_error, Some(true));
    assert!(text(&gone).contains("been closed"), "{}", text(&gone));

    // A service ready by URL, reachable from exec.
    let web = tool_ok(
        &client,
        "workspace_service_start",
        json!({
            "workspace": ws, "name": "web",
            "command": "python3 -m http.server 8000",
            "ready_http_url": "http://127.0.0.1:8000/"
        }),
    )
    .await;
    assert_eq!(web["state"], "running", "{web}");
    let curl = tool_ok(
        &client,
        "workspace_exec",
        json!({"workspace": ws, "command": "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8000/"}),
    )
    .await;
    assert_eq!(curl["stdout"]["text"], "200", "{curl}");
    let logs = tool_ok(
        &client,
        "workspace_service_logs",
        json!({"workspace": ws, "name": "web", "tail_lines": 5}),
    )
    .await;
    assert!(logs["text"].as_str().unwrap().contains("GET /"), "{logs}");

    // workspace_exec can feed the command's stdin.
    let counted = tool_ok(
        &client,
        "workspace_exec",
        json!({"workspace": ws, "command": "wc -w", "stdin": "one two three"}),
    )
    .await;
    assert_eq!(
        counted["stdout"]["text"].as_str().unwrap().trim(),
        "3",
        "{counted}"
    );

    // A failing service: an error result with its logs.
    let failed = call(
        &client,
        "workspace_service_start",
        json!({
            "workspace": ws, "name": "broken",
            "command": "echo 'cannot bind: address in use' >&2; exit 4",
            "ready_tcp_port": 9
        }),
    )
    .await;
    assert_eq!(failed.is_error, Some(true));
    assert!(
        text(&failed).contains("exited with code 4"),
        "{}",
        text(&failed)
    );
    assert!(
        text(&failed).contains("address in use"),
        "{}",
        text(&failed)
    );
    let list = tool_ok(&client, "workspace_service_list", json!({"workspace": ws})).await;
    let states: Vec<(String, String)> = list["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_string(),
                s["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(states.contains(&("web".into(), "running".into())), "{list}");
    assert!(
        states.contains(&("broken".into(), "failed".into())),
        "{list}"
    );
    let stopped = tool_ok(
        &client,
        "workspace_service_stop",
        json!({"workspace": ws, "name": "web"}),
    )
    .await;
    assert_eq!(stopped["state"], "stopped");

    // The summary lists the services and the command run.
    let summary = call(&client, "workspace_summary", json!({"workspace": ws})).await;
    assert_ne!(summary.is_error, Some(true), "{}", text(&summary));
    let summary_text = text(&summary);
    assert!(summary_text.contains("web"), "{summary_text}");
    assert!(summary_text.contains("broken"), "{summary_text}");
    assert!(summary_text.contains("curl"), "{summary_text}");

    tool_ok(&client, "workspace_delete", json!({"workspace": ws})).await;
    client.cancel().await.expect("close the client");
}
