//! `workspace summary`: one concise view of what happened in a workspace
//! since its last reset (or its creation), for a reviewer or a chat model:
//! the commands run (failures first), the files changed, the services and
//! their state, snapshots, syncs, exports and what the network refused.
//!
//! Commands, services and the rest come from the review log
//! ([`super::events`]); the files changed come from the real diff against
//! the baseline when the workspace runs and has git, else from the writes
//! and patches the log recorded, with a note saying so. The synthesis is a
//! pure function over the events ([`synthesise`]); nothing here reads a
//! secret, because the log holds none.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;

use super::diff::ChangedFile;
use super::events::{Event, EventKind};
pub use network::DeniedSummary;

mod network;
mod since;

pub use since::{since, Since};

/// Commands listed in the text form; the JSON form has them all.
const TEXT_COMMANDS: usize = 20;
/// Changed files listed in the text form.
const TEXT_FILES: usize = 40;

/// What happened in a workspace since its last reset.
#[derive(Debug, Clone, Serialize)]
pub struct WorkspaceSummary {
    /// The workspace's id.
    pub workspace: String,
    /// Its name.
    pub name: Option<String>,
    /// Its environment.
    pub env: String,
    /// The workflow it was made for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mode: Option<super::mode::Mode>,
    /// `running`, `stopped`, …
    pub state: String,
    /// Where the summary starts; `None` when the workspace has no log yet
    /// (it predates it).
    pub since: Option<Since>,
    /// What was run and changed.
    #[serde(flatten)]
    pub activity: Activity,
}

/// Everything [`synthesise`] derives from the events and the diff.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Activity {
    /// Failed commands first, then the rest; each group in the order run.
    pub commands: Vec<CommandRun>,
    pub commands_run: usize,
    pub commands_failed: usize,
    /// From the diff against the baseline, or (see `files_source`) the
    /// files written and patched through pyro.
    pub files: Vec<FileChange>,
    /// `diff` or `events`.
    pub files_source: &'static str,
    /// Why the files are not from the diff (then they are those written
    /// and patched through pyro; what commands changed is not seen).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub files_note: Option<String>,
    /// Patches refused (nothing changed), by the files they named.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rejected_patches: Vec<Vec<String>>,
    /// Each service's last known state, by name.
    pub services: Vec<ServiceSummary>,
    pub snapshots_taken: Vec<String>,
    pub snapshots_deleted: Vec<String>,
    pub syncs: Vec<SyncSummary>,
    pub exports: Vec<ExportSummary>,
    /// Times the workspace was stopped (its services end with it).
    pub stops: usize,
    /// Lookups and connections the network refused, by destination.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub network_denied: Vec<DeniedSummary>,
}

/// One command, or a run of identical consecutive ones with one outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CommandRun {
    /// Shell-quoted, secrets redacted.
    pub command: String,
    pub failed: bool,
    /// `exit 0`, `exit 1`, `signal 9`, `timed out`, `not started: not
    /// found`, `interrupted`, …
    pub outcome: String,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub timed_out: bool,
    /// Of all the runs together.
    pub duration_ms: u64,
    /// How many times it ran in a row with this outcome.
    pub runs: usize,
    /// When the (first) run was recorded.
    pub at: String,
}

/// One changed file.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileChange {
    pub path: String,
    /// The diff's status (`added`, `modified`, …), or `written`/`patched`
    /// when it comes from the log.
    pub status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub insertions: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deletions: Option<u64>,
}

/// A service's last known state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceSummary {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// `starting`, `ready`, `failed`, `exited` or `stopped`.
    pub state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SyncSummary {
    pub source: String,
    pub destination: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExportSummary {
    pub path: String,
    pub output: String,
}

/// Where the changed files come from.
#[derive(Debug, Clone)]
pub enum FileSource {
    /// The diff against the baseline.
    Diff(Vec<ChangedFile>),
    /// No diff; why not.
    Unavailable(String),
}

/// Folds the events since a boundary and the file list into the summary.
pub fn synthesise(events: &[Event], files: FileSource) -> Activity {
    let mut activity = Activity::default();
    let mut commands: Vec<CommandRun> = Vec::new();
    let mut services: BTreeMap<String, ServiceSummary> = BTreeMap::new();
    // Files the log names, in first-touched order, for when there is no diff.
    let mut touched: Vec<(String, &'static str)> = Vec::new();
    let mut touch =
        |path: &str, how: &'static str| match touched.iter_mut().find(|(p, _)| p == path) {
            Some(entry) => entry.1 = how,
            None => touched.push((path.to_string(), how)),
        };

    for event in events {
        match &event.kind {
            EventKind::Exec {
                command,
                exit_code,
                signal,
                timed_out,
                duration_ms,
                start_error,
                cancelled,
            } => {
                let outcome = outcome(
                    *exit_code,
                    *signal,
                    *timed_out,
                    start_error.as_deref(),
                    *cancelled,
                );
                let failed = outcome != "exit 0";
                activity.commands_run += 1;
                activity.commands_failed += usize::from(failed);
                match commands.last_mut() {
                    Some(last) if last.command == *command && last.outcome == outcome => {
                        last.runs += 1;
                        last.duration_ms += duration_ms;
                    }
                    _ => commands.push(CommandRun {
                        command: command.clone(),
                        failed,
                        outcome,
                        exit_code: *exit_code,
                        signal: *signal,
                        timed_out: *timed_out,
                        duration_ms: *duration_ms,
                        runs: 1,
                        at: event.at.clone(),
                    }),
                }
            }
            EventKind::FileWrite { path, .. } => touch(path, "written"),
            EventKind::PatchApply {
                files,
                applied: true,
                ..
            } => files.iter().for_each(|path| touch(path, "patched")),
            EventKind::PatchApply {
                files,
                applied: false,
                ..
            } => activity.rejected_patches.push(files.clone()),
            EventKind::SyncPush {
                source,
                destination,
            } => activity.syncs.push(SyncSummary {
                source: source.clone(),
                destination: destination.clone(),
            }),
            EventKind::Export { path, output } => activity.exports.push(ExportSummary {
                path: path.clone(),
                output: output.clone(),
            }),
            EventKind::NetworkDenied {
                destination,
                reason,
                allow,
                command,
            } => network::note(
                &mut activity.network_denied,
                destination,
                reason,
                allow,
                command,
            ),
            EventKind::Snapshot { name } => activity.snapshots_taken.push(name.clone()),
            EventKind::SnapshotDelete { name } => activity.snapshots_deleted.push(name.clone()),
            EventKind::Stopped => {
                activity.stops += 1;
                for service in services.values_mut() {
                    if matches!(service.state, "starting" | "running") {
                        service.state = "ended";
                        service.reason = Some("the workspace was stopped".into());
                    }
                }
            }
            EventKind::ServiceStarted { name, command } => {
                services.insert(
                    name.clone(),
                    ServiceSummary {
                        name: name.clone(),
                        command: Some(command.clone()),
                        state: "starting",
                        reason: None,
                        exit_code: None,
                        signal: None,
                    },
                );
            }
            EventKind::ServiceReady { name, .. } => service(&mut services, name).state = "running",
            EventKind::ServiceFailed { name, reason } => {
                let service = service(&mut services, name);
                service.state = "failed";
                service.reason = Some(reason.clone());
            }
            EventKind::ServiceExited {
                name,
                exit_code,
                signal,
            } => {
                let service = service(&mut services, name);
                // A service that failed its readiness check keeps that reason.
                if service.state != "failed" {
                    service.state = "exited";
                }
                service.exit_code = *exit_code;
                service.signal = *signal;
            }
            EventKind::ServiceStopped { name } => {
                let service = service(&mut services, name);
                service.state = "stopped";
                service.reason = None;
            }
            EventKind::Created { .. }
            | EventKind::Reset { .. }
            | EventKind::ForkedFrom { .. }
            | EventKind::Forked { .. }
            | EventKind::Started
            | EventKind::Suspended
            | EventKind::ShellOpened { .. }
            | EventKind::ShellClosed { .. }
            // Status shows what is in force; the events, each change.
            | EventKind::NetworkChanged { .. }
            | EventKind::PortPublished { .. }
            | EventKind::PortUnpublished { .. }
            | EventKind::SecretSet { .. }
            | EventKind::SecretUnset { .. }
            | EventKind::Unknown => {}
        }
    }

    let (failed, succeeded): (Vec<_>, Vec<_>) = commands.into_iter().partition(|c| c.failed);
    activity.commands = failed.into_iter().chain(succeeded).collect();
    activity.services = services.into_values().collect();
    match files {
        FileSource::Diff(changed) => {
            activity.files_source = "diff";
            activity.files = changed
                .into_iter()
                .map(|file| FileChange {
                    path: file.path,
                    status: file.status.label().to_string(),
                    old_path: file.old_path,
                    insertions: (!file.binary).then_some(file.insertions),
                    deletions: (!file.binary).then_some(file.deletions),
                })
                .collect();
        }
        FileSource::Unavailable(why) => {
            activity.files_source = "events";
            activity.files_note = Some(why);
            activity.files = touched
                .into_iter()
                .map(|(path, how)| FileChange {
                    path,
                    status: how.to_string(),
                    old_path: None,
                    insertions: None,
                    deletions: None,
                })
                .collect();
        }
    }
    activity
}

/// A service named by an event, created when its start was not seen.
fn service<'a>(
    services: &'a mut BTreeMap<String, ServiceSummary>,
    name: &str,
) -> &'a mut ServiceSummary {
    services
        .entry(name.to_string())
        .or_insert_with(|| ServiceSummary {
            name: name.to_string(),
            command: None,
            state: "starting",
            reason: None,
            exit_code: None,
            signal: None,
        })
}

/// How a command ended, in a few words; `exit 0` is the only success.
fn outcome(
    exit_code: Option<i32>,
    signal: Option<i32>,
    timed_out: bool,
    start_error: Option<&str>,
    cancelled: bool,
) -> String {
    if timed_out {
        return "timed out".into();
    }
    if cancelled {
        return "interrupted".into();
    }
    if let Some(error) = start_error {
        return format!("not started: {}", error.replace('_', " "));
    }
    match (exit_code, signal) {
        (Some(code), _) => format!("exit {code}"),
        (None, Some(signal)) => format!("signal {signal}"),
        (None, None) => "no exit status".into(),
    }
}

impl WorkspaceSummary {
    /// A few headed sections for a chat model: failures first, empty
    /// sections left out.
    pub fn render_text(&self) -> String {
        let mut text = String::new();
        let name = self.name.as_deref().unwrap_or(&self.workspace);
        let _ = write!(text, "Workspace {name}");
        if self.name.is_some() {
            let _ = write!(text, " ({})", self.workspace);
        }
        let _ = write!(text, ", {}", self.env);
        if let Some(mode) = self.mode {
            let _ = write!(text, ", {mode} mode");
        }
        let _ = write!(text, ", {}", self.state);
        match &self.since {
            Some(since) if since.event != "reset" => {
                let _ = writeln!(text, "; since it was {} at {}.", since.event, since.at);
            }
            Some(since) => {
                let target = since
                    .snapshot
                    .as_ref()
                    .map_or("the baseline".to_string(), |s| format!("snapshot {s}"));
                let _ = writeln!(text, "; since its reset to {target} at {}.", since.at);
            }
            None => text.push_str(".\n"),
        }
        text.push_str(&self.activity.render_text());
        text
    }
}

impl Activity {
    fn render_text(&self) -> String {
        let mut text = String::new();
        let mut section = |title: String, lines: Vec<String>| {
            let _ = writeln!(text, "\n{title}");
            // Lines hold commands, file names and failures the guest or a
            // model chose: one line each, escapes visible.
            for line in lines {
                let _ = writeln!(text, "  {}", pyro_util::text::visible(&line));
            }
        };

        if self.commands.is_empty() {
            section("No commands run since the last reset.".into(), Vec::new());
        } else {
            let failed = match self.commands_failed {
                0 => String::new(),
                n => format!(", {n} failed"),
            };
            let mut lines: Vec<String> = self
                .commands
                .iter()
                .take(TEXT_COMMANDS)
                .map(|c| {
                    let mark = if c.failed { "FAILED" } else { "ok" };
                    let times = if c.runs > 1 {
                        format!(" x{}", c.runs)
                    } else {
                        String::new()
                    };
                    format!(
                        "{mark} ({}, {}){times}: {}",
                        c.outcome,
                        duration(c.duration_ms),
                        c.command
                    )
                })
                .collect();
            more(&mut lines, self.commands.len(), TEXT_COMMANDS, "commands");
            section(
                format!("Commands ({} run{failed}):", self.commands_run),
                lines,
            );
        }

        let title = match self.files_source {
            "diff" if self.files.is_empty() => "No files changed since the baseline.".to_string(),
            "diff" => format!("Files changed ({}):", self.files.len()),
            _ => format!(
                "{} through pyro ({}; what commands changed is not listed){}",
                if self.files.is_empty() {
                    "No files written or patched"
                } else {
                    "Files written or patched"
                },
                self.files_note.as_deref().unwrap_or("no diff"),
                if self.files.is_empty() { "." } else { ":" }
            ),
        };
        let mut lines: Vec<String> = self
            .files
            .iter()
            .take(TEXT_FILES)
            .map(|f| {
                let path = match &f.old_path {
                    Some(old) => format!("{old} => {}", f.path),
                    None => f.path.clone(),
                };
                let counts = match (f.insertions, f.deletions) {
                    (Some(i), Some(d)) if i + d > 0 => format!(" (+{i} -{d})"),
                    _ => String::new(),
                };
                format!("{:<12} {path}{counts}", f.status)
            })
            .collect();
        more(&mut lines, self.files.len(), TEXT_FILES, "files");
        section(title, lines);

        if !self.rejected_patches.is_empty() {
            let lines = self
                .rejected_patches
                .iter()
                .map(|files| files.join(", "))
                .collect();
            section("Patches rejected (nothing was changed):".into(), lines);
        }

        if !self.services.is_empty() {
            let lines = self
                .services
                .iter()
                .map(|s| {
                    let mut line = format!("{}: {}", s.name, s.state);
                    if let Some(code) = s.exit_code {
                        let _ = write!(line, " (exit {code})");
                    } else if let Some(signal) = s.signal {
                        let _ = write!(line, " (signal {signal})");
                    }
                    if let Some(reason) = &s.reason {
                        let _ = write!(line, " — {reason}");
                    }
                    if let Some(command) = &s.command {
                        let _ = write!(line, "; {command}");
                    }
                    line
                })
                .collect();
            section("Services:".into(), lines);
        }

        if let Some((title, lines)) = network::section(&self.network_denied) {
            section(title, lines);
        }

        let mut other = Vec::new();
        if !self.snapshots_taken.is_empty() {
            other.push(format!(
                "snapshots taken: {}",
                self.snapshots_taken.join(", ")
            ));
        }
        if !self.snapshots_deleted.is_empty() {
            other.push(format!(
                "snapshots deleted: {}",
                self.snapshots_deleted.join(", ")
            ));
        }
        for sync in &self.syncs {
            other.push(format!("synced {} -> {}", sync.source, sync.destination));
        }
        for export in &self.exports {
            other.push(format!(
                "exported /workspace/{} -> {}",
                export.path, export.output
            ));
        }
        match self.stops {
            0 => {}
            1 => other.push("workspace stopped once".into()),
            n => other.push(format!("workspace stopped {n} times")),
        }
        if !other.is_empty() {
            section("Other activity:".into(), other);
        }
        text
    }
}

/// Notes the items a text list left out.
fn more(lines: &mut Vec<String>, total: usize, shown: usize, what: &str) {
    if total > shown {
        lines.push(format!(
            "… and {} more {what} (the JSON form lists them all)",
            total - shown
        ));
    }
}

/// `850 ms`, `12.3 s`, `4m05s`.
fn duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{}m{:02}s", ms / 60_000, (ms / 1000) % 60),
    }
}

#[cfg(test)]
mod tests;
