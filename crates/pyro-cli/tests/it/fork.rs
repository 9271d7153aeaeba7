//! `workspace fork` against real guests: the fork is a running twin (the
//! parent's processes and services run in both, files written after are
//! each one's own), with its own identity and an empty diff; it outlives
//! its parent; a stopped workspace is refused (a snapshot of it is not);
//! a name taken is refused with nothing made; a parent killed while its
//! state is saved leaves no fork and no process behind. And the same
//! through a real MCP client.
//!
//! Run with: `cargo test -p pyro-cli --test it fork::`.

use crate::memory::{open_shell, settled_state, shell_says, start_web, status, workspace_dir, GET};
use crate::support::*;

/// 16 random bytes from the guest's kernel, its hostname and machine-id.
const IDENTITY: &str = "head -c16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; echo; \
    hostname; cat /etc/machine-id";

fn names(home: &TestHome) -> Vec<String> {
    let list = json(&ok(home.run(&["workspace", "list", "--json"]), "list"));
    list.as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap_or("").to_string())
        .collect()
}

#[test]
fn a_fork_is_a_running_twin_with_its_own_identity_and_outlives_its_parent() {
    let home = TestHome::new();
    let parent = home.create(&["--name", "par"]);
    ok(
        home.sh(
            "par",
            "echo shared > /workspace/a && nohup sleep 1000 >/dev/null 2>&1 & echo $! > /root/pid",
        ),
        "set up",
    );
    start_web(&home, "par");
    let shell = open_shell(&home, "par");
    shell_says(&home, "par", &shell, "export KEPT=twin; echo set", "set");

    let fork = json(&ok(
        home.run(&["workspace", "fork", "par", "--name", "kid", "--json"]),
        "fork",
    ));
    assert_eq!(fork["forked_from"], parent.as_str(), "{fork}");
    assert_eq!(fork["state"], "running", "{fork}");
    assert_eq!(fork["last_boot"]["how"], "restored", "{fork}");
    assert!(fork["parent_paused_ms"].as_u64().is_some(), "{fork}");
    assert_eq!(fork["restored"]["services"][0], "web", "{fork}");
    assert_eq!(fork["restored"]["shells"][0], shell.as_str(), "{fork}");

    // What ran before the fork runs in both.
    for ws in ["par", "kid"] {
        let alive = ok(home.sh(ws, "kill -0 $(cat /root/pid) && echo alive"), "pid");
        assert_eq!(stdout(&alive), "alive\n", "{ws}");
        assert_eq!(stdout(&ok(home.sh(ws, GET), "web")), "200\n", "{ws}");
        shell_says(&home, ws, &shell, "echo \"value=$KEPT\"", "value=twin");
    }
    // Its diff starts empty, though the parent's does not.
    let diff = |ws: &str| json(&ok(home.run(&["workspace", "diff", ws, "--json"]), "diff"));
    assert_eq!(diff("kid")["files"], serde_json::json!([]));
    assert_eq!(diff("par")["files"][0]["path"], "a");
    // Each its own machine.
    let (a, b) = (
        stdout(&ok(home.sh("par", IDENTITY), "identity")),
        stdout(&ok(home.sh("kid", IDENTITY), "identity")),
    );
    for (line_a, line_b) in a.lines().zip(b.lines()) {
        assert_ne!(line_a, line_b, "parent:\n{a}\nfork:\n{b}");
    }
    // Files written after the fork are each one's own.
    ok(home.sh("par", "echo p > /workspace/only-par"), "write");
    ok(home.sh("kid", "echo k > /workspace/only-kid"), "write");
    let ls = |ws: &str| stdout(&ok(home.sh(ws, "ls /workspace"), "ls"));
    assert_eq!(ls("par"), "a\nonly-par\n");
    assert_eq!(ls("kid"), "a\nonly-kid\n");

    // A name taken: refused, nothing made.
    refused(
        home.run(&["workspace", "fork", "kid", "--name", "par"]),
        "already exists",
    );
    assert_eq!(names(&home), ["par", "kid"]);

    // The fork holds its own disk: it lives on, and resets, without its parent.
    ok(home.run(&["workspace", "delete", "par"]), "delete parent");
    assert_eq!(
        stdout(&ok(home.sh("kid", "cat /workspace/a"), "read")),
        "shared\n"
    );
    ok(home.run(&["workspace", "reset", "kid"]), "reset");
    assert_eq!(ls("kid"), "a\n");
    ok(home.run(&["workspace", "stop", "kid"]), "suspend");
    ok(home.run(&["workspace", "start", "kid"]), "resume");
    assert_eq!(ls("kid"), "a\n");
}

#[test]
fn a_stopped_workspace_forks_from_its_snapshots_only() {
    let home = TestHome::new();
    home.create(&["--name", "src"]);
    start_web(&home, "src");
    ok(home.sh("src", "echo one > /workspace/f"), "write");
    ok(
        home.run(&["workspace", "snapshot", "create", "src", "serving"]),
        "snapshot",
    );
    ok(
        home.run(&[
            "workspace",
            "snapshot",
            "create",
            "src",
            "plain",
            "--disk-only",
        ]),
        "disk-only snapshot",
    );
    ok(home.sh("src", "echo two > /workspace/f"), "write");
    ok(
        home.run(&["workspace", "stop", "src", "--power-off"]),
        "power off",
    );

    let said = refused(home.run(&["workspace", "fork", "src"]), "is stopped");
    assert!(said.contains("pyro workspace start src"), "{said}");
    assert!(said.contains("snapshots"), "{said}");
    assert_eq!(names(&home), ["src"]);

    let fork = json(&ok(
        home.run(&[
            "workspace",
            "fork",
            "src",
            "--snapshot",
            "serving",
            "--name",
            "a",
            "--json",
        ]),
        "fork a snapshot",
    ));
    assert_eq!(fork["snapshot"], "serving", "{fork}");
    assert_eq!(fork["restored"]["services"][0], "web", "{fork}");
    assert_eq!(stdout(&ok(home.sh("a", GET), "web")), "200\n");
    assert_eq!(stdout(&home.sh("a", "cat /workspace/f")), "one\n");
    // The snapshot stays the parent's, whole.
    let kept = workspace_dir(&home, &home_id(&home, "src")).join("memory/snapshot-serving/state");
    assert!(kept.exists(), "the parent's snapshot memory went");

    let fork = json(&ok(
        home.run(&[
            "workspace",
            "fork",
            "src",
            "--snapshot",
            "plain",
            "--name",
            "b",
            "--json",
        ]),
        "fork a disk-only snapshot",
    ));
    assert_eq!(fork["last_boot"]["how"], "booted", "{fork}");
    assert_eq!(stdout(&home.sh("b", "cat /workspace/f")), "one\n");
    assert_eq!(status(&home, "src")["state"], "stopped");
}

fn home_id(home: &TestHome, name: &str) -> String {
    status(home, name)["id"].as_str().unwrap().to_string()
}

/// The parent's supervisor killed while it saves its state for a fork:
/// the fork fails and leaves nothing (no workspace, no QEMU, no files);
/// the parent reads as crashed, and a start brings it back.
#[test]
fn a_parent_killed_during_the_fork_leaves_no_fork_behind() {
    let home = TestHome::new();
    let id = home.create(&["--name", "victim"]);
    let supervisor = home.supervisor_pid(&id).unwrap();
    let vm = home.vm_pids(&id);
    let memory = workspace_dir(&home, &id).join("memory");
    let fork = home
        .pyro()
        .args(["workspace", "fork", "victim", "--name", "orphan"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let saving = wait_for(std::time::Duration::from_secs(60), || {
        std::fs::read_dir(&memory)
            .ok()?
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("fork-"))
            .then_some(())
    });
    assert!(saving.is_some(), "the fork never started saving");
    // SAFETY: kill(2) on the supervisor this test started.
    unsafe { libc::kill(supervisor as i32, libc::SIGKILL) };
    let output = fork.wait_with_output().unwrap();
    assert!(!output.status.success(), "{}", stdout(&output));
    assert!(
        stderr(&output).contains("the fork was deleted"),
        "{}",
        stderr(&output)
    );
    assert_gone(vm[0], "the parent's QEMU");
    assert_eq!(names(&home), ["victim"]);
    assert_eq!(settled_state(&home, "victim"), "crashed");
    let dirs: Vec<_> = std::fs::read_dir(home.path().join("workspaces"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name())
        .collect();
    assert_eq!(
        dirs,
        [std::ffi::OsString::from(&id)],
        "a fork's directory is left"
    );
    let left: Vec<_> = std::fs::read_dir(&memory)
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "memory states left: {left:?}");
    ok(home.run(&["workspace", "start", "victim"]), "start again");
    ok(home.sh("victim", "true"), "exec");
}

/// The `pyro` making a fork killed part-way: whatever it left can neither
/// start on the layers it shares with the parent nor harm them; the parent
/// runs on, and its files and its reset are as they were.
#[test]
fn a_fork_whose_caller_is_killed_never_touches_the_parent() {
    let home = TestHome::new();
    let id = home.create(&["--name", "keeper"]);
    ok(home.sh("keeper", "echo kept > /workspace/f"), "write");
    let mut fork = home
        .pyro()
        .args(["workspace", "fork", "keeper", "--name", "half"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let workspaces = home.path().join("workspaces");
    let other = wait_for(std::time::Duration::from_secs(60), || {
        std::fs::read_dir(&workspaces)
            .ok()?
            .flatten()
            .find(|e| e.path().is_dir() && e.file_name() != id.as_str())
    });
    assert!(other.is_some(), "the fork never began");
    fork.kill().unwrap();
    fork.wait().unwrap();
    // Whatever is left of it: it may not run, and then it is deleted.
    let left = home.run(&["workspace", "status", "half", "--json"]);
    if left.status.success() && json(&left)["state"] != "running" {
        let _ = home.run(&["workspace", "start", "half"]);
    }
    let _ = home.run(&["workspace", "delete", "half"]);
    assert_eq!(
        stdout(&ok(home.sh("keeper", "cat /workspace/f"), "read")),
        "kept\n"
    );
    ok(home.run(&["workspace", "reset", "keeper"]), "reset");
    assert_eq!(stdout(&ok(home.sh("keeper", "ls -A /workspace"), "ls")), "");
    ok(home.run(&["workspace", "stop", "keeper"]), "suspend");
    assert_eq!(stdout(&ok(home.sh("keeper", "ls -A /workspace"), "ls")), "");
}

/// Through a real MCP client: `workspace_fork` makes a twin whose diff is
/// empty, and a reset of the fork leaves the original alone.
#[tokio::test]
async fn mcp_forks_a_workspace_and_resets_the_fork() {
    use crate::support::mcp::{serve, tool_err, tool_ok};
    use serde_json::json;
    let home = TestHome::new();
    let cwd = tempfile::tempdir().unwrap();
    let client = serve(home.path(), cwd.path(), &["--profile", "workspace-full"]).await;
    tool_ok(&client, "workspace_create", json!({"name": "orig"})).await;
    let wrote = json!({"workspace": "orig", "command": "echo base > base.txt"});
    tool_ok(&client, "workspace_exec", wrote).await;
    let fork = tool_ok(
        &client,
        "workspace_fork",
        json!({"workspace": "orig", "name": "twin"}),
    )
    .await;
    assert_eq!(fork["name"], "twin", "{fork}");
    assert_eq!(fork["state"], "running", "{fork}");
    assert!(fork["parent_paused_ms"].as_u64().is_some(), "{fork}");
    let diff = tool_ok(&client, "workspace_diff", json!({"workspace": "twin"})).await;
    assert_eq!(diff["files"], json!([]), "{diff}");
    let wrote = json!({"workspace": "twin", "command": "echo mine > twin.txt"});
    tool_ok(&client, "workspace_exec", wrote).await;
    let diff = tool_ok(&client, "workspace_diff", json!({"workspace": "twin"})).await;
    assert_eq!(diff["files"][0]["path"], "twin.txt", "{diff}");
    tool_ok(&client, "workspace_reset", json!({"workspace": "twin"})).await;
    let look = json!({"workspace": "twin", "command": "ls"});
    let files = tool_ok(&client, "workspace_exec", look).await;
    assert_eq!(files["stdout"]["text"], "base.txt\n", "{files}");
    let look = json!({"workspace": "orig", "command": "ls"});
    let files = tool_ok(&client, "workspace_exec", look).await;
    assert_eq!(files["stdout"]["text"], "base.txt\n", "{files}");
    let taken = tool_err(
        &client,
        "workspace_fork",
        json!({"workspace": "orig", "name": "twin"}),
    )
    .await;
    assert!(taken.contains("already exists"), "{taken}");
}
