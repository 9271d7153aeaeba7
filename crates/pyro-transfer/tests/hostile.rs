//! Hostile and broken archives, as an untrusted guest could send them.
//!
//! Every test unpacks into `<tmp>/p/out` and then checks the whole of
//! `<tmp>`: nothing may exist outside `p/out`, and after an error not even
//! `p/out` or a staging directory may be left.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use common::{pax_record, RawTar, Scene};
use pyro_transfer::{Limits, UnpackError, UnpackOptions};
use tar::EntryType;

fn defaults() -> UnpackOptions {
    UnpackOptions::default()
}

#[test]
fn names_that_escape_are_refused() {
    for name in ["../evil", "/etc/evil", "a/../../evil", "./../evil", "a/.."] {
        let stream = RawTar::default()
            .file("ok", b"fine")
            .file(name, b"evil")
            .finish();
        let err = Scene::new().fails(&stream, &defaults());
        assert!(matches!(err, UnpackError::Escapes { .. }), "{name}: {err}");
        assert!(err.to_string().contains("refusing the export"), "{err}");
    }
}

#[test]
fn long_and_pax_names_that_escape_are_refused() {
    let long = format!("{}/../../../evil", "a/".repeat(60));
    let stream = RawTar::default()
        .long_name(&long, EntryType::Regular, b"x")
        .finish();
    let err = Scene::new().fails(&stream, &defaults());
    assert!(matches!(err, UnpackError::Escapes { .. }), "{err}");

    let stream = RawTar::default().pax_name("../evil", b"x").finish();
    let err = Scene::new().fails(&stream, &defaults());
    assert!(matches!(err, UnpackError::Escapes { .. }), "{err}");
}

#[test]
fn writing_through_an_outside_symlink_is_refused() {
    let stream = RawTar::default()
        .symlink("link", "/etc")
        .file("link/passwd", b"root::0:0")
        .finish();
    let err = Scene::new().fails(&stream, &defaults());
    assert!(matches!(err, UnpackError::ThroughSymlink { .. }), "{err}");
    assert!(err.to_string().contains("'link'"), "{err}");
}

#[test]
fn writing_through_an_inside_symlink_is_refused() {
    let stream = RawTar::default()
        .dir("d")
        .symlink("link", "d")
        .file("link/x", b"x")
        .finish();
    let err = Scene::new().fails(&stream, &defaults());
    assert!(matches!(err, UnpackError::ThroughSymlink { .. }), "{err}");
}

#[test]
fn writing_under_a_file_is_refused() {
    let stream = RawTar::default().file("f", b"x").file("f/g", b"y").finish();
    let err = Scene::new().fails(&stream, &defaults());
    assert!(matches!(err, UnpackError::ThroughSymlink { .. }), "{err}");
}

#[test]
fn symlinks_pointing_outside_are_skipped_with_a_warning() {
    let scene = Scene::new();
    let stream = RawTar::default()
        .symlink("up", "../..")
        .symlink("abs", "/etc/passwd")
        .dir("d")
        .symlink("d/x", "..")
        .symlink("y", "d/x/..")
        .symlink("ok", "d/../d")
        .symlink("fine", "d/x")
        .finish();
    let report = scene.unpack(&stream, &defaults()).expect("unpack");
    assert_eq!(report.skipped_symlinks, 4, "{report:?}");
    assert_eq!(report.symlinks, 2);
    assert_eq!(report.warnings.len(), 4);
    assert!(
        report.warnings[0].contains("'up' -> '../..'"),
        "{:?}",
        report.warnings
    );
    assert_eq!(common::listing(&scene.dest), ["d", "d/x", "fine"]);
    assert_eq!(
        fs::read_link(scene.dest.join("d/x")).expect("link"),
        PathBuf::from("..")
    );
    scene.only_inside();
}

#[test]
fn hard_links_must_name_an_earlier_file_inside() {
    for target in ["/etc/passwd", "../outside", "missing", "link", "d", "up"] {
        let stream = RawTar::default()
            .file("f", b"data")
            .dir("d")
            .symlink("link", "f")
            .symlink("up", "/etc/passwd")
            .hard_link("h", target)
            .finish();
        let err = Scene::new().fails(&stream, &defaults());
        assert!(
            matches!(err, UnpackError::BadHardLink { .. }),
            "{target}: {err}"
        );
    }
}

#[test]
fn hard_links_to_earlier_files_are_linked() {
    let scene = Scene::new();
    let stream = RawTar::default()
        .file("d/f", b"data")
        .hard_link("h", "./d/f")
        .finish();
    let report = scene.unpack(&stream, &defaults()).expect("unpack");
    assert_eq!((report.files, report.hard_links, report.dirs), (1, 1, 1));
    let (f, h) = (scene.dest.join("d/f"), scene.dest.join("h"));
    assert_eq!(fs::read(&h).expect("read"), b"data");
    assert_eq!(
        fs::metadata(f).expect("f").ino(),
        fs::metadata(h).expect("h").ino()
    );
}

#[test]
fn devices_and_fifos_are_skipped() {
    let scene = Scene::new();
    let mut stream = RawTar::default().file("keep", b"k");
    for (name, kind) in [
        ("null", EntryType::Char),
        ("sda", EntryType::Block),
        ("pipe", EntryType::Fifo),
    ] {
        stream = stream.push(&RawTar::header(name.as_bytes(), kind, 0, b"", 0o666), b"");
    }
    let report = scene.unpack(&stream.finish(), &defaults()).expect("unpack");
    assert_eq!(report.skipped_special, 3);
    assert_eq!(common::listing(&scene.dest), ["keep"]);
}

#[test]
fn git_metadata_is_left_out_when_asked() {
    let stream = || {
        RawTar::default()
            .file("keep.txt", b"k")
            .dir(".git")
            .file_mode(
                ".git/hooks/pre-commit",
                b"#!/bin/sh\ntouch /tmp/pwned\n",
                0o755,
            )
            .file("sub/.git", b"gitdir: /home/user/secret/.git\n")
            .file("sub/ok.txt", b"ok")
            .finish()
    };
    let scene = Scene::new();
    let opts = UnpackOptions {
        skip_git_metadata: true,
        ..defaults()
    };
    let report = scene.unpack(&stream(), &opts).expect("unpack");
    assert_eq!(report.skipped_git, 3);
    assert_eq!(
        common::listing(&scene.dest),
        ["keep.txt", "sub", "sub/ok.txt"]
    );
    assert!(report
        .warnings
        .iter()
        .any(|w| w.contains(".git/hooks/pre-commit")));
    // Without the option, git metadata is a tree like any other.
    let scene = Scene::new();
    let report = scene.unpack(&stream(), &defaults()).expect("unpack");
    assert_eq!(report.skipped_git, 0);
    assert!(scene.dest.join(".git/hooks/pre-commit").is_file());
}

#[test]
fn special_mode_bits_are_dropped() {
    let scene = Scene::new();
    let stream = RawTar::default()
        .file_mode("suid", b"#!/bin/sh\n", 0o6755)
        .push(
            &RawTar::header(b"sticky", EntryType::Directory, 0, b"", 0o1777),
            b"",
        )
        .push(
            &RawTar::header(b"locked", EntryType::Directory, 0, b"", 0o000),
            b"",
        )
        .file("locked/inside", b"x")
        .finish();
    scene.unpack(&stream, &defaults()).expect("unpack");
    let mode = |name: &str| {
        fs::metadata(scene.dest.join(name))
            .expect(name)
            .permissions()
            .mode()
            & 0o7777
    };
    assert_eq!(mode("suid"), 0o755);
    assert_eq!(mode("sticky"), 0o755, "the umask 0022 applies");
    assert_eq!(
        mode("locked"),
        0o700,
        "the owner can always read and remove an export"
    );
}

#[test]
fn the_umask_applies_to_every_mode_the_output_dir_included() {
    let scene = Scene::new();
    let stream = RawTar::default()
        .push(
            &RawTar::header(b"./", EntryType::Directory, 0, b"", 0o777),
            b"",
        )
        .file_mode("open.sh", b"#!/bin/sh\n", 0o777)
        .file_mode("shared.txt", b"x", 0o666)
        .push(
            &RawTar::header(b"wide", EntryType::Directory, 0, b"", 0o777),
            b"",
        )
        .finish();
    scene.unpack(&stream, &defaults()).expect("unpack");
    let mode = |path: &Path| fs::metadata(path).expect("meta").permissions().mode() & 0o7777;
    assert_eq!(mode(&scene.dest), 0o755, "the archive's ./ entry");
    assert_eq!(mode(&scene.dest.join("open.sh")), 0o755);
    assert_eq!(mode(&scene.dest.join("shared.txt")), 0o644);
    assert_eq!(mode(&scene.dest.join("wide")), 0o755);
}

#[test]
fn a_header_that_claims_more_data_than_sent_is_an_error() {
    let header = RawTar::header(b"big", EntryType::Regular, 10_000, b"", 0o644);
    let mut stream = RawTar::default()
        .file("ok", b"fine")
        .push(&header, &[7u8; 100])
        .0;
    stream.truncate(stream.len() - 412); // cut the padding too: data ends at 100 bytes
    let err = Scene::new().fails(&stream, &defaults());
    assert!(
        matches!(
            err,
            UnpackError::Truncated {
                expected: 10_000,
                got: 100,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn a_stream_without_its_end_marker_is_an_error() {
    let stream = RawTar::default().file("a", b"x").0;
    let err = Scene::new().fails(&stream, &defaults());
    assert!(matches!(err, UnpackError::StreamEnded), "{err}");

    let err = Scene::new().fails(b"", &defaults());
    assert!(matches!(err, UnpackError::StreamEnded), "{err}");

    let mut half_header = RawTar::default().file("a", b"x").0;
    half_header.extend_from_slice(
        &RawTar::header(b"b", EntryType::Regular, 0, b"", 0o644).as_bytes()[..300],
    );
    Scene::new().fails(&half_header, &defaults());
}

#[test]
fn a_corrupt_header_is_an_error() {
    let mut stream = RawTar::default().file("a", b"x").file("b", b"y").finish();
    stream[1024 + 10] ^= 0x55; // inside the second header's name
    let err = Scene::new().fails(&stream, &defaults());
    assert!(matches!(err, UnpackError::Read(_)), "{err}");
}

#[test]
fn too_many_entries_are_refused() {
    let mut stream = RawTar::default();
    for i in 0..11 {
        stream = stream.file(&format!("f{i}"), b"");
    }
    let opts = UnpackOptions {
        limits: Limits {
            max_entries: 10,
            ..Limits::default()
        },
        ..defaults()
    };
    let err = Scene::new().fails(&stream.finish(), &opts);
    assert_eq!(
        err.to_string(),
        "export has more than 10 entries; export a smaller path"
    );
}

#[test]
fn a_huge_size_header_fails_before_reading() {
    // 3 GiB claimed, nothing sent: the header alone must be refused.
    let header = RawTar::header(b"huge", EntryType::Regular, 3 << 30, b"", 0o644);
    let stream = RawTar::default().push(&header, b"").0;
    let err = Scene::new().fails(&stream, &defaults());
    assert_eq!(
        err.to_string(),
        "file 'huge' in the export exceeds 2 GiB; export a smaller path"
    );

    let opts = UnpackOptions {
        limits: Limits {
            max_file_bytes: 4 << 30,
            ..Limits::default()
        },
        ..defaults()
    };
    let err = Scene::new().fails(&stream, &opts);
    assert_eq!(
        err.to_string(),
        "export exceeds 2 GiB; export a smaller path"
    );
}

#[test]
fn the_total_is_counted_on_bytes_read() {
    let opts = UnpackOptions {
        limits: Limits {
            max_total_bytes: 1000,
            ..Limits::default()
        },
        ..defaults()
    };
    let stream = RawTar::default()
        .file("a", &[1; 600])
        .file("b", &[2; 600])
        .finish();
    let err = Scene::new().fails(&stream, &opts);
    assert!(matches!(err, UnpackError::TooLarge { .. }), "{err}");
    // Data hidden in members that are not files counts too.
    let device = RawTar::header(b"dev", EntryType::Char, 2000, b"", 0o644);
    let stream = RawTar::default().push(&device, &[0; 2000]).finish();
    let err = Scene::new().fails(&stream, &opts);
    assert!(matches!(err, UnpackError::TooLarge { .. }), "{err}");
}

#[test]
fn long_paths_and_oversized_metadata_are_refused() {
    let opts = UnpackOptions {
        limits: Limits {
            max_path_len: 50,
            ..Limits::default()
        },
        ..defaults()
    };
    let stream = RawTar::default()
        .long_name(&"x/".repeat(40), EntryType::Regular, b"")
        .finish();
    let err = Scene::new().fails(&stream, &opts);
    assert!(
        matches!(err, UnpackError::PathTooLong { limit: 50, .. }),
        "{err}"
    );

    let header = RawTar::header(
        b"././@LongLink",
        EntryType::GNULongName,
        2 << 20,
        b"",
        0o644,
    );
    let stream = RawTar::default()
        .push(&header, &vec![b'a'; 2 << 20])
        .finish();
    let err = Scene::new().fails(&stream, &defaults());
    assert!(matches!(err, UnpackError::Corrupt { .. }), "{err}");
}

#[test]
fn pax_size_and_sparse_tricks_are_refused() {
    let record = pax_record("size", "5");
    let pax = RawTar::header(
        b"PaxHeader",
        EntryType::XHeader,
        record.len() as u64,
        b"",
        0o644,
    );
    let stream = RawTar::default()
        .push(&pax, &record)
        .file("a", b"0123456789")
        .finish();
    let err = Scene::new().fails(&stream, &defaults());
    assert!(matches!(err, UnpackError::Unsupported { .. }), "{err}");

    let sparse = RawTar::header(b"s", EntryType::GNUSparse, 0, b"", 0o644);
    let stream = RawTar::default().push(&sparse, b"").finish();
    let err = Scene::new().fails(&stream, &defaults());
    assert!(matches!(err, UnpackError::Unsupported { .. }), "{err}");
}

#[test]
fn duplicate_members_are_refused() {
    let cases = [
        RawTar::default().dir("x").file("x", b"file over dir"),
        RawTar::default().file("x", b"one").file("x", b"two"),
        RawTar::default().file("x", b"file").dir("x"),
        RawTar::default().file("x", b"file").symlink("x", "y"),
        RawTar::default()
            .symlink("x", "/etc")
            .file("x", b"over a skipped link"),
        RawTar::default().symlink("x", "/etc").dir("x"),
    ];
    for (i, stream) in cases.into_iter().enumerate() {
        let err = Scene::new().fails(&stream.finish(), &defaults());
        assert!(
            matches!(err, UnpackError::Duplicate { .. }),
            "case {i}: {err}"
        );
    }
}

#[test]
fn a_directory_listed_twice_is_merged() {
    let scene = Scene::new();
    let stream = RawTar::default()
        .file("d/a", b"a")
        .dir("d")
        .dir("./d/")
        .file("d/b", b"b")
        .finish();
    let report = scene.unpack(&stream, &defaults()).expect("unpack");
    assert_eq!((report.dirs, report.files), (1, 2));
    assert_eq!(common::listing(&scene.dest), ["d", "d/a", "d/b"]);
}
