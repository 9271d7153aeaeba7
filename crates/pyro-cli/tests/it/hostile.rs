//! A hostile guest against the host: what it names, prints and sends
//! reaches the user's terminal as visible text, never as escape sequences.

use crate::support::*;

/// Bytes a terminal would act on rather than show.
fn acts_on_terminal(text: &str) -> bool {
    text.chars()
        .any(|c| (c.is_control() && c != '\n' && c != '\t') || c == '\u{202e}')
}

#[test]
fn names_the_guest_chose_reach_the_terminal_escaped() {
    let home = TestHome::new();
    home.create(&["--name", "names"]);
    // Window title (OSC), colour (CSI), a carriage return that would hide
    // the line's start, a newline that would forge a second entry, and a
    // right-to-left override.
    let made = home.sh(
        "names",
        "cd /workspace && touch \"$(printf 'title\\033]0;owned\\007')\" \
         \"$(printf 'red\\033[31m')\" \"$(printf 'hidden\\rshown')\" \
         \"$(printf 'two\\nlines')\" \"$(printf 'evil\\342\\200\\256txt.sh')\" \
         && printf '\\033[2J' > plain.txt",
    );
    assert!(made.status.success(), "{}", stderr(&made));

    let list = stdout(&ok(
        home.run(&["workspace", "file", "list", "names"]),
        "file list",
    ));
    let summary = stdout(&ok(home.run(&["workspace", "summary", "names"]), "summary"));
    let stat = stdout(&ok(
        home.run(&["workspace", "diff", "names", "--stat"]),
        "diff --stat",
    ));
    for (what, text) in [
        ("file list", &list),
        ("summary", &summary),
        ("diff --stat", &stat),
    ] {
        assert!(
            !acts_on_terminal(text),
            "{what} printed raw escapes: {text:?}"
        );
        for escaped in [
            "title\\u{1b}]0;owned\\u{7}",
            "red\\u{1b}[31m",
            "hidden\\rshown",
            "two\\nlines",
            "evil\\u{202e}txt.sh",
        ] {
            assert!(text.contains(escaped), "{what} lacks {escaped}: {text}");
        }
    }
    // JSON keeps the names as they are (its own escaping is exact).
    let listing = json(&home.run(&["workspace", "file", "list", "names", "--json"]));
    assert!(
        listing.to_string().contains("title\\u001b]0;owned\\u0007"),
        "{listing}"
    );
    // What the user asked to read stays byte-exact.
    let read = home.run(&["workspace", "file", "read", "names", "plain.txt"]);
    assert_eq!(read.stdout, b"\x1b[2J");
    let exec = home.sh("names", "printf '\\033[31mred'");
    assert_eq!(exec.stdout, b"\x1b[31mred");
    ok(home.run(&["workspace", "delete", "names"]), "delete");
}

#[test]
fn an_invalid_name_is_not_echoed_raw() {
    let home = TestHome::new();
    let create = home.run(&["workspace", "create", ENV, "--name", "x\u{1b}]0;owned\u{7}"]);
    assert_eq!(create.status.code(), Some(125), "{}", stderr(&create));
    let said = stderr(&create);
    assert!(!acts_on_terminal(&said), "{said:?}");
    assert!(said.contains("x\\u{1b}]0;owned\\u{7}"), "{said}");
}

/// As `nobody`: `flock -s -n LOCK true`, the hold that once made every
/// `workspace create` wait forever.
fn nobody_can_hold(lock: &std::path::Path) -> bool {
    std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(["flock", "-s", "-n"])
        .arg(lock)
        .arg("true")
        .output()
        .expect("setpriv")
        .status
        .success()
}

#[test]
fn another_user_can_neither_read_the_state_nor_hold_its_locks() {
    use std::os::unix::fs::PermissionsExt as _;
    let home = TestHome::new();
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let set = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    // The state as an older pyro left it: readable, a lock anyone opens.
    let workspaces = home.path().join("workspaces");
    let names = workspaces.join("names.lock");
    std::fs::create_dir(&workspaces).unwrap();
    std::fs::write(&names, b"").unwrap();
    set(home.path(), 0o755);
    set(&workspaces, 0o755);
    set(&names, 0o644);
    assert!(
        nobody_can_hold(&names),
        "the check itself must be able to fail"
    );

    home.create(&["--name", "private"]);
    assert_eq!(mode(home.path()), 0o700);
    assert_eq!(mode(&workspaces), 0o700);
    assert_eq!(mode(&names), 0o600);
    assert!(!nobody_can_hold(&names));
    // Every lock file pyro made is owner-only.
    let dir = std::fs::read_dir(&workspaces)
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .unwrap()
        .path();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "lock") {
            assert_eq!(mode(&entry.path()), 0o600, "{}", entry.path().display());
        }
    }
    ok(home.run(&["workspace", "delete", "private"]), "delete");
}

/// A `tar` of the guest's own, steered by `/etc/fake-tar` (on the disk, so
/// the offline disk tools' helper VM runs it too): `sleep` never ends,
/// `flood` sends a refused archive and then zeros forever, `bomb` sends a
/// member whose header says 3 GiB and then zeros forever.
const FAKE_TAR: &str = r#"mkdir -p /usr/local/bin && cat > /usr/local/bin/tar <<'EOF2'
#!/bin/sh
f=-; prev=; for a in "$@"; do [ "$prev" = -f ] && f=$a; prev=$a; done
case "$(cat /etc/fake-tar 2>/dev/null)" in
sleep) exec sleep 1000 ;;
flood) [ "$f" = - ] || exec /bin/tar "$@"
       /bin/tar -c -P -f - /etc/hostname; exec cat /dev/zero ;;
bomb) truncate -s 3G /tmp/big
      if [ "$f" = - ]; then /bin/tar -c -f - -C /tmp big | head -c 1048576; exec cat /dev/zero; fi
      /bin/tar -c -f - -C /tmp big | head -c 1048576 > "$f"; exit 0 ;;
esac
exec /bin/tar "$@"
EOF2
chmod +x /usr/local/bin/tar"#;

#[test]
fn a_guest_tar_cannot_stall_or_flood_a_transfer() {
    let home = TestHome::new();
    let id = home.create(&["--name", "stall"]);
    ok(home.sh(&id, FAKE_TAR), "a tar of the guest's own");
    ok(home.sh(&id, "echo hi > /workspace/a.txt"), "a file");
    let host = tempfile::tempdir().unwrap();
    let output = host.path().join("out");
    let out = output.to_str().unwrap();
    let run = |args: &[&str]| {
        let mut command = home.pyro();
        command.env("PYRO_TRANSFER_STALL", "3").args(args);
        command.output().expect("run pyro")
    };
    let mode = |mode: &str| ok(home.sh(&id, &format!("echo {mode} > /etc/fake-tar")), mode);

    // A tar that sleeps: export and push each end, and kill it.
    mode("sleep");
    let export = run(&["workspace", "export", "stall", ".", "--output", out]);
    let said = refused(export, "showed no progress for 3 s");
    assert!(said.contains("PYRO_TRANSFER_STALL"), "{said}");
    assert!(!output.exists());
    let tree = tempfile::tempdir().unwrap();
    std::fs::write(tree.path().join("b.txt"), "b").unwrap();
    let push = run(&[
        "workspace",
        "sync",
        "push",
        "stall",
        tree.path().to_str().unwrap(),
    ]);
    refused(push, "showed no progress");
    let left = home.sh(&id, "pgrep -x sleep || echo none");
    assert_eq!(stdout(&left).trim(), "none", "the stalled tar was killed");

    // A header that declares 3 GiB: refused before any byte is written.
    mode("bomb");
    let export = run(&["workspace", "export", "stall", ".", "--output", out]);
    refused(export, "2 GiB");
    assert!(!output.exists());

    // The streamed path (the offline disk tools' helper VM): a refusal
    // ends the guest's endless stream at once.
    ok(home.run(&["workspace", "stop", "stall"]), "stop");
    for (mode_name, words) in [("flood", "absolute"), ("bomb", "2 GiB")] {
        ok(home.run(&["workspace", "start", "stall"]), "start");
        mode(mode_name);
        ok(home.run(&["workspace", "stop", "stall"]), "stop");
        let export = run(&[
            "workspace",
            "disk",
            "export",
            "stall",
            "/workspace",
            "--output",
            out,
        ]);
        refused(export, words);
        assert!(!output.exists());
    }
    assert!(
        dir_is_empty(host.path()),
        "nothing written beside the output"
    );
    ok(home.run(&["workspace", "delete", "stall"]), "delete");
}

#[test]
fn oversized_patches_and_writes_are_refused_and_change_nothing() {
    let home = TestHome::new();
    let id = home.create(&["--name", "caps"]);
    ok(home.sh(&id, "echo old > /workspace/a.txt"), "a file");
    let huge = "x".repeat(33 << 20);
    let patch = format!("--- a/a.txt\n+++ b/a.txt\n@@ -1 +1 @@\n-old\n+{huge}\n");
    let apply = home.run_with_stdin(
        &["workspace", "patch", "apply", "caps", "--patch-file", "-"],
        patch.as_bytes(),
    );
    refused(
        apply,
        "more than 32.0 MiB, the most one patch may be; nothing was changed",
    );

    let write = home.run(&[
        "workspace",
        "file",
        "write",
        "caps",
        "a.txt",
        "--text-file",
        "/dev/zero",
    ]);
    let said = refused(write, "more than 1.0 GiB, the most one file write takes");
    assert!(said.contains("pyro workspace sync push caps DIR"), "{said}");

    let left = home.sh(&id, "cat /workspace/a.txt; ls -A /workspace");
    assert_eq!(stdout(&left), "old\na.txt\n");
    ok(home.run(&["workspace", "delete", "caps"]), "delete");
}

#[test]
fn export_says_what_it_left_out_and_applies_the_umask() {
    use std::os::unix::fs::PermissionsExt as _;
    let home = TestHome::new();
    let id = home.create(&["--name", "report"]);
    ok(
        home.sh(
            &id,
            "cd /workspace && mkdir out && cd out && echo hi > open.sh && chmod 777 open.sh . \
             && mkfifo pipe && mknod null c 1 3 && ln -s /etc/passwd passwd",
        ),
        "a tree with what cannot leave",
    );
    let host = tempfile::tempdir().unwrap();
    let output = host.path().join("out");
    let export = ok(
        home.run(&[
            "workspace",
            "export",
            "report",
            "out",
            "--output",
            output.to_str().unwrap(),
        ]),
        "export",
    );
    assert!(
        stdout(&export).contains("(1 file, 3 bytes; 3 entries left out)"),
        "{}",
        stdout(&export)
    );
    let said = stderr(&export);
    for line in [
        "skipped 'pipe': device nodes and fifos are not exported",
        "skipped 'null': device nodes and fifos are not exported",
        "skipped symlink 'passwd' -> '/etc/passwd': it points outside the export",
    ] {
        assert!(said.contains(line), "stderr lacks {line:?}: {said}");
    }
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode(&output), 0o755, "the output dir under the umask");
    assert_eq!(mode(&output.join("open.sh")), 0o755);
    assert!(!output.join("pipe").exists() && !output.join("passwd").exists());
    ok(home.run(&["workspace", "delete", "report"]), "delete");
}

/// A tmpfs of `mib` MiB mounted at a temporary directory; dropped, it kills
/// what still runs from it and unmounts it.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn new(mib: u32) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mib}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .unwrap();
        assert!(mounted.success(), "mount a tmpfs");
        SmallDisk { dir }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Supervisors of a failed test's workspaces name their home.
        for pid in processes_naming(self.dir.path()) {
            // SAFETY: kill(2) on a process this test started.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[test]
fn the_host_disk_is_accounted_trimmed_and_never_filled() {
    let home = TestHome::new();
    home.create(&["--name", "bytes"]);
    ok(
        home.sh(
            "bytes",
            "head -c 100000000 /dev/urandom > /workspace/big && sync && rm /workspace/big",
        ),
        "write and delete 100 MB",
    );
    // The snapshot flushes and trims: the frozen layer keeps no deleted bytes.
    ok(
        home.run(&[
            "workspace",
            "snapshot",
            "create",
            "bytes",
            "s1",
            "--disk-only",
        ]),
        "snapshot",
    );
    let status = json(&home.run(&["workspace", "status", "bytes", "--json"]));
    let disk = status["host_bytes"]["disk"].as_u64().unwrap();
    assert!(disk < 50_000_000, "the layers hold {disk} bytes: {status}");
    let text = stdout(&home.run(&["workspace", "status", "bytes"]));
    assert!(text.contains("host disk:     "), "{text}");
    ok(home.run(&["workspace", "delete", "bytes"]), "delete");

    // A home on a disk too small for the VM's memory: the snapshot with
    // memory is refused before it writes, a disk-only one still fits.
    let small = SmallDisk::new(700);
    let home_on_it = small.dir.path().join("home");
    let run = |args: &[&str]| {
        let mut command = pyro();
        command.env("PYRO_HOME", &home_on_it).args(args);
        command.output().unwrap()
    };
    ok(
        run(&[
            "workspace",
            "create",
            ENV,
            "--name",
            "tight",
            "--memory",
            "1024",
        ]),
        "create",
    );
    refused(
        run(&["workspace", "snapshot", "create", "tight", "full"]),
        "snapshot 'full' needs about 1.1 GiB there",
    );
    ok(
        run(&[
            "workspace",
            "snapshot",
            "create",
            "tight",
            "disk",
            "--disk-only",
        ]),
        "disk-only",
    );
    ok(run(&["workspace", "delete", "tight"]), "delete");
}

#[test]
fn a_workspace_stays_under_its_ceiling_on_host_bytes() {
    let home = TestHome::new();
    let refused = home.run(&["workspace", "create", ENV, "--max-host-disk", "1X"]);
    assert!(
        stderr(&refused).contains("is not a size"),
        "{}",
        stderr(&refused)
    );
    home.create(&[
        "--name",
        "capped",
        "--memory",
        "512",
        "--max-host-disk",
        "600M",
    ]);
    // The guest writes past the ceiling: its writes fail in the guest.
    let flood = home.sh(
        "capped",
        "dd if=/dev/zero of=/workspace/flood bs=1M count=900 oflag=direct 2>&1; echo dd=$?",
    );
    let said = stdout(&flood);
    assert!(
        said.contains("Input/output error") && !said.contains("dd=0"),
        "{said}"
    );
    let status = json(&home.run(&["workspace", "status", "capped", "--json"]));
    let held = status["host_bytes"]["disk"].as_u64().unwrap()
        + status["host_bytes"]["memory"].as_u64().unwrap()
        + status["host_bytes"]["other"].as_u64().unwrap();
    assert!(
        held <= 600 << 20,
        "the workspace holds {held} bytes: {status}"
    );
    assert_eq!(status["host_bytes"]["ceiling"], 600u64 << 20, "{status}");
    let text = stdout(&home.run(&["workspace", "status", "capped"]));
    assert!(text.contains("of its 600.0 MiB ceiling"), "{text}");
    // The host is fine and the VM answers.
    assert_eq!(
        stdout(&ok(home.sh("capped", "echo alive"), "exec")),
        "alive\n"
    );
    // What the host would write for it is checked before: no room for
    // its memory under the ceiling.
    let snapshot = home.run(&["workspace", "snapshot", "create", "capped", "s1"]);
    let error = stderr(&snapshot);
    assert!(!snapshot.status.success(), "{error}");
    assert!(error.contains("past its ceiling of 600.0 MiB"), "{error}");
    ok(home.run(&["workspace", "delete", "capped"]), "delete");
}

/// The size `df` gives the guest's root filesystem, in MiB.
fn root_mib(home: &TestHome, workspace: &str) -> u64 {
    let df = stdout(&ok(
        home.sh(workspace, "df -B1M --output=size / | tail -1"),
        "df",
    ));
    df.trim().parse().unwrap()
}

#[test]
fn a_disk_can_be_made_larger_and_stays_so() {
    let home = TestHome::new();
    let small = home.run(&["workspace", "create", ENV, "--disk-size", "4G"]);
    let said = stderr(&small);
    assert!(said.contains("smaller than environment"), "{said}");
    home.create(&["--name", "roomy", "--disk-size", "12G"]);
    let grown = root_mib(&home, "roomy");
    assert!((11_500..12_300).contains(&grown), "{grown} MiB");
    let text = stdout(&home.run(&["workspace", "status", "roomy"]));
    assert!(text.contains("a 12.0 GiB disk"), "{text}");
    assert!(text.contains("of its 24.0 GiB ceiling"), "{text}");
    // Every way back keeps the size: a snapshot with memory, the
    // baseline (a warm one restores the template, then grows again), a
    // suspend and resume, a fork.
    ok(
        home.run(&["workspace", "snapshot", "create", "roomy", "s1"]),
        "snapshot",
    );
    ok(
        home.run(&["workspace", "reset", "roomy", "--snapshot", "s1"]),
        "reset to s1",
    );
    assert_eq!(root_mib(&home, "roomy"), grown);
    ok(home.run(&["workspace", "reset", "roomy"]), "reset");
    assert_eq!(root_mib(&home, "roomy"), grown);
    // A guest without `resize2fs` still starts once its disk is grown.
    ok(
        home.sh("roomy", "rm -f /usr/sbin/resize2fs /sbin/resize2fs"),
        "rm resize2fs",
    );
    ok(home.run(&["workspace", "stop", "roomy"]), "stop");
    ok(home.run(&["workspace", "start", "roomy"]), "start");
    assert_eq!(root_mib(&home, "roomy"), grown);
    ok(
        home.run(&["workspace", "fork", "roomy", "--name", "twin"]),
        "fork",
    );
    assert_eq!(root_mib(&home, "twin"), grown);
    for name in ["roomy", "twin"] {
        ok(home.run(&["workspace", "delete", name]), "delete");
    }
}

#[test]
fn errors_keep_the_operating_systems_reason() {
    let home = TestHome::new();
    home.create(&["--name", "reason"]);
    ok(home.sh("reason", "echo hi > /workspace/a.txt"), "a file");
    let long = std::env::temp_dir().join("n".repeat(300));
    let long = long.to_str().unwrap();
    let export = home.run(&["workspace", "export", "reason", "a.txt", "--output", long]);
    refused(export, "File name too long");
    let push = home.run(&["workspace", "sync", "push", "reason", long]);
    refused(push, "File name too long");
    let write = home.run(&[
        "workspace",
        "file",
        "write",
        "reason",
        &"n".repeat(300),
        "--content",
        "x",
    ]);
    refused(write, "File name too long");
    ok(home.run(&["workspace", "delete", "reason"]), "delete");
}
