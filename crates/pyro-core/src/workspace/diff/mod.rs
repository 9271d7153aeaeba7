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

use crate::host::guest::{ExecEvent, Guest, GuestError};

mod output;

use output::{cut_patch, failure_message, parse_summary, split_sections, warnings};

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

/// Changes whenever recording a baseline does: warm templates hold one.
pub(crate) const RECORD_TAG: &str = RECORD_SCRIPT;

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
tree=$(git write-tree --missing-ok)
old=$(git rev-parse -q --verify refs/pyro/baseline || true)
commit=$(echo 'pyro baseline' | git commit-tree "$tree")
git update-ref refs/pyro/baseline "$commit"
# The previous baseline's objects are garbage now (gc is off).
[ -z "$old" ] || git prune --expire=now
"#;

/// Records /workspace as a pending baseline (`refs/pyro/next`, its index
/// and the token `$1`), for a reset to, or a fork of, the snapshot about
/// to be taken: the snapshot's disk then holds its own baseline, and
/// [`ADOPT_SCRIPT`] makes it the baseline in two processes instead of a
/// whole record. Starts from the baseline's index, whose stat cache spares
/// reading unchanged files.
const STASH_SCRIPT: &str = r#"
[ -f "$GIT_DIR/HEAD" ] || exit 91
export GIT_INDEX_FILE="$B.next.index"
rm -f "$B.next.token"
cp -p "$B.index" "$GIT_INDEX_FILE" 2>/dev/null || rm -f "$GIT_INDEX_FILE"
add_all "$B.next.warnings"
commit=$(echo 'pyro baseline' | git commit-tree "$(git write-tree --missing-ok)")
git update-ref refs/pyro/next "$commit"
echo "$1" > "$B.next.token"
"#;

/// Makes the pending baseline of token `$1` the baseline; exit 91 when the
/// disk holds no such stash. Its old objects stay until the next record
/// prunes.
const ADOPT_SCRIPT: &str = r#"
[ -f "$B.next.index" ] && [ -f "$B.next.token" ] || exit 91
read token < "$B.next.token"
[ "$token" = "$1" ] || exit 91
git update-ref refs/pyro/baseline refs/pyro/next
mv -f "$B.next.index" "$B.index"
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
# -p: the copy keeps the index's mtime, which tells git which entries are
# racily clean (changed in the second their stat data were taken).
cp -p "$B.index" "$T/index"
mkdir "$T/objects"
export GIT_INDEX_FILE="$T/index" GIT_OBJECT_DIRECTORY="$T/objects"
export GIT_ALTERNATE_OBJECT_DIRECTORIES="$GIT_DIR/objects"
add_all "$T/messages"
# A seeded baseline's blobs are the seed disk's files, not objects (see
# baseline/mod.rs): hash the ones this diff compares from there.
S=/var/lib/pyro/seed/tree
git diff --cached --no-renames --name-only -z --diff-filter=DMT refs/pyro/baseline \
  >"$T/old" 2>>"$T/messages" || { cat "$T/messages" >&2; exit 1; }
if [ -s "$T/old" ] && [ -d "$S" ]; then
  (
    cd "$S" || exit 0
    : >"$T/files"; : >"$T/links"
    xargs -0 -r sh -c 'for p; do
        if [ -L "$p" ]; then printf "%s\0" "$p" >>"$0/links"
        elif [ -f "$p" ]; then printf "%s\0" "$p" >>"$0/files"; fi
      done' "$T" <"$T/old"
    xargs -0 -r git hash-object -w --no-filters -- <"$T/files" >/dev/null
    xargs -0 -r sh -c 'for p; do readlink -n -- "$p" | git hash-object -w --stdin; done' sh \
      <"$T/links" >/dev/null
  ) 2>/dev/null || true
fi
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
    #[error(transparent)]
    Channel(#[from] GuestError),
}

/// How a file differs from the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeStatus {
    /// New since the baseline.
    Added,
    /// Content changed (the mode may have changed too; see the modes).
    Modified,
    /// Gone since the baseline.
    Deleted,
    /// Moved, with similar (maybe changed) content; `old_path` says from where.
    Renamed,
    /// Only the executable bit changed.
    ModeChanged,
    /// A file became a symlink, or the other way round.
    TypeChanged,
}

impl ChangeStatus {
    /// One word: `added`, `deleted`, `modified`, ...
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
    /// How it changed.
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
    /// Lines added (0 for a binary file).
    pub insertions: u64,
    /// Lines removed (0 for a binary file).
    pub deletions: u64,
}

/// What changed in /workspace since the baseline.
#[derive(Debug, Clone, Serialize)]
pub struct DiffReport {
    /// The workspace, as the caller named it.
    pub workspace: String,
    /// How many paths changed.
    pub files_changed: usize,
    /// Lines added (0 for a binary file).
    pub insertions: u64,
    /// Lines removed (0 for a binary file).
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
    /// How long the diff took.
    pub duration_ms: u64,
}

/// The changes in /workspace since its baseline, computed in the guest of
/// workspace `workspace` (of environment `env`, named in errors).
pub(crate) async fn compute(
    guest: &Guest,
    workspace: &str,
    env: &str,
) -> Result<DiffReport, DiffError> {
    let started = Instant::now();
    let script = [PREAMBLE, DIFF_SCRIPT].concat();
    let output = run_script(guest, &script, &[PATCH_LIMIT.to_string()]).await?;
    match output.status {
        0 => {}
        NO_GIT_EXIT => {
            return Err(DiffError::NoGit {
                workspace: workspace.to_string(),
                env: env.to_string(),
            })
        }
        NO_BASELINE_EXIT => {
            return Err(DiffError::NoBaseline {
                workspace: workspace.to_string(),
            })
        }
        status => {
            return Err(DiffError::Guest {
                message: failure_message(status, &output.stderr),
            })
        }
    }
    let sections = split_sections(&output.stdout, PATCH_LIMIT)?;
    let files = parse_summary(sections.summary)?;
    let (patch, truncated) = cut_patch(sections.patch, sections.patch_bytes);
    Ok(DiffReport {
        workspace: workspace.to_string(),
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

/// Records the current /workspace as the baseline `workspace diff` compares
/// against; recording again replaces it. An environment without `git` gets
/// no baseline, and that is not an error: the workspace works, and
/// `workspace diff` then says that git is missing.
pub(crate) async fn record_baseline(guest: &Guest) -> Result<(), DiffError> {
    let script = [PREAMBLE, RECORD_SCRIPT].concat();
    let output = run_script(guest, &script, &[]).await?;
    match output.status {
        0 | NO_GIT_EXIT => Ok(()),
        status => Err(DiffError::Record {
            message: failure_message(status, &output.stderr),
        }),
    }
}

/// Records /workspace in the guest as a pending baseline under `token`
/// (hex, made by the host) for [`adopt_baseline`]; see [`STASH_SCRIPT`].
pub(crate) async fn stash_baseline(guest: &Guest, token: &str) -> Result<(), DiffError> {
    let script = [PREAMBLE, STASH_SCRIPT].concat();
    let output = run_script(guest, &script, &[token.to_string()]).await?;
    match output.status {
        0 => Ok(()),
        status => Err(DiffError::Record {
            message: failure_message(status, &output.stderr),
        }),
    }
}

/// Makes the pending baseline `token` (on the disk just restored) the
/// baseline; `false` when the disk holds none, and the caller records one.
pub(crate) async fn adopt_baseline(guest: &Guest, token: &str) -> Result<bool, DiffError> {
    let script = [PREAMBLE, ADOPT_SCRIPT].concat();
    let output = run_script(guest, &script, &[token.to_string()]).await?;
    match output.status {
        0 => Ok(true),
        NO_BASELINE_EXIT | NO_GIT_EXIT => Ok(false),
        status => Err(DiffError::Record {
            message: failure_message(status, &output.stderr),
        }),
    }
}

/// The baseline after a reset to a snapshot or a fork: the one stashed
/// under `token` when there is one, else recorded now.
pub(crate) async fn baseline_after_restore(
    guest: &Guest,
    token: Option<&str>,
) -> Result<(), DiffError> {
    if let Some(token) = token {
        if adopt_baseline(guest, token).await? {
            return Ok(());
        }
    }
    record_baseline(guest).await
}

/// What a script printed, and how it ended.
pub(crate) struct ScriptOutput {
    pub(crate) status: i32,
    pub(crate) stdout: Vec<u8>,
    pub(crate) stderr: Vec<u8>,
}

/// How long the guest may take over a diff or summary script: git over a
/// large tree takes seconds even under emulation.
const SCRIPT_DEADLINE: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// Runs `sh -c script sh args...` in the guest, keeping at most
/// `SUMMARY_LIMIT + PATCH_LIMIT + MESSAGES_KEPT` bytes of stdout (more is
/// malformed: the script caps what it prints).
pub(crate) async fn run_script(
    guest: &Guest,
    script: &str,
    args: &[String],
) -> Result<ScriptOutput, DiffError> {
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
    let ran = tokio::time::timeout(SCRIPT_DEADLINE, async {
        let mut stderr = Vec::new();
        loop {
            match stream.next().await? {
                ExecEvent::Stdout(bytes) => {
                    if stdout.len() + bytes.len() > stdout_limit {
                        crate::host::exec::kill(&mut stream).await;
                        return Err(DiffError::Malformed {
                            what: format!("more than {stdout_limit} bytes of output"),
                        });
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
                ExecEvent::Failed { message, .. } => return Err(DiffError::Guest { message }),
                ExecEvent::Started | ExecEvent::Ack(_) => {}
            }
        }
    })
    .await;
    match ran {
        Ok(output) => output,
        Err(_) => {
            crate::host::exec::kill(&mut stream).await;
            Err(DiffError::Guest {
                message: format!(
                    "it did not finish within {} s (a stalled or replaced git in the guest); it was stopped",
                    SCRIPT_DEADLINE.as_secs()
                ),
            })
        }
    }
}
