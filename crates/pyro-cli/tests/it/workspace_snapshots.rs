//! Snapshots and reset against real VMs, and the end-to-end story of the
//! issue: create from a Git repo, failing tests, patch, passing tests, diff
//! shows exactly the fix, snapshot, break, reset, export, delete.

use crate::support::*;

#[test]
fn snapshots_capture_the_whole_disk_and_reset_restores_it() {
    let home = TestHome::new();
    let id = home.create(&["--name", "snap"]);
    // Outside /workspace too: a "package" installed under /usr/local.
    let setup = home.sh(
        "snap",
        "echo v1 > /usr/local/bin/tool-version && echo one > /workspace/file",
    );
    assert!(setup.status.success(), "{}", stderr(&setup));
    let taken = home.run(&["workspace", "snapshot", "create", "snap", "installed"]);
    assert!(taken.status.success(), "{}", stderr(&taken));
    let again = home.run(&["workspace", "snapshot", "create", "snap", "installed"]);
    assert_eq!(again.status.code(), Some(125));
    assert!(
        stderr(&again).contains("already exists"),
        "{}",
        stderr(&again)
    );
    let reserved = home.run(&["workspace", "snapshot", "create", "snap", "baseline"]);
    assert!(
        stderr(&reserved).contains("invalid snapshot name"),
        "{}",
        stderr(&reserved)
    );

    let broken = home.sh(
        "snap",
        "rm /usr/local/bin/tool-version && echo two > /workspace/file && touch /workspace/extra",
    );
    assert!(broken.status.success());

    let reset = home.run(&["workspace", "reset", "snap", "--snapshot", "installed"]);
    assert!(reset.status.success(), "{}", stderr(&reset));
    let state = home.sh(
        "snap",
        "cat /usr/local/bin/tool-version /workspace/file; ls /workspace",
    );
    assert_eq!(stdout(&state), "v1\none\nfile\n", "{}", stderr(&state));

    // Reset without a snapshot: exactly the state right after create.
    let reset = home.run(&["workspace", "reset", "snap"]);
    assert!(reset.status.success(), "{}", stderr(&reset));
    let state = home.sh(
        "snap",
        "test ! -e /usr/local/bin/tool-version && test -z \"$(ls -A /workspace)\" && echo clean",
    );
    assert_eq!(stdout(&state), "clean\n", "{}", stderr(&state));

    let listed = home.run(&["workspace", "snapshot", "list", "snap", "--json"]);
    let snapshots: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(snapshots[0]["name"], "installed");
    assert!(home
        .run(&["workspace", "snapshot", "delete", "snap", "installed"])
        .status
        .success());
    let missing = home.run(&["workspace", "reset", "snap", "--snapshot", "installed"]);
    assert!(
        stderr(&missing).contains("no snapshot 'installed'"),
        "{}",
        stderr(&missing)
    );
    // Reset works on a stopped workspace too, and boots it.
    assert!(home.run(&["workspace", "stop", "snap"]).status.success());
    assert!(home
        .run(&["workspace", "snapshot", "create", "snap", "offline"])
        .status
        .success());
    assert!(home
        .run(&["workspace", "reset", "snap", "--snapshot", "offline"])
        .status
        .success());
    assert!(home.sh(&id, "true").status.success());
}

const BUGGY: &str = "def add(a, b):\n    return a - b\n";
const TEST: &str =
    "from calc import add\nassert add(2, 3) == 5, 'add is broken'\nprint('tests pass')\n";
const FIX: &str = "diff --git a/calc.py b/calc.py\n--- a/calc.py\n+++ b/calc.py\n@@ -1,2 +1,2 @@\n def add(a, b):\n-    return a - b\n+    return a + b\n";

#[test]
fn the_end_to_end_story() {
    let repo = tempfile::tempdir().unwrap();
    std::fs::write(repo.path().join("calc.py"), BUGGY).unwrap();
    std::fs::write(repo.path().join("test_calc.py"), TEST).unwrap();
    std::fs::write(repo.path().join(".gitignore"), "__pycache__/\n").unwrap();
    // Sources older than the session, as in any checkout: a fix of the same
    // size written in the second the seed's files were (a create takes
    // well under one) would leave Python's bytecode cache, keyed on whole
    // seconds and size, looking current.
    let touched = std::process::Command::new("touch")
        .args(["-d", "1 hour ago", "calc.py", "test_calc.py"])
        .current_dir(repo.path())
        .status()
        .unwrap();
    assert!(touched.success());
    git(repo.path(), &["init", "-q"]);
    git(repo.path(), &["add", "-A"]);
    git(repo.path(), &["commit", "-qm", "calc"]);

    let home = TestHome::new();
    let id = home.create(&[
        "--name",
        "story",
        "--repo-url",
        &format!("file://{}", repo.path().display()),
    ]);
    let vm = home.vm_pids(&id);

    let failing = home.sh("story", "python3 test_calc.py");
    assert_eq!(failing.status.code(), Some(1));
    assert!(
        stderr(&failing).contains("add is broken"),
        "{}",
        stderr(&failing)
    );

    let patch = repo.path().join("fix.patch");
    std::fs::write(&patch, FIX).unwrap();
    let applied = home.run(&[
        "workspace",
        "patch",
        "apply",
        "story",
        "--patch-file",
        patch.to_str().unwrap(),
    ]);
    assert!(applied.status.success(), "{}", stderr(&applied));

    let passing = home.sh("story", "python3 test_calc.py");
    assert_eq!(stdout(&passing), "tests pass\n", "{}", stderr(&passing));

    let diff = home.run(&["workspace", "diff", "story"]);
    assert!(diff.status.success(), "{}", stderr(&diff));
    let text = stdout(&diff);
    assert!(
        text.contains("-    return a - b\n+    return a + b\n"),
        "{text}"
    );
    assert_eq!(
        text.matches("diff --git").count(),
        1,
        "exactly the fix: {text}"
    );

    assert!(home
        .run(&["workspace", "snapshot", "create", "story", "fixed"])
        .status
        .success());
    assert!(home
        .sh("story", "echo 'def add(a, b): return 0' > calc.py")
        .status
        .success());
    assert_eq!(
        home.sh("story", "python3 test_calc.py").status.code(),
        Some(1)
    );
    assert!(home
        .run(&["workspace", "reset", "story", "--snapshot", "fixed"])
        .status
        .success());
    assert_eq!(
        stdout(&home.sh("story", "python3 test_calc.py")),
        "tests pass\n"
    );

    let out = tempfile::tempdir().unwrap();
    let exported = out.path().join("calc.py");
    let export = home.run(&[
        "workspace",
        "export",
        "story",
        "calc.py",
        "--output",
        exported.to_str().unwrap(),
    ]);
    assert!(export.status.success(), "{}", stderr(&export));
    assert_eq!(
        std::fs::read_to_string(&exported).unwrap(),
        BUGGY.replace("a - b", "a + b")
    );

    let vm = home.vm_pids(&id).into_iter().chain(vm).collect::<Vec<_>>();
    assert!(home.run(&["workspace", "delete", "story"]).status.success());
    for pid in vm {
        assert_gone(pid, "QEMU after delete");
    }
    assert!(
        !home.path().join("workspaces").join(&id).exists(),
        "workspace files left behind"
    );
}
