//! Structured results: plain, schema-described mirrors of the facade's
//! reports.

use std::collections::BTreeMap;

use pyro_core::RunEnd;
use pyro_core::{WorkspaceRecord, WorkspaceState};
use schemars::JsonSchema;
use serde::Serialize;

use crate::output::Capped;

/// One workspace.
#[derive(Debug, Serialize, JsonSchema)]
pub struct WorkspaceInfo {
    /// The id; any tool taking `workspace` accepts it, a unique prefix, or the name.
    pub id: String,
    /// The optional unique name.
    pub name: Option<String>,
    /// The environment it was created from, e.g. `debian:12`.
    pub env: String,
    /// The workflow it was made for (`workspace_create`'s `mode`), if any.
    pub mode: Option<String>,
    /// Settings given over the mode's, each said in a sentence.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mode_overrides: Vec<String>,
    /// `starting`, `running`, `suspended` (any tool call resumes it), `stopped` or `crashed`.
    pub state: String,
    /// Why it crashed, when it did; since when it is suspended.
    pub reason: Option<String>,
    /// Free-form `key=value` labels.
    pub labels: BTreeMap<String, String>,
    /// vCPUs.
    pub cpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When a tool last used it (RFC 3339).
    pub last_activity_at: String,
    /// Names of its snapshots, oldest first.
    pub snapshots: Vec<String>,
    /// `off` (no network device), `egress` or `egress+ports`.
    pub network: String,
    /// With egress, the destinations open to it; empty means every public one.
    pub allow: Vec<String>,
    /// With egress+ports, the host ports forwarded into it.
    pub ports: Vec<PortInfo>,
    /// How its VM last came up: restored from a warm template, or booted.
    pub last_start: Option<String>,
    /// After this long without a tool call it is suspended (e.g. "15m").
    pub idle_timeout: Option<String>,
    /// What the seed put in /workspace and what `exclude` and `.pyroignore` left out.
    pub seed: Option<String>,
}

/// A host port forwarded into the guest.
#[derive(Debug, Serialize, JsonSchema)]
pub struct PortInfo {
    /// The host address it listens on.
    pub host_address: String,
    /// The host port; 0 until the workspace starts, when it was asked as 0.
    pub host_port: u16,
    /// The guest port connections go to.
    pub guest_port: u16,
    /// Where the user reaches it on the host, e.g. `http://127.0.0.1:41234`, once bound.
    pub url: Option<String>,
    /// The facade's one-line rendering, for the text result.
    #[serde(skip)]
    line: String,
}

impl From<&pyro_core::PublishedPort> for PortInfo {
    fn from(port: &pyro_core::PublishedPort) -> Self {
        PortInfo {
            host_address: port.port.address.to_string(),
            host_port: port.port.host_port,
            guest_port: port.port.guest_port,
            url: port.url.clone(),
            line: port.line(),
        }
    }
}

impl PortInfo {
    /// `http://127.0.0.1:41234 -> guest port 8000`.
    pub fn line(&self) -> &str {
        &self.line
    }
}

impl From<WorkspaceRecord> for WorkspaceInfo {
    fn from(record: WorkspaceRecord) -> Self {
        let reason = match &record.state {
            WorkspaceState::Crashed { reason } => Some(reason.clone()),
            WorkspaceState::Suspended { since } => Some(format!("since {since}")),
            _ => None,
        };
        WorkspaceInfo {
            state: record.state.label().to_string(),
            reason,
            id: record.id,
            name: record.name,
            env: record.env,
            mode: record.mode.as_ref().map(|mode| mode.name.to_string()),
            mode_overrides: record
                .mode
                .iter()
                .flat_map(|mode| mode.overrides.iter().map(|o| o.note.clone()))
                .collect(),
            labels: record.labels,
            cpus: record.cpus,
            memory_mib: record.memory_mib,
            created_at: record.created_at,
            last_activity_at: record.last_activity_at,
            snapshots: record.snapshots.into_iter().map(|s| s.name).collect(),
            network: record.network.mode.to_string(),
            allow: record.network.allow.iter().map(|a| a.to_string()).collect(),
            ports: record.network.ports.iter().map(PortInfo::from).collect(),
            last_start: record.last_boot.as_ref().map(|b| b.line()),
            seed: record.seed.as_ref().map(|s| s.line()),
            idle_timeout: record.idle_timeout_secs.map(|secs| {
                pyro_core::params::describe_duration(std::time::Duration::from_secs(secs))
            }),
        }
    }
}

impl WorkspaceInfo {
    /// `id (name) env state`, one line.
    pub fn line(&self) -> String {
        let name = self
            .name
            .as_deref()
            .map(|n| format!(" ({n})"))
            .unwrap_or_default();
        let reason = self
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        let mut line = format!("{}{name} {} {}{reason}", self.id, self.env, self.state);
        for port in &self.ports {
            line.push_str(&format!("; port {}", port.line()));
        }
        line
    }
}

/// A list of workspaces.
#[derive(Debug, Serialize, JsonSchema)]
pub struct WorkspaceList {
    /// The workspaces, oldest first.
    pub workspaces: Vec<WorkspaceInfo>,
}

/// How a command ended and what it printed.
#[derive(Debug, Serialize, JsonSchema)]
pub struct CommandResult {
    /// The shell-style exit code: the command's own; 124 timed out, 126 not
    /// executable, 127 not found, 130 cancelled.
    pub exit_code: i32,
    /// True when the timeout stopped it.
    pub timed_out: bool,
    /// Set when the command could not start (not found, bad cwd, …).
    pub failure: Option<String>,
    /// Standard output (first 64 KiB).
    pub stdout: Capped,
    /// Standard error (first 64 KiB).
    pub stderr: Capped,
    /// Wall time of the command in milliseconds.
    pub duration_ms: u64,
    /// What the network refused while it ran, and how to open it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub network_denied: Option<String>,
}

impl CommandResult {
    pub fn new(
        end: &RunEnd,
        exit_code: i32,
        duration_ms: u64,
        stdout: Capped,
        stderr: Capped,
    ) -> Self {
        let (timed_out, failure) = match end {
            RunEnd::Exited { status } => (status.timed_out, None),
            RunEnd::Failed { message, .. } => (false, Some(message.clone())),
            RunEnd::Cancelled => (false, Some("cancelled".to_string())),
        };
        CommandResult {
            exit_code,
            timed_out,
            failure,
            stdout,
            stderr,
            duration_ms,
            network_denied: None,
        }
    }

    /// Adds the note on what the network refused (see `network::denial_note`).
    pub fn with_network_note(mut self, note: Option<String>) -> Self {
        self.network_denied = note;
        self
    }

    /// `exit 0 (12 ms)` then the streams.
    pub fn text(&self) -> String {
        let mut text = format!("exit {} ({} ms)", self.exit_code, self.duration_ms);
        if self.timed_out {
            text.push_str(", timed out");
        }
        if let Some(failure) = &self.failure {
            text.push_str(&format!(", could not run: {failure}"));
        }
        text.push('\n');
        text.push_str(&crate::output::streams_text(&self.stdout, &self.stderr));
        if let Some(note) = &self.network_denied {
            text.push_str("\nnetwork: ");
            text.push_str(note);
            text.push('\n');
        }
        text
    }
}

/// A finished host-side operation with no other result.
#[derive(Debug, Serialize, JsonSchema)]
pub struct Done {
    /// What was done, in words.
    pub message: String,
}
