//! QEMU's confinement: seccomp, no capabilities, no inherited
//! descriptors, and its jail (the `pyro-vm` user, its own mount and
//! network namespaces holding only its files).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use crate::support::*;

/// The disk layer workspace `name`'s VM writes to.
fn top_layer(home: &TestHome, name: &str) -> PathBuf {
    let status = json(&home.run(&["workspace", "status", name, "--json"]));
    home.path()
        .join("workspaces")
        .join(status["id"].as_str().unwrap())
        .join(status["active_disk"].as_str().unwrap())
}

/// The lines of `/proc/PID/status` that say how confined it is.
fn confinement_of(pid: u32) -> Vec<String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .filter(|l| {
            [
                "CapPrm:",
                "CapEff:",
                "CapBnd:",
                "CapAmb:",
                "NoNewPrivs:",
                "Seccomp:",
            ]
            .iter()
            .any(|key| l.starts_with(key))
        })
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn qemu_runs_confined_and_inherits_nothing_of_its_caller() {
    let home = TestHome::new();
    let leak = tempfile::NamedTempFile::new().unwrap();
    // The caller leaves a descriptor open for writing, as a shell's
    // `exec 7>file` does.
    let create = std::process::Command::new("sh")
        .args(["-c", "exec 7>>\"$1\"; shift; exec \"$@\"", "sh"])
        .arg(leak.path())
        .arg(pyro_bin())
        .args(["workspace", "create", ENV, "--name", "jailed", "--id-only"])
        .env("PYRO_HOME", home.path())
        .output()
        .unwrap();
    let id = stdout(&ok(create, "create")).trim().to_string();
    let supervisor = home.supervisor_pid(&id).expect("a supervisor");
    let qemu = home.vm_pids(&id)[0];
    for pid in [supervisor, qemu] {
        for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
        {
            let target = std::fs::read_link(fd.path()).unwrap_or_default();
            assert_ne!(target, leak.path(), "pid {pid} inherited the caller's fd 7");
        }
    }
    let confinement = confinement_of(qemu);
    for line in [
        "CapPrm: 0000000000000000",
        "CapEff: 0000000000000000",
        "CapBnd: 0000000000000000",
        "CapAmb: 0000000000000000",
        "NoNewPrivs: 1",
        "Seccomp: 2",
    ] {
        assert!(
            confinement.iter().any(|l| l == line),
            "{line}: {confinement:?}"
        );
    }
    let cmdline = String::from_utf8(std::fs::read(format!("/proc/{qemu}/cmdline")).unwrap())
        .unwrap()
        .replace('\0', " ");
    assert!(cmdline.contains(
        "-sandbox on,obsolete=deny,elevateprivileges=deny,spawn=deny,resourcecontrol=deny"
    ));
    // The confined VM does its work: a command, a snapshot, a fork.
    ok(home.sh("jailed", "echo hi > /workspace/a"), "exec");
    ok(
        home.run(&["workspace", "snapshot", "create", "jailed", "s1"]),
        "snapshot",
    );
    let doctor = stdout(&ok(home.run(&["doctor"]), "doctor"));
    assert!(
        doctor.contains("ok    seccomp       QEMU's sandbox is on"),
        "{doctor}"
    );
    assert!(doctor.contains("no capabilities"), "{doctor}");
    assert!(
        doctor.contains("ok    jail          QEMU runs in a jail"),
        "{doctor}"
    );
    ok(home.run(&["workspace", "delete", "jailed"]), "delete");
}

/// The gid of the `pyro-vm` user, when `scripts/install-deps` made it.
fn vm_group() -> Option<u32> {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields[0] == "pyro-vm").then(|| fields[3].parse().unwrap())
    })
}

/// The four ids of a `Uid:` or `Gid:` line of `/proc/PID/status`.
fn ids(pid: u32, key: &str) -> Vec<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with(key)).unwrap();
    line.split_whitespace()
        .skip(1)
        .map(|id| id.parse().unwrap())
        .collect()
}

/// Every path in the tree at `root` (not following links), relative to
/// it, but for what lies under `usr/`.
fn tree(root: &Path) -> BTreeSet<PathBuf> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![root.to_path_buf()];
    while let Some(dir) = todo.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            let relative = path.strip_prefix(root).unwrap().to_path_buf();
            if relative.starts_with("usr") {
                continue;
            }
            if entry.file_type().unwrap().is_dir() {
                todo.push(path);
            }
            seen.insert(relative);
        }
    }
    seen
}

#[test]
fn qemu_sees_only_its_own_files_as_an_unprivileged_user() {
    let home = TestHome::new();
    let mine = home.create(&["--name", "mine"]);
    let other = home.create(&["--name", "other"]);
    let qemu = home.vm_pids(&mine)[0];
    let uids = ids(qemu, "Uid:");
    match vm_group() {
        // A uid of its own, in pyro-vm's group; another VM has another.
        Some(gid) => {
            assert!(
                uids[0] >= 0x7f00_0000 && uids.iter().all(|&u| u == uids[0]),
                "{uids:?}"
            );
            assert_eq!(ids(qemu, "Gid:"), vec![gid; 4]);
            let theirs = ids(home.vm_pids(&other)[0], "Uid:");
            assert_ne!(theirs[0], uids[0], "two VMs share uid {}", uids[0]);
            // The file it writes is its uid's; what it only reads is not.
            use std::os::unix::fs::MetadataExt as _;
            let top = top_layer(&home, "mine");
            assert_eq!(std::fs::metadata(&top).unwrap().uid(), uids[0]);
        }
        None => assert_eq!(uids, vec![0; 4]),
    }
    // Namespaces of its own: mounts, network.
    for ns in ["mnt", "net", "ipc", "uts"] {
        let its = std::fs::read_link(format!("/proc/{qemu}/ns/{ns}")).unwrap();
        let ours = std::fs::read_link(format!("/proc/self/ns/{ns}")).unwrap();
        assert_ne!(its, ours, "QEMU shares the {ns} namespace");
    }
    let interfaces = std::fs::read_to_string(format!("/proc/{qemu}/net/dev")).unwrap();
    let names: Vec<&str> = interfaces
        .lines()
        .skip(2)
        .filter_map(|l| l.split(':').next())
        .map(str::trim)
        .collect();
    assert_eq!(names, ["lo"], "{interfaces}");

    // What it sees: system files, and its own workspace's disks.
    let root = PathBuf::from(format!("/proc/{qemu}/root"));
    let seen = tree(&root);
    let workspaces = home.path().join("workspaces");
    let mine_dir = workspaces
        .join(&mine)
        .strip_prefix("/")
        .unwrap()
        .to_path_buf();
    let other_dir = workspaces
        .join(&other)
        .strip_prefix("/")
        .unwrap()
        .to_path_buf();
    for path in &seen {
        assert!(
            !path.starts_with(&other_dir),
            "another workspace's {path:?}"
        );
        let name = path.file_name().unwrap().to_string_lossy();
        for secret in [
            "workspace.json",
            "events.jsonl",
            "secrets",
            "control.sock",
            "agent.sock",
            "passwd",
            "shadow",
            ".ssh",
        ] {
            assert_ne!(name, secret, "{path:?} is in QEMU's jail");
        }
    }
    for absent in ["proc", "sys", "home", "root/.ssh", "tmp/.X11-unix", "var"] {
        assert!(
            !seen.contains(Path::new(absent)),
            "{absent} is in QEMU's jail"
        );
    }
    assert!(seen.contains(Path::new("dev/null")) && seen.contains(Path::new("dev/urandom")));
    let disks: Vec<_> = seen
        .iter()
        .filter(|p| p.starts_with(&mine_dir) && p.extension().is_some_and(|e| e == "qcow2"))
        .collect();
    assert!(!disks.is_empty(), "its own disks: {seen:?}");
    // Nothing new can be made in it, even by root from outside.
    let made = std::fs::write(root.join("planted"), b"x").unwrap_err();
    assert_eq!(made.raw_os_error(), Some(libc::EROFS), "{made}");

    // The jailed VM does all its work: files in and out, snapshots,
    // reset, suspend and resume, a fork, a throw-away run.
    let source = tempfile::tempdir().unwrap();
    std::fs::write(source.path().join("in.txt"), b"pushed").unwrap();
    ok(
        home.run(&[
            "workspace",
            "sync",
            "push",
            "mine",
            &source.path().display().to_string(),
        ]),
        "push",
    );
    ok(home.sh("mine", "echo kept > /workspace/kept"), "exec");
    ok(
        home.run(&["workspace", "snapshot", "create", "mine", "s1"]),
        "snapshot",
    );
    if vm_group().is_some() {
        // The layer directory and the layer the snapshot froze are the
        // keeper's (a uid no process runs as), written by nobody.
        use std::os::unix::fs::MetadataExt as _;
        let dir = home.path().join("workspaces").join(&mine);
        let top = top_layer(&home, "mine");
        let layers = std::fs::metadata(dir.join("layers")).unwrap();
        assert_eq!((layers.uid(), layers.mode() & 0o7777), (0x7eff_ffff, 0o755));
        let mut frozen = 0;
        for entry in std::fs::read_dir(dir.join("layers")).unwrap() {
            let path = entry.unwrap().path();
            let meta = std::fs::metadata(&path).unwrap();
            if path != top {
                frozen += 1;
                assert_eq!(meta.uid(), 0x7eff_ffff, "{path:?}");
                assert_eq!(meta.mode() & 0o222, 0, "{path:?}");
            }
        }
        assert!(frozen > 0);
    }
    ok(home.sh("mine", "rm /workspace/kept"), "exec");
    ok(
        home.run(&[
            "workspace",
            "snapshot",
            "create",
            "mine",
            "s2",
            "--disk-only",
        ]),
        "snapshot --disk-only",
    );
    ok(
        home.run(&["workspace", "reset", "mine", "--snapshot", "s1"]),
        "reset",
    );
    ok(home.run(&["workspace", "stop", "mine"]), "stop");
    ok(home.run(&["workspace", "start", "mine"]), "start");
    ok(
        home.run(&["workspace", "fork", "mine", "--name", "twin"]),
        "fork",
    );
    let out = tempfile::tempdir().unwrap();
    let output = out.path().join("export");
    ok(
        home.run(&[
            "workspace",
            "export",
            "twin",
            ".",
            "--output",
            &output.display().to_string(),
        ]),
        "export",
    );
    assert_eq!(std::fs::read(output.join("kept")).unwrap(), b"kept\n");
    assert_eq!(std::fs::read(output.join("in.txt")).unwrap(), b"pushed");
    let run = home.run(&["run", ENV, "--", "sh", "-c", "echo ran > /f && cat /f"]);
    assert_eq!(stdout(&ok(run, "run")), "ran\n");
    // A QEMU that broke out of its device model can rewrite its top
    // layer's header: a backing file named outside pyro's stores is
    // refused, never bound into the next jail.
    ok(home.run(&["workspace", "stop", "twin"]), "stop");
    let top = top_layer(&home, "twin");
    let rebase = std::process::Command::new("qemu-img")
        .args(["rebase", "-u", "-F", "raw", "-b", "/etc/passwd", "--"])
        .arg(&top)
        .output()
        .unwrap();
    assert!(
        rebase.status.success(),
        "{}",
        String::from_utf8_lossy(&rebase.stderr)
    );
    let start = home.run(&["workspace", "start", "twin"]);
    let said = stderr(&start);
    assert!(!start.status.success(), "{said}");
    assert!(
        said.contains("/etc/passwd as a backing file, which is not a file in pyro's stores"),
        "{said}"
    );
    for name in ["mine", "other", "twin"] {
        ok(home.run(&["workspace", "delete", name]), "delete");
    }
}
