//! Unit tests for the parser: one per format feature and per error.

use super::*;

fn one(text: &str) -> FilePatch {
    let patch = parse(text.as_bytes()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(patch.files.len(), 1);
    patch.files.into_iter().next().unwrap()
}

fn texts(hunk: &Hunk) -> Vec<(LineKind, &str)> {
    hunk.lines
        .iter()
        .map(|l| (l.kind, std::str::from_utf8(&l.text).unwrap()))
        .collect()
}

fn error(text: &str) -> String {
    parse(text.as_bytes()).unwrap_err().to_string()
}

#[test]
fn plain_diff_u_with_timestamps() {
    let file = one("--- a/src/x.c\t2024-01-01 10:00:00.000000000 +0000\n\
         +++ b/src/x.c\t2024-01-02 10:00:00.000000000 +0000\n\
         @@ -1,3 +1,3 @@ int main()\n a\n-b\n+B\n c\n");
    assert_eq!(file.kind, FileKind::Modify);
    assert_eq!(file.old_path.as_deref(), Some("src/x.c"));
    assert_eq!(file.new_path.as_deref(), Some("src/x.c"));
    let hunk = &file.hunks[0];
    assert_eq!(
        (
            hunk.old_start,
            hunk.old_count,
            hunk.new_start,
            hunk.new_count
        ),
        (1, 3, 1, 3)
    );
    assert_eq!(hunk.section, "int main()");
    assert_eq!(hunk.line, 3);
    assert_eq!(
        texts(hunk),
        vec![
            (LineKind::Context, "a\n"),
            (LineKind::Remove, "b\n"),
            (LineKind::Add, "B\n"),
            (LineKind::Context, "c\n")
        ]
    );
}

#[test]
fn omitted_counts_mean_one() {
    let file = one("--- x\n+++ x\n@@ -1 +1 @@\n-a\n+b\n");
    let hunk = &file.hunks[0];
    assert_eq!((hunk.old_count, hunk.new_count), (1, 1));
    assert_eq!(hunk.header(), "@@ -1 +1 @@");
}

#[test]
fn plain_names_keep_a_single_component() {
    let file = one("--- x.txt\n+++ x.txt\n@@ -1 +1 @@\n-a\n+b\n");
    assert_eq!(file.old_path.as_deref(), Some("x.txt"));
}

#[test]
fn plain_names_pick_the_original_file() {
    let file = one("--- x.c.orig\n+++ x.c\n@@ -1 +1 @@\n-a\n+b\n");
    assert_eq!(file.old_path.as_deref(), Some("x.c"));
    assert_eq!(file.new_path.as_deref(), Some("x.c"));
}

#[test]
fn dev_null_marks_create_and_delete() {
    let create = one("--- /dev/null\n+++ b/new.txt\n@@ -0,0 +1,2 @@\n+a\n+b\n");
    assert_eq!(create.kind, FileKind::Create);
    assert_eq!(
        (create.old_path, create.new_path.as_deref()),
        (None, Some("new.txt"))
    );
    let delete = one("--- a/old.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-a\n");
    assert_eq!(delete.kind, FileKind::Delete);
    assert_eq!(
        (delete.old_path.as_deref(), delete.new_path),
        (Some("old.txt"), None)
    );
}

#[test]
fn epoch_timestamp_marks_diff_n_create() {
    let file = one("diff -ruN a/n.txt b/n.txt\n\
         --- a/n.txt\t1970-01-01 00:00:00.000000000 +0000\n\
         +++ b/n.txt\t2024-01-01 00:00:00.000000000 +0000\n\
         @@ -0,0 +1 @@\n+hi\n");
    assert_eq!(file.kind, FileKind::Create);
    assert_eq!(file.new_path.as_deref(), Some("n.txt"));
}

#[test]
fn no_newline_markers_on_both_sides() {
    let file = one(
        "--- a/x\n+++ b/x\n@@ -1 +1 @@\n-old\n\\ No newline at end of file\n+new\n\\ No newline at end of file\n",
    );
    assert_eq!(
        texts(&file.hunks[0]),
        vec![(LineKind::Remove, "old"), (LineKind::Add, "new")]
    );
}

#[test]
fn crlf_content_is_kept_byte_exact() {
    let file = one("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\r\n+b\r\n");
    assert_eq!(
        texts(&file.hunks[0]),
        vec![(LineKind::Remove, "a\r\n"), (LineKind::Add, "b\r\n")]
    );
}

#[test]
fn patch_saved_with_crlf_still_parses_headers() {
    let file = one("diff --git a/x b/x\r\nindex 1..2 100644\r\n--- a/x\r\n+++ b/x\r\n@@ -1 +1 @@\r\n-a\r\n+b\r\n");
    assert_eq!(file.old_path.as_deref(), Some("x"));
}

#[test]
fn empty_line_is_context_a_mailer_stripped() {
    let file = one("--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n\n-b\n+c\n");
    assert_eq!(file.hunks[0].lines[1].kind, LineKind::Context);
    assert_eq!(file.hunks[0].lines[1].text, b"\n");
}

#[test]
fn garbage_before_and_between_files_is_skipped() {
    let patch = parse(
        b"From: someone\nSubject: fix\n\nsome prose\n---\n x | 2 +-\n\n\
          --- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\nOnly in b: z\n\
          --- a/y\n+++ b/y\n@@ -1 +1 @@\n-c\n+d\n-- \n2.43.0\n",
    )
    .unwrap();
    assert_eq!(patch.files.len(), 2);
    assert_eq!(patch.files[1].line, 14);
}

#[test]
fn git_headers_rename_with_changes() {
    let file = one("diff --git a/old dir/f.rs b/new dir/f.rs\n\
         similarity index 90%\nrename from old dir/f.rs\nrename to new dir/f.rs\n\
         index 111..222 100644\n--- a/old dir/f.rs\n+++ b/new dir/f.rs\n\
         @@ -1 +1 @@\n-a\n+b\n");
    assert_eq!(file.kind, FileKind::Rename);
    assert_eq!(file.old_path.as_deref(), Some("old dir/f.rs"));
    assert_eq!(file.new_path.as_deref(), Some("new dir/f.rs"));
    assert_eq!(file.hunks.len(), 1);
}

#[test]
fn git_copy() {
    let file = one("diff --git a/x b/y\nsimilarity index 100%\ncopy from x\ncopy to y\n");
    assert_eq!(file.kind, FileKind::Copy);
    assert_eq!(
        (file.old_path.as_deref(), file.new_path.as_deref()),
        (Some("x"), Some("y"))
    );
}

#[test]
fn git_mode_only_change_with_spaces_in_name() {
    let file = one("diff --git a/sp ace b/sp ace\nold mode 100644\nnew mode 100755\n");
    assert_eq!(file.kind, FileKind::Modify);
    assert_eq!(file.old_path.as_deref(), Some("sp ace"));
    assert_eq!(
        (file.old_mode, file.new_mode),
        (Some(0o100644), Some(0o100755))
    );
    assert!(file.hunks.is_empty());
}

#[test]
fn git_new_and_deleted_file_modes() {
    let created = one("diff --git a/e b/e\nnew file mode 100755\nindex 0000000..e69de29\n");
    assert_eq!(created.kind, FileKind::Create);
    assert_eq!(
        (created.new_path.as_deref(), created.new_mode),
        (Some("e"), Some(0o100755))
    );
    let deleted = one(
        "diff --git a/d b/d\ndeleted file mode 100644\n--- a/d\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n",
    );
    assert_eq!(deleted.kind, FileKind::Delete);
    assert_eq!(
        (deleted.old_path.as_deref(), deleted.old_mode),
        (Some("d"), Some(0o100644))
    );
}

#[test]
fn git_no_prefix_keeps_names() {
    let file = one("diff --git src/x src/x\n--- src/x\n+++ src/x\n@@ -1 +1 @@\n-a\n+b\n");
    assert_eq!(file.old_path.as_deref(), Some("src/x"));
}

#[test]
fn git_quoted_names_with_escapes() {
    let file = one(
        "diff --git \"a/sp ace\\t\" \"b/sp ace\\t\"\nindex 1..2 100644\n\
         --- \"a/sp ace\\t\"\n+++ \"b/sp ace\\t\"\n@@ -1 +1 @@\n-a\n+b\n",
    );
    assert_eq!(file.old_path.as_deref(), Some("sp ace\t"));
    let renamed = one("diff --git a/x \"b/\\303\\251\"\nsimilarity index 100%\nrename from x\nrename to \"\\303\\251\"\n");
    assert_eq!(renamed.new_path.as_deref(), Some("\u{e9}"));
}

#[test]
fn git_binary_literal_payload_is_skipped() {
    let patch = parse(
        b"diff --git a/b.bin b/b.bin\nindex 1..2 100644\nGIT binary patch\nliteral 3\nKcmYdfNCp4_i2%g_\n\n\
          literal 3\nKcmYdfNCE%>hycU@\n\ndiff --git a/t b/t\n--- a/t\n+++ b/t\n@@ -1 +1 @@\n-a\n+b\n",
    )
    .unwrap();
    assert!(patch.files[0].binary);
    assert_eq!(patch.files[1].display_path(), "t");
}

#[test]
fn error_empty_patch() {
    assert_eq!(
        error("just some text\n"),
        "patch contains no file changes; expected a unified diff with '--- a/FILE' and '+++ b/FILE' lines"
    );
}

#[test]
fn error_hunk_ends_early() {
    assert_eq!(
        error("--- a/x\n+++ b/x\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n"),
        "line 7: hunk @@ -1,3 +1,3 @@ ends early (1 old and 1 new lines missing); fix the counts in its header"
    );
    assert_eq!(
        error("--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n a\ndiff --git a/y b/y\n"),
        "line 5: hunk @@ -1,2 +1,2 @@ ends early (1 old and 1 new lines missing); fix the counts in its header"
    );
}

#[test]
fn error_hunk_runs_long() {
    assert_eq!(
        error("--- a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n+c\n"),
        "line 6: hunk @@ -1 +1 @@ has more lines than its header says; fix the counts in its header"
    );
    assert_eq!(
        error("--- a/x\n+++ b/x\n@@ -1,2 +1 @@\n a\n b\n"),
        "line 5: hunk @@ -1,2 +1 @@ has more lines than its header says; fix the counts in its header"
    );
}

#[test]
fn error_bad_hunk_header() {
    assert_eq!(
        error("--- a/x\n+++ b/x\n@@ -one +1 @@\n-a\n+b\n"),
        "line 3: expected a hunk header '@@ -a,b +c,d @@' with numeric ranges, found '@@ -one +1 @@'"
    );
}

#[test]
fn error_missing_hunks() {
    assert_eq!(
        error("--- a/x\n+++ b/x\nnot a hunk\n"),
        "line 3: expected a hunk header '@@ -a,b +c,d @@', found 'not a hunk'"
    );
}

#[test]
fn error_git_minus_without_plus() {
    assert_eq!(
        error("diff --git a/x b/x\n--- a/x\n@@ -1 +1 @@\n"),
        "line 3: expected '+++ b/FILE' after the '--- a/FILE' line, found '@@ -1 +1 @@'"
    );
}

#[test]
fn error_bad_mode() {
    assert_eq!(
        error("diff --git a/x b/x\nold mode 10064x\nnew mode 100755\n"),
        "line 2: '10064x' is not an octal file mode"
    );
}

#[test]
fn error_bad_quoting() {
    assert_eq!(
        error("--- \"a/x\n+++ b/x\n@@ -1 +1 @@\n-a\n+b\n"),
        "line 1: cannot read a file name in '\"a/x'; quote names the way git does"
    );
}
