//! `pyro mcp serve` driven as a separate process through rmcp's client over
//! stdio: each profile's tools and schemas, the project-aware workflow
//! against a real VM, errors as tool results, and the same workflow through
//! the Python `mcp` package's client.

use std::path::Path;

use crate::support::mcp::*;
use crate::support::*;
use rmcp::model::{CallToolRequestParams, Tool};
use serde_json::{json, Value};

fn names(tools: &[Tool]) -> Vec<String> {
    let mut names: Vec<String> = tools.iter().map(|t| t.name.to_string()).collect();
    names.sort();
    names
}

const CORE: &[&str] = &[
    "workspace_create",
    "workspace_delete",
    "workspace_diff",
    "workspace_exec",
    "workspace_export",
    "workspace_file_list",
    "workspace_file_read",
    "workspace_file_write",
    "workspace_list",
    "workspace_patch_apply",
    "workspace_reset",
    "workspace_status",
    "workspace_summary",
];

const FULL_EXTRA: &[&str] = &[
    "workspace_disk_export",
    "workspace_disk_list",
    "workspace_disk_read",
    "workspace_fork",
    "workspace_logs",
    "workspace_port_publish",
    "workspace_port_unpublish",
    "workspace_secret_set",
    "workspace_secret_unset",
    "workspace_service_list",
    "workspace_service_logs",
    "workspace_service_start",
    "workspace_service_status",
    "workspace_service_stop",
    "workspace_shell_close",
    "workspace_shell_list",
    "workspace_shell_open",
    "workspace_shell_read",
    "workspace_shell_signal",
    "workspace_shell_write",
    "workspace_snapshot_create",
    "workspace_snapshot_delete",
    "workspace_snapshot_list",
    "workspace_start",
    "workspace_stop",
    "workspace_sync_push",
    "workspace_update",
];

fn check_schemas(tool: &Tool) {
    let name = &tool.name;
    assert!(
        tool.description.as_deref().is_some_and(|d| d.len() > 20),
        "{name}: no description"
    );
    assert!(tool.output_schema.is_some(), "{name}: no output schema");
    assert_eq!(
        tool.input_schema.get("additionalProperties"),
        Some(&json!(false)),
        "{name}: unknown fields are not denied"
    );
    if let Some(Value::Object(properties)) = tool.input_schema.get("properties") {
        for (field, schema) in properties {
            assert!(
                schema.get("description").is_some(),
                "{name}.{field} has no description"
            );
        }
    }
    // Portable: no type arrays, no nullable types, in inputs or outputs.
    let schemas = [
        Value::Object((*tool.input_schema).clone()),
        Value::Object((**tool.output_schema.as_ref().unwrap()).clone()),
    ];
    for schema in &schemas {
        assert_portable(name, schema);
    }
    let annotations = tool.annotations.as_ref().expect("annotations");
    assert_eq!(annotations.open_world_hint, Some(false), "{name}");
    assert!(annotations.read_only_hint.is_some(), "{name}");
    assert!(annotations.destructive_hint.is_some(), "{name}");
}

/// No `"type": [...]` and no `"null"` type anywhere in `schema`.
fn assert_portable(tool: &str, schema: &Value) {
    match schema {
        Value::Object(object) => {
            if let Some(kind) = object.get("type") {
                assert!(
                    kind.is_string() && kind != "null",
                    "{tool}: type {kind} in {schema}"
                );
            }
            object.values().for_each(|v| assert_portable(tool, v));
        }
        Value::Array(items) => items.iter().for_each(|v| assert_portable(tool, v)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_profile_lists_its_tools_with_schemas() {
    let home = tempfile::tempdir().unwrap();
    let mut full: Vec<&str> = [CORE, FULL_EXTRA].concat();
    full.sort();
    for (args, expected) in [
        (&[][..], CORE.to_vec()),
        (&["--profile", "workspace-core"][..], CORE.to_vec()),
        (&["--profile", "vm-run"][..], vec!["env_list", "vm_run"]),
        (&["--profile", "workspace-full"][..], full.clone()),
    ] {
        let client = serve(home.path(), home.path(), args).await;
        let info = client.peer_info().expect("server info");
        assert!(info
            .instructions
            .as_deref()
            .is_some_and(|i| i.contains("workspace") || i.contains("vm_run")));
        let tools = client.list_all_tools().await.unwrap();
        assert_eq!(names(&tools), expected, "profile {args:?}");
        tools.iter().for_each(check_schemas);
        if args.contains(&"vm-run") {
            // No arguments at all, as some clients send them.
            let result = client
                .call_tool(CallToolRequestParams::new("env_list"))
                .await
                .unwrap();
            assert_ne!(result.is_error, Some(true), "{}", text(&result));
        }
        client.cancel().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_calls_are_tool_errors_and_the_server_keeps_working() {
    let home = tempfile::tempdir().unwrap();
    let client = serve(home.path(), home.path(), &["--profile", "workspace-full"]).await;
    let result = call(&client, "workspace_status", json!({"workspace": "nope"})).await;
    assert_eq!(result.is_error, Some(true));
    assert!(
        text(&result).contains("no workspace 'nope'"),
        "{}",
        text(&result)
    );

    // Wrong type, unknown field, missing field: an error, never a crash.
    for arguments in [
        json!({"workspace": 5}),
        json!({"workspace": "x", "bogus": true}),
        json!({}),
    ] {
        match client
            .call_tool(
                CallToolRequestParams::new("workspace_status")
                    .with_arguments(arguments.as_object().unwrap().clone()),
            )
            .await
        {
            Ok(result) => assert_eq!(result.is_error, Some(true), "{arguments}"),
            Err(error) => assert!(error.to_string().contains("param"), "{error}"),
        }
    }
    let result = call(
        &client,
        "workspace_snapshot_list",
        json!({"workspace": "nope"}),
    )
    .await;
    assert_eq!(result.is_error, Some(true));
    let listed = tool_ok(&client, "workspace_list", json!({})).await;
    assert_eq!(listed["workspaces"], json!([]));

    // Errors say what to do in this server's words: tools, not `pyro ...`.
    for (tool, arguments, next) in [
        (
            "workspace_status",
            json!({"workspace": "nope"}),
            "workspace_list",
        ),
        (
            "workspace_snapshot_list",
            json!({"workspace": "nope"}),
            "workspace_list",
        ),
        (
            "workspace_shell_list",
            json!({"workspace": "nope"}),
            "workspace_list",
        ),
        (
            "workspace_exec",
            json!({"workspace": "nope", "command": "true"}),
            "workspace_list",
        ),
        (
            "workspace_exec",
            json!({"workspace": "nope", "command": "true", "argv": ["true"]}),
            "not both",
        ),
        (
            "workspace_service_start",
            json!({"workspace": "nope", "name": "web", "command": "x",
            "ready_file": "f", "ready_tcp_port": 80}),
            "one readiness check",
        ),
    ] {
        let result = call(&client, tool, arguments).await;
        assert_eq!(result.is_error, Some(true), "{tool}");
        let text = text(&result);
        assert!(text.contains(next), "{tool}: {text}");
        assert!(
            !text.contains("pyro workspace"),
            "{tool} names the CLI: {text}"
        );
    }
    client.cancel().await.unwrap();
}

/// A Git checkout with a Python module and its test.
pub fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(
        dir.path().join("calc.py"),
        "def add(a, b):\n    return a - b\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("test_calc.sh"),
        "grep -q 'return a + b' calc.py && echo PASS || { echo FAIL; exit 1; }\n",
    )
    .unwrap();
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-qm", "first"]);
    dir
}

pub const FIX: &str = "--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n";

#[tokio::test(flavor = "multi_thread")]
async fn project_aware_workflow_against_a_real_vm() {
    let home = TestHome::new();
    let repo = project();
    std::fs::create_dir(repo.path().join("sub")).unwrap();
    // Started in a subdirectory: the repo root is still found.
    let client = serve(home.path(), &repo.path().join("sub"), &[]).await;
    let created = tool_ok(&client, "workspace_create", json!({"name": "mcp-flow"})).await;
    let id = created["id"].as_str().unwrap().to_string();
    assert_eq!(created["state"], "running");

    let read = tool_ok(
        &client,
        "workspace_file_read",
        json!({"workspace": id, "path": "calc.py"}),
    )
    .await;
    assert!(
        read["content"].as_str().unwrap().contains("return a - b"),
        "{read}"
    );
    let page = tool_ok(
        &client,
        "workspace_file_read",
        json!({"workspace": "mcp-flow", "path": "calc.py", "offset": 4, "max_bytes": 3}),
    )
    .await;
    assert_eq!(page["content"], "add");
    assert_eq!(page["next_offset"], 7);

    let failing = tool_ok(
        &client,
        "workspace_exec",
        json!({"workspace": id, "command": "sh test_calc.sh"}),
    )
    .await;
    assert_eq!(failing["exit_code"], 1, "{failing}");
    assert!(failing["stdout"]["text"].as_str().unwrap().contains("FAIL"));

    let rejected = tool_err(
        &client,
        "workspace_patch_apply",
        json!({"workspace": id, "patch": FIX.replace("a - b", "a * b")}),
    )
    .await;
    assert!(rejected.contains("does not apply"), "{rejected}");
    let patched = tool_ok(
        &client,
        "workspace_patch_apply",
        json!({"workspace": id, "patch": FIX}),
    )
    .await;
    assert_eq!(patched["files"][0]["path"], "calc.py");

    let passing = tool_ok(
        &client,
        "workspace_exec",
        json!({"workspace": id, "command": "sh test_calc.sh"}),
    )
    .await;
    assert_eq!(passing["exit_code"], 0, "{passing}");

    let big = tool_ok(
        &client,
        "workspace_exec",
        json!({"workspace": id, "command": "head -c 70000 /dev/zero | tr '\\0' x"}),
    )
    .await;
    assert_eq!(big["stdout"]["truncated_bytes"], 70000 - 65536);

    let outside = tool_err(
        &client,
        "workspace_file_read",
        json!({"workspace": id, "path": "../etc/passwd"}),
    )
    .await;
    assert!(outside.contains("/workspace"), "{outside}");

    let diff = tool_ok(&client, "workspace_diff", json!({"workspace": id})).await;
    assert_eq!(diff["files"][0]["path"], "calc.py");
    assert!(diff["patch"]
        .as_str()
        .unwrap()
        .contains("+    return a + b"));

    // Into the project (the server refuses host paths outside it).
    let output = repo.path().join("calc.exported.py");
    tool_ok(
        &client,
        "workspace_export",
        json!({"workspace": id, "path": "calc.py", "output": output}),
    )
    .await;
    assert!(std::fs::read_to_string(&output).unwrap().contains("a + b"));

    tool_ok(&client, "workspace_reset", json!({"workspace": id})).await;
    let diff = tool_ok(&client, "workspace_diff", json!({"workspace": id})).await;
    assert_eq!(diff["files"], json!([]));
    // The hint names the snapshot list, which this profile lacks, as such.
    let unknown = tool_err(
        &client,
        "workspace_reset",
        json!({"workspace": id, "snapshot": "nope"}),
    )
    .await;
    assert!(
        unknown.contains(
            "workspace_snapshot_list (workspace \"mcp-flow\"; this server does not offer it"
        ),
        "{unknown}"
    );

    tool_ok(&client, "workspace_delete", json!({"workspace": id})).await;
    tool_err(&client, "workspace_status", json!({"workspace": id})).await;
    client.cancel().await.unwrap();
}

#[test]
fn python_mcp_client_runs_the_workflow() {
    let probe = std::process::Command::new("python3")
        .args(["-c", "import mcp"])
        .output()
        .expect("python3 must be installed");
    assert!(
        probe.status.success(),
        "the Python `mcp` package is missing; install it with: pip install mcp\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let home = TestHome::new();
    let repo = project();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/mcp_python_client.py");
    let output = std::process::Command::new("python3")
        .arg(script)
        .arg(pyro_bin())
        .current_dir(repo.path())
        .env("PYRO_HOME", home.path())
        .output()
        .expect("run python3");
    assert!(
        output.status.success(),
        "python client failed:\n{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(
        stdout(&output).contains("python mcp client: ok"),
        "{}",
        stdout(&output)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn vm_run_profile_runs_one_command_in_a_fresh_vm() {
    let home = TestHome::new();
    let client = serve(home.path(), home.path(), &["--profile", "vm-run"]).await;
    let envs = tool_ok(&client, "env_list", json!({})).await;
    assert!(envs["environments"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["name"] == ENV && e["installed"] == true));
    let result = call(
        &client,
        "vm_run",
        json!({"argv": ["sh", "-c", "echo hi; echo oops >&2; exit 3"]}),
    )
    .await;
    let run = result.structured_content.clone().expect("structured");
    assert_eq!(run["exit_code"], 3, "{run}");
    assert_eq!(run["stdout"]["text"], "hi\n");
    assert_eq!(run["stderr"]["text"], "oops\n");
    assert!(text(&result).starts_with("exit 3"), "{}", text(&result));
    let missing = call(
        &client,
        "vm_run",
        json!({"env": "nope:1", "command": "true"}),
    )
    .await;
    assert_eq!(missing.is_error, Some(true), "{}", text(&missing));
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn workspace_full_tools_snapshot_stop_start_sync_and_update() {
    let home = TestHome::new();
    let repo = project();
    let extra = tempfile::tempdir().unwrap();
    std::fs::write(extra.path().join("notes.txt"), "synced\n").unwrap();
    let allow = extra.path().to_str().unwrap();
    let client = serve(
        home.path(),
        repo.path(),
        &["--profile", "workspace-full", "--allow-host-path", allow],
    )
    .await;
    let id = tool_ok(&client, "workspace_create", json!({})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let ws = json!({"workspace": id});
    tool_ok(
        &client,
        "workspace_patch_apply",
        json!({"workspace": id, "patch": FIX}),
    )
    .await;
    tool_ok(
        &client,
        "workspace_snapshot_create",
        json!({"workspace": id, "name": "fixed"}),
    )
    .await;
    let listed = tool_ok(&client, "workspace_snapshot_list", ws.clone()).await;
    assert_eq!(listed["snapshots"][0]["name"], "fixed");

    let synced = tool_ok(
        &client,
        "workspace_sync_push",
        json!({"workspace": id, "source": extra.path(), "dest": "in"}),
    )
    .await;
    assert_eq!(synced["files"], 1);

    tool_ok(
        &client,
        "workspace_reset",
        json!({"workspace": id, "snapshot": "fixed"}),
    )
    .await;
    let run = tool_ok(&client, "workspace_exec", json!({"workspace": id, "command": "sh test_calc.sh; test -e in/notes.txt || echo no-notes"})).await;
    let stdout = run["stdout"]["text"].as_str().unwrap();
    assert!(
        stdout.contains("PASS") && stdout.contains("no-notes"),
        "{run}"
    );

    let stopped = tool_ok(
        &client,
        "workspace_stop",
        json!({"workspace": id, "power_off": true}),
    )
    .await;
    assert_eq!(stopped["state"], "stopped");
    let refused = call(
        &client,
        "workspace_exec",
        json!({"workspace": id, "command": "true"}),
    )
    .await;
    assert_eq!(refused.is_error, Some(true));
    assert!(text(&refused).contains("stopped"), "{}", text(&refused));
    let started = tool_ok(&client, "workspace_start", ws.clone()).await;
    assert_eq!(started["state"], "running");

    let updated = tool_ok(
        &client,
        "workspace_update",
        json!({"workspace": id, "name": "renamed", "labels": {"task": "7"}}),
    )
    .await;
    assert_eq!(updated["name"], "renamed");
    assert_eq!(updated["labels"]["task"], "7");
    let logs = tool_ok(&client, "workspace_logs", json!({"workspace": "renamed"})).await;
    assert!(!logs["console"].as_str().unwrap().is_empty());
    tool_ok(
        &client,
        "workspace_snapshot_delete",
        json!({"workspace": "renamed", "name": "fixed"}),
    )
    .await;
    tool_ok(&client, "workspace_delete", json!({"workspace": "renamed"})).await;
    client.cancel().await.unwrap();
}
