//! The workspace's review log: what the agent did, one JSON object per line
//! in `events.jsonl` inside the workspace directory, read back by
//! [`super::summary`].
//!
//! Every `pyro` process using the workspace (CLI, MCP server, supervisor)
//! appends to it: each event is one `write(2)` of one whole line on an
//! `O_APPEND` descriptor, so lines from concurrent writers never interleave.
//! Writers hold `events.lock` shared while they append; when the file has
//! grown past [`MAX_BYTES`], the writer that noticed takes it exclusively and
//! rewrites the file atomically with only the events since the last
//! boundary (create or reset) — or, when even those are too many, that
//! boundary and the newest [`KEEP_NEWEST`] events.
//!
//! Recording is best effort: an event that cannot be written is lost, and
//! the operation it describes neither fails nor waits for it beyond a
//! shared lock. What is recorded is chosen so that the log holds no secret:
//! command lines go through [`command_line`] (secret-looking values and URL
//! passwords become `***`), environment variables given to exec are never
//! recorded, file contents never are.

use std::io::Write as _;
use std::path::Path;

use pyro_util::fsutil::{write_atomic, FileLock, Owner};
use pyro_util::shell_quote;
use serde::{Deserialize, Serialize};

use crate::host::exec::RunEnd;

/// The log, inside the workspace directory.
pub(crate) const EVENTS: &str = "events.jsonl";
/// Held shared by appenders, exclusively by a compaction.
const EVENTS_LOCK: &str = "events.lock";
/// How long an event waits for the log's lock (a compaction holds it for
/// milliseconds).
const EVENTS_LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(10);
/// Size past which the log is compacted.
const MAX_BYTES: u64 = 4 * 1024 * 1024;
/// Events kept after the boundary when those since it alone are too many.
const KEEP_NEWEST: usize = 5_000;
/// Longest recorded command line, in characters (then `…`).
const COMMAND_CAP: usize = 300;
/// Most paths one patch event lists.
const PATCH_FILES_CAP: usize = 100;

/// One recorded event.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Event {
    /// When it was recorded, RFC 3339 UTC.
    pub at: String,
    #[serde(flatten)]
    pub kind: EventKind,
}

/// What happened. New variants and fields must stay optional for readers:
/// an old `pyro` reads an unknown event as [`EventKind::Unknown`].
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum EventKind {
    /// The workspace was created (and seeded): a boundary.
    Created {
        env: String,
        /// The seed directory or repository URL (without its password).
        seed: Option<String>,
    },
    /// A command ran through `workspace exec`.
    Exec {
        /// Shell-quoted, secrets redacted, capped: see [`command_line`].
        command: String,
        /// `None` when it did not exit normally (signal, could not start,
        /// cancelled).
        exit_code: Option<i32>,
        signal: Option<i32>,
        timed_out: bool,
        duration_ms: u64,
        /// Why it could not start (`not_found`, `permission_denied`, …).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        start_error: Option<String>,
        /// The caller interrupted it.
        #[serde(default, skip_serializing_if = "is_false")]
        cancelled: bool,
    },
    /// A secret was set (its name; never its value).
    SecretSet {
        name: String,
    },
    /// A secret was removed.
    SecretUnset {
        name: String,
    },
    /// A host port was published into the guest (`127.0.0.1:8080 -> guest
    /// port 8000`).
    PortPublished {
        port: String,
    },
    /// A published port was closed.
    PortUnpublished {
        port: String,
    },
    /// The network's mode or allowlist changed (`workspace update`).
    NetworkChanged {
        /// `off`, `egress` or `egress+ports`.
        mode: String,
        /// The allowlist; empty opens every public destination.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        allow: Vec<String>,
    },
    /// The host's network stack refused a lookup or connection.
    NetworkDenied {
        /// `files.example.com:443`, or a bare name for a lookup.
        destination: String,
        /// Why, in words (`not in the allowlist`).
        reason: String,
        /// The allowlist entry that would open it, when one can.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        allow: Option<String>,
        /// The command that was running, when one was.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        command: Option<String>,
    },
    /// A file under /workspace was written whole.
    FileWrite {
        path: String,
        bytes: u64,
    },
    /// A patch was applied (`applied`) or rejected without changing anything.
    PatchApply {
        /// The files it names, at most [`PATCH_FILES_CAP`].
        files: Vec<String>,
        applied: bool,
        /// Files named beyond those listed.
        #[serde(default, skip_serializing_if = "is_zero")]
        more_files: usize,
    },
    /// A host directory was copied in.
    SyncPush {
        source: String,
        destination: String,
    },
    /// A path under /workspace was copied out to the host.
    Export {
        path: String,
        output: String,
    },
    Snapshot {
        name: String,
    },
    SnapshotDelete {
        name: String,
    },
    /// The disk went back to the baseline or `snapshot`: a boundary.
    Reset {
        snapshot: Option<String>,
    },
    /// This workspace was forked from another's running VM, or from one
    /// of its snapshots: a boundary, like a create.
    ForkedFrom {
        workspace: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        snapshot: Option<String>,
    },
    /// A fork of this workspace was made: the new workspace's id.
    Forked {
        workspace: String,
    },
    /// The VM was powered off (its services ended with it).
    Stopped,
    Started,
    /// The VM's memory was saved and its processes left, to run again at
    /// the next start (services keep running across it).
    Suspended,
    ServiceStarted {
        name: String,
        command: String,
    },
    ServiceReady {
        name: String,
        after_ms: u64,
    },
    ServiceFailed {
        name: String,
        reason: String,
    },
    ServiceExited {
        name: String,
        exit_code: Option<i32>,
        signal: Option<i32>,
    },
    ServiceStopped {
        name: String,
    },
    ShellOpened {
        shell: String,
    },
    ShellClosed {
        shell: String,
    },
    /// An event this build does not know.
    #[serde(other)]
    Unknown,
}

fn is_false(value: &bool) -> bool {
    !value
}

fn is_zero(value: &usize) -> bool {
    *value == 0
}

impl EventKind {
    /// Whether the summary starts here: create or reset.
    pub fn is_boundary(&self) -> bool {
        matches!(
            self,
            EventKind::Created { .. } | EventKind::Reset { .. } | EventKind::ForkedFrom { .. }
        )
    }

    /// An exec of `argv` that ended as `end`; `elapsed_ms` counts when the
    /// command never ran to an exit.
    pub(crate) fn exec(argv: &[String], end: &RunEnd, elapsed_ms: u64) -> EventKind {
        let (exit_code, signal, timed_out, duration_ms) = match end {
            RunEnd::Exited { status } => (
                status.code,
                status.signal,
                status.timed_out,
                status.duration_ms,
            ),
            RunEnd::Failed { .. } | RunEnd::Cancelled => (None, None, false, elapsed_ms),
        };
        let start_error = match end {
            RunEnd::Failed { kind, .. } => Some(
                serde_json::to_value(kind)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
                    .unwrap_or_else(|| "failed".into()),
            ),
            _ => None,
        };
        EventKind::Exec {
            command: command_line(argv),
            exit_code,
            signal,
            timed_out,
            duration_ms,
            start_error,
            cancelled: matches!(end, RunEnd::Cancelled),
        }
    }

    /// A patch naming `files`, applied or rejected.
    pub(crate) fn patch<'a>(files: impl IntoIterator<Item = &'a str>, applied: bool) -> EventKind {
        let all: Vec<&str> = files.into_iter().collect();
        EventKind::PatchApply {
            files: all
                .iter()
                .take(PATCH_FILES_CAP)
                .map(|p| p.to_string())
                .collect(),
            applied,
            more_files: all.len().saturating_sub(PATCH_FILES_CAP),
        }
    }
}

/// Appends one event to the log in the workspace directory `dir`. Never
/// fails: an event that cannot be written is dropped.
pub(crate) fn record(dir: &Path, event: EventKind) {
    let event = Event {
        at: super::store::now(),
        kind: event,
    };
    let Ok(mut value) = serde_json::to_value(&event) else {
        return;
    };
    // No secret's value is kept, whatever a command line held.
    let secrets = super::secrets::secrets(dir);
    if !secrets.is_empty() {
        redact_strings(&mut value, &secrets);
    }
    let Ok(mut line) = serde_json::to_vec(&value) else {
        return;
    };
    line.push(b'\n');
    if let Some(size) = append(dir, &line) {
        if size > MAX_BYTES {
            compact(dir);
        }
    }
}

fn redact_strings(value: &mut serde_json::Value, secrets: &super::secrets::Secrets) {
    match value {
        serde_json::Value::String(text) => *text = secrets.redact(text),
        serde_json::Value::Array(items) => {
            items.iter_mut().for_each(|v| redact_strings(v, secrets))
        }
        serde_json::Value::Object(map) => map.values_mut().for_each(|v| redact_strings(v, secrets)),
        _ => {}
    }
}

/// Appends `line` with one write; returns the file's size after it.
fn append(dir: &Path, line: &[u8]) -> Option<u64> {
    use std::os::unix::fs::OpenOptionsExt as _;
    if !dir.is_dir() {
        // The workspace is gone: do not resurrect its directory's log.
        return None;
    }
    let path = dir.join(EVENTS);
    // Shared: many appenders at once, none during a compaction's rewrite
    // (which would drop what was appended to the file it replaces).
    // A holder that never lets go costs the lock, not the event.
    let _lock = FileLock::acquire_within(&dir.join(EVENTS_LOCK), false, EVENTS_LOCK_PATIENCE).ok();
    let existed = path.exists();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o600)
        .open(&path)
        .ok()?;
    if !existed {
        let _ = Owner::for_store_at(dir).adopt(&path);
    }
    // One write(2) of the whole line: O_APPEND places it at the end
    // atomically, so concurrent lines never interleave. A short write
    // (disk full) leaves a partial line, which readers skip.
    let written = file.write(line).ok()?;
    if written != line.len() {
        return None;
    }
    file.metadata().ok().map(|m| m.len())
}

/// Rewrites the log with only what the summary still needs.
fn compact(dir: &Path) {
    let Ok(_lock) = FileLock::acquire_within(&dir.join(EVENTS_LOCK), true, EVENTS_LOCK_PATIENCE)
    else {
        return;
    };
    let path = dir.join(EVENTS);
    // Another writer may have compacted while this one waited.
    if std::fs::metadata(&path).map_or(true, |m| m.len() <= MAX_BYTES) {
        return;
    }
    let Ok(text) = std::fs::read(&path) else {
        return;
    };
    let kept = compacted(&text);
    let _ = write_atomic(&path, &kept, 0o600, Owner::for_store_at(dir));
}

/// The lines of `text` to keep: from the last boundary on, or the boundary
/// and the newest [`KEEP_NEWEST`] when that is still over half the cap.
fn compacted(text: &[u8]) -> Vec<u8> {
    let lines: Vec<&[u8]> = text
        .split(|b| *b == b'\n')
        .filter(|line| parse(line).is_some())
        .collect();
    let start = lines
        .iter()
        .rposition(|line| parse(line).is_some_and(|e| e.kind.is_boundary()))
        .unwrap_or(0);
    let mut kept: Vec<&[u8]> = lines[start..].to_vec();
    let size: usize = kept.iter().map(|l| l.len() + 1).sum();
    if size as u64 > MAX_BYTES / 2 && kept.len() > KEEP_NEWEST + 1 {
        let boundary = kept[0];
        let newest = kept.split_off(kept.len() - KEEP_NEWEST);
        kept = std::iter::once(boundary).chain(newest).collect();
    }
    let mut out = Vec::with_capacity(size);
    for line in kept {
        out.extend_from_slice(line);
        out.push(b'\n');
    }
    out
}

fn parse(line: &[u8]) -> Option<Event> {
    serde_json::from_slice(line).ok()
}

/// The events since the last create or reset, that boundary first; all of
/// them when there is none. Unreadable lines are skipped.
pub(crate) fn read_since_reset(dir: &Path) -> Vec<Event> {
    let text = std::fs::read(dir.join(EVENTS)).unwrap_or_default();
    let events: Vec<Event> = text.split(|b| *b == b'\n').filter_map(parse).collect();
    let start = events
        .iter()
        .rposition(|e| e.kind.is_boundary())
        .unwrap_or(0);
    events[start..].to_vec()
}

/// `argv` as one shell-quoted line for people and models to read, with
/// secrets redacted and at most [`COMMAND_CAP`] characters (then `…`).
///
/// Redacted to `***`: the value of `KEY=VALUE`, `--key=value` and
/// `--key value` when the key looks secret (see [`is_secret_key`]), also as
/// words inside an argument (`sh -c 'TOKEN=x make'`); everything after a
/// secret-looking `Header:` in the same argument (`-H 'Authorization:
/// Bearer x'`); and the password of any `scheme://user:password@host`.
pub(crate) fn command_line(argv: &[String]) -> String {
    let mut words = Vec::with_capacity(argv.len());
    let mut hide_next = false;
    for arg in argv {
        let redacted = if hide_next {
            "***".to_string()
        } else {
            redact_argument(arg)
        };
        hide_next = takes_secret_value(arg);
        words.push(shell_quote(&redacted));
    }
    cap(&words.join(" "), COMMAND_CAP)
}

/// A bare `--password` / `-token` option whose value is the next argument.
fn takes_secret_value(arg: &str) -> bool {
    arg.starts_with('-') && !arg.contains('=') && is_secret_key(arg)
}

/// Whether a key names a secret: case-insensitively contains password,
/// passwd, secret, token, api_key (apikey, api-key), auth, credential or
/// private_key (private-key, privatekey).
pub(crate) fn is_secret_key(key: &str) -> bool {
    const MARKERS: [&str; 11] = [
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "api-key",
        "auth",
        "credential",
        "private_key",
        "private-key",
    ];
    let key = key.to_ascii_lowercase();
    MARKERS.iter().any(|m| key.contains(m)) || key.contains("privatekey")
}

/// One argument with its secrets replaced (see [`command_line`]).
fn redact_argument(arg: &str) -> String {
    let arg = redact_urls(arg);
    // Words inside the argument (a `sh -c` script, a header), keeping the
    // whitespace between them.
    let mut out = String::with_capacity(arg.len());
    let mut hide_next = false;
    let mut rest = arg.as_str();
    while !rest.is_empty() {
        let space_len = rest.len() - rest.trim_start().len();
        out.push_str(&rest[..space_len]);
        rest = &rest[space_len..];
        let word_len = rest.find(char::is_whitespace).unwrap_or(rest.len());
        let word = &rest[..word_len];
        if word.is_empty() {
            continue;
        }
        // Where a secret value starts in `rest`, if one does here.
        let secret_from = if hide_next {
            hide_next = false;
            Some(0)
        } else {
            secret_assignment(word).map(|key_end| key_end + 1)
        };
        if let Some(from) = secret_from {
            out.push_str(&word[..from]);
            out.push_str("***");
            let value_len = secret_len(&rest[from..], word_len - from);
            // Keep what ends the shell word: `TOKEN=x; make` stays readable.
            let value = &rest[from..from + value_len];
            out.push_str(&value[value.trim_end_matches(SHELL_ENDINGS).len()..]);
            rest = &rest[from + value_len..];
            continue;
        } else if word.ends_with(':') && is_secret_key(word) {
            // `Authorization: Bearer x`: the rest of the argument is the value.
            out.push_str(word);
            if !rest[word_len..].trim().is_empty() {
                out.push_str(" ***");
            }
            break;
        } else {
            out.push_str(word);
            hide_next = takes_secret_value(word);
        }
        rest = &rest[word_len..];
    }
    out
}

/// Characters that end a shell word inside a script, kept after `***`.
const SHELL_ENDINGS: &[char] = &[';', '&', '|', ')', '"', '\'', '`'];

/// The length of the secret value at the start of `text`: up to the
/// closing quote when it is quoted (it may span words), else `word_len`.
fn secret_len(text: &str, word_len: usize) -> usize {
    match text.chars().next() {
        Some(quote @ ('"' | '\'')) => text[1..].find(quote).map_or(text.len(), |i| i + 2),
        _ => word_len,
    }
}

/// The index of the `=` after which `word`'s value is secret: the first one
/// whose text before it looks secret (`TOKEN=x`, `--header=X-Token=x`,
/// `https://h/?api_key=x`).
fn secret_assignment(word: &str) -> Option<usize> {
    word.match_indices('=')
        .map(|(index, _)| index)
        .find(|&index| is_secret_key(&word[..index]))
}

/// `scheme://user:password@host` → `scheme://user:***@host`, wherever it
/// occurs in `text`.
pub(crate) fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(found) = rest.find("://") {
        let authority_start = found + 3;
        out.push_str(&rest[..authority_start]);
        rest = &rest[authority_start..];
        let authority_len = rest
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
            .unwrap_or(rest.len());
        let authority = &rest[..authority_len];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                match userinfo.split_once(':') {
                    Some((user, _password)) => {
                        out.push_str(user);
                        out.push_str(":***");
                    }
                    None => out.push_str(userinfo),
                }
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &rest[authority_len..];
    }
    out.push_str(rest);
    out
}

/// `text` cut to `max` characters, the last of them `…`.
fn cap(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let mut out: String = text.chars().take(max - 1).collect();
    out.push('…');
    out
}

#[cfg(test)]
mod tests;
