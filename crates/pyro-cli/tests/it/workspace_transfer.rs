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

    // A program named by a relative path runs from the command's directory.
    let relative = home.run(&["workspace", "exec", &id, "--", "./incoming/run.sh"]);
    assert_eq!(stdout(&relative), "ran\n", "{}", stderr(&relative));

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

/// `export` goes through the VM's transfer disk: a large file comes out
/// whole, and a guest that writes its own archive onto the disk (here a
/// `tar` of its own that names `../`) gets nothing past the output, and
/// leaves no transfer file behind.
#[test]
fn export_through_the_transfer_disk_is_whole_and_hostile_archives_stay_out() {
    let home = TestHome::new();
    let id = home.create(&[]);
    ok(
        home.sh(
            &id,
            "head -c 50000000 /dev/urandom > big.bin && sha256sum big.bin > big.sum",
        ),
        "make a big file",
    );
    let sum = stdout(&ok(home.sh(&id, "cut -d' ' -f1 big.sum"), "sum"));
    let host = tempfile::tempdir().unwrap();
    let out = host.path().join("big.bin");
    ok(
        home.run(&[
            "workspace",
            "export",
            &id,
            "big.bin",
            "--output",
            out.to_str().unwrap(),
        ]),
        "export",
    );
    let hashed = std::process::Command::new("sha256sum")
        .arg(&out)
        .output()
        .unwrap();
    assert!(
        stdout(&hashed).starts_with(sum.trim()),
        "{}",
        stdout(&hashed)
    );

    let fake = r#"mkdir -p /usr/local/bin && cat > /usr/local/bin/tar <<'EOF2'
#!/bin/sh
exec python3 -c '
import io, sys, tarfile
t = tarfile.open(sys.argv[1], "w")
data = b"escaped"
info = tarfile.TarInfo("../escape.txt"); info.size = len(data)
t.addfile(info, io.BytesIO(data)); t.close()
' /dev/vdc
EOF2
chmod +x /usr/local/bin/tar"#;
    ok(home.sh(&id, fake), "a tar of the guest's own");
    let hostile = host.path().join("sub").join("out");
    std::fs::create_dir(host.path().join("sub")).unwrap();
    let output = home.run(&[
        "workspace",
        "export",
        &id,
        "big.bin",
        "--output",
        hostile.to_str().unwrap(),
    ]);
    assert!(!output.status.success(), "{}", stdout(&output));
    assert!(!host.path().join("escape.txt").exists());
    assert!(!host.path().join("sub/escape.txt").exists());
    assert!(!hostile.exists());
    let dir = home.path().join("workspaces").join(&id);
    assert!(
        !dir.join("transfer.img").exists(),
        "the transfer file is gone"
    );
}

/// `sync push` goes through the transfer disk too: each push reads what
/// that push packed, never what an earlier push or export left in the
/// guest's view of the device, a push the guest refuses says why and frees
/// the slot, and no transfer file stays behind.
#[test]
fn sync_push_through_the_transfer_disk_reads_each_push_fresh() {
    let home = TestHome::new();
    let id = home.create(&[]);
    let dir = home.path().join("workspaces").join(&id);
    let tree = tempfile::tempdir().unwrap();
    let push = |dest: &str| {
        home.run(&[
            "workspace",
            "sync",
            "push",
            &id,
            tree.path().to_str().unwrap(),
            "--dest",
            dest,
        ])
    };
    // A tar that notes how it was called: the pushes read the device.
    let wrapper = "mkdir -p /usr/local/bin && printf '#!/bin/sh\\necho \"$*\" >> /tmp/tar.args\\nexec /bin/tar \"$@\"\\n' > /usr/local/bin/tar && chmod +x /usr/local/bin/tar";
    ok(home.sh(&id, wrapper), "a tar wrapper");
    let big: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(tree.path().join("note.txt"), "one\n").unwrap();
    std::fs::write(tree.path().join("big.bin"), &big).unwrap();
    ok(push("d"), "first push");
    let host = tempfile::tempdir().unwrap();
    let out = host.path().join("d");
    ok(
        home.run(&[
            "workspace",
            "export",
            &id,
            "d",
            "--output",
            out.to_str().unwrap(),
        ]),
        "export",
    );
    assert_eq!(std::fs::read(out.join("big.bin")).unwrap(), big);

    // Same names and sizes, other bytes.
    let other: Vec<u8> = big.iter().map(|b| b ^ 0x5a).collect();
    std::fs::write(tree.path().join("note.txt"), "two\n").unwrap();
    std::fs::write(tree.path().join("big.bin"), &other).unwrap();
    ok(push("d"), "second push");
    let sums = home.sh(&id, "cat d/note.txt; sha256sum d/big.bin | cut -c1-64");
    let expected = std::process::Command::new("sha256sum")
        .arg(tree.path().join("big.bin"))
        .output()
        .unwrap();
    assert_eq!(
        stdout(&sums),
        format!("two\n{}\n", &stdout(&expected)[..64]),
        "{}",
        stderr(&sums)
    );

    // A file where the destination directory would go.
    let refused = push("d/note.txt");
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("copying into the guest failed"),
        "{}",
        stderr(&refused)
    );
    ok(push("e"), "a push after a refused one");
    let calls = stdout(&home.sh(&id, "cat /tmp/tar.args"));
    // Three pushes (the refused one stopped at its mkdir) and the export.
    let pushes = calls
        .matches("-x -p --no-same-owner -b 2048 -f /dev/vdc")
        .count();
    assert_eq!(pushes, 3, "{calls}");
    assert_eq!(
        calls.matches("-c -b 2048 -f /dev/vdc").count(),
        1,
        "{calls}"
    );
    assert_eq!(stdout(&home.sh(&id, "cat e/note.txt")), "two\n");
    assert!(
        !dir.join("transfer.img").exists(),
        "the transfer file is gone"
    );
}
