//! Round trips: pack → unpack, pack → system `tar -x` (what the guest does
//! on seed and `sync push`), system `tar -c` → unpack (what the guest does
//! on export).

mod common;

use std::fs::{self, File};
use std::io::Write;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, UNIX_EPOCH};

use common::{snapshot, Node};
use pyro_transfer::{pack_dir, pack_file, unpack, Expect, OutputKind, PackOptions, UnpackOptions};

const LONG_COMPONENT: &str = "a-component-that-is-rather-long-because-tar-headers-only-hold-one-hundred-bytes-of-name-so-we-go-past";

fn write(root: &Path, relative: &str, content: &[u8], mode: u32) {
    let path = root.join(relative);
    fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    let mut file = File::create(&path).expect("create");
    file.write_all(content).expect("write");
    file.set_modified(UNIX_EPOCH + Duration::from_secs(1_700_000_000))
        .expect("mtime");
    fs::set_permissions(&path, fs::Permissions::from_mode(mode)).expect("chmod");
}

/// A tree with what a workspace holds: a `.git`, executables, empty
/// directories, symlinks, awkward and long names.
fn sample_tree(root: &Path) {
    write(root, "README.md", b"# hello\n", 0o644);
    write(root, "bin/run.sh", b"#!/bin/sh\necho hi\n", 0o755);
    write(root, "readonly.txt", b"frozen", 0o444);
    write(root, ".git/HEAD", b"ref: refs/heads/main\n", 0o644);
    write(root, ".git/objects/ab/cdef0123", &[0, 1, 2, 3, 255], 0o444);
    write(
        root,
        "name with spaces/héllo wörld ✓.txt",
        "unicode ✓".as_bytes(),
        0o644,
    );
    write(
        root,
        &format!("deep/{LONG_COMPONENT}/{LONG_COMPONENT}/file.txt"),
        b"deep",
        0o600,
    );
    write(
        root,
        &format!("{LONG_COMPONENT}{LONG_COMPONENT}"),
        b"long leaf",
        0o644,
    );
    write(root, "big.bin", &vec![0xa5; 3 * 1024 * 1024 + 17], 0o644);
    write(root, "empty-file", b"", 0o644);
    fs::create_dir_all(root.join("empty/nested-empty")).expect("mkdir");
    symlink("bin/run.sh", root.join("run")).expect("symlink");
    symlink(
        format!("../deep/{LONG_COMPONENT}/{LONG_COMPONENT}/file.txt"),
        root.join("bin/long-target"),
    )
    .expect("symlink");
    symlink("missing-target", root.join("dangling")).expect("symlink");
    for dir in ["", "bin", ".git", "empty", "empty/nested-empty", "deep"] {
        File::open(root.join(dir))
            .expect("open dir")
            .set_modified(UNIX_EPOCH + Duration::from_secs(1_600_000_000))
            .expect("dir mtime");
    }
}

fn pack(src: &Path, opts: &PackOptions) -> Vec<u8> {
    let mut stream = Vec::new();
    pack_dir(src, &mut stream, opts).expect("pack");
    stream
}

#[test]
fn pack_then_unpack_preserves_the_tree() {
    let (src, out) = (
        tempfile::tempdir().expect("src"),
        tempfile::tempdir().expect("out"),
    );
    sample_tree(src.path());
    let mut stream = Vec::new();
    let packed = pack_dir(src.path(), &mut stream, &PackOptions::default()).expect("pack");
    assert_eq!(
        (packed.files, packed.symlinks, packed.skipped),
        (10, 3, 0),
        "{packed:?}"
    );
    assert_eq!(packed.dirs, 10, "{packed:?}");

    let dest = out.path().join("copy");
    let report = unpack(&stream[..], &dest, &UnpackOptions::default()).expect("unpack");
    assert_eq!(report.output, OutputKind::Dir);
    assert_eq!(
        (report.files, report.dirs, report.symlinks),
        (10, 10, 3),
        "{report:?}"
    );
    assert_eq!(report.bytes, packed.bytes);
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
    assert_eq!(snapshot(&dest), snapshot(src.path()));
    let root_mode = fs::metadata(&dest).expect("dest").permissions().mode() & 0o777;
    assert_eq!(
        root_mode, 0o755,
        "no `./` member: the output directory gets 0o755"
    );
}

#[test]
fn packing_is_deterministic_and_sorted() {
    let src = tempfile::tempdir().expect("src");
    sample_tree(src.path());
    let first = pack(src.path(), &PackOptions::default());
    assert_eq!(first, pack(src.path(), &PackOptions::default()));

    let names: Vec<String> = tar::Archive::new(&first[..])
        .entries()
        .expect("entries")
        .map(|entry| {
            entry
                .expect("entry")
                .path()
                .expect("path")
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        &names[..4],
        [".git", ".git/HEAD", ".git/objects", ".git/objects/ab"]
    );
    assert!(
        names
            .iter()
            .all(|name| !name.starts_with('/') && !name.starts_with("./")),
        "{names:?}"
    );
}

#[test]
fn system_tar_unpacks_what_we_pack() {
    let (src, out) = (
        tempfile::tempdir().expect("src"),
        tempfile::tempdir().expect("out"),
    );
    sample_tree(src.path());
    let stream = pack(src.path(), &PackOptions::default());
    let mut tar = Command::new("tar")
        .args(["-x", "-p", "-f", "-", "-C"])
        .arg(out.path())
        .stdin(Stdio::piped())
        .spawn()
        .expect("spawn tar");
    tar.stdin
        .take()
        .expect("stdin")
        .write_all(&stream)
        .expect("feed tar");
    assert!(tar.wait().expect("tar").success());
    let mut expected = snapshot(src.path());
    let mut got = snapshot(out.path());
    // GNU tar restores directory mtimes too, but `-C out` leaves out's own.
    for nodes in [&mut expected, &mut got] {
        for node in nodes.values_mut() {
            if let Node::Dir { mtime, .. } = node {
                *mtime = 0;
            }
        }
    }
    assert_eq!(got, expected);
}

#[test]
fn we_unpack_what_system_tar_packs() {
    let (src, out) = (
        tempfile::tempdir().expect("src"),
        tempfile::tempdir().expect("out"),
    );
    sample_tree(src.path());
    for format in ["gnu", "posix", "ustar"] {
        if format == "ustar" {
            // ustar cannot hold the long leaf name at all.
            fs::remove_file(src.path().join(format!("{LONG_COMPONENT}{LONG_COMPONENT}"))).ok();
            fs::remove_dir_all(src.path().join("deep")).ok();
            fs::remove_file(src.path().join("bin/long-target")).ok();
        }
        let output = Command::new("tar")
            .args(["-c", "-f", "-", &format!("--format={format}"), "-C"])
            .arg(src.path())
            .arg(".")
            .output()
            .expect("run tar");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let dest = out.path().join(format);
        let report = unpack(&output.stdout[..], &dest, &UnpackOptions::default()).expect(format);
        assert_eq!(
            report.output,
            OutputKind::Dir,
            "a `./` member means a directory export"
        );
        // `./` carries the source root's mode and mtime onto the output too.
        assert_eq!(snapshot(&dest), snapshot(src.path()), "{format}");
    }
}

#[test]
fn system_tar_single_file_export_becomes_a_file() {
    let (src, out) = (
        tempfile::tempdir().expect("src"),
        tempfile::tempdir().expect("out"),
    );
    write(src.path(), "result.json", b"{\"ok\":true}", 0o640);
    let output = Command::new("tar")
        .args(["-c", "-f", "-", "-C"])
        .arg(src.path())
        .arg("result.json")
        .output()
        .expect("run tar");
    assert!(output.status.success());
    let dest = out.path().join("saved.json");
    let opts = UnpackOptions {
        expect: Expect::File,
        ..UnpackOptions::default()
    };
    let report = unpack(&output.stdout[..], &dest, &opts).expect("unpack");
    assert_eq!(report.output, OutputKind::File);
    assert_eq!(fs::read(&dest).expect("read"), b"{\"ok\":true}");
    assert_eq!(
        fs::metadata(&dest).expect("meta").permissions().mode() & 0o777,
        0o640
    );
    assert_eq!(common::listing(out.path()), ["saved.json"]);
}

#[test]
fn excludes_and_special_files() {
    let src = tempfile::tempdir().expect("src");
    sample_tree(src.path());
    write(src.path(), "target/debug/app", b"bin", 0o755);
    write(src.path(), "pkg/__pycache__/m.pyc", b"pyc", 0o644);
    write(src.path(), "build.log", b"log", 0o644);
    let _socket =
        std::os::unix::net::UnixListener::bind(src.path().join("agent.sock")).expect("socket");
    let opts = PackOptions {
        exclude: vec!["target/".into(), "**/__pycache__".into(), "*.log".into()],
        follow_root_symlink: false,
    };
    let mut stream = Vec::new();
    let report = pack_dir(src.path(), &mut stream, &opts).expect("pack");
    assert_eq!((report.skipped, report.excluded), (1, 3), "{report:?}");
    let out = tempfile::tempdir().expect("out");
    let dest = out.path().join("copy");
    unpack(&stream[..], &dest, &UnpackOptions::default()).expect("unpack");
    let listing = common::listing(&dest);
    assert!(listing.contains(&"pkg".to_string()), "{listing:?}");
    for gone in ["target", "pkg/__pycache__", "build.log", "agent.sock"] {
        assert!(
            !listing.contains(&gone.to_string()),
            "{gone} in {listing:?}"
        );
    }
}

#[test]
fn root_symlinks_and_single_files() {
    let tmp = tempfile::tempdir().expect("tmp");
    write(tmp.path(), "real/file.txt", b"x", 0o644);
    symlink("real", tmp.path().join("alias")).expect("symlink");
    let mut sink = Vec::new();
    let err = pack_dir(
        &tmp.path().join("alias"),
        &mut sink,
        &PackOptions::default(),
    )
    .expect_err("symlink root");
    assert!(err.to_string().contains("is a symlink"), "{err}");
    let follow = PackOptions {
        follow_root_symlink: true,
        ..PackOptions::default()
    };
    let report = pack_dir(&tmp.path().join("alias"), &mut sink, &follow).expect("followed");
    assert_eq!(report.files, 1);

    let mut stream = Vec::new();
    let report = pack_file(
        &tmp.path().join("real/file.txt"),
        &mut stream,
        &PackOptions::default(),
    )
    .expect("file");
    assert_eq!((report.files, report.bytes), (1, 1));
    let dest = tmp.path().join("out.txt");
    let unpacked = unpack(&stream[..], &dest, &UnpackOptions::default()).expect("unpack");
    assert_eq!(unpacked.output, OutputKind::File);
    assert_eq!(fs::read(&dest).expect("read"), b"x");

    let err = pack_file(
        &tmp.path().join("real"),
        &mut Vec::new(),
        &PackOptions::default(),
    )
    .expect_err("dir");
    assert!(err.to_string().contains("not a regular file"), "{err}");
}
