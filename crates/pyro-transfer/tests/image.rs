//! Seed images checked by e2fsprogs: `e2fsck -fn` finds nothing wrong, and
//! `debugfs` reads back every file, link, mode and time the tree had.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::Command;

use pyro_transfer::{build_image, ImageError, ImageOptions};

fn options() -> ImageOptions {
    ImageOptions {
        max_bytes: 1 << 30,
        use_ignore_file: true,
        ..ImageOptions::default()
    }
}

/// `e2fsck -fn` of the image: its output, with the one complaint a seed
/// image earns on purpose (no lost+found) taken out.
fn fsck(image: &Path) -> String {
    let output = Command::new("e2fsck")
        .args(["-fn"])
        .arg(image)
        .output()
        .expect("e2fsck runs");
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    let problems: Vec<&str> = text
        .lines()
        .filter(|line| {
            !line.starts_with("Pass ")
                && !line.starts_with("e2fsck ")
                && !line.contains("lost+found")
                && !line.starts_with("pyro-seed:")
                && !line.contains("WARNING: Filesystem still has errors")
                && !line.trim().is_empty()
        })
        .collect();
    problems.join("\n")
}

fn debugfs(image: &Path, request: &str) -> Vec<u8> {
    let output = Command::new("debugfs")
        .args(["-R", request])
        .arg(image)
        .output()
        .expect("debugfs runs");
    output.stdout
}

#[test]
fn a_tree_with_every_kind_of_entry_reads_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("seed");
    std::fs::create_dir_all(root.join("src/deep/er")).unwrap();
    std::fs::create_dir(root.join("empty")).unwrap();
    std::fs::write(root.join("README.md"), "hello\n").unwrap();
    std::fs::write(root.join("src/main.py"), "print('hi')\n".repeat(1000)).unwrap();
    std::fs::write(root.join("run.sh"), "#!/bin/sh\necho run\n").unwrap();
    std::fs::set_permissions(root.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::hard_link(root.join("README.md"), root.join("src/README-link.md")).unwrap();
    symlink("/etc/shadow", root.join("shadow")).unwrap();
    let long_target = format!("../{}", "t".repeat(100));
    symlink(&long_target, root.join("long-link")).unwrap();
    std::fs::write(root.join(OsStr::from_bytes(b"bad-\xff-name")), "latin1").unwrap();
    let nix = std::ffi::CString::new(root.join("fifo").as_os_str().as_bytes()).unwrap();
    // SAFETY: mkfifo with a valid C string.
    assert_eq!(unsafe { libc::mkfifo(nix.as_ptr(), 0o644) }, 0);
    let _socket = std::os::unix::net::UnixListener::bind(root.join("sock")).unwrap();
    // A sparse file with many data runs: its extents need a leaf block.
    let sparse = std::fs::File::create(root.join("sparse.bin")).unwrap();
    for i in 0..20u64 {
        use std::os::unix::fs::FileExt;
        sparse.write_at(b"data", i * 1_000_000).unwrap();
    }
    sparse.set_len(30_000_000).unwrap();
    // A directory of many blocks.
    for i in 0..600 {
        std::fs::write(
            root.join(format!("src/deep/er/file-with-a-long-name-{i:04}")),
            "x",
        )
        .unwrap();
    }

    let image = dir.path().join("seed.img");
    let report = build_image(&root, &image, &options(), no_extras).expect("image builds");
    assert_eq!(fsck(&image), "", "e2fsck found problems");
    assert_eq!(report.skipped, 2, "{:?}", report.skipped_names);
    assert!(report.skipped_names.iter().any(|n| n == "fifo (fifo)"));
    assert!(report.skipped_names.iter().any(|n| n == "sock (socket)"));
    assert!(
        report.image_bytes < 8_000_000,
        "holes stay holes: {}",
        report.image_bytes
    );

    assert_eq!(debugfs(&image, "cat /tree/README.md"), b"hello\n");
    assert_eq!(debugfs(&image, "cat /tree/src/README-link.md"), b"hello\n");
    assert_eq!(
        debugfs(&image, "cat /tree/src/main.py"),
        "print('hi')\n".repeat(1000).as_bytes()
    );
    let sparse = debugfs(&image, "cat /tree/sparse.bin");
    assert_eq!(sparse.len(), 30_000_000);
    assert_eq!(&sparse[19_000_000..19_000_004], b"data");
    assert!(sparse[19_000_004..].iter().all(|&b| b == 0));
    let stat = String::from_utf8_lossy(&debugfs(&image, "stat /tree/README.md")).to_string();
    assert!(stat.contains("Links: 2"), "{stat}");
    let stat = String::from_utf8_lossy(&debugfs(&image, "stat /tree/run.sh")).to_string();
    assert!(stat.contains("Mode:  0755"), "{stat}");
    assert!(stat.contains("User:     0"), "{stat}");
    let stat = String::from_utf8_lossy(&debugfs(&image, "stat /tree/shadow")).to_string();
    assert!(stat.contains("Fast link dest: \"/etc/shadow\""), "{stat}");
    let listing = String::from_utf8_lossy(&debugfs(&image, "ls -l /tree/src/deep/er")).to_string();
    assert_eq!(listing.matches("file-with-a-long-name-").count(), 600);
    // debugfs reads a slow symlink's block: the target, not what it names.
    assert_eq!(
        debugfs(&image, "cat /tree/long-link"),
        long_target.as_bytes()
    );

    // The manifest's blob ids are Git's.
    for entry in &report.entries {
        if entry.mode == 0o120000 {
            continue;
        }
        let path = root.join(OsStr::from_bytes(&entry.path));
        let git = Command::new("git")
            .args(["hash-object", "--no-filters", "--"])
            .arg(&path)
            .output()
            .unwrap();
        let expected = String::from_utf8_lossy(&git.stdout).trim().to_string();
        assert_eq!(hex(&entry.blob), expected, "{}", path.display());
    }
    let names: Vec<&[u8]> = report.entries.iter().map(|e| e.path.as_slice()).collect();
    assert!(names.contains(&b"src/README-link.md".as_slice()));
    assert!(names.windows(2).all(|pair| pair[0] < pair[1]), "sorted");
}

#[test]
fn excludes_and_the_ignore_file_leave_paths_out_and_count_them() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("seed");
    std::fs::create_dir_all(root.join("node_modules/pkg")).unwrap();
    std::fs::create_dir_all(root.join("target/debug")).unwrap();
    std::fs::create_dir_all(root.join("src")).unwrap();
    std::fs::write(root.join("node_modules/pkg/index.js"), "x".repeat(1000)).unwrap();
    std::fs::write(root.join("target/debug/app"), "y".repeat(500)).unwrap();
    std::fs::write(root.join("src/app.rs"), "fn main() {}\n").unwrap();
    std::fs::write(root.join("src/debug.log"), "log").unwrap();
    std::fs::write(
        root.join(".pyroignore"),
        "# build outputs\ntarget/\n*.log\n",
    )
    .unwrap();
    let image = dir.path().join("seed.img");
    let options = ImageOptions {
        exclude: vec!["node_modules/".into()],
        ..options()
    };
    let report = build_image(&root, &image, &options, no_extras).unwrap();
    assert_eq!(fsck(&image), "");
    let names: Vec<String> = report
        .entries
        .iter()
        .map(|e| String::from_utf8_lossy(&e.path).to_string())
        .collect();
    assert_eq!(names, [".pyroignore", "src/app.rs"]);
    // node_modules, pkg, index.js, target, debug, app, debug.log
    assert_eq!(report.excluded, 7);
    assert_eq!(report.excluded_bytes, 1503);
}

#[test]
fn bad_input_fails_cleanly_and_leaves_no_image() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("seed");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("big"), vec![1u8; 3 << 20]).unwrap();
    let image = dir.path().join("seed.img");
    let small = ImageOptions {
        max_bytes: 1 << 20,
        ..options()
    };
    let error = build_image(&root, &image, &small, no_extras).unwrap_err();
    assert!(matches!(error, ImageError::TooLarge { .. }), "{error}");
    assert!(error.to_string().contains("--exclude"), "{error}");
    assert!(!image.exists());

    let bad = ImageOptions {
        exclude: vec!["[z-a]".into()],
        ..options()
    };
    let error = build_image(&root, &image, &bad, no_extras).unwrap_err();
    assert!(error.to_string().contains("--exclude [z-a]"), "{error}");
    assert!(!image.exists());

    let file = root.join("big");
    let error = build_image(&file, &image, &options(), no_extras).unwrap_err();
    assert!(error.to_string().contains("is not a directory"), "{error}");
}

fn no_extras(_: &[pyro_transfer::SeedEntry]) -> Vec<pyro_transfer::ExtraFile> {
    Vec::new()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn sparse_files_count_by_their_data_and_too_many_holes_are_refused() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("seed");
    std::fs::create_dir(&root).unwrap();
    // 2 GB apparent, a few bytes of data: fits a 256 MiB limit.
    let huge = std::fs::File::create(root.join("disk.img")).unwrap();
    huge.write_at(b"end", 2_000_000_000).unwrap();
    let image = dir.path().join("seed.img");
    let small = ImageOptions {
        max_bytes: 256 << 20,
        ..options()
    };
    let report = build_image(&root, &image, &small, no_extras).expect("a sparse giant fits");
    assert_eq!(fsck(&image), "");
    assert_eq!(
        std::fs::metadata(&image).unwrap().len(),
        256 << 20,
        "padded to max_bytes"
    );
    assert_eq!(report.bytes, 2_000_000_003);
    std::fs::remove_file(&image).unwrap();
    std::fs::remove_file(root.join("disk.img")).unwrap();

    // Data every other block: more runs than four extent leaves map.
    let holes = std::fs::File::create(root.join("holes.bin")).unwrap();
    for i in 0..1400u64 {
        holes.write_at(b"x", i * 8192).unwrap();
    }
    let error = build_image(&root, &image, &options(), no_extras).unwrap_err();
    assert!(matches!(error, ImageError::TooFragmented { .. }), "{error}");
    assert!(error.to_string().contains("holes.bin"), "{error}");
    assert!(!image.exists());
}

#[test]
fn extra_files_made_from_the_manifest_sit_beside_the_tree() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("seed");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("a.txt"), "a\n").unwrap();
    let image = dir.path().join("seed.img");
    let report = build_image(&root, &image, &options(), |manifest| {
        let listing: Vec<u8> = manifest.iter().flat_map(|e| e.path.clone()).collect();
        vec![
            pyro_transfer::ExtraFile {
                path: b"baseline.git/HEAD".to_vec(),
                data: b"ref: x\n".to_vec(),
                mode: 0o644,
                mtime: (1_700_000_000, 0),
            },
            pyro_transfer::ExtraFile {
                path: b"listing".to_vec(),
                data: listing,
                mode: 0o600,
                mtime: (1_700_000_000, 0),
            },
        ]
    })
    .unwrap();
    assert_eq!(fsck(&image), "");
    assert_eq!(report.entries.len(), 1, "extras are not in the manifest");
    assert_eq!(debugfs(&image, "cat /extra/baseline.git/HEAD"), b"ref: x\n");
    assert_eq!(debugfs(&image, "cat /extra/listing"), b"a.txt");
    assert_eq!(debugfs(&image, "cat /tree/a.txt"), b"a\n");
}
