//! Workflow modes and the MCP prompts of the same names, end to end: the
//! CLI and an MCP client (rmcp's) against real VMs.

use rmcp::model::GetPromptRequestParams;
use serde_json::{json, Value};

use crate::support::mcp::{serve, tool_err, tool_ok};
use crate::support::*;

fn json_of(output: &std::process::Output) -> Value {
    assert!(output.status.success(), "{}", stderr(output));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn an_untrusted_workspace_is_small_offline_and_refuses_secrets() {
    let home = TestHome::new();
    let unknown = home.run(&["workspace", "create", ENV, "--mode", "yolo"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("unknown mode 'yolo'; the modes are cold-start, repro-fix"),
        "{}",
        stderr(&unknown)
    );

    let made = json_of(&home.run(&[
        "workspace",
        "create",
        ENV,
        "--mode",
        "untrusted",
        "--name",
        "box",
        "--json",
    ]));
    assert_eq!(made["mode"]["name"], "untrusted");
    assert!(made["mode"].get("overrides").is_none(), "{made}");
    assert_eq!(
        (made["cpus"].as_u64(), made["memory_mib"].as_u64()),
        (Some(1), Some(512))
    );
    assert_eq!(made["network"]["mode"], "off");
    assert_eq!(made["idle_timeout_secs"], 900);

    let status = home.run(&["workspace", "status", "box"]);
    assert!(
        stdout(&status).contains("mode:          untrusted\n"),
        "{}",
        stdout(&status)
    );
    let memory = home.sh("box", "awk '/MemTotal/ {print $2}' /proc/meminfo");
    let kib: u64 = stdout(&memory).trim().parse().unwrap();
    assert!(kib < 512 * 1024, "{kib} KiB");
    let secret = home.run_with_stdin(
        &["workspace", "secret", "set", "box", "TOKEN"],
        b"abcdefgh1234",
    );
    assert!(!secret.status.success());
    assert!(
        stderr(&secret).contains("untrusted mode, which takes no secrets"),
        "{}",
        stderr(&secret)
    );
    let summary = home.run(&["workspace", "summary", "box"]);
    assert!(
        stdout(&summary).contains(", untrusted mode, running"),
        "{}",
        stdout(&summary)
    );
}

#[test]
fn explicit_options_win_over_the_mode_and_the_record_says_so() {
    let home = TestHome::new();
    // The default size and no network: the default warm template serves it.
    let made = json_of(&home.run(&[
        "workspace",
        "create",
        ENV,
        "--mode",
        "cold-start",
        "--network",
        "off",
        "--cpus",
        "1",
        "--memory",
        "1024",
        "--idle-timeout",
        "off",
        "--json",
    ]));
    let notes: Vec<&str> = made["mode"]["overrides"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["note"].as_str().unwrap())
        .collect();
    assert_eq!(
        notes,
        [
            "1 vCPU as asked, not the mode's 2 vCPUs",
            "1024 MiB as asked, not the mode's 2048 MiB",
            "idle timeout off as asked, not the mode's 1h",
            "network off as asked, not the mode's egress to the package indexes",
        ]
    );
    assert_eq!(made["network"]["mode"], "off");
    assert!(made.get("idle_timeout_secs").is_none(), "{made}");
    let id = made["id"].as_str().unwrap();
    let status = stdout(&home.run(&["workspace", "status", id]));
    assert!(
        status.contains("mode:          cold-start (1 vCPU as asked"),
        "{status}"
    );
    ok(home.sh(id, "true"), "exec");
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_lists_five_prompts_and_creates_in_a_mode() {
    let home = TestHome::new();
    let project = crate::mcp::project();
    let client = serve(home.path(), project.path(), &[]).await;

    let prompts = client.list_all_prompts().await.unwrap();
    let names: Vec<&str> = prompts.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        ["cold-start", "repro-fix", "parallel", "untrusted", "review"]
    );
    let repro = prompts.iter().find(|p| p.name == "repro-fix").unwrap();
    let args = repro.arguments.as_ref().unwrap();
    assert_eq!(args[0].name, "failing_test");
    assert_eq!(args[0].required, Some(true));
    assert!(args[0].description.as_ref().unwrap().contains("failing"));

    let arguments = json!({"failing_test": "python3 -m pytest -k login"});
    let Value::Object(arguments) = arguments else {
        unreachable!()
    };
    let got = client
        .get_prompt(GetPromptRequestParams::new("repro-fix").with_arguments(arguments))
        .await
        .unwrap();
    let text = serde_json::to_value(&got.messages[0]).unwrap()["content"]["text"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(text.contains("python3 -m pytest -k login"), "{text}");
    assert!(
        text.contains("workspace_create with mode \"repro-fix\""),
        "{text}"
    );
    assert!(text.contains("it seeds the server's project"), "{text}");
    let missing = client
        .get_prompt(GetPromptRequestParams::new("repro-fix"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        missing.contains("needs the argument 'failing_test'"),
        "{missing}"
    );

    let bad = tool_err(&client, "workspace_create", json!({"mode": "yolo"})).await;
    assert!(bad.contains("unknown mode 'yolo'; the modes are"), "{bad}");
    // workspace-core gives no network: cold-start stays offline, and says so.
    let made = tool_ok(
        &client,
        "workspace_create",
        json!({"mode": "cold-start", "cpus": 1, "memory_mib": 1024}),
    )
    .await;
    assert_eq!(made["mode"], "cold-start");
    assert_eq!(made["network"], "off");
    let overrides = made["mode_overrides"].to_string();
    assert!(
        overrides.contains("network off: this server's profile gives workspaces no network"),
        "{overrides}"
    );
    let id = made["id"].as_str().unwrap();
    let summary = tool_ok(&client, "workspace_summary", json!({"workspace": id})).await;
    assert_eq!(summary["details"]["mode"], "cold-start");
    tool_ok(&client, "workspace_delete", json!({"workspace": id})).await;

    // Untrusted code gets the project only when the call names it.
    let boxed = tool_ok(&client, "workspace_create", json!({"mode": "untrusted"})).await;
    assert!(boxed["seed"].is_null(), "{boxed}");
    let id = boxed["id"].as_str().unwrap();
    let listed = tool_ok(
        &client,
        "workspace_file_list",
        json!({"workspace": id, "path": "."}),
    )
    .await;
    assert_eq!(
        listed["entries"].as_array().map(Vec::len),
        Some(0),
        "{listed}"
    );
    tool_ok(&client, "workspace_delete", json!({"workspace": id})).await;
    client.cancel().await.unwrap();
}
