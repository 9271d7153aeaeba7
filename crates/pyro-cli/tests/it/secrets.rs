//! Secrets end to end against real VMs: kept on the host outside the
//! workspace, given to a command only where its call names them, and
//! redacted as `[secret:NAME]` from exec output (also when the guest
//! writes the value in pieces), service logs, shell reads, events, the
//! summary, the logs and MCP results. Then every file of the workspace's
//! state directory, and every host process's command line, is searched
//! for the value.

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::mcp::{serve, tool_ok};
use crate::support::*;

/// A value no output contains by chance.
const VALUE: &str = "pyro-S3cret-7f3a9c";

/// Every file under `dir` whose bytes contain `needle`.
fn files_holding(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).unwrap().flatten() {
                stack.push(entry.path());
            }
        } else if meta.is_file() {
            let bytes = std::fs::read(&path).unwrap_or_default();
            if bytes.windows(needle.len()).any(|w| w == needle) {
                found.push(path.display().to_string());
            }
        }
    }
    found
}

/// Host processes whose command line holds `needle`.
fn processes_holding(needle: &[u8]) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        if cmdline.windows(needle.len()).any(|w| w == needle) {
            found.push(String::from_utf8_lossy(&cmdline).replace('\0', " "));
        }
    }
    found
}

/// Writes `line` to shell `shell` of workspace `sec`, and reads until the
/// screen shows `words`; no read may show a secret's value.
fn shell_shows(home: &TestHome, shell: &str, line: &str, words: &str) {
    let write = ["workspace", "shell", "write", "sec", shell, "--line", line];
    ok(home.run(&write), "shell write");
    let read = [
        "workspace",
        "shell",
        "read",
        "sec",
        shell,
        "--wait-idle",
        "300",
    ];
    let shown = wait_for(Duration::from_secs(30), || {
        let screen = stdout(&ok(home.run(&read), "shell read"));
        assert!(
            !screen.contains(VALUE) && !screen.contains("late-value-123"),
            "{screen}"
        );
        screen.contains(words).then_some(())
    });
    assert!(shown.is_some(), "the shell never showed {words:?}");
}

#[test]
fn secrets_reach_only_the_commands_that_name_them_and_never_show() {
    let home = TestHome::new();
    let scratch = scratch_dir();
    let file = scratch.path().join("token");
    std::fs::write(&file, format!("{VALUE}\n")).unwrap();
    let from_file = format!("TOKEN={}", file.display());

    // Bad secrets are refused before anything is made.
    refused(
        home.run(&["workspace", "create", "debian:12", "--secret", "1X=abcdef"]),
        "not an identifier",
    );
    refused(
        home.run(&[
            "workspace",
            "create",
            "debian:12",
            "--secret-file",
            "T=/nope",
        ]),
        "cannot read secret `T`",
    );
    let listed = json(&ok(home.run(&["workspace", "list", "--json"]), "list"));
    assert_eq!(listed, json!([]), "a refused create left a workspace");

    let id = home.create(&["--name", "sec", "--secret-file", &from_file]);
    let stored = home.path().join("secrets").join(format!("{id}.json"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&stored).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "the secret file is not private");
    let names = json(&ok(
        home.run(&["workspace", "secret", "list", "sec", "--json"]),
        "list",
    ));
    assert_eq!(names["secrets"], json!(["TOKEN"]));

    // The issue's own command: whole values, and values in 3-byte pieces.
    let script = "echo $TOKEN; printf \"x%sy\\n\" \"$TOKEN\"; sleep 0.1; \
                  printf %s \"$TOKEN\" | dd bs=3 2>/dev/null";
    let output = ok(
        home.run(&[
            "workspace",
            "exec",
            "sec",
            "--secret-env",
            "TOKEN",
            "--",
            "sh",
            "-c",
            script,
        ]),
        "exec with the secret",
    );
    assert_eq!(
        stdout(&output),
        "[secret:TOKEN]\nx[secret:TOKEN]y\n[secret:TOKEN]",
        "{}",
        stderr(&output)
    );
    // Under another variable name; on stderr; and only when named.
    let output = ok(
        home.run(&[
            "workspace",
            "exec",
            "sec",
            "--secret-env",
            "GH=TOKEN",
            "--",
            "sh",
            "-c",
            "printf %s \"$GH\" | wc -c; echo \"$GH\" >&2; echo ${TOKEN:-unset}",
        ]),
        "exec with GH=TOKEN",
    );
    assert_eq!(stdout(&output), format!("{}\nunset\n", VALUE.len()));
    assert!(
        stderr(&output).contains("[secret:TOKEN]"),
        "{}",
        stderr(&output)
    );
    let output = home.run(&[
        "workspace",
        "exec",
        "sec",
        "--secret-env",
        "NOPE",
        "--",
        "true",
    ]);
    assert!(
        stderr(&output).contains("no secret `NOPE`") && stderr(&output).contains("TOKEN"),
        "{}",
        stderr(&output)
    );
    // A value typed into a command line is hidden too.
    let output = ok(
        home.run(&["workspace", "exec", "sec", "--", "echo", VALUE]),
        "echo",
    );
    assert_eq!(stdout(&output), "[secret:TOKEN]\n");

    // A second secret through standard input, never the command line.
    ok(
        home.run_with_stdin(
            &["workspace", "secret", "set", "sec", "OTHER"],
            b"second-value-xyz\n",
        ),
        "secret set",
    );
    let output = ok(
        home.run(&[
            "workspace",
            "exec",
            "sec",
            "--secret-env",
            "OTHER",
            "--",
            "sh",
            "-c",
            "echo \"$OTHER\"",
        ]),
        "exec OTHER",
    );
    assert_eq!(stdout(&output), "[secret:OTHER]\n");

    // No host process shows the value while a command holds it.
    let mut running = home
        .pyro()
        .args([
            "workspace",
            "exec",
            "sec",
            "--secret-env",
            "TOKEN",
            "--",
            "sleep",
            "3",
        ])
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let holders = processes_holding(VALUE.as_bytes());
    running.wait().unwrap();
    assert!(
        holders.is_empty(),
        "host processes show the value: {holders:?}"
    );

    // Services and shells.
    ok(
        home.run(&[
            "workspace",
            "service",
            "start",
            "sec",
            "leak",
            "--secret-env",
            "TOKEN",
            "--ready-file",
            "/tmp/ready",
            "--",
            "sh",
            "-c",
            "echo \"svc $TOKEN\"; touch /tmp/ready; exec sleep 600",
        ]),
        "service start",
    );
    let logs = stdout(&ok(
        home.run(&["workspace", "service", "logs", "sec", "leak"]),
        "logs",
    ));
    assert!(logs.contains("svc [secret:TOKEN]"), "{logs}");
    let shell = stdout(&ok(
        home.run(&[
            "workspace",
            "shell",
            "open",
            "sec",
            "--secret-env",
            "TOKEN",
            "--id-only",
        ]),
        "shell open",
    ))
    .trim()
    .to_string();
    shell_shows(&home, &shell, "echo \"sh $TOKEN\"", "sh [secret:TOKEN]");
    // A secret set while the shell runs is hidden from it at once.
    ok(
        home.run_with_stdin(
            &["workspace", "secret", "set", "sec", "LATE"],
            b"late-value-123",
        ),
        "secret set",
    );
    shell_shows(&home, &shell, "echo late-value-123", "[secret:LATE]");

    // Nothing pyro shows or keeps holds the value.
    let shown = [
        home.run(&["workspace", "summary", "sec"]),
        home.run(&["workspace", "summary", "sec", "--json"]),
        home.run(&["workspace", "logs", "sec"]),
        home.run(&["workspace", "status", "sec"]),
        home.run(&["workspace", "service", "list", "sec", "--json"]),
    ];
    for output in &shown {
        let all = format!("{}{}", stdout(output), stderr(output));
        assert!(!all.contains(VALUE), "the value shows: {all}");
    }
    let summary = stdout(&shown[0]);
    assert!(summary.contains("[secret:TOKEN]"), "{summary}");
    let state_dir = home.path().join("workspaces").join(&id);
    // Powered off: a suspend would keep the guest's memory, which holds
    // what the guest was given (docs/secrets.md).
    ok(
        home.run(&["workspace", "stop", "sec", "--power-off"]),
        "stop",
    );
    let holding = files_holding(&state_dir, VALUE.as_bytes());
    assert!(
        holding.is_empty(),
        "state files hold the value: {holding:?}"
    );

    ok(home.run(&["workspace", "delete", "sec"]), "delete");
    assert!(!stored.exists(), "the secrets outlived their workspace");
}

#[tokio::test]
async fn mcp_takes_secrets_only_through_their_tool_and_never_echoes_them() {
    let home = TestHome::new();
    let cwd = tempfile::tempdir().unwrap();
    let client = serve(home.path(), cwd.path(), &["--profile", "workspace-full"]).await;
    let created = tool_ok(&client, "workspace_create", json!({"name": "msec"})).await;
    let set = tool_ok(
        &client,
        "workspace_secret_set",
        json!({"workspace": "msec", "name": "TOKEN", "value": VALUE}),
    )
    .await;
    assert_eq!(set["secrets"], json!(["TOKEN"]));
    let result = tool_ok(
        &client,
        "workspace_exec",
        json!({"workspace": "msec", "command": "echo $TOKEN; printf %s \"$TOKEN\" | dd bs=2 2>/dev/null",
               "secret_env": ["TOKEN"]}),
    )
    .await;
    assert_eq!(
        result["stdout"]["text"], "[secret:TOKEN]\n[secret:TOKEN]",
        "{result}"
    );
    let summary = tool_ok(&client, "workspace_summary", json!({"workspace": "msec"})).await;
    for value in [&created, &set, &result, &summary] {
        let text: String = serde_json::to_string(value).unwrap();
        assert!(
            !text.contains(VALUE),
            "an MCP result holds the value: {text}"
        );
    }
    let unset: Value = tool_ok(
        &client,
        "workspace_secret_unset",
        json!({"workspace": "msec", "name": "TOKEN"}),
    )
    .await;
    assert_eq!(unset["secrets"], json!([]));
    client.cancel().await.unwrap();
}
