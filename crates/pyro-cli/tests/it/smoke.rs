//! The smoke pack: the five workflows, each the whole story on a real
//! project, through `pyro mcp serve` driven by an MCP client (rmcp's)
//! against real VMs. `scripts/smoke` runs these alone.

use serde_json::{json, Value};

use crate::support::fixtures::{self, calc, fixture, repo};
use crate::support::mcp::{serve, tool_err, tool_ok, Client};
use crate::support::*;

async fn exec(client: &Client, workspace: &str, command: &str) -> Value {
    let arguments = json!({"workspace": workspace, "command": command, "timeout_seconds": 600});
    tool_ok(client, "workspace_exec", arguments).await
}

/// A command result's stdout, then its stderr.
fn out(result: &Value) -> String {
    let text = |stream: &str| {
        result[stream]["text"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    text("stdout") + &text("stderr")
}

#[tokio::test(flavor = "multi_thread")]
async fn smoke_cold_start_installs_its_dependency_and_runs_its_tests() {
    let home = TestHome::new();
    let project = tempfile::tempdir().unwrap();
    fixtures::cold_start(project.path());
    let client = serve(
        home.path(),
        project.path(),
        &["--profile", "workspace-full"],
    )
    .await;
    let ws = tool_ok(&client, "workspace_create", json!({"mode": "cold-start"})).await;
    assert_eq!(ws["network"], "egress", "{ws}");
    let id = ws["id"].as_str().unwrap();
    let readme = tool_ok(
        &client,
        "workspace_file_read",
        json!({"workspace": id, "path": "README.md"}),
    )
    .await;
    assert!(readme["content"].as_str().unwrap().contains("pip install"));
    let install = exec(
        &client,
        id,
        "python3 -m venv .venv && .venv/bin/pip install -q -r requirements.txt",
    )
    .await;
    assert_eq!(install["exit_code"], 0, "{install}");
    let tests = exec(&client, id, ".venv/bin/python -m unittest -v").await;
    assert_eq!(tests["exit_code"], 0, "{tests}");
    assert!(out(&tests).contains("test_text_type) ... ok"), "{tests}");
    // A host off the package indexes stays closed, and says so.
    let denied = exec(
        &client,
        id,
        "curl -sS -m 10 https://example.com/ 2>&1; true",
    )
    .await;
    assert!(
        out(&denied).to_lowercase().contains("example.com"),
        "{denied}"
    );
    let summary = tool_ok(&client, "workspace_summary", json!({"workspace": id})).await;
    assert_eq!(summary["details"]["mode"], "cold-start");
    tool_ok(&client, "workspace_delete", json!({"workspace": id})).await;
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn smoke_repro_fix_resets_between_attempts_and_exports_the_fix() {
    let home = TestHome::new();
    let project = tempfile::tempdir().unwrap();
    calc(project.path(), "calc_buggy.py", &[]);
    let client = serve(
        home.path(),
        project.path(),
        &["--profile", "workspace-full"],
    )
    .await;
    let ws = tool_ok(&client, "workspace_create", json!({"mode": "repro-fix"})).await;
    let id = ws["id"].as_str().unwrap();
    let test = "python3 -m unittest -q";
    let failing = exec(&client, id, test).await;
    assert_eq!(failing["exit_code"], 1, "{failing}");
    assert!(out(&failing).contains("ZeroDivisionError"), "{failing}");
    let snap = json!({"workspace": id, "name": "repro"});
    tool_ok(&client, "workspace_snapshot_create", snap).await;
    let wrong = json!({"workspace": id, "patch": fixture("attempt_wrong.patch")});
    tool_ok(&client, "workspace_patch_apply", wrong).await;
    assert_eq!(exec(&client, id, test).await["exit_code"], 1);
    let back = json!({"workspace": id, "snapshot": "repro"});
    tool_ok(&client, "workspace_reset", back).await;
    let right = json!({"workspace": id, "patch": fixture("attempt_right.patch")});
    tool_ok(&client, "workspace_patch_apply", right).await;
    assert_eq!(exec(&client, id, test).await["exit_code"], 0);
    let diff = tool_ok(&client, "workspace_diff", json!({"workspace": id})).await;
    let patch = diff["patch"].as_str().unwrap();
    assert!(patch.contains("+    if not values:"), "{diff}");
    assert!(!patch.contains("TypeError"), "{diff}");
    let output = project.path().join("fixed.py");
    let export = json!({"workspace": id, "path": "calc/__init__.py", "output": output});
    tool_ok(&client, "workspace_export", export).await;
    assert_eq!(
        std::fs::read_to_string(&output).unwrap(),
        fixture("calc_fixed.py")
    );
    tool_ok(&client, "workspace_delete", json!({"workspace": id})).await;
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn smoke_parallel_branches_in_three_workspaces_do_not_cross() {
    let home = TestHome::new();
    let project = tempfile::tempdir().unwrap();
    fixtures::branches(project.path());
    let client = serve(home.path(), project.path(), &[]).await;
    let url = project.path().to_str().unwrap();
    let mut ids = Vec::new();
    for branch in ["main", "fix-a", "fix-b"] {
        let args = json!({
            "mode": "parallel", "repo_url": url, "repo_ref": branch,
            "name": format!("task-{branch}"), "labels": {"set": "smoke"},
        });
        let ws = tool_ok(&client, "workspace_create", args).await;
        ids.push(ws["id"].as_str().unwrap().to_string());
    }
    for (id, branch) in ids.iter().zip(["main", "fix-a", "fix-b"]) {
        let notes = exec(&client, id, "cat notes.txt").await;
        let want = if branch == "main" {
            "main\n".to_string()
        } else {
            format!("on {branch}\n")
        };
        assert_eq!(notes["stdout"]["text"], want.as_str(), "{notes}");
    }
    exec(&client, &ids[1], "echo done > result.txt").await;
    let other = exec(&client, &ids[2], "test -e result.txt; echo $?").await;
    assert_eq!(other["stdout"]["text"], "1\n");
    let listed = tool_ok(
        &client,
        "workspace_list",
        json!({"labels": {"set": "smoke"}}),
    )
    .await;
    assert_eq!(
        listed["workspaces"].as_array().unwrap().len(),
        3,
        "{listed}"
    );
    for id in &ids {
        tool_ok(&client, "workspace_delete", json!({"workspace": id})).await;
    }
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn smoke_untrusted_code_cannot_reach_out_read_the_host_or_break_the_workspace() {
    let home = TestHome::new();
    // A host file the script goes looking for.
    let secret = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(secret.path(), "HOST-SECRET-4f1c\n").unwrap();
    let project = tempfile::tempdir().unwrap();
    let script = format!(
        "curl -sS -m 5 https://collector.example/ 2>&1\n\
         cat {} 2>&1\n\
         grep -E ' (9p|virtiofs|nfs4?|fuse[.a-z]*) ' /proc/mounts || echo NO-HOST-MOUNTS\n\
         avail=$(df --output=avail -B1 /workspace | tail -1)\n\
         fallocate -l \"$avail\" fill 2>&1\n\
         echo more > more.txt 2>&1 || echo DISK-FULL\n",
        secret.path().display()
    );
    repo(project.path(), &[("setup.sh", script)]);
    let client = serve(
        home.path(),
        project.path(),
        &["--profile", "workspace-full"],
    )
    .await;
    let args = json!({"mode": "untrusted", "seed_path": project.path()});
    let ws = tool_ok(&client, "workspace_create", args).await;
    assert_eq!(
        (ws["network"].as_str(), ws["memory_mib"].as_u64()),
        (Some("off"), Some(512))
    );
    let id = ws["id"].as_str().unwrap();
    let ran = tool_ok(
        &client,
        "workspace_exec",
        json!({"workspace": id, "command": "sh setup.sh", "timeout_seconds": 120}),
    )
    .await;
    let said = out(&ran);
    assert!(said.contains("Could not resolve host"), "{said}");
    assert!(said.contains("No such file or directory"), "{said}");
    assert!(said.contains("DISK-FULL"), "{said}");
    assert!(said.contains("NO-HOST-MOUNTS"), "{said}");
    assert!(
        !said.contains("HOST-SECRET-4f1c\n"),
        "the host's file reached the guest: {said}"
    );
    // A full disk leaves the workspace answering; freed, it works on.
    assert_eq!(
        exec(&client, id, "rm fill && echo ok").await["stdout"]["text"],
        "ok\n"
    );
    let diff = tool_ok(&client, "workspace_diff", json!({"workspace": id})).await;
    assert!(
        diff["patch"].as_str().unwrap().contains("more.txt"),
        "{diff}"
    );
    let secret_set = json!({"workspace": id, "name": "TOKEN", "value": "abcdefgh1234"});
    let refused = tool_err(&client, "workspace_secret_set", secret_set).await;
    assert!(refused.contains("takes no secrets"), "{refused}");
    tool_ok(&client, "workspace_delete", json!({"workspace": id})).await;
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn smoke_review_applies_the_change_and_the_summary_shows_the_failure() {
    let home = TestHome::new();
    let project = tempfile::tempdir().unwrap();
    calc(project.path(), "calc_fixed.py", &[]);
    let client = serve(home.path(), project.path(), &[]).await;
    let ws = tool_ok(&client, "workspace_create", json!({"mode": "review"})).await;
    let id = ws["id"].as_str().unwrap();
    let change = json!({"workspace": id, "patch": fixture("proposed_median.patch")});
    tool_ok(&client, "workspace_patch_apply", change).await;
    let compiled = exec(&client, id, "python3 -m py_compile calc/__init__.py").await;
    assert_eq!(compiled["exit_code"], 0, "{compiled}");
    let tests = exec(&client, id, "python3 -m unittest -q").await;
    assert_eq!(tests["exit_code"], 1, "{tests}");
    assert!(out(&tests).contains("test_even"), "{tests}");
    let diff = tool_ok(&client, "workspace_diff", json!({"workspace": id})).await;
    assert!(diff["patch"]
        .as_str()
        .unwrap()
        .contains("+def median(values):"));
    let summary = tool_ok(&client, "workspace_summary", json!({"workspace": id})).await;
    assert_eq!(summary["commands_failed"], 1, "{summary}");
    assert_eq!(summary["files_changed"], 2, "{summary}");
    tool_ok(&client, "workspace_delete", json!({"workspace": id})).await;
    client.cancel().await.unwrap();
}
