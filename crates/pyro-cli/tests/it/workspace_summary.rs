//! `pyro workspace summary` end to end against real VMs: a scripted session
//! (commands, a write, a patch, a snapshot, an export) summarised as JSON
//! and as text, then emptied by a reset; and secrets given on a command
//! line never reaching the summary or the review log.

use crate::support::*;
use serde_json::Value;

const PATCH: &str = "\
--- a/app.py
+++ b/app.py
@@ -1,2 +1,2 @@
-x = 1
+x = 2
 y = 2
";

fn ok(output: &std::process::Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what} failed ({:?}): {}",
        output.status.code(),
        stderr(output)
    );
    stdout(output)
}

fn summary_json(home: &TestHome, workspace: &str) -> Value {
    let output = home.run(&["workspace", "summary", workspace, "--json"]);
    serde_json::from_str(&ok(&output, "summary --json")).expect("summary --json is JSON")
}

fn summary_text(home: &TestHome, workspace: &str) -> String {
    ok(&home.run(&["workspace", "summary", workspace]), "summary")
}

fn strings(value: &Value, field: &str) -> Vec<String> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("not an array: {value}"))
        .iter()
        .map(|item| item[field].as_str().unwrap().to_string())
        .collect()
}

#[test]
fn a_session_is_summarised_and_a_reset_empties_the_summary() {
    let home = TestHome::new();
    let seed = tempfile::tempdir().unwrap();
    std::fs::write(seed.path().join("app.py"), "x = 1\ny = 2\n").unwrap();
    std::fs::write(seed.path().join("README"), "read me\n").unwrap();
    home.create(&[
        "--name",
        "review",
        "--seed-path",
        seed.path().to_str().unwrap(),
    ]);

    // Right after create: nothing yet.
    let empty = summary_json(&home, "review");
    assert_eq!(empty["since"]["event"], "created", "{empty:#}");
    assert_eq!(empty["commands"], Value::Array(Vec::new()));
    assert_eq!(empty["files"], Value::Array(Vec::new()));

    ok(
        &home.run(&["workspace", "exec", "review", "--", "true"]),
        "true",
    );
    let failed = home.run(&["workspace", "exec", "review", "--", "false"]);
    assert_eq!(failed.status.code(), Some(1));
    ok(
        &home.run(&[
            "workspace",
            "file",
            "write",
            "review",
            "notes.md",
            "--content",
            "todo\n",
        ]),
        "file write",
    );
    let patch = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(patch.path(), PATCH).unwrap();
    ok(
        &home.run(&[
            "workspace",
            "patch",
            "apply",
            "review",
            "--patch-file",
            patch.path().to_str().unwrap(),
        ]),
        "patch apply",
    );
    ok(
        &home.run(&["workspace", "snapshot", "create", "review", "green"]),
        "snapshot",
    );
    let out = tempfile::tempdir().unwrap();
    let exported = out.path().join("app.py");
    let exported = exported.to_str().unwrap();
    ok(
        &home.run(&[
            "workspace",
            "export",
            "review",
            "app.py",
            "--output",
            exported,
        ]),
        "export",
    );

    let summary = summary_json(&home, "review");
    assert_eq!(summary["name"], "review");
    assert_eq!(summary["state"], "running");
    assert_eq!(summary["since"]["event"], "created");
    // Exactly the two commands, the failure first.
    assert_eq!(
        strings(&summary["commands"], "command"),
        ["false", "true"],
        "{summary:#}"
    );
    let commands = summary["commands"].as_array().unwrap();
    assert_eq!(
        (&commands[0]["failed"], &commands[0]["exit_code"]),
        (&Value::from(true), &Value::from(1))
    );
    assert_eq!(
        (&commands[1]["failed"], &commands[1]["exit_code"]),
        (&Value::from(false), &Value::from(0))
    );
    assert_eq!(
        (&summary["commands_run"], &summary["commands_failed"]),
        (&Value::from(2), &Value::from(1))
    );
    // Exactly the changed files, from the real diff.
    assert_eq!(summary["files_source"], "diff", "{summary:#}");
    assert_eq!(strings(&summary["files"], "path"), ["app.py", "notes.md"]);
    assert_eq!(strings(&summary["files"], "status"), ["modified", "added"]);
    assert_eq!(summary["snapshots_taken"], serde_json::json!(["green"]));
    assert_eq!(
        summary["exports"],
        serde_json::json!([{ "path": "app.py", "output": exported }])
    );

    let text = summary_text(&home, "review");
    for expected in [
        "Workspace review (",
        "Commands (2 run, 1 failed):\n  FAILED (exit 1, ",
        "): false\n  ok (exit 0, ",
        "): true\n",
        "Files changed (2):\n",
        "modified     app.py (+1 -1)\n",
        "added        notes.md (+1 -0)\n",
        "snapshots taken: green\n",
        &format!("exported /workspace/app.py -> {exported}\n"),
    ] {
        assert!(text.contains(expected), "missing {expected:?} in:\n{text}");
    }

    // After a reset: nothing since it.
    ok(&home.run(&["workspace", "reset", "review"]), "reset");
    let summary = summary_json(&home, "review");
    assert_eq!(summary["since"]["event"], "reset", "{summary:#}");
    for field in [
        "commands",
        "files",
        "snapshots_taken",
        "exports",
        "services",
    ] {
        assert_eq!(
            summary[field],
            Value::Array(Vec::new()),
            "{field}: {summary:#}"
        );
    }
    let text = summary_text(&home, "review");
    assert!(
        text.contains("since its reset to the baseline at ")
            && text.contains("\nNo commands run since the last reset.\n")
            && text.contains("\nNo files changed since the baseline.\n")
            && !text.contains("green"),
        "{text}"
    );

    // Stopped: no diff, and the summary says so instead of failing.
    ok(
        &home.run(&["workspace", "stop", "review", "--power-off"]),
        "stop",
    );
    let summary = summary_json(&home, "review");
    assert_eq!(summary["files_source"], "events");
    assert!(
        summary["files_note"]
            .as_str()
            .unwrap()
            .contains("the workspace is stopped"),
        "{summary:#}"
    );
}

#[test]
fn secrets_on_a_command_line_never_reach_the_summary_or_the_log() {
    let home = TestHome::new();
    let id = home.create(&[]);
    let run = home.run(&[
        "workspace",
        "exec",
        &id,
        "--env",
        "SESSION_KEY=sk-envonly",
        "--",
        "echo",
        "--token=abc123",
        "PASSWORD=hunter2",
        "--password",
        "hunter2",
        "https://bob:hunter2@git.example/r.git",
    ]);
    ok(&run, "exec with secrets");
    ok(
        &home.run(&[
            "workspace",
            "exec",
            &id,
            "--",
            "sh",
            "-c",
            "export API_TOKEN=abc123; true",
        ]),
        "script with a secret",
    );

    let json = ok(
        &home.run(&["workspace", "summary", &id, "--json"]),
        "summary --json",
    );
    let text = summary_text(&home, &id);
    let log = std::fs::read_to_string(
        home.path()
            .join("workspaces")
            .join(&id)
            .join("events.jsonl"),
    )
    .expect("the review log exists");
    for (what, content) in [("json", &json), ("text", &text), ("events.jsonl", &log)] {
        for secret in ["abc123", "hunter2", "sk-envonly", "SESSION_KEY"] {
            assert!(
                !content.contains(secret),
                "{secret} leaked into the {what}:\n{content}"
            );
        }
    }
    // The commands are still there, redacted.
    assert!(
        text.contains(
            "echo '--token=***' 'PASSWORD=***' --password '***' 'https://bob:***@git.example/r.git'"
        ),
        "{text}"
    );
    assert!(text.contains("export API_TOKEN=***; true"), "{text}");
}
