//! The idle timeout against real guests: a workspace nobody calls is
//! suspended by its supervisor (no QEMU left), a call in progress keeps it
//! awake, and the next call resumes it transparently, with every process
//! and service alive, and says so; through the CLI and a real MCP client.
//!
//! Run with: `cargo test -p pyro-cli --test it idle::`.

use std::time::Duration;

use crate::memory::{start_web, status, GET};
use crate::support::*;

/// Waits until the workspace reads as suspended; panics after a minute.
fn wait_suspended(home: &TestHome, ws: &str) {
    let suspended = wait_for(Duration::from_secs(60), || {
        (status(home, ws)["state"] == "suspended").then_some(())
    });
    assert!(suspended.is_some(), "never suspended: {}", status(home, ws));
}

#[test]
fn an_idle_workspace_is_suspended_and_the_next_call_resumes_it() {
    let home = TestHome::new();
    let id = home.create(&["--name", "napper", "--idle-timeout", "5s"]);
    let shown = stdout(&ok(home.run(&["workspace", "status", "napper"]), "status"));
    assert!(shown.contains("idle timeout:  5s"), "{shown}");
    ok(
        home.sh(
            "napper",
            "nohup sleep 1000 >/dev/null 2>&1 & echo $! > /root/pid",
        ),
        "background process",
    );
    start_web(&home, "napper");
    // A call that lasts longer than the timeout keeps it awake.
    ok(home.sh("napper", "sleep 7"), "a long call");
    assert_eq!(status(&home, "napper")["state"], "running");

    // A call that comes while the supervisor saves waits, then resumes it.
    let saving = home
        .path()
        .join("workspaces")
        .join(&id)
        .join("memory/suspend/sessions.json");
    let began = wait_for(Duration::from_secs(60), || saving.exists().then_some(()));
    assert!(began.is_some(), "the idle suspend never began");
    let during = ok(home.sh("napper", "echo awake"), "a call during the suspend");
    assert_eq!(stdout(&during), "awake\n");
    assert_eq!(status(&home, "napper")["state"], "running");

    let vm = home.vm_pids(&id);
    wait_suspended(&home, "napper");
    assert_gone(vm[0], "QEMU of the idle workspace");
    let list = stdout(&ok(home.run(&["workspace", "list"]), "list"));
    assert!(list.contains("suspended"), "{list}");

    let resumed = ok(
        home.sh("napper", "kill -0 $(cat /root/pid) && echo alive"),
        "a call on the suspended workspace",
    );
    assert_eq!(stdout(&resumed), "alive\n");
    assert!(
        stderr(&resumed).contains("was suspended") && stderr(&resumed).contains("resumed it"),
        "{}",
        stderr(&resumed)
    );
    assert_eq!(stdout(&ok(home.sh("napper", GET), "web")), "200\n");

    // Off: it stays up.
    ok(
        home.run(&["workspace", "update", "napper", "--idle-timeout", "off"]),
        "update",
    );
    std::thread::sleep(Duration::from_secs(8));
    assert_eq!(status(&home, "napper")["state"], "running");
    refused(
        home.run(&["workspace", "update", "napper", "--idle-timeout", "2s"]),
        "out of range",
    );
}

/// Through a real MCP client: a workspace created with an idle timeout
/// is suspended, and the next tool call resumes it and says so.
#[tokio::test]
async fn mcp_resumes_an_idle_workspace_transparently() {
    use crate::support::mcp::{serve, text, tool_ok};
    use serde_json::json;
    let home = TestHome::new();
    let cwd = tempfile::tempdir().unwrap();
    let client = serve(home.path(), cwd.path(), &[]).await;
    let created = tool_ok(
        &client,
        "workspace_create",
        json!({"name": "mnap", "idle_timeout": "5s"}),
    )
    .await;
    assert_eq!(created["idle_timeout"], "5s", "{created}");
    let started = json!({"workspace": "mnap",
        "command": "nohup sleep 1000 >/dev/null 2>&1 & echo $! > /root/pid"});
    tool_ok(&client, "workspace_exec", started).await;
    let mut state = String::new();
    for _ in 0..120 {
        let info = tool_ok(&client, "workspace_status", json!({"workspace": "mnap"})).await;
        state = info["state"].as_str().unwrap_or_default().to_string();
        if state == "suspended" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert_eq!(state, "suspended");
    let check = json!({"workspace": "mnap", "command": "kill -0 $(cat /root/pid) && echo alive"});
    let result = crate::support::mcp::call(&client, "workspace_exec", check).await;
    assert_ne!(result.is_error, Some(true), "{}", text(&result));
    assert!(
        text(&result).contains("this call resumed it"),
        "{}",
        text(&result)
    );
    let value = result.structured_content.unwrap();
    assert_eq!(value["stdout"]["text"], "alive\n", "{value}");
    assert_eq!(value["resumed"][0]["workspace"], "mnap", "{value}");
}
