//! Unit tests for diff output: exact text for each kind of change, and the
//! speed of a large file with few changes.

use super::*;
use crate::MODE_EXECUTABLE;

fn modify(old: &str, new: &str) -> String {
    diff_files(
        "f",
        Some(old.as_bytes()),
        "f",
        Some(new.as_bytes()),
        None,
        None,
        DEFAULT_CONTEXT,
    )
}

#[test]
fn unchanged_file_gives_nothing() {
    assert_eq!(modify("a\n", "a\n"), "");
    assert_eq!(diff_files("f", None, "f", None, None, None, 3), "");
}

#[test]
fn modified_file() {
    let old: String = (1..=10).map(|i| format!("{i}\n")).collect();
    let new = old.replace("5\n", "five\n");
    assert_eq!(
        modify(&old, &new),
        "diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n"
    );
}

#[test]
fn zero_context() {
    let out = diff_files("f", Some(b"a\nb\nc\n"), "f", Some(b"a\nc\n"), None, None, 0);
    assert_eq!(
        out,
        "diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -2 +1,0 @@\n-b\n"
    );
}

#[test]
fn created_and_deleted_files() {
    assert_eq!(
        diff_files("n", None, "n", Some(b"x\ny\n"), None, Some(MODE_EXECUTABLE), 3),
        "diff --git a/n b/n\nnew file mode 100755\n--- /dev/null\n+++ b/n\n@@ -0,0 +1,2 @@\n+x\n+y\n"
    );
    assert_eq!(
        diff_files("d", Some(b"x\n"), "d", None, None, None, 3),
        "diff --git a/d b/d\ndeleted file mode 100644\n--- a/d\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n"
    );
    assert_eq!(
        diff_files("e", None, "e", Some(b""), None, None, 3),
        "diff --git a/e b/e\nnew file mode 100644\n"
    );
}

#[test]
fn mode_changes() {
    let out = diff_files(
        "s",
        Some(b"x\n"),
        "s",
        Some(b"x\n"),
        Some(0o100644),
        Some(0o100755),
        3,
    );
    assert_eq!(
        out,
        "diff --git a/s b/s\nold mode 100644\nnew mode 100755\n"
    );
    let unknown = diff_files(
        "s",
        Some(b"x\n"),
        "s",
        Some(b"x\n"),
        None,
        Some(0o100755),
        3,
    );
    assert_eq!(unknown, "");
}

#[test]
fn renames() {
    assert_eq!(
        diff_files("o", Some(b"x\n"), "n", Some(b"x\n"), None, None, 3),
        "diff --git a/o b/n\nsimilarity index 100%\nrename from o\nrename to n\n"
    );
    let changed = diff_files(
        "o",
        Some(b"1\n2\n3\n4\n"),
        "n",
        Some(b"1\n2\n3\nfour\n"),
        None,
        None,
        1,
    );
    assert_eq!(
        changed,
        "diff --git a/o b/n\nsimilarity index 54%\nrename from o\nrename to n\n--- a/o\n+++ b/n\n@@ -3,2 +3,2 @@\n 3\n-4\n+four\n"
    );
}

#[test]
fn missing_final_newline() {
    assert_eq!(
        modify("a\nb", "a\nb\n"),
        "diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n"
    );
    assert_eq!(
        modify("a\nb", "a\nb\nc"),
        "diff --git a/f b/f\n--- a/f\n+++ b/f\n@@ -1,2 +1,3 @@\n a\n-b\n\\ No newline at end of file\n+b\n+c\n\\ No newline at end of file\n"
    );
}

#[test]
fn binary_files_are_noted_not_dumped() {
    let out = diff_files("b", Some(b"a\0b"), "b", Some(b"a\0c"), None, None, 3);
    assert_eq!(out, "diff --git a/b b/b\nBinary files a/b and b/b differ\n");
    let latin1 = diff_files("l", None, "l", Some(b"caf\xe9\n"), None, None, 3);
    assert_eq!(
        latin1,
        "diff --git a/l b/l\nnew file mode 100644\nBinary files /dev/null and b/l differ\n"
    );
    assert!(is_binary(b"\xff\xfe"));
    assert!(!is_binary("caf\u{e9}\n".as_bytes()));
}

#[test]
fn names_are_quoted_like_git() {
    let out = diff_files(
        "sp ace",
        Some(b"a\n"),
        "sp ace",
        Some(b"b\n"),
        None,
        None,
        3,
    );
    assert!(
        out.starts_with("diff --git a/sp ace b/sp ace\n--- a/sp ace\t\n+++ b/sp ace\t\n"),
        "{out}"
    );
    let out = diff_files("t\tb", Some(b"a\n"), "t\tb", Some(b"b\n"), None, None, 3);
    assert!(
        out.starts_with("diff --git \"a/t\\tb\" \"b/t\\tb\"\n--- \"a/t\\tb\"\n+++ \"b/t\\tb\"\n"),
        "{out}"
    );
}

#[test]
fn large_file_with_few_changes_is_fast() {
    let old: String = (0..10_000)
        .map(|i| format!("line {i} of a fairly ordinary source file\n"))
        .collect();
    let new = old
        .replace("line 10 of", "line ten of")
        .replace("line 5000 of", "line five thousand of")
        .replace("line 9998 of", "line 9998 (changed) of");
    let start = Instant::now();
    let out = modify(&old, &new);
    let took = start.elapsed();
    assert_eq!(out.matches("@@ -").count(), 3);
    // A few ms in release; generous for unoptimised test builds.
    assert!(took < Duration::from_millis(500), "took {took:?}");
}
