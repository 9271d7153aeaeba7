//! Agreement with the real `git`: our diffs applied by `git apply`, and
//! `git diff` output applied by us, both give the new tree. Skipped (with a
//! note) when `git` is not installed. Run with
//! `cargo test -p pyro-patch --test git_apply`.

mod common;

use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::{case, case_with_context, Files, Rng};
use pyro_patch::{apply, parse, MemoryTree, MODE_EXECUTABLE, MODE_FILE};

const CASES: usize = 40;

/// git is on every machine pyro is built on; without it these tests fail
/// rather than pass having checked nothing.
fn require_git() {
    assert!(
        Command::new("git").arg("--version").output().is_ok(),
        "these tests compare against git; install it (apt-get install git)"
    );
}

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("pyro-patch-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn git(dir: &Path, args: &[&str], stdin: Option<&[u8]>) -> Vec<u8> {
    let mut child = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.unwrap_or_default())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn write_tree(root: &Path, files: &Files) {
    for (path, (content, mode)) in files {
        let file = root.join(path);
        fs::create_dir_all(file.parent().unwrap()).unwrap();
        fs::write(&file, content).unwrap();
        let bits = if *mode == MODE_EXECUTABLE {
            0o755
        } else {
            0o644
        };
        fs::set_permissions(&file, fs::Permissions::from_mode(bits)).unwrap();
    }
}

fn read_tree(root: &Path) -> Files {
    fn walk(root: &Path, dir: &Path, files: &mut Files) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.file_name().is_some_and(|n| n == ".git") {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, files);
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
            files.insert(rel, (fs::read(&path).unwrap(), mode));
        }
    }
    let mut files = Files::new();
    walk(root, root, &mut files);
    files
}

#[test]
fn git_apply_accepts_our_diffs() {
    require_git();
    let mut rng = Rng::new(7);
    for number in 0..CASES {
        let context = 1 + rng.below(4);
        let (old, new, text) = case_with_context(&mut rng, context);
        if text.is_empty() {
            continue;
        }
        let scratch = Scratch::new(&format!("ours-{number}"));
        write_tree(&scratch.0, &old);
        git(&scratch.0, &["init", "-q"], None);
        git(
            &scratch.0,
            &["apply", "--whitespace=nowarn", "-"],
            Some(text.as_bytes()),
        );
        assert_eq!(read_tree(&scratch.0), new, "case {number}:\n{text}");
    }
}

#[test]
fn we_apply_git_diffs_like_git() {
    require_git();
    let mut rng = Rng::new(8);
    for number in 0..CASES {
        let (old, new, _) = case(&mut rng);
        let scratch = Scratch::new(&format!("theirs-{number}"));
        let repo = &scratch.0;
        git(repo, &["init", "-q"], None);
        write_tree(repo, &old);
        git(repo, &["add", "-A"], None);
        git(repo, &["commit", "-q", "--allow-empty", "-m", "old"], None);
        for path in old.keys() {
            fs::remove_file(repo.join(path)).unwrap();
        }
        write_tree(repo, &new);
        git(repo, &["add", "-A"], None);
        let text = git(repo, &["diff", "--cached", "-M"], None);
        if text.is_empty() {
            assert_eq!(old, new);
            continue;
        }
        let patch = parse(&text).unwrap_or_else(|e| panic!("case {number}: {e}"));
        let mut tree = MemoryTree { files: old };
        let report = apply(&patch, &tree).unwrap_or_else(|e| panic!("case {number}: {e}"));
        tree.commit(&report);
        assert_eq!(
            tree.files,
            new,
            "case {number}:\n{}",
            String::from_utf8_lossy(&text)
        );
    }
}
