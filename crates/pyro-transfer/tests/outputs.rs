//! Where an unpack lands: existing outputs, overwrite, single-file outputs.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use common::{RawTar, Scene};
use pyro_transfer::{unpack, Expect, OutputKind, UnpackError, UnpackOptions};

fn defaults() -> UnpackOptions {
    UnpackOptions::default()
}

#[test]
fn a_populated_output_is_never_merged_into() {
    let scene = Scene::new();
    fs::create_dir(&scene.dest).expect("mkdir");
    fs::write(scene.dest.join("mine"), "keep").expect("write");
    let stream = RawTar::default().file("theirs", b"x").finish();
    let err = scene.unpack(&stream, &defaults()).expect_err("populated");
    assert!(matches!(err, UnpackError::DestExists { .. }), "{err}");
    assert_eq!(
        common::listing(scene.tmp.path()),
        ["p", "p/out", "p/out/mine"]
    );

    let overwrite = UnpackOptions {
        overwrite: true,
        expect: Expect::Dir,
        ..defaults()
    };
    scene.unpack(&stream, &overwrite).expect("overwrite");
    assert_eq!(
        common::listing(scene.tmp.path()),
        ["p", "p/out", "p/out/theirs"]
    );

    // A failed overwrite leaves the previous output as it was.
    let bad = RawTar::default()
        .file("new", b"x")
        .file("../evil", b"x")
        .finish();
    scene.unpack(&bad, &overwrite).expect_err("hostile");
    assert_eq!(
        common::listing(scene.tmp.path()),
        ["p", "p/out", "p/out/theirs"]
    );
}

#[test]
fn an_empty_directory_output_is_filled() {
    let scene = Scene::new();
    fs::create_dir(&scene.dest).expect("mkdir");
    let stream = RawTar::default().file("only", b"x").finish();
    let report = scene.unpack(&stream, &defaults()).expect("unpack");
    assert_eq!(
        report.output,
        OutputKind::Dir,
        "an existing empty directory stays a directory"
    );
    assert_eq!(
        common::listing(scene.tmp.path()),
        ["p", "p/out", "p/out/only"]
    );
}

#[test]
fn single_file_outputs() {
    let scene = Scene::new();
    let stream = RawTar::default()
        .file_mode("report.txt", b"hello", 0o600)
        .finish();
    let opts = UnpackOptions {
        expect: Expect::File,
        ..defaults()
    };
    let report = scene.unpack(&stream, &opts).expect("unpack");
    assert_eq!(report.output, OutputKind::File);
    assert_eq!(fs::read(&scene.dest).expect("file"), b"hello");
    assert_eq!(
        fs::metadata(&scene.dest)
            .expect("meta")
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    assert_eq!(common::listing(scene.tmp.path()), ["p", "p/out"]);

    let two = RawTar::default().file("a", b"a").file("b", b"b").finish();
    let err = Scene::new().fails(&two, &opts);
    assert_eq!(
        err.to_string(),
        "expected a single file but the export holds 2 entries; export a file, or ask for a directory output"
    );
    let nested = RawTar::default().file("d/a", b"a").finish();
    Scene::new().fails(&nested, &opts);

    let scene = Scene::new();
    let any = scene.unpack(&stream, &defaults()).expect("any");
    assert_eq!(any.output, OutputKind::File);
    let scene = Scene::new();
    let dir = UnpackOptions {
        expect: Expect::Dir,
        ..defaults()
    };
    assert_eq!(
        scene.unpack(&stream, &dir).expect("dir").output,
        OutputKind::Dir
    );
    assert_eq!(common::listing(&scene.dest), ["report.txt"]);
}

#[test]
fn a_missing_parent_is_reported_not_created() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dest = tmp.path().join("no/such/out");
    let stream = RawTar::default().file("a", b"x").finish();
    let err = unpack(&stream[..], &dest, &defaults()).expect_err("no parent");
    assert!(
        err.to_string().contains("does not exist; create it first"),
        "{err}"
    );
    assert!(common::listing(tmp.path()).is_empty());
}
