//! File requests: byte-exact round trips, listings, limits, atomic
//! replacement, and confinement beneath the root. Each test uses a temporary
//! directory as the request's `root` (the guest default is `/workspace`).

use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;

use pyro_protocol::{encode_data, ErrorKind, FileKind, FrameKind, Message};

use crate::agent::Agent;

fn all_bytes(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 256) as u8).collect()
}

fn root_of(dir: &tempfile::TempDir) -> String {
    dir.path().to_str().unwrap().to_owned()
}

/// Names in `dir` that look like the agent's temporary files.
fn leftovers(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.contains(".pyro-"))
        .collect()
}

#[test]
fn binary_files_round_trip_byte_exact() {
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::start();
    let data = all_bytes(256 * 3 + 7);
    let written = agent.write_file(1, dir.path(), "bin/all.dat", &data, true);
    assert_eq!(written.done, Some(Some(data.len() as u64)), "{written:?}");
    assert_eq!(written.acked, data.len() as u64);
    assert_eq!(std::fs::read(dir.path().join("bin/all.dat")).unwrap(), data);
    let mode = std::fs::metadata(dir.path().join("bin/all.dat"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o644);

    let read = agent.read_file(2, dir.path(), "bin/all.dat", 1 << 20);
    assert_eq!(read.file, data);
    assert_eq!(read.done, Some(Some(data.len() as u64)));
    let info = read.info.unwrap();
    assert_eq!(
        (info.kind, info.size, info.mode),
        (FileKind::File, data.len() as u64, 0o644)
    );

    // An absolute path under the root means the same file; empty files work.
    let absolute = format!("{}/bin/all.dat", root_of(&dir));
    assert_eq!(
        agent.read_file(3, dir.path(), &absolute, 1 << 20).file,
        data
    );
    assert_eq!(
        agent.write_file(4, dir.path(), "empty", b"", false).done,
        Some(Some(0))
    );
    assert_eq!(
        agent.read_file(5, dir.path(), "empty", 0).done,
        Some(Some(0))
    );
}

#[test]
fn a_large_file_goes_through_the_window_both_ways() {
    const SIZE: usize = 5_000_000;
    let dir = tempfile::tempdir().unwrap();
    let mut agent = Agent::start();
    let data: Vec<u8> = (0..SIZE).map(|i| (i * 7 % 256) as u8).collect();
    let written = agent.write_file(1, dir.path(), "big", &data, false);
    assert_eq!(written.done, Some(Some(SIZE as u64)), "{:?}", written.error);
    assert_eq!(written.acked, SIZE as u64);
    assert!(written.acks >= 5, "acks: {}", written.acks);
    assert_eq!(
        agent.read_file(2, dir.path(), "big", SIZE as u64).file,
        data
    );
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn writes_replace_atomically_and_keep_modes() {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("f.sh");
    std::fs::write(&target, b"old").unwrap();
    std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o750)).unwrap();
    let mut agent = Agent::start();
    assert!(agent
        .write_file(1, dir.path(), "f.sh", b"new", false)
        .done
        .is_some());
    assert_eq!(std::fs::read(&target).unwrap(), b"new");
    let mode = std::fs::metadata(&target).unwrap().permissions().mode();
    assert_eq!(mode & 0o7777, 0o750, "an existing file keeps its mode");

    // A write the host cancels half way leaves the old content and no
    // temporary file behind.
    agent.send(
        2,
        &Message::WriteFile {
            path: "f.sh".into(),
            mode: Some(0o600),
            create_parents: false,
            root: Some(root_of(&dir)),
        },
    );
    let mut wire = Vec::new();
    encode_data(2, FrameKind::File, b"half of the new", &mut wire);
    agent.send_raw(&wire);
    agent.send(
        2,
        &Message::Signal {
            signal: 15,
            foreground: false,
        },
    );
    let cancelled = agent.wait(2);
    assert_eq!(cancelled.error.as_ref().unwrap().0, ErrorKind::Cancelled);
    assert_eq!(std::fs::read(&target).unwrap(), b"new");
    assert!(
        leftovers(dir.path()).is_empty(),
        "{:?}",
        leftovers(dir.path())
    );

    // Without create_parents a missing parent is an error.
    let missing = agent.write_file(3, dir.path(), "no/such/dir/f", b"x", false);
    assert_eq!(missing.error.unwrap().0, ErrorKind::NotFound);
    let onto_dir = agent.write_file(4, dir.path(), ".", b"x", false);
    assert!(onto_dir.error_message().contains("names a directory"));
}

#[test]
fn a_full_disk_fails_the_write_and_keeps_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(dir.path())
        .status()
        .is_ok_and(|s| s.success());
    if !mounted {
        eprintln!("skipped: cannot mount a small tmpfs here (needs root)");
        return;
    }
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount").arg(self.0).status();
        }
    }
    let _unmount = Unmount(dir.path());
    std::fs::write(dir.path().join("f"), b"old").unwrap();
    let mut agent = Agent::start();
    let outcome = agent.write_file(1, dir.path(), "f", &vec![0u8; 3 << 20], false);
    assert!(
        outcome.error_message().starts_with("disk full"),
        "{outcome:?}"
    );
    assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"old");
    assert!(leftovers(dir.path()).is_empty());
}

#[test]
fn reads_refuse_directories_and_files_over_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("d")).unwrap();
    std::fs::write(dir.path().join("big"), vec![0u8; 1000]).unwrap();
    let mut agent = Agent::start();
    let over = agent.read_file(1, dir.path(), "big", 999);
    assert_eq!(
        over.error_message(),
        "big: file is 1000 bytes, over the 999 byte limit; read it with exec (e.g. head -c) or export it"
    );
    assert!(
        over.info.is_none() && over.file.is_empty(),
        "refused before any data"
    );
    assert_eq!(
        agent.read_file(2, dir.path(), "d", 1 << 20).error_message(),
        "d is a directory"
    );
    let missing = agent.read_file(3, dir.path(), "nope", 1 << 20);
    assert_eq!(missing.error.unwrap().0, ErrorKind::NotFound);
}

#[test]
fn escapes_from_the_root_are_refused() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("ws");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(outer.path().join("secret"), b"secret").unwrap();
    symlink("/", root.join("out")).unwrap();
    symlink("../secret", root.join("secret-link")).unwrap();
    symlink(outer.path(), root.join("parent-link")).unwrap();
    let escape = format!("path escapes {}: ", root.display());
    let mut agent = Agent::start();
    for (id, path) in [
        (1, "../secret"),
        (2, "/etc/passwd"),
        (3, "out/etc/passwd"),
        (4, "secret-link"),
    ] {
        let outcome = agent.read_file(id, &root, path, 1 << 20);
        assert_eq!(
            outcome.error.as_ref().map(|e| e.0),
            Some(ErrorKind::InvalidRequest)
        );
        assert_eq!(outcome.error_message(), format!("{escape}{path}"));
    }
    for (id, path, parents) in [
        (11, "../evil", false),
        (12, "/tmp/evil", true),
        (13, "parent-link/evil", false),
        (14, "parent-link/new/evil", true),
        (15, "out/tmp/evil", true),
    ] {
        let outcome = agent.write_file(id, &root, path, b"evil", parents);
        assert_eq!(outcome.error_message(), format!("{escape}{path}"), "{path}");
    }
    assert!(!outer.path().join("evil").exists());
    assert!(!outer.path().join("new").exists());
    let root_str = root.to_str().unwrap().to_owned();
    agent.send(
        21,
        &Message::ListDir {
            path: "parent-link".into(),
            recursive: false,
            max_entries: 10,
            root: Some(root_str.clone()),
        },
    );
    assert_eq!(
        agent.wait(21).error_message(),
        format!("{escape}parent-link")
    );
    agent.send(
        22,
        &Message::Stat {
            path: "out/etc".into(),
            root: Some(root_str),
        },
    );
    assert_eq!(agent.wait(22).error_message(), format!("{escape}out/etc"));
}

#[test]
fn listings_are_sorted_do_not_follow_symlinks_and_truncate() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("src/nested")).unwrap();
    std::fs::write(root.join("src/b.rs"), b"bb").unwrap();
    std::fs::write(root.join("src/a.rs"), b"a").unwrap();
    std::fs::write(root.join("src/nested/deep"), b"").unwrap();
    std::fs::write(root.join("README"), b"hello").unwrap();
    symlink("/", root.join("zlink")).unwrap();
    let list = |agent: &mut Agent, id: u32, path: &str, recursive: bool, max_entries: u64| {
        agent.send(
            id,
            &Message::ListDir {
                path: path.into(),
                recursive,
                max_entries,
                root: Some(root.to_str().unwrap().into()),
            },
        );
        agent.wait(id)
    };
    let mut agent = Agent::start();
    let top = list(&mut agent, 1, "", false, 100);
    let names: Vec<_> = top.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(names, ["README", "src", "zlink"]);
    assert_eq!(top.entries[0].size, 5);
    assert_eq!(top.entries[1].kind, FileKind::Dir);
    assert_eq!(top.entries[2].kind, FileKind::Symlink);
    assert_eq!(top.entries[2].symlink_target.as_deref(), Some("/"));
    assert!(!top.truncated && top.done.is_some());

    let all = list(&mut agent, 2, ".", true, 100);
    let names: Vec<_> = all.entries.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        names,
        [
            "README",
            "src",
            "src/a.rs",
            "src/b.rs",
            "src/nested",
            "src/nested/deep",
            "zlink"
        ]
    );
    let sub = list(&mut agent, 3, "src/", true, 100);
    assert_eq!(sub.entries[0].path, "src/a.rs");

    let cut = list(&mut agent, 4, "", true, 3);
    assert_eq!(cut.entries.len(), 3);
    assert!(cut.truncated);
    assert_eq!(
        list(&mut agent, 5, "README", false, 3).error_message(),
        "README is not a directory"
    );

    agent.send(
        6,
        &Message::Stat {
            path: "zlink".into(),
            root: Some(root.to_str().unwrap().into()),
        },
    );
    let stat = agent.wait(6);
    assert_eq!(stat.info.unwrap().symlink_target.as_deref(), Some("/"));
    assert_eq!(stat.done, Some(None));
}

#[test]
fn long_listings_come_in_slices_under_the_frame_cap() {
    let dir = tempfile::tempdir().unwrap();
    for i in 0..3000 {
        std::fs::write(dir.path().join(format!("{i:05}-{}", "x".repeat(100))), b"").unwrap();
    }
    let mut agent = Agent::start();
    agent.send(
        1,
        &Message::ListDir {
            path: String::new(),
            recursive: false,
            max_entries: 10_000,
            root: Some(root_of(&dir)),
        },
    );
    let outcome = agent.wait(1);
    assert_eq!(outcome.entries.len(), 3000);
    assert!(outcome.entry_messages > 1, "{}", outcome.entry_messages);
    assert!(outcome.entries.windows(2).all(|w| w[0].path < w[1].path));
}
