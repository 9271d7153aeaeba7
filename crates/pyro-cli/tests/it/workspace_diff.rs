//! `pyro workspace diff` end to end against real VMs: what changed in
//! /workspace since the baseline recorded at create, as a patch, per file
//! (`--json`) and as a summary (`--stat`).

use crate::support::*;
use serde_json::Value;

/// A small Git repository: two text files, a script, an ignored file.
fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(dir.path().join("version.txt"), "one\n").unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/lib.py"), "x = 1\ny = 2\n").unwrap();
    std::fs::write(dir.path().join("run.sh"), "echo run\n").unwrap();
    std::fs::write(dir.path().join(".gitignore"), "*.log\n").unwrap();
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-qm", "first"]);
    dir
}

fn diff(home: &TestHome, id: &str, extra: &[&str]) -> String {
    let output = home.run(&[&["workspace", "diff", id], extra].concat());
    assert!(output.status.success(), "diff failed: {}", stderr(&output));
    stdout(&output)
}

fn diff_json(home: &TestHome, id: &str) -> Value {
    serde_json::from_str(&diff(home, id, &["--json"])).expect("diff --json is JSON")
}

fn sh_ok(home: &TestHome, id: &str, script: &str) {
    let output = home.sh(id, script);
    assert!(output.status.success(), "{script}: {}", stderr(&output));
}

/// The file entry for `path` in a `--json` report.
fn entry<'a>(report: &'a Value, path: &str) -> &'a Value {
    report["files"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["path"] == path)
        .unwrap_or_else(|| panic!("{path} not in {report:#}"))
}

#[test]
fn every_kind_of_change_shows_and_a_revert_empties_the_diff() {
    let home = TestHome::new();
    let source = repo();
    let id = home.create(&["--seed-path", source.path().to_str().unwrap()]);

    // Right after create: nothing changed, the user's .git included.
    assert_eq!(diff(&home, &id, &[]), "");
    assert_eq!(
        diff(&home, &id, &["--stat"]),
        "no changes since the baseline\n"
    );
    let report = diff_json(&home, &id);
    assert_eq!(report["files_changed"], 0);
    assert_eq!(report["patch"], "");
    // The baseline came from the host: one pack, no loose objects.
    let objects = ok(
        home.sh(
            &id,
            "cd /var/lib/pyro/baseline.git/objects && ls pack/*.pack | wc -l \
             && find . -mindepth 1 -maxdepth 1 -name '??' | wc -l",
        ),
        "count baseline objects",
    );
    assert_eq!(
        stdout(&objects),
        "1\n0\n",
        "the baseline was recorded in the guest"
    );

    sh_ok(
        &home,
        &id,
        "sed -i 's/y = 2/y = 3/' src/lib.py && echo new > added.txt && rm version.txt \
         && chmod +x run.sh && printf 'PNG\\000\\001\\002binary' > image.bin \
         && echo noise > build.log \
         && git add -A && git -c user.name=a -c user.email=a@b commit -qm work",
    );
    let patch = diff(&home, &id, &[]);
    for expected in [
        "diff --git a/src/lib.py b/src/lib.py\n",
        "-y = 2\n+y = 3\n",
        "diff --git a/added.txt b/added.txt\nnew file mode 100644\n",
        "+new\n",
        "diff --git a/version.txt b/version.txt\ndeleted file mode 100644\n",
        "-one\n",
        "diff --git a/run.sh b/run.sh\nold mode 100644\nnew mode 100755\n",
        "Binary files /dev/null and b/image.bin differ\n",
    ] {
        assert!(
            patch.contains(expected),
            "missing {expected:?} in:\n{patch}"
        );
    }
    assert!(!patch.contains("PNG"), "binary content dumped:\n{patch}");
    // Ignored by the repo's .gitignore, as `git status` would.
    assert!(!patch.contains("+noise"), "ignored file shown:\n{patch}");
    // The user's commit changed .git, which diff never shows.
    assert!(!patch.contains(".git/"), "{patch}");

    let report = diff_json(&home, &id);
    assert_eq!(report["files_changed"], 5, "{report:#}");
    assert_eq!(report["insertions"], 2);
    assert_eq!(report["deletions"], 2);
    let lib = entry(&report, "src/lib.py");
    assert_eq!(
        (&lib["status"], &lib["insertions"], &lib["deletions"]),
        (&Value::from("modified"), &Value::from(1), &Value::from(1))
    );
    assert_eq!(entry(&report, "added.txt")["status"], "added");
    assert_eq!(entry(&report, "version.txt")["status"], "deleted");
    let script = entry(&report, "run.sh");
    assert_eq!(script["status"], "mode_changed");
    assert_eq!(
        (&script["old_mode"], &script["new_mode"]),
        (&Value::from("100644"), &Value::from("100755"))
    );
    let image = entry(&report, "image.bin");
    assert_eq!(
        (&image["status"], &image["binary"]),
        (&Value::from("added"), &Value::from(true))
    );
    assert!(
        report["files"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["path"] != "build.log"),
        "ignored file listed: {report:#}"
    );
    assert_eq!(report["truncated"], false);

    let stat = diff(&home, &id, &["--stat"]);
    for expected in [
        " modified     src/lib.py  | +1 -1\n",
        " mode_changed run.sh      | +0 -0 (mode 100644 => 100755)\n",
        " added        image.bin   | binary\n",
        " deleted      version.txt | +0 -1\n",
        " 5 files changed, 2 insertions(+), 2 deletions(-)\n",
    ] {
        assert!(stat.contains(expected), "missing {expected:?} in:\n{stat}");
    }

    // Undo everything (the user's history keeps its commit): empty again.
    sh_ok(
        &home,
        &id,
        "sed -i 's/y = 3/y = 2/' src/lib.py && rm added.txt image.bin build.log \
         && echo one > version.txt && chmod -x run.sh",
    );
    assert_eq!(diff(&home, &id, &[]), "");
    assert_eq!(diff_json(&home, &id)["files_changed"], 0);
}

#[test]
fn an_unseeded_workspace_has_a_baseline_and_its_own_repo_is_no_change() {
    let home = TestHome::new();
    let id = home.create(&[]);
    assert_eq!(diff(&home, &id, &[]), "");
    sh_ok(&home, &id, "mkdir -p a/b && seq 1 50 > a/b/numbers.txt");
    let report = diff_json(&home, &id);
    let numbers = entry(&report, "a/b/numbers.txt");
    assert_eq!(
        (&numbers["status"], &numbers["insertions"]),
        (&Value::from("added"), &Value::from(50))
    );

    // A repository the agent makes itself is content like any other; its
    // .git is not.
    sh_ok(
        &home,
        &id,
        "git init -q . && git add -A && git -c user.name=a -c user.email=a@b commit -qm one",
    );
    let report = diff_json(&home, &id);
    assert_eq!(report["files_changed"], 1, "{report:#}");

    // A file that did not exist at the baseline, moved, is still added.
    sh_ok(&home, &id, "git mv a/b/numbers.txt moved.txt");
    let report = diff_json(&home, &id);
    assert_eq!(report["files_changed"], 1, "{report:#}");
    assert_eq!(entry(&report, "moved.txt")["status"], "added");
}

#[test]
fn a_rename_is_one_entry_with_its_old_path() {
    let home = TestHome::new();
    let source = repo();
    let id = home.create(&["--seed-path", source.path().to_str().unwrap()]);
    sh_ok(&home, &id, "mv src/lib.py src/core.py");
    let report = diff_json(&home, &id);
    assert_eq!(report["files_changed"], 1, "{report:#}");
    let moved = entry(&report, "src/core.py");
    assert_eq!(
        (&moved["status"], &moved["old_path"]),
        (&Value::from("renamed"), &Value::from("src/lib.py"))
    );
    let patch = diff(&home, &id, &[]);
    assert!(
        patch.contains("rename from src/lib.py\nrename to src/core.py\n"),
        "{patch}"
    );
    assert!(diff(&home, &id, &["--stat"]).contains("src/lib.py => src/core.py"));
}

#[test]
fn a_nested_repository_without_commits_is_a_warning_not_a_failure() {
    let home = TestHome::new();
    let id = home.create(&[]);
    sh_ok(
        &home,
        &id,
        "mkdir empty-repo && git -C empty-repo init -q && echo x > top.txt",
    );
    let output = home.run(&["workspace", "diff", &id, "--json"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(entry(&report, "top.txt")["status"], "added");
    assert!(
        report["warnings"][0]
            .as_str()
            .unwrap()
            .contains("'empty-repo/' does not have a commit checked out"),
        "{report:#}"
    );
}

#[test]
fn an_environment_without_git_gets_a_clear_message() {
    let home = TestHome::new();
    let pulled = pyro()
        .args(["env", "pull", "debian:12-base"])
        .output()
        .unwrap();
    assert!(pulled.status.success(), "{}", stderr(&pulled));
    let created = home.run(&["workspace", "create", "debian:12-base", "--id-only"]);
    assert!(
        created.status.success(),
        "create failed: {}",
        stderr(&created)
    );
    let id = stdout(&created).trim().to_string();
    let output = home.run(&["workspace", "diff", &id]);
    assert_eq!(output.status.code(), Some(125));
    assert!(
        stderr(&output)
            .contains("diff needs git in the environment (debian:12 has it); workspace '")
            && stderr(&output).contains("runs debian:12-base, which lacks it"),
        "{}",
        stderr(&output)
    );
}
