//! Unit tests for apply: matching, offsets, every failure message, and that
//! a failing patch produces no changes at all.

use super::*;
use crate::{parse, MemoryTree, MODE_EXECUTABLE, MODE_FILE};

fn tree(files: &[(&str, &str)]) -> MemoryTree {
    let mut tree = MemoryTree::new();
    for (path, content) in files {
        tree.insert(path, *content, MODE_FILE);
    }
    tree
}

fn run(patch: &str, tree: &MemoryTree) -> Result<ApplyReport, ApplyError> {
    apply(&parse(patch.as_bytes()).unwrap(), tree)
}

/// Applies and commits, returning the resulting tree.
fn applied(patch: &str, mut tree: MemoryTree) -> MemoryTree {
    let report = run(patch, &tree).unwrap_or_else(|e| panic!("{e}"));
    tree.commit(&report);
    tree
}

fn content(tree: &MemoryTree, path: &str) -> String {
    String::from_utf8(tree.files[path].0.clone()).unwrap()
}

fn failures(patch: &str, tree: &MemoryTree) -> Vec<String> {
    match run(patch, tree) {
        Err(ApplyError::Rejected(failures)) => failures.iter().map(ToString::to_string).collect(),
        other => panic!("expected a rejection, got {other:?}"),
    }
}

fn numbered(n: usize) -> String {
    (1..=n).map(|i| format!("{i}\n")).collect()
}

#[test]
fn applies_at_the_stated_line() {
    let t = applied(
        "--- a/x\n+++ b/x\n@@ -2,3 +2,3 @@\n 2\n-3\n+three\n 4\n",
        tree(&[("x", &numbered(5))]),
    );
    assert_eq!(content(&t, "x"), "1\n2\nthree\n4\n5\n");
}

#[test]
fn searches_outward_and_reports_the_offset() {
    let mut text = String::from("new a\nnew b\n");
    text += &numbered(20);
    let patch = "--- a/x\n+++ b/x\n@@ -9,3 +9,3 @@\n 9\n-10\n+ten\n 11\n@@ -15,3 +15,3 @@\n 15\n-16\n+sixteen\n 17\n";
    let report = run(patch, &tree(&[("x", &text)])).unwrap();
    assert_eq!(
        report.offsets,
        vec![
            HunkOffset {
                path: "x".into(),
                hunk: 1,
                offset: 2
            },
            HunkOffset {
                path: "x".into(),
                hunk: 2,
                offset: 2
            },
        ]
    );
    let Change::Write { content, .. } = &report.changes[0] else {
        panic!()
    };
    let content = String::from_utf8_lossy(content);
    assert!(content.contains("9\nten\n11\n") && content.contains("15\nsixteen\n17\n"));
}

#[test]
fn nearest_match_wins_when_context_repeats() {
    // Stated at line 4 ('y'); equally near matches at lines 3 and 5: the
    // later one wins, as in GNU patch.
    let text = "x\ny\nx\ny\nx\ny\nx\n";
    let patch = "--- a/f\n+++ b/f\n@@ -4,3 +4,3 @@\n x\n-y\n+Y\n x\n";
    let report = run(patch, &tree(&[("f", text)])).unwrap();
    assert_eq!(report.offsets[0].offset, 1);
    let mut t = tree(&[("f", text)]);
    t.commit(&report);
    assert_eq!(content(&t, "f"), "x\ny\nx\ny\nx\nY\nx\n");
}

#[test]
fn mismatch_names_the_first_differing_line() {
    let patch = "--- a/x\n+++ b/x\n@@ -2,3 +2,3 @@\n 2\n-3\n+three\n 4\n";
    assert_eq!(
        failures(patch, &tree(&[("x", "1\n2\nTHREE\n4\n")])),
        vec!["x: hunk 1 @@ -2,3 +2,3 @@: does not match at line 3: expected '3', found 'THREE'"]
    );
    assert_eq!(
        failures(patch, &tree(&[("x", "1\n2\n")])),
        vec![
            "x: hunk 1 @@ -2,3 +2,3 @@: does not match at line 3: expected '3', found end of file"
        ]
    );
}

#[test]
fn mismatch_in_line_ending_only_says_so() {
    let patch = "--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\n-b\n+c\n";
    assert_eq!(
        failures(patch, &tree(&[("x", "a\r\nb\r\n")])),
        vec!["x: hunk 1 @@ -1,2 +1,2 @@: line 1 differs only in its line ending: expected LF, found CRLF"]
    );
    assert_eq!(
        failures(patch, &tree(&[("x", "a\nb")])),
        vec!["x: hunk 1 @@ -1,2 +1,2 @@: line 2 differs only in its line ending: expected LF, found no newline"]
    );
}

#[test]
fn already_applied_hunks_are_recognised() {
    let patch = "--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n 1\n-2\n+two\n 3\n";
    assert_eq!(
        failures(patch, &tree(&[("x", "1\ntwo\n3\n")])),
        vec!["x: hunk 1 @@ -1,3 +1,3 @@: looks already applied"]
    );
    let create = "--- /dev/null\n+++ b/n\n@@ -0,0 +1 @@\n+hi\n";
    assert_eq!(
        failures(create, &tree(&[("n", "hi\n")])),
        vec!["n: looks already applied"]
    );
    let rename = "diff --git a/o b/n\nsimilarity index 100%\nrename from o\nrename to n\n";
    assert_eq!(
        failures(rename, &tree(&[("n", "x\n")])),
        vec!["n: looks already applied"]
    );
}

#[test]
fn file_level_failures() {
    let modify = "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n";
    assert_eq!(
        failures(modify, &tree(&[])),
        vec!["x: file does not exist; check the path or create it with a new-file patch"]
    );
    let create = "--- /dev/null\n+++ b/n\n@@ -0,0 +1 @@\n+hi\n";
    assert_eq!(
        failures(create, &tree(&[("n", "other\n")])),
        vec!["n: file already exists; patch it as a change instead of a creation"]
    );
    let delete = "--- a/d\n+++ /dev/null\n@@ -1 +0,0 @@\n-a\n";
    assert_eq!(
        failures(delete, &tree(&[("d", "a\nb\n")])),
        vec![
            "d: file has content the deletion does not remove; it changed since the patch was made"
        ]
    );
    let rename = "diff --git a/o b/n\nsimilarity index 100%\nrename from o\nrename to n\n";
    assert_eq!(
        failures(rename, &tree(&[("o", "x\n"), ("n", "y\n")])),
        vec!["n: target 'n' already exists; delete it first or patch it as a change"]
    );
}

#[test]
fn unsafe_paths_are_refused() {
    let cases = [
        (
            "--- /etc/passwd\n+++ /etc/passwd\n",
            "/etc/passwd: path '/etc/passwd' is absolute; use a path relative to the workspace",
        ),
        (
            "--- a/../x\n+++ b/../x\n",
            "../x: path '../x' contains '..'; use a path inside the workspace",
        ),
    ];
    for (head, message) in cases {
        let patch = format!("{head}@@ -1 +1 @@\n-a\n+b\n");
        assert_eq!(failures(&patch, &tree(&[])), vec![message]);
    }
    let rename = "diff --git a/x b/y\nrename from x\nrename to ../../y\n";
    assert_eq!(
        failures(rename, &tree(&[("x", "")])),
        vec!["../../y: path '../../y' contains '..'; use a path inside the workspace"]
    );
}

#[test]
fn every_failing_hunk_is_listed_and_nothing_changes() {
    let patch = "diff --git a/one b/one\n--- a/one\n+++ b/one\n@@ -1 +1 @@\n-1\n+one\n\
                 diff --git a/two b/two\n--- a/two\n+++ b/two\n@@ -1,2 +1,2 @@\n-1\n+one\n 2\n@@ -4,2 +4,2 @@\n 4\n-5\n+five\n@@ -8 +8 @@\n-8\n+eight\n\
                 diff --git a/three b/three\nnew file mode 100644\n--- /dev/null\n+++ b/three\n@@ -0,0 +1 @@\n+3\n";
    let before = tree(&[("one", "1\n"), ("two", "1\n2\n3\n4\nFIVE\n6\n7\nEIGHT\n")]);
    let err = run(patch, &before).unwrap_err();
    assert_eq!(
        err.to_string(),
        "patch does not apply; nothing was changed:\n  \
         two: hunk 2 @@ -4,2 +4,2 @@: does not match at line 5: expected '5', found 'FIVE'\n  \
         two: hunk 3 @@ -8 +8 @@: does not match at line 8: expected '8', found 'EIGHT'"
    );
    let ApplyError::Rejected(list) = err else {
        panic!()
    };
    assert_eq!(
        (list[0].hunk, list[0].header.as_deref()),
        (Some(2), Some("@@ -4,2 +4,2 @@"))
    );
}

#[test]
fn renames_with_and_without_changes_keep_the_mode() {
    let mut before = tree(&[("a/pure", "p\n"), ("moved", "1\n2\n")]);
    before.insert("tool", "run\n", MODE_EXECUTABLE);
    let patch = "diff --git a/a/pure b/b/pure\nsimilarity index 100%\nrename from a/pure\nrename to b/pure\n\
                 diff --git a/moved b/sub/moved\nsimilarity index 50%\nrename from moved\nrename to sub/moved\n\
                 --- a/moved\n+++ b/sub/moved\n@@ -1,2 +1,2 @@\n 1\n-2\n+two\n\
                 diff --git a/tool b/bin/tool\nsimilarity index 100%\nrename from tool\nrename to bin/tool\n";
    let report = run(patch, &before).unwrap();
    let deletes: Vec<_> = report.changes.iter().take(3).cloned().collect();
    assert_eq!(
        deletes,
        ["a/pure", "moved", "tool"].map(|p| Change::Delete { path: p.into() })
    );
    let mut after = before.clone();
    after.commit(&report);
    assert_eq!(
        after.files.keys().collect::<Vec<_>>(),
        ["b/pure", "bin/tool", "sub/moved"]
    );
    assert_eq!(content(&after, "sub/moved"), "1\ntwo\n");
    assert_eq!(
        after.files["bin/tool"],
        (b"run\n".to_vec(), MODE_EXECUTABLE)
    );
}

#[test]
fn copy_keeps_the_source() {
    let t = applied(
        "diff --git a/x b/y\nsimilarity index 80%\ncopy from x\ncopy to y\n--- a/x\n+++ b/y\n@@ -1 +1 @@\n-a\n+b\n",
        tree(&[("x", "a\n")]),
    );
    assert_eq!(
        (content(&t, "x"), content(&t, "y")),
        ("a\n".into(), "b\n".into())
    );
}

#[test]
fn mode_only_change() {
    let report = run(
        "diff --git a/s b/s\nold mode 100644\nnew mode 100755\n",
        &tree(&[("s", "x\n")]),
    )
    .unwrap();
    assert_eq!(
        report.changes,
        vec![Change::Write {
            path: "s".into(),
            content: b"x\n".to_vec(),
            mode: Some(MODE_EXECUTABLE)
        }]
    );
}

#[test]
fn crlf_and_missing_newlines_both_ways() {
    let t = applied(
        "--- a/c\n+++ b/c\n@@ -1,2 +1,2 @@\n a\r\n-b\r\n+B\r\n",
        tree(&[("c", "a\r\nb\r\n")]),
    );
    assert_eq!(content(&t, "c"), "a\r\nB\r\n");
    let gains = "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n\\ No newline at end of file\n+a\n";
    assert_eq!(content(&applied(gains, tree(&[("x", "a")])), "x"), "a\n");
    let loses = "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+a\n\\ No newline at end of file\n";
    assert_eq!(content(&applied(loses, tree(&[("x", "a\n")])), "x"), "a");
}

#[test]
fn later_file_patches_see_earlier_ones() {
    let patch =
        "--- /dev/null\n+++ b/n\n@@ -0,0 +1 @@\n+1\n--- a/n\n+++ b/n\n@@ -1 +1,2 @@\n 1\n+2\n";
    let report = run(patch, &tree(&[])).unwrap();
    assert_eq!(
        report.changes,
        vec![Change::Write {
            path: "n".into(),
            content: b"1\n2\n".to_vec(),
            mode: None
        }]
    );
    let gone =
        "--- /dev/null\n+++ b/n\n@@ -0,0 +1 @@\n+1\n--- a/n\n+++ /dev/null\n@@ -1 +0,0 @@\n-1\n";
    assert_eq!(run(gone, &tree(&[])).unwrap().changes, vec![]);
}

#[test]
fn hunks_do_not_overlap() {
    // The second hunk also matches where the first did; only a match after
    // the first hunk counts.
    let patch =
        "--- a/x\n+++ b/x\n@@ -2,3 +2,3 @@\n a\n-a\n+b\n a\n@@ -2,3 +2,3 @@\n a\n-a\n+c\n a\n";
    let t = applied(patch, tree(&[("x", "z\na\na\na\na\na\na\n")]));
    assert_eq!(content(&t, "x"), "z\na\nb\na\na\nc\na\n");
}

#[test]
fn clipped_context_anchors_to_the_file_ends() {
    // No trailing context: the hunk was made at the end of the file.
    let append = "--- a/x\n+++ b/x\n@@ -2,2 +2,3 @@\n b\n c\n+d\n";
    assert_eq!(
        content(&applied(append, tree(&[("x", "a\nb\nc\n")])), "x"),
        "a\nb\nc\nd\n"
    );
    assert_eq!(
        failures(append, &tree(&[("x", "a\nb\nc\nz\n")])),
        vec!["x: hunk 1 @@ -2,2 +2,3 @@: hunk has no trailing context, so it must end the file, but line 4 follows: 'z'"]
    );
    // No leading context from line 1: the hunk was made at the start.
    let prepend = "--- a/x\n+++ b/x\n@@ -1,2 +1,3 @@\n+0\n a\n b\n";
    assert_eq!(
        failures(prepend, &tree(&[("x", "z\na\nb\n")])),
        vec!["x: hunk 1 @@ -1,2 +1,3 @@: does not match at line 1: expected 'a', found 'z'"]
    );
    // Zero-context hunks (diff -U0) float freely.
    let zero = "--- a/x\n+++ b/x\n@@ -2 +2 @@\n-b\n+B\n";
    assert_eq!(
        content(&applied(zero, tree(&[("x", "z\na\nb\nc\n")])), "x"),
        "z\na\nB\nc\n"
    );
}

#[test]
fn read_errors_carry_the_path() {
    struct Broken;
    impl Tree for Broken {
        fn read(&self, _: &str) -> io::Result<Option<Vec<u8>>> {
            Err(io::Error::other("disk on fire"))
        }
        fn mode(&self, _: &str) -> io::Result<Option<u32>> {
            Ok(None)
        }
    }
    let patch = parse(b"--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n").unwrap();
    let err = apply(&patch, &Broken).unwrap_err();
    assert_eq!(err.to_string(), "cannot read 'x'");
    assert_eq!(
        std::error::Error::source(&err).unwrap().to_string(),
        "disk on fire"
    );
}
