//! `workspace diff`: what changed in /workspace since its baseline.
//!
//! The baseline is the content of /workspace right after create (after
//! seeding) or after the last reset. It lives in the guest, as a commit in a
//! private Git repository whose work tree is /workspace:
//!
//! ```text
//! /var/lib/pyro/baseline.git     git dir; the commit is refs/pyro/baseline
//! /var/lib/pyro/baseline.index   its index: the stat cache of that commit
//! /var/lib/pyro/diff.XXXXXX/     one diff's scratch (removed on exit)
//! ```
//!
//! The user's own `/workspace/.git` is never touched: Git skips every entry
//! named `.git` as content, and ours is elsewhere. Everything else in
//! /workspace is recorded except what the tree's own `.gitignore` files
//! exclude, as `git status` would: build outputs, caches and `__pycache__`
//! are not the agent's change. Global and system Git config are not read,
//! so an agent's `git config --global` cannot change what diff shows.
//!
//! A diff copies the baseline index into its scratch directory and runs
//! `git add -A` against the copy, with new objects going to a scratch object
//! directory (the baseline's objects are an alternate). Unchanged files are
//! skipped by their stat data, so only changed files are read; nothing a diff
//! writes outlives it, and the baseline index keeps its stat cache. Then
//! `git diff --cached` against the baseline commit, twice: once as raw
//! records and numstat (`-z`, for [`ChangedFile`]s) and once as the patch.
//!
//! What Git cannot see, diff cannot either: empty directories, permission
//! bits other than the executable bit, owners. A nested repository (a
//! directory with its own `.git` below /workspace) is compared by its
//! checked-out commit, not by its files; one without any commit is skipped
//! with a warning.
//!
//! The guest is untrusted: its output is parsed defensively and bounded.
//! Scripts take no user input: every path in them is fixed.

use std::time::Instant;

use pyro_protocol::ExecRequest;
use serde::Serialize;

use crate::guest::{ExecEvent, Guest};
use crate::{Error, Pyro};

/// Patch text kept in a [`DiffReport`]; the rest is cut off with a note.
pub const PATCH_LIMIT: u64 = 8 * 1024 * 1024;
/// Bytes of raw/numstat records accepted from the guest (~100 bytes per
/// changed file: room for a million files).
const SUMMARY_LIMIT: u64 = 128 * 1024 * 1024;
/// Bytes of Git's warnings (and of a failing script's stderr) kept.
const MESSAGES_KEPT: usize = 64 * 1024;
/// The scripts' exit status when the environment has no `git` (the
/// scripts spell it out; a unit test keeps them in step).
pub(crate) const NO_GIT_EXIT: i32 = 90;
/// The diff script's exit status when no baseline was recorded.
const NO_BASELINE_EXIT: i32 = 91;

/// What every script starts with: the private repository, and no config
/// but its own.
pub(crate) const PREAMBLE: &str = r#"set -eu
command -v git >/dev/null 2>&1 || exit 90
B=/var/lib/pyro/baseline
export GIT_DIR="$B.git" GIT_WORK_TREE=/workspace
export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null LC_ALL=C
export GIT_AUTHOR_NAME=pyro GIT_AUTHOR_EMAIL=pyro@localhost
export GIT_COMMITTER_NAME=pyro GIT_COMMITTER_EMAIL=pyro@localhost
unset GIT_INDEX_FILE GIT_OBJECT_DIRECTORY GIT_ALTERNATE_OBJECT_DIRECTORIES
# `add -A` of /workspace, honouring its .gitignore files. Exit 1 means some paths
# could not be added (a nested repository without a commit, an unreadable
# file): those are warnings; anything else is fatal.
add_all() {
  git add -A --ignore-errors 2>"$1" || {
    rc=$?
    [ "$rc" -eq 1 ] || { cat "$1" >&2; exit "$rc"; }
  }
}
"#;

/// Records /workspace as the baseline (creating the repository first).
const RECORD_SCRIPT: &str = r#"
if [ ! -f "$GIT_DIR/HEAD" ]; then
  mkdir -p /var/lib/pyro
  git init -q --template=
  # Uncompressed objects: recording a 200 MB tree takes half the time it
  # takes with zlib level 1, for disk space the guest has.
  cat >>"$GIT_DIR/config" <<'EOF'
[core]
	fileMode = true
	symlinks = true
	ignoreCase = false
	autocrlf = false
	quotePath = false
	looseCompression = 0
[gc]
	auto = 0
[advice]
	addEmbeddedRepo = false
EOF
fi
export GIT_INDEX_FILE="$B.index"
add_all "$B.warnings"
tree=$(git write-tree)
old=$(git rev-parse -q --verify refs/pyro/baseline || true)
commit=$(echo 'pyro baseline' | git commit-tree "$tree")
git update-ref refs/pyro/baseline "$commit"
# The previous baseline's objects are garbage now (gc is off).
[ -z "$old" ] || git prune --expire=now
"#;

/// Prints `pyro-diff SUMMARY PATCH MESSAGES` (byte counts; PATCH is the
/// full size), then the summary, at most `$1` bytes of patch, and Git's
/// warnings.
const DIFF_SCRIPT: &str = r#"
[ -f "$GIT_DIR/HEAD" ] && [ -f "$B.index" ] \
  && git rev-parse -q --verify refs/pyro/baseline >/dev/null || exit 91
# Scratch left by a diff whose VM died.
find /var/lib/pyro -maxdepth 1 -name 'diff.*' -mmin +60 -exec rm -rf {} + 2>/dev/null || true
T=$(mktemp -d /var/lib/pyro/diff.XXXXXX)
trap 'rm -rf "$T"' EXIT
cp "$B.index" "$T/index"
mkdir "$T/objects"
export GIT_INDEX_FILE="$T/index" GIT_OBJECT_DIRECTORY="$T/objects"
export GIT_ALTERNATE_OBJECT_DIRECTORIES="$GIT_DIR/objects"
add_all "$T/messages"
git diff --cached -M --raw --numstat -z --no-abbrev refs/pyro/baseline \
  >"$T/summary" 2>>"$T/messages" || { cat "$T/messages" >&2; exit 1; }
git diff --cached -M --no-color --no-ext-diff --no-textconv refs/pyro/baseline \
  >"$T/patch" 2>>"$T/messages" || { cat "$T/messages" >&2; exit 1; }
printf 'pyro-diff %s %s %s\n' "$(wc -c <"$T/summary")" "$(wc -c <"$T/patch")" \
  "$(wc -c <"$T/messages")"
cat "$T/summary"
head -c "$1" "$T/patch"
cat "$T/messages"
"#;

/// Why a diff (or recording its baseline) failed.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    #[error("diff needs git in the environment (debian:12 has it); workspace '{workspace}' runs {env}, which lacks it")]
    NoGit { workspace: String, env: String },
    #[error("workspace '{workspace}' has no diff baseline: none was recorded at create or at the last reset (git was missing then, or the workspace predates diff); reset the workspace to record one")]
    NoBaseline { workspace: String },
    #[error("recording the diff baseline failed: {message}")]
    Record { message: String },
    #[error("computing the diff in the guest failed: {message}")]
    Guest { message: String },
    #[error("the guest's diff output is malformed: {what}")]
    Malformed { what: String },
}

impl From<DiffError> for Error {
    fn from(error: DiffError) -> Self {
        Error::InvalidRequest(error.to_string())
    }
}

/// How a file differs from the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeStatus {
    Added,
    /// Content changed (the mode may have changed too; see the modes).
    Modified,
    Deleted,
    /// Moved, with similar (maybe changed) content; `old_path` says from where.
    Renamed,
    /// Only the executable bit changed.
    ModeChanged,
    /// A file became a symlink, or the other way round.
    TypeChanged,
}

impl ChangeStatus {
    pub fn label(self) -> &'static str {
        match self {
            ChangeStatus::Added => "added",
            ChangeStatus::Modified => "modified",
            ChangeStatus::Deleted => "deleted",
            ChangeStatus::Renamed => "renamed",
            ChangeStatus::ModeChanged => "mode_changed",
            ChangeStatus::TypeChanged => "type_changed",
        }
    }
}

/// One changed path.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangedFile {
    /// Relative to /workspace; the new path of a rename.
    pub path: String,
    /// The baseline path of a rename.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_path: Option<String>,
    pub status: ChangeStatus,
    /// Git's mode in the baseline (`100644`, `100755`, `120000` for a
    /// symlink, `160000` for a nested repository); absent when added.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_mode: Option<String>,
    /// The mode now; absent when deleted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_mode: Option<String>,
    /// Binary content: noted in the patch, not dumped; no line counts.
    pub binary: bool,
    pub insertions: u64,
    pub deletions: u64,
}

/// What changed in /workspace since the baseline.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    pub workspace: String,
    pub files_changed: usize,
    pub insertions: u64,
    pub deletions: u64,
    /// In path order.
    pub files: Vec<ChangedFile>,
    /// Git-style unified diff, at most [`PATCH_LIMIT`] bytes of it (cut at
    /// a line end, with a note). Non-UTF-8 bytes are replaced.
    pub patch: String,
    /// Whether `patch` was cut short.
    pub truncated: bool,
    /// The size of the whole patch in bytes.
    pub patch_bytes: u64,
    /// Paths Git could not compare (nested repositories without a commit,
    /// unreadable files), and its other warnings.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    pub duration_ms: u64,
}

impl Pyro {
    /// The changes in /workspace since its baseline, as a unified diff and
    /// per file.
    pub async fn workspace_diff(&self, query: &str) -> Result<DiffReport, Error> {
        let started = Instant::now();
        let record = self.workspace_status(query)?;
        let workspace = record.display_name().to_string();
        let guest = self.connect_workspace(query).await?;
        let script = [PREAMBLE, DIFF_SCRIPT].concat();
        let output = run_script(&guest, &script, &[PATCH_LIMIT.to_string()]).await?;
        match output.status {
            0 => {}
            NO_GIT_EXIT => {
                return Err(DiffError::NoGit {
                    workspace,
                    env: record.env,
                }
                .into())
            }
            NO_BASELINE_EXIT => return Err(DiffError::NoBaseline { workspace }.into()),
            status => {
                return Err(DiffError::Guest {
                    message: failure_message(status, &output.stderr),
                }
                .into())
            }
        }
        let sections = split_sections(&output.stdout, PATCH_LIMIT)?;
        let files = parse_summary(sections.summary)?;
        let (patch, truncated) = cut_patch(sections.patch, sections.patch_bytes);
        self.record_activity(query);
        Ok(DiffReport {
            workspace,
            files_changed: files.len(),
            insertions: files.iter().map(|f| f.insertions).sum(),
            deletions: files.iter().map(|f| f.deletions).sum(),
            files,
            patch,
            truncated,
            patch_bytes: sections.patch_bytes,
            warnings: warnings(sections.messages),
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }
}

/// Records the current /workspace as the baseline `workspace diff` compares
/// against; recording again replaces it. An environment without `git` gets
/// no baseline, and that is not an error: the workspace works, and
/// `workspace diff` then says that git is missing.
pub(crate) async fn record_baseline(guest: &Guest) -> Result<(), Error> {
    let script = [PREAMBLE, RECORD_SCRIPT].concat();
    let output = run_script(guest, &script, &[]).await?;
    match output.status {
        0 | NO_GIT_EXIT => Ok(()),
        status => Err(DiffError::Record {
            message: failure_message(status, &output.stderr),
        }
        .into()),
    }
}

/// What a script printed, and how it ended.
pub(crate) struct ScriptOutput {
    pub(crate) status: i32,
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

/// Runs `sh -c script sh args...` in the guest, keeping at most
/// `SUMMARY_LIMIT + PATCH_LIMIT + MESSAGES_KEPT` bytes of stdout (more is
/// malformed: the script caps what it prints).
pub(crate) async fn run_script(
    guest: &Guest,
    script: &str,
    args: &[String],
) -> Result<ScriptOutput, Error> {
    let mut argv = vec!["sh".to_string(), "-c".into(), script.into(), "sh".into()];
    argv.extend(args.iter().cloned());
    let mut stream = guest
        .exec(ExecRequest {
            argv,
            cwd: Some("/".into()),
            ..ExecRequest::default()
        })
        .await?;
    let stdout_limit = (SUMMARY_LIMIT + PATCH_LIMIT) as usize + MESSAGES_KEPT + 1024;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    loop {
        match stream.next().await? {
            ExecEvent::Stdout(bytes) => {
                if stdout.len() + bytes.len() > stdout_limit {
                    return Err(DiffError::Malformed {
                        what: format!("more than {stdout_limit} bytes of output"),
                    }
                    .into());
                }
                stdout.extend_from_slice(&bytes);
            }
            ExecEvent::Stderr(bytes) => {
                let room = MESSAGES_KEPT.saturating_sub(stderr.len());
                stderr.extend_from_slice(&bytes[..room.min(bytes.len())]);
            }
            ExecEvent::Exited(status) => {
                return Ok(ScriptOutput {
                    status: status.shell_code(),
                    stdout,
                    stderr,
                })
            }
            ExecEvent::Failed { message, .. } => return Err(DiffError::Guest { message }.into()),
            ExecEvent::Started { .. } | ExecEvent::Ack(_) => {}
        }
    }
}

fn failure_message(status: i32, stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        format!("the script exited with status {status}")
    } else {
        text.to_string()
    }
}

/// The diff script's stdout, split.
#[derive(Debug, PartialEq, Eq)]
struct Sections<'a> {
    summary: &'a [u8],
    /// At most the cap.
    patch: &'a [u8],
    /// The whole patch's size.
    patch_bytes: u64,
    messages: &'a [u8],
}

fn split_sections(stdout: &[u8], patch_cap: u64) -> Result<Sections<'_>, DiffError> {
    let malformed = |what: &str| DiffError::Malformed { what: what.into() };
    let newline = stdout
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| malformed("no header"))?;
    let header = std::str::from_utf8(&stdout[..newline]).map_err(|_| malformed("bad header"))?;
    let sizes: Vec<u64> = match header.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["pyro-diff", sizes @ ..] if sizes.len() == 3 => sizes
            .iter()
            .map(|s| s.parse::<u64>())
            .collect::<Result<_, _>>()
            .map_err(|_| malformed("bad sizes in the header"))?,
        _ => return Err(malformed("bad header")),
    };
    let (summary_len, patch_bytes, messages_len) = (sizes[0], sizes[1], sizes[2]);
    let patch_len = patch_bytes.min(patch_cap);
    if summary_len > SUMMARY_LIMIT || messages_len > SUMMARY_LIMIT {
        return Err(malformed("sections over their limits"));
    }
    let body = &stdout[newline + 1..];
    let expected = summary_len + patch_len + messages_len;
    if body.len() as u64 != expected {
        return Err(malformed(&format!(
            "{} bytes after the header, {expected} announced",
            body.len()
        )));
    }
    let (summary, rest) = body.split_at(summary_len as usize);
    let (patch, messages) = rest.split_at(patch_len as usize);
    Ok(Sections {
        summary,
        patch,
        patch_bytes,
        messages,
    })
}

/// Parses `git diff --raw --numstat -z` output: every raw record
/// (`:oldmode newmode oldsha newsha STATUS\0path\0[newpath\0]`), then
/// every numstat record (`ins\tdel\tpath\0`, or `ins\tdel\t\0old\0new\0`
/// for a rename; `-` counts for binary files), in the same order.
fn parse_summary(bytes: &[u8]) -> Result<Vec<ChangedFile>, DiffError> {
    let malformed = |what: String| DiffError::Malformed { what };
    // Every field ends in NUL; none is empty but a rename's numstat path.
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut fields = Fields {
        fields: bytes.split(|&b| b == 0).collect(),
        at: 0,
    };
    let mut files = Vec::new();
    let mut counted = 0;
    while !fields.done() {
        let record = fields.path("record")?;
        if let Some(raw) = record.strip_prefix(':') {
            let parts: Vec<&str> = raw.split(' ').collect();
            let [old_mode, new_mode, old_sha, new_sha, status] = parts.as_slice() else {
                return Err(malformed(format!("raw record '{record}'")));
            };
            let letter = status.chars().next().unwrap_or(' ');
            let (path, old_path) = match letter {
                'R' | 'C' => {
                    let old = fields.path("rename source")?;
                    (fields.path("rename target")?, Some(old))
                }
                _ => (fields.path("path")?, None),
            };
            let mode = |m: &str| (m != "000000").then(|| m.to_string());
            let status = match letter {
                'A' | 'C' => ChangeStatus::Added,
                'D' => ChangeStatus::Deleted,
                'R' => ChangeStatus::Renamed,
                'T' => ChangeStatus::TypeChanged,
                'M' if old_sha == new_sha && old_mode != new_mode => ChangeStatus::ModeChanged,
                'M' => ChangeStatus::Modified,
                _ => return Err(malformed(format!("status '{status}'"))),
            };
            files.push(ChangedFile {
                path,
                old_path,
                status,
                old_mode: mode(old_mode),
                new_mode: mode(new_mode),
                binary: false,
                insertions: 0,
                deletions: 0,
            });
        } else {
            let file = files
                .get_mut(counted)
                .ok_or_else(|| malformed("more numstat than raw records".into()))?;
            counted += 1;
            let mut parts = record.splitn(3, '\t');
            let (Some(insertions), Some(deletions), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(malformed(format!("numstat record '{record}'")));
            };
            if path.is_empty() {
                // A rename: the two paths follow.
                fields.path("rename source")?;
                fields.path("rename target")?;
            }
            if insertions == "-" && deletions == "-" {
                file.binary = true;
            } else {
                let count = |n: &str| {
                    n.parse::<u64>()
                        .map_err(|_| malformed(format!("count '{n}'")))
                };
                file.insertions = count(insertions)?;
                file.deletions = count(deletions)?;
            }
        }
    }
    if counted != files.len() {
        return Err(malformed("fewer numstat than raw records".into()));
    }
    Ok(files)
}

/// The NUL-separated fields of `-z` output, in order.
struct Fields<'a> {
    fields: Vec<&'a [u8]>,
    at: usize,
}

impl Fields<'_> {
    fn done(&self) -> bool {
        self.at == self.fields.len()
    }

    /// The next field, which must not be empty.
    fn path(&mut self, what: &str) -> Result<String, DiffError> {
        let field = self.fields.get(self.at).filter(|field| !field.is_empty());
        self.at += 1;
        field
            .map(|field| String::from_utf8_lossy(field).into_owned())
            .ok_or_else(|| DiffError::Malformed {
                what: format!("missing {what}"),
            })
    }
}

/// The patch as text, cut at its last whole line under the cap with a note
/// saying how much is missing.
fn cut_patch(patch: &[u8], patch_bytes: u64) -> (String, bool) {
    if patch.len() as u64 >= patch_bytes {
        return (String::from_utf8_lossy(patch).into_owned(), false);
    }
    let whole_lines = patch.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut text = String::from_utf8_lossy(&patch[..whole_lines]).into_owned();
    text.push_str(&format!(
        "[pyro: patch truncated after {} of {} bytes; see the per-file summary (--stat) or read the files]\n",
        whole_lines, patch_bytes
    ));
    (text, true)
}

/// Git's warnings and errors, one per line, without its hints and
/// duplicates, reworded where Git's advice does not apply.
fn warnings(messages: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(&messages[..messages.len().min(MESSAGES_KEPT)]);
    let mut warnings: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim) {
        let warning = if line.is_empty()
            || line.starts_with("hint:")
            || line.contains("you may want to set your diff.renameLimit")
        {
            continue;
        } else if line.contains("exhaustive rename detection was skipped") {
            "renames were not detected: too many files were added and deleted; they show as \
             deletions and additions"
                .to_string()
        } else if line.contains("does not have a commit checked out") {
            format!("{line} (a nested repository without commits: its files are not compared)")
        } else {
            line.to_string()
        };
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Recorded from git 2.47 for: a.txt modified, bin.dat binary changed,
    /// del.txt deleted, link added (a symlink), old.txt renamed to
    /// new.txt, run.sh made executable.
    const SUMMARY: &[u8] = b":100644 100644 422c2b7 7be73ce M\0a.txt\0\
:100644 100644 8352675 a903574 M\0bin.dat\0\
:100644 000000 587be6b 0000000 D\0del.txt\0\
:000000 120000 0000000 8d14cbf A\0link\0\
:100644 100644 59d0607 59d0607 R100\0old.txt\0new.txt\0\
:100644 100755 b478595 b478595 M\0run.sh\0\
2\t1\ta.txt\0-\t-\tbin.dat\0\
0\t1\tdel.txt\0\
1\t0\tlink\0\
0\t0\t\0old.txt\0new.txt\0\
0\t0\trun.sh\0";

    #[test]
    fn raw_and_numstat_records_make_changed_files() {
        let files = parse_summary(SUMMARY).unwrap();
        let got: Vec<_> = files
            .iter()
            .map(|f| {
                (
                    f.path.as_str(),
                    f.old_path.as_deref(),
                    f.status.label(),
                    f.binary,
                    f.insertions,
                    f.deletions,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("a.txt", None, "modified", false, 2, 1),
                ("bin.dat", None, "modified", true, 0, 0),
                ("del.txt", None, "deleted", false, 0, 1),
                ("link", None, "added", false, 1, 0),
                ("new.txt", Some("old.txt"), "renamed", false, 0, 0),
                ("run.sh", None, "mode_changed", false, 0, 0),
            ]
        );
        assert_eq!(files[2].new_mode, None);
        assert_eq!(files[3].old_mode, None);
        assert_eq!(files[3].new_mode.as_deref(), Some("120000"));
        assert_eq!(files[5].new_mode.as_deref(), Some("100755"));
        assert_eq!(parse_summary(b"").unwrap(), []);
    }

    #[test]
    fn a_summary_that_does_not_add_up_is_malformed() {
        for bad in [
            &b":100644 100644 a b M\0x\0"[..],
            b"1\t2\tx\0",
            b":100644 100644 a b M\0x\0one\ttwo\tx\0",
            b":100644 100644 a b Z\0x\0",
            b":100644 100644 a b R100\0x\0",
            b":garbage\0x\0",
        ] {
            assert!(
                parse_summary(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_scripts_exit_with_the_statuses_the_host_expects() {
        assert!(PREAMBLE.contains(&format!("|| exit {NO_GIT_EXIT}\n")));
        assert!(DIFF_SCRIPT.contains(&format!("|| exit {NO_BASELINE_EXIT}\n")));
    }

    #[test]
    fn sections_split_by_the_announced_sizes() {
        let out = b"pyro-diff 3 10 2\nabc0123456789w\n";
        let sections = split_sections(out, 100).unwrap();
        assert_eq!(sections.summary, b"abc");
        assert_eq!(sections.patch, b"0123456789");
        assert_eq!(sections.messages, b"w\n");
        // A capped patch: the header gives the full size.
        let out = b"pyro-diff 0 10 0\n0123";
        let sections = split_sections(out, 4).unwrap();
        assert_eq!((sections.patch, sections.patch_bytes), (&b"0123"[..], 10));
        for bad in [
            &b""[..],
            b"nonsense\n",
            b"pyro-diff 1 2\n",
            b"pyro-diff 3 0 0\nab",
            b"pyro-diff 0 0 0\nextra",
        ] {
            assert!(split_sections(bad, 100).is_err());
        }
    }

    #[test]
    fn a_long_patch_is_cut_at_a_line_end_with_a_note() {
        let (text, truncated) = cut_patch(b"line one\nline tw", 100);
        assert!(truncated);
        assert!(text.starts_with("line one\n[pyro: patch truncated after 9 of 100 bytes"));
        assert_eq!(cut_patch(b"whole\n", 6), ("whole\n".to_string(), false));
    }

    #[test]
    fn hints_are_not_warnings() {
        let got = warnings(
            b"error: 'sub/' does not have a commit checked out\nhint: do this\n\n\
              warning: exhaustive rename detection was skipped due to too many files.\n\
              warning: you may want to set your diff.renameLimit variable to at least 5\n\
              warning: exhaustive rename detection was skipped due to too many files.\n",
        );
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[1].starts_with("renames were not detected"));
        assert!(got[0].starts_with("error: 'sub/' does not have a commit checked out (a nested"));
    }
}
