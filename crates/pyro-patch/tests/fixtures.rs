//! Real `git diff`, `git format-patch` and `diff -ruN` output (made by
//! `tests/fixtures/generate.sh`) parsed and applied to the `before/` tree of
//! each case must give exactly its `after/` tree, modes included.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use pyro_patch::{
    apply, parse, ApplyError, DiffStat, FailureReason, FileKind, MemoryTree, MODE_EXECUTABLE,
    MODE_FILE,
};

fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(rel)
}

/// Loads a directory into a tree, modes from the executable bit.
fn load(dir: &Path) -> MemoryTree {
    fn walk(root: &Path, dir: &Path, tree: &mut MemoryTree) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(root, &path, tree);
                continue;
            }
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            let exec = fs::metadata(&path).unwrap().permissions().mode() & 0o111 != 0;
            let mode = if exec { MODE_EXECUTABLE } else { MODE_FILE };
            tree.insert(&rel, fs::read(&path).unwrap(), mode);
        }
    }
    let mut tree = MemoryTree::new();
    walk(dir, dir, &mut tree);
    tree
}

fn check_case(name: &str) -> pyro_patch::Patch {
    let text = fs::read(fixture(&format!("{name}/{name}.diff"))).unwrap();
    let patch = parse(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut tree = load(&fixture(&format!("{name}/before")));
    let report = apply(&patch, &tree).unwrap_or_else(|e| panic!("{name}: {e}"));
    tree.commit(&report);
    let after = load(&fixture(&format!("{name}/after")));
    assert_eq!(
        tree.files.keys().collect::<Vec<_>>(),
        after.files.keys().collect::<Vec<_>>(),
        "{name}: file lists differ"
    );
    for (path, (content, mode)) in &after.files {
        let (got, got_mode) = &tree.files[path];
        assert_eq!(
            String::from_utf8_lossy(got),
            String::from_utf8_lossy(content),
            "{name}: {path}"
        );
        assert_eq!(got, content, "{name}: {path} bytes");
        assert_eq!(got_mode, mode, "{name}: {path} mode");
    }
    patch
}

#[test]
fn git_diff_with_every_kind_of_change() {
    let patch = check_case("git_multi");
    let kinds: Vec<_> = patch
        .files
        .iter()
        .map(|f| (f.display_path(), f.kind))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("README.md", FileKind::Delete),
            ("crlf.txt", FileKind::Modify),
            ("docs/new.md", FileKind::Create),
            ("empty.txt", FileKind::Create),
            ("gains_noeol.txt", FileKind::Modify),
            ("new_name.txt", FileKind::Rename),
            ("noeol.txt", FileKind::Modify),
            ("run.sh", FileKind::Modify),
            ("src/lib.rs", FileKind::Modify),
            ("sub/moved.rs", FileKind::Rename),
            ("tool.py", FileKind::Modify),
        ]
    );
    let run = &patch.files[7];
    assert_eq!(
        (run.old_mode, run.new_mode),
        (Some(0o100644), Some(0o100755))
    );
    assert!(run.hunks.is_empty());
    assert_eq!(patch.files[5].old_path.as_deref(), Some("old_name.txt"));
    assert_eq!(
        DiffStat::of(&patch).to_string(),
        "11 files changed, 8 insertions(+), 8 deletions(-)"
    );
}

#[test]
fn format_patch_email_is_skipped_around_the_diff() {
    let patch = check_case("format_patch");
    assert_eq!(patch.files.len(), 11);
    // The `-- ` signature after the last hunk is not part of it.
    let last = patch.files.last().unwrap();
    assert_eq!(last.hunks[0].lines.len(), 3);
}

#[test]
fn diff_run_of_two_directories() {
    let patch = check_case("diff_run");
    let readme = &patch.files[0];
    assert_eq!(readme.kind, FileKind::Delete);
    assert_eq!(readme.old_path.as_deref(), Some("README.md"));
    let created = patch
        .files
        .iter()
        .find(|f| f.kind == FileKind::Create)
        .unwrap();
    assert_eq!(created.new_path.as_deref(), Some("docs/new.md"));
}

#[test]
fn binary_patches_parse_but_do_not_apply() {
    for name in ["plain", "literal"] {
        let text = fs::read(fixture(&format!("git_binary/{name}.diff"))).unwrap();
        let patch = parse(&text).unwrap();
        assert_eq!(patch.files.len(), 2, "{name}");
        assert!(patch.files[0].binary, "{name}");
        assert!(!patch.files[1].binary, "{name}");
        assert_eq!(patch.files[1].hunks.len(), 1, "{name}");
        let mut tree = MemoryTree::new();
        tree.insert("blob.bin", b"a\0b".to_vec(), MODE_FILE);
        tree.insert("t.txt", "text\n", MODE_FILE);
        let err = apply(&patch, &tree).unwrap_err();
        let ApplyError::Rejected(failures) = &err else {
            panic!("{err}")
        };
        assert_eq!(failures.len(), 1);
        assert_eq!(failures[0].reason, FailureReason::Binary);
        assert_eq!(
            err.to_string(),
            "patch does not apply; nothing was changed:\n  \
             blob.bin: binary patches are not supported; write the file instead"
        );
    }
}

#[test]
fn quoted_names_from_git() {
    let text = fs::read(fixture("quoted/quoted.diff")).unwrap();
    let patch = parse(&text).unwrap();
    let names: Vec<_> = patch.files.iter().map(|f| f.display_path()).collect();
    assert_eq!(names, vec!["caf\u{e9}", "sp ace", "ta\tb"]);
    assert_eq!(patch.files[0].kind, FileKind::Create);
    assert_eq!(patch.files[1].old_path.as_deref(), Some("sp ace"));
    let mut tree = MemoryTree::new();
    tree.insert("sp ace", "x\n", MODE_FILE);
    tree.insert("ta\tb", "y\n", MODE_FILE);
    let report = apply(&patch, &tree).unwrap();
    tree.commit(&report);
    assert_eq!(tree.files["caf\u{e9}"].0, b"new\n");
    assert_eq!(tree.files["sp ace"].0, b"x2\n");
    assert_eq!(tree.files["ta\tb"].0, b"y2\n");
}

#[test]
fn applying_twice_says_already_applied() {
    let text = fs::read(fixture("git_multi/git_multi.diff")).unwrap();
    let tree = load(&fixture("git_multi/after"));
    let err = apply(&parse(&text).unwrap(), &tree).unwrap_err();
    assert_eq!(
        err.to_string(),
        "patch does not apply; nothing was changed:
  README.md: file does not exist; looks already deleted
  crlf.txt: hunk 1 @@ -1,3 +1,3 @@: looks already applied
  docs/new.md: looks already applied
  empty.txt: looks already applied
  gains_noeol.txt: hunk 1 @@ -1,2 +1,2 @@: looks already applied
  new_name.txt: looks already applied
  noeol.txt: hunk 1 @@ -1,2 +1,2 @@: looks already applied
  src/lib.rs: hunk 1 @@ -2,7 +2,7 @@: looks already applied
  src/lib.rs: hunk 2 @@ -30,7 +30,7 @@: looks already applied
  sub/moved.rs: looks already applied
  tool.py: hunk 1 @@ -1,2 +1,3 @@: looks already applied"
    );
}
