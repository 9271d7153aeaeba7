//! The recipes in `docs/use-cases/`, run as written: every line of every
//! `sh` block through `sh -c` (a trailing `# exits N` is the exit code it
//! must have, else 0), then every line of every `json` block as an MCP tool
//! call through `pyro mcp serve --profile workspace-full --project-path
//! project` (`$PROJECT` is that path; `"is_error": true` marks a call that
//! must fail, `"exit_code": N` the code a `workspace_exec` must report).

use std::path::Path;

use rmcp::model::CallToolRequestParams;
use serde_json::Value;

use crate::support::fixtures::{self, calc, fixture};
use crate::support::mcp::{serve, text};
use crate::support::*;

/// The lines of the ```` ```lang ```` blocks of `markdown`.
fn block_lines(markdown: &str, lang: &str) -> Vec<String> {
    let mut lines = Vec::new();
    let mut inside = false;
    for line in markdown.lines() {
        if inside && line.trim_start() == "```" {
            inside = false;
        } else if inside {
            if !line.trim().is_empty() && !line.trim_start().starts_with('#') {
                lines.push(line.to_string());
            }
        } else if line.trim() == format!("```{lang}") {
            inside = true;
        }
    }
    lines
}

/// The exit code a CLI line must have: its `# exits N`, else 0.
fn expected_exit(line: &str) -> i32 {
    line.rsplit_once("# exits ").map_or(0, |(_, code)| {
        code.trim().parse().expect("a number after `# exits`")
    })
}

/// Runs recipe `name` (docs/use-cases/NAME.md) in a directory that
/// `prepare` filled (its `project/` and anything beside it).
async fn recipe(name: &str, prepare: impl FnOnce(&Path)) {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("../../docs/use-cases/{name}.md"));
    let markdown = std::fs::read_to_string(&doc).unwrap();
    let dir = tempfile::tempdir().unwrap();
    prepare(dir.path());
    let project = dir.path().join("project");
    let home = TestHome::new();
    let bin = pyro_bin().parent().unwrap().to_path_buf();
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );

    let cli = block_lines(&markdown, "sh");
    assert!(cli.len() >= 5, "{name}: too few CLI lines");
    for line in &cli {
        let output = std::process::Command::new("sh")
            .args(["-c", line])
            .current_dir(dir.path())
            .env("PATH", &path)
            .env("PYRO_HOME", home.path())
            .output()
            .unwrap();
        assert_eq!(
            output.status.code(),
            Some(expected_exit(line)),
            "{name}: `{line}`\n{}\n{}",
            stdout(&output),
            stderr(&output)
        );
    }

    let project_arg = project.to_str().unwrap();
    let args = ["--profile", "workspace-full", "--project-path", project_arg];
    let client = serve(home.path(), dir.path(), &args).await;
    let calls = block_lines(&markdown, "json");
    assert!(calls.len() >= 5, "{name}: too few MCP calls");
    for line in &calls {
        let call: Value = serde_json::from_str(&line.replace("$PROJECT", project_arg))
            .unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {line}"));
        let tool = call["tool"].as_str().expect("a tool name").to_string();
        let Value::Object(arguments) = call["arguments"].clone() else {
            panic!("{name}: no arguments object: {line}")
        };
        let result = client
            .call_tool(CallToolRequestParams::new(tool.clone()).with_arguments(arguments))
            .await
            .unwrap_or_else(|e| panic!("{name}: {tool}: protocol error {e}"));
        let failed = result.is_error == Some(true);
        let want_error = call["is_error"].as_bool().unwrap_or(false);
        assert_eq!(failed, want_error, "{name}: {line}\n{}", text(&result));
        if let Some(code) = call.get("exit_code") {
            let content = result
                .structured_content
                .as_ref()
                .expect("a command result");
            assert_eq!(
                &content["exit_code"],
                code,
                "{name}: {line}\n{}",
                text(&result)
            );
        }
    }
    client.cancel().await.unwrap();
    let left = home.run(&["workspace", "list", "--json"]);
    assert_eq!(
        stdout(&left).trim(),
        "[]",
        "{name} leaves workspaces behind"
    );
}

fn write(path: &Path, content: &str) {
    std::fs::write(path, content).unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn recipe_repro_fix() {
    recipe("repro-fix", |dir| {
        calc(&dir.join("project"), "calc_buggy.py", &[]);
        write(&dir.join("wrong.patch"), &fixture("attempt_wrong.patch"));
        write(&dir.join("right.patch"), &fixture("attempt_right.patch"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn recipe_review() {
    recipe("review", |dir| {
        let change = [("median.patch", fixture("proposed_median.patch"))];
        calc(&dir.join("project"), "calc_fixed.py", &change);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn recipe_untrusted() {
    recipe("untrusted", |dir| {
        std::fs::create_dir(dir.join("project")).unwrap();
        write(&dir.join("project/setup.sh"), &fixture("setup.sh"));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn recipe_parallel() {
    recipe("parallel", |dir| fixtures::branches(&dir.join("project"))).await;
}

/// Reaches PyPI, like the cold-start demo and smoke test.
#[tokio::test(flavor = "multi_thread")]
async fn recipe_cold_start() {
    recipe("cold-start", |dir| {
        fixtures::cold_start(&dir.join("project"))
    })
    .await;
}

#[test]
fn the_recipe_index_lists_every_recipe() {
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/use-cases");
    let index = std::fs::read_to_string(docs.join("README.md")).unwrap();
    for mode in ["cold-start", "repro-fix", "parallel", "untrusted", "review"] {
        assert!(index.contains(&format!("]({mode}.md)")), "{mode}");
        assert!(docs.join(format!("{mode}.md")).exists(), "{mode}");
    }
}
