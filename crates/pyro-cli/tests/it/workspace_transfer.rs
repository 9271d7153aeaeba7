//! Seeding, `sync push` and `export` end to end through the `pyro` binary
//! against real VMs: trees cross the boundary as tar streams, and what
//! comes out of the guest is treated as hostile.

use std::path::Path;

use crate::support::*;

/// A small Git repository with two commits and a tag on the first.
fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(dir.path().join("version.txt"), "one\n").unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(dir.path().join("src/lib.py"), "x = 1\n").unwrap();
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-qm", "first"]);
    git(dir.path(), &["tag", "v1"]);
    std::fs::write(dir.path().join("version.txt"), "two\n").unwrap();
    git(dir.path(), &["commit", "-qam", "second"]);
    dir
}

#[test]
fn a_seeded_git_checkout_keeps_its_history_and_is_clean() {
    let home = TestHome::new();
    let source = repo();
    let id = home.create(&["--seed-path", source.path().to_str().unwrap()]);
    let output = home.sh(
        &id,
        "git status --porcelain; git log --format=%s; cat version.txt",
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output), "second\nfirst\ntwo\n");
}

#[test]
fn a_repo_url_is_cloned_at_the_requested_ref() {
    let home = TestHome::new();
    let source = repo();
    let url = format!("file://{}", source.path().display());
    let id = home.create(&["--repo-url", &url, "--repo-ref", "v1"]);
    let output = home.sh(&id, "cat version.txt; git log --format=%s | head -1");
    assert_eq!(stdout(&output), "one\nfirst\n", "{}", stderr(&output));

    let bad = home.run(&[
        "workspace",
        "create",
        ENV,
        "--repo-url",
        "file:///nonexistent/repo",
    ]);
    assert_eq!(bad.status.code(), Some(125));
    assert!(
        stderr(&bad).contains("repository URL 'file:///nonexistent/repo' is not usable"),
        "{}",
        stderr(&bad)
    );
    let missing = home.run(&[
        "workspace",
        "create",
        ENV,
        "--seed-path",
        "/nonexistent/dir",
    ]);
    assert!(
        stderr(&missing).contains("/nonexistent/dir is not a directory"),
        "{}",
        stderr(&missing)
    );
    // Failed creates leave no workspace behind.
    let listed = home.run(&["workspace", "list", "--json"]);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&listed.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn sync_push_copies_a_directory_under_dest() {
    let home = TestHome::new();
    let id = home.create(&[]);
    let changes = tempfile::tempdir().unwrap();
    std::fs::create_dir(changes.path().join("nested")).unwrap();
    std::fs::write(changes.path().join("nested/note.txt"), "from the host\n").unwrap();
    let script = changes.path().join("run.sh");
    std::fs::write(&script, "#!/bin/sh\necho ran\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    let pushed = home.run(&[
        "workspace",
        "sync",
        "push",
        &id,
        changes.path().to_str().unwrap(),
        "--dest",
        "incoming",
        "--json",
    ]);
    assert!(pushed.status.success(), "{}", stderr(&pushed));
    let report: serde_json::Value = serde_json::from_slice(&pushed.stdout).unwrap();
    assert_eq!(report["files"], 2);
    let output = home.sh(&id, "cat incoming/nested/note.txt && ./incoming/run.sh");
    assert_eq!(
        stdout(&output),
        "from the host\nran\n",
        "{}",
        stderr(&output)
    );

    let escape = home.run(&[
        "workspace",
        "sync",
        "push",
        &id,
        changes.path().to_str().unwrap(),
        "--dest",
        "../etc",
    ]);
    assert_eq!(escape.status.code(), Some(125));
    assert!(
        stderr(&escape).contains("not inside /workspace"),
        "{}",
        stderr(&escape)
    );
}

#[test]
fn export_brings_out_files_and_directories_and_nothing_else() {
    let home = TestHome::new();
    let id = home.create(&[]);
    let setup = home.sh(
        &id,
        "mkdir -p out/sub && echo data > out/sub/file.txt && printf '\\000\\001\\377' > out/bin && \
         ln -s /etc/passwd out/escape && ln -s sub/file.txt out/inside",
    );
    assert!(setup.status.success(), "{}", stderr(&setup));
    let host = tempfile::tempdir().unwrap();

    let dir_out = host.path().join("tree");
    let exported = home.run(&[
        "workspace",
        "export",
        &id,
        "out",
        "--output",
        dir_out.to_str().unwrap(),
    ]);
    assert!(exported.status.success(), "{}", stderr(&exported));
    assert_eq!(
        std::fs::read_to_string(dir_out.join("sub/file.txt")).unwrap(),
        "data\n"
    );
    assert_eq!(std::fs::read(dir_out.join("bin")).unwrap(), vec![0, 1, 255]);
    assert_eq!(
        std::fs::read_link(dir_out.join("inside")).unwrap(),
        Path::new("sub/file.txt")
    );
    // A link pointing out of the export is not recreated on the host.
    assert!(std::fs::symlink_metadata(dir_out.join("escape")).is_err());

    let file_out = host.path().join("file.txt");
    let exported = home.run(&[
        "workspace",
        "export",
        &id,
        "/workspace/out/sub/file.txt",
        "--output",
        file_out.to_str().unwrap(),
    ]);
    assert!(exported.status.success(), "{}", stderr(&exported));
    assert_eq!(std::fs::read_to_string(&file_out).unwrap(), "data\n");

    // Never merged into an existing output, never outside /workspace.
    let again = home.run(&[
        "workspace",
        "export",
        &id,
        "out",
        "--output",
        dir_out.to_str().unwrap(),
    ]);
    assert_eq!(again.status.code(), Some(125), "{}", stdout(&again));
    let outside = home.run(&[
        "workspace",
        "export",
        &id,
        "../etc/passwd",
        "--output",
        host.path().join("p").to_str().unwrap(),
    ]);
    assert!(
        stderr(&outside).contains("not inside /workspace"),
        "{}",
        stderr(&outside)
    );
    let missing = home.run(&[
        "workspace",
        "export",
        &id,
        "nope",
        "--output",
        host.path().join("n").to_str().unwrap(),
    ]);
    assert_eq!(missing.status.code(), Some(125));
    assert!(!host.path().join("n").exists());
}
