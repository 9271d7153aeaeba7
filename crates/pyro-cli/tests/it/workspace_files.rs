//! `pyro workspace file list|read|write` and `pyro workspace patch apply`
//! end to end through the `pyro` binary, against real VMs: byte-exact
//! content, parents, listings, the size limit, confinement to /workspace
//! (`..`, absolute paths, a symlink out), all-or-nothing patches and
//! concurrent writers.
//!
//! Run with: `cargo test -p pyro-cli --test it workspace_files::`.

use std::io::Write;
use std::process::{Output, Stdio};

use crate::support::*;

fn assert_ok(output: &Output, what: &str) {
    assert!(
        output.status.success(),
        "{what} failed ({:?}): {}{}",
        output.status.code(),
        stdout(output),
        stderr(output)
    );
}

/// Asserts pyro refused with exit status 125 and a message containing `text`.
fn assert_refused(output: &Output, text: &str) {
    assert_eq!(
        output.status.code(),
        Some(125),
        "expected a refusal: {}{}",
        stdout(output),
        stderr(output)
    );
    assert!(
        stderr(output).contains(text),
        "expected '{text}' in: {}",
        stderr(output)
    );
}

/// `pyro workspace exec WS -- sh -c SCRIPT`, which must succeed; its stdout.
fn sh_ok(home: &TestHome, workspace: &str, script: &str) -> String {
    let output = home.sh(workspace, script);
    assert_ok(&output, script);
    stdout(&output)
}

#[test]
fn write_read_list_and_confinement() {
    let home = TestHome::new();
    let ws = home.create(&[]);
    let host = tempfile::tempdir().expect("temp dir");

    // Every byte value, twice, round-trips exactly.
    let all_bytes: Vec<u8> = (0..=255u8).chain((0..=255u8).rev()).collect();
    let source = host.path().join("bytes.bin");
    std::fs::write(&source, &all_bytes).unwrap();
    let source = source.to_str().unwrap();
    let wrote = home.run(&[
        "workspace",
        "file",
        "write",
        &ws,
        "bin/bytes.bin",
        "--text-file",
        source,
        "--json",
    ]);
    assert_ok(&wrote, "write --text-file");
    assert_eq!(json(&wrote)["bytes"], 512);
    let read = home.run(&["workspace", "file", "read", &ws, "bin/bytes.bin"]);
    assert_ok(&read, "read");
    assert_eq!(read.stdout, all_bytes, "content differs after a round trip");
    assert_eq!(
        sh_ok(&home, &ws, "sha256sum < bin/bytes.bin | cut -c1-64"),
        format!("{}\n", host_sha256(&all_bytes)),
        "the guest sees other bytes"
    );

    // --content, --mode, parents created, an absolute path under /workspace.
    let wrote = home.run(&[
        "workspace",
        "file",
        "write",
        &ws,
        "deep/er/run.sh",
        "--content",
        "#!/bin/sh\necho ran\n",
        "--mode",
        "755",
    ]);
    assert_ok(&wrote, "write --content");
    assert_eq!(
        stdout(&wrote),
        "wrote 19 bytes to /workspace/deep/er/run.sh\n"
    );
    assert_eq!(sh_ok(&home, &ws, "deep/er/run.sh"), "ran\n");
    assert_eq!(sh_ok(&home, &ws, "stat -c %a deep/er/run.sh"), "755\n");
    let read = home.run(&[
        "workspace",
        "file",
        "read",
        &ws,
        "/workspace/deep/er/run.sh",
    ]);
    assert_eq!(stdout(&read), "#!/bin/sh\necho ran\n");
    // Rewriting without --mode keeps the file's mode; stdin works as a source.
    let wrote = home.run_with_stdin(
        &[
            "workspace",
            "file",
            "write",
            &ws,
            "deep/er/run.sh",
            "--text-file",
            "-",
        ],
        b"#!/bin/sh\necho again\n",
    );
    assert_ok(&wrote, "write from stdin");
    assert_eq!(sh_ok(&home, &ws, "deep/er/run.sh"), "again\n");

    // An empty file is a file too.
    let wrote = home.run(&["workspace", "file", "write", &ws, "empty", "--content", ""]);
    assert_ok(&wrote, "write an empty file");
    let read = home.run(&["workspace", "file", "read", &ws, "empty"]);
    assert_ok(&read, "read an empty file");
    assert!(read.stdout.is_empty());
    sh_ok(&home, &ws, "test -f empty && rm empty");

    // Listings: one level, recursive, JSON.
    let listed = home.run(&["workspace", "file", "list", &ws]);
    assert_ok(&listed, "list");
    let text = stdout(&listed);
    assert!(
        text.contains(" bin/\n") && text.contains(" deep/\n"),
        "{text}"
    );
    assert!(!text.contains("run.sh"), "not recursive: {text}");
    let listed = home.run(&["workspace", "file", "list", &ws, "--recursive"]);
    let text = stdout(&listed);
    assert!(
        text.contains("0755          21  deep/er/run.sh\n")
            && text.contains("0644         512  bin/bytes.bin\n"),
        "{text}"
    );
    let listing = json(&home.run(&["workspace", "file", "list", &ws, "deep", "-r", "--json"]));
    assert_eq!(listing["truncated"], false);
    let entries = listing["entries"].as_array().unwrap();
    let paths: Vec<_> = entries
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["deep/er", "deep/er/run.sh"]);
    assert_eq!(entries[0]["kind"], "dir");
    assert_eq!(entries[1]["kind"], "file");
    assert_eq!(entries[1]["size"], 21);
    assert_eq!(entries[1]["mode"], 0o755);

    // The size limit, with the agent's advice.
    let read = home.run(&[
        "workspace",
        "file",
        "read",
        &ws,
        "bin/bytes.bin",
        "--max-bytes",
        "100",
    ]);
    assert_refused(&read, "file is 512 bytes, over the 100 byte limit");
    assert!(read.stdout.is_empty(), "nothing is printed when refused");

    // Missing files and directories say how to look.
    let read = home.run(&["workspace", "file", "read", &ws, "nope.txt"]);
    assert_refused(
        &read,
        &format!(
            "no such file in /workspace: nope.txt; list files with: pyro workspace file list {ws}"
        ),
    );
    let read = home.run(&["workspace", "file", "read", &ws, "deep"]);
    assert_refused(&read, "deep is a directory");

    // Escapes: `..`, an absolute path elsewhere, a symlink pointing out.
    sh_ok(&home, &ws, "ln -s / /workspace/out");
    for path in ["../etc/passwd", "/etc/passwd", "out/etc/passwd"] {
        let read = home.run(&["workspace", "file", "read", &ws, path]);
        assert_refused(&read, &format!("path escapes /workspace: {path}"));
        assert!(read.stdout.is_empty(), "{path} leaked content");
        let wrote = home.run(&[
            "workspace",
            "file",
            "write",
            &ws,
            path,
            "--content",
            "pwned",
        ]);
        assert_refused(&wrote, &format!("path escapes /workspace: {path}"));
    }
    for path in ["..", "/etc", "out/etc"] {
        let listed = home.run(&["workspace", "file", "list", &ws, path]);
        assert_refused(&listed, &format!("path escapes /workspace: {path}"));
    }
    let wrote = home.run(&[
        "workspace",
        "file",
        "write",
        &ws,
        "out/tmp/new/pwned",
        "--content",
        "x",
    ]);
    assert_refused(&wrote, "path escapes /workspace");
    assert_eq!(
        sh_ok(
            &home,
            &ws,
            "grep -c pwned /etc/passwd; test -e /tmp/new && echo made-dir; true"
        ),
        "0\n",
        "an escaping write changed something outside /workspace"
    );

    // An unknown workspace.
    let read = home.run(&["workspace", "file", "read", "no-such-ws", "x"]);
    assert_refused(
        &read,
        "no workspace 'no-such-ws'; see them with: pyro workspace list",
    );
}

/// A git-style patch: a delete, a modification, a rename with a change, a
/// new file in a new directory and a mode change.
const MULTI_PATCH: &str = "\
diff --git a/gone.txt b/gone.txt
deleted file mode 100644
index b023018..0000000
--- a/gone.txt
+++ /dev/null
@@ -1 +0,0 @@
-bye
diff --git a/keep.txt b/keep.txt
index 4cb29ea..f04eb26 100644
--- a/keep.txt
+++ b/keep.txt
@@ -1,3 +1,3 @@
 one
-two
+2
 three
diff --git a/old.txt b/new.txt
similarity index 73%
rename from old.txt
rename to new.txt
index 7a28df3..935d636 100644
--- a/old.txt
+++ b/new.txt
@@ -1,4 +1,4 @@
 alpha
 beta
-gamma
+GAMMA
 delta
diff --git a/src/fresh.txt b/src/fresh.txt
new file mode 100644
index 0000000..92d5444
--- /dev/null
+++ b/src/fresh.txt
@@ -0,0 +1 @@
+fresh
diff --git a/run.sh b/run.sh
old mode 100644
new mode 100755
";

/// Two files: the first applies, the second's only hunk does not.
const HALF_BAD_PATCH: &str = "\
--- a/keep.txt
+++ b/keep.txt
@@ -1,3 +1,3 @@
 one
-2
+TWO
 three
--- a/new.txt
+++ b/new.txt
@@ -1,2 +1,2 @@
 alpha
-BETA
+bravo
";

#[test]
fn patch_apply_is_all_or_nothing() {
    let home = TestHome::new();
    let ws = home.create(&[]);
    sh_ok(
        &home,
        &ws,
        "printf 'one\\ntwo\\nthree\\n' > keep.txt && printf 'bye\\n' > gone.txt \
         && printf 'alpha\\nbeta\\ngamma\\ndelta\\n' > old.txt \
         && printf '#!/bin/sh\\necho run\\n' > run.sh",
    );

    let applied = home.run_with_stdin(
        &["workspace", "patch", "apply", &ws, "--patch-file", "-"],
        MULTI_PATCH.as_bytes(),
    );
    assert_ok(&applied, "patch apply");
    assert_eq!(
        stdout(&applied),
        "D gone.txt\nM keep.txt\nR old.txt -> new.txt\nA src/fresh.txt\nM run.sh\n\
         5 files changed, 3 insertions(+), 3 deletions(-)\n"
    );
    assert_eq!(
        sh_ok(
            &home,
            &ws,
            "cat keep.txt new.txt src/fresh.txt; ls gone.txt old.txt 2>&1 | wc -l; ./run.sh"
        ),
        "one\n2\nthree\nalpha\nbeta\nGAMMA\ndelta\nfresh\n2\nrun\n"
    );
    assert_eq!(
        sh_ok(
            &home,
            &ws,
            "test -e gone.txt || test -e old.txt || echo both-gone"
        ),
        "both-gone\n"
    );

    // The second file fails: nothing is written, every failing hunk named.
    let patch_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(patch_file.path(), HALF_BAD_PATCH).unwrap();
    let patch_path = patch_file.path().to_str().unwrap();
    let rejected = home.run(&[
        "workspace",
        "patch",
        "apply",
        &ws,
        "--patch-file",
        patch_path,
    ]);
    assert_eq!(rejected.status.code(), Some(1), "{}", stderr(&rejected));
    assert_eq!(
        stderr(&rejected),
        "pyro: patch does not apply; nothing was changed:\n  \
         new.txt: hunk 1 @@ -1,2 +1,2 @@: does not match at line 2: expected 'BETA', found 'beta'\n"
    );
    assert_eq!(sh_ok(&home, &ws, "cat keep.txt"), "one\n2\nthree\n");
    let rejected = home.run(&[
        "workspace",
        "patch",
        "apply",
        &ws,
        "--patch-file",
        patch_path,
        "--json",
    ]);
    assert_eq!(rejected.status.code(), Some(1));
    let report = json(&rejected);
    assert_eq!(report["applied"], false);
    assert_eq!(report["failures"][0]["path"], "new.txt");
    assert_eq!(report["failures"][0]["hunk"], 1);

    // A patch that moved: it applies at an offset, and says so (JSON).
    sh_ok(
        &home,
        &ws,
        "printf 'zero\\n' | cat - keep.txt > k && mv k keep.txt",
    );
    let moved = "--- a/keep.txt\n+++ b/keep.txt\n@@ -1,3 +1,3 @@\n one\n-2\n+two\n three\n";
    let applied = home.run_with_stdin(
        &[
            "workspace",
            "patch",
            "apply",
            &ws,
            "--patch-file",
            "-",
            "--json",
        ],
        moved.as_bytes(),
    );
    assert_ok(&applied, "patch at an offset");
    let report = json(&applied);
    assert_eq!(report["hunks_applied"], 1);
    assert_eq!(report["offsets"][0]["offset"], 1);
    assert_eq!(
        report["stat"],
        "1 file changed, 1 insertion(+), 1 deletion(-)"
    );
    assert_eq!(sh_ok(&home, &ws, "cat keep.txt"), "zero\none\ntwo\nthree\n");

    // Malformed patches and paths out of /workspace are refused up front.
    let malformed = home.run_with_stdin(
        &["workspace", "patch", "apply", &ws, "--patch-file", "-"],
        b"this is not a diff\n",
    );
    assert_refused(
        &malformed,
        "malformed patch: patch contains no file changes",
    );
    let short = "--- a/keep.txt\n+++ b/keep.txt\n@@ -1,3 +1,3 @@\n one\n-two\n";
    let malformed = home.run_with_stdin(
        &["workspace", "patch", "apply", &ws, "--patch-file", "-"],
        short.as_bytes(),
    );
    assert_refused(
        &malformed,
        "malformed patch: line 6: hunk @@ -1,3 +1,3 @@ ends early",
    );
    let escaping = "--- /dev/null\n+++ b/../etc/evil\n@@ -0,0 +1 @@\n+x\n";
    let rejected = home.run_with_stdin(
        &["workspace", "patch", "apply", &ws, "--patch-file", "-"],
        escaping.as_bytes(),
    );
    assert_eq!(rejected.status.code(), Some(1), "{}", stderr(&rejected));
    assert!(
        stderr(&rejected).contains("contains '..'"),
        "{}",
        stderr(&rejected)
    );
    sh_ok(&home, &ws, "ln -s /etc /workspace/etc-link");
    let through_link = "--- /dev/null\n+++ b/etc-link/evil\n@@ -0,0 +1 @@\n+x\n";
    let refused = home.run_with_stdin(
        &["workspace", "patch", "apply", &ws, "--patch-file", "-"],
        through_link.as_bytes(),
    );
    assert_refused(&refused, "path escapes /workspace: etc-link/evil");
    assert_eq!(
        sh_ok(&home, &ws, "test -e /etc/evil && echo leaked; true"),
        ""
    );
}

#[test]
fn concurrent_writes_from_two_processes_both_land() {
    let home = TestHome::new();
    let ws = home.create(&[]);
    let host = tempfile::tempdir().expect("temp dir");
    // Larger than the 1 MiB window, so both streams interleave on the channel.
    let contents: Vec<Vec<u8>> = (0..2u32)
        .map(|n| {
            (0..3 * 1024 * 1024u32)
                .map(|i| (i.wrapping_mul(2_654_435_761).wrapping_add(n) >> 13) as u8)
                .collect()
        })
        .collect();
    let writers: Vec<_> = contents
        .iter()
        .enumerate()
        .map(|(n, content)| {
            let source = host.path().join(format!("src{n}"));
            std::fs::write(&source, content).unwrap();
            home.pyro()
                .args([
                    "workspace",
                    "file",
                    "write",
                    &ws,
                    &format!("out/{n}.bin"),
                    "--text-file",
                ])
                .arg(&source)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn a writer")
        })
        .collect();
    for writer in writers {
        let output = writer.wait_with_output().unwrap();
        assert_ok(&output, "concurrent write");
    }
    for (n, content) in contents.iter().enumerate() {
        let read = home.run(&["workspace", "file", "read", &ws, &format!("out/{n}.bin")]);
        assert_ok(&read, "read back");
        assert!(
            read.stdout == *content,
            "out/{n}.bin differs from what was written"
        );
    }
}

/// SHA-256 of `data` in hex, by the host's sha256sum.
fn host_sha256(data: &[u8]) -> String {
    let mut child = std::process::Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    child.stdin.take().unwrap().write_all(data).unwrap();
    let output = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&output.stdout)[..64].to_string()
}
