//! Shells and services (`workspace-full`), and the review summary
//! (`workspace-core`).

use std::collections::BTreeMap;
use std::time::Duration;

use pyro_core::workspace::service_log::{LogRange, LogRead};
use pyro_core::workspace::services::{
    Readiness, ServiceInfo, ServiceSpec, ServiceState, DEFAULT_READY_TIMEOUT, DEFAULT_STOP_GRACE,
};
use pyro_core::workspace::shells::{
    parse_signal, ShellInfo, ShellInput, ShellRead, ShellReadOptions, ShellState,
};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::output::{schema, Out, ToolError, ToolResult, STREAM_CAP};
use crate::tools_core::WorkspaceParams;
use crate::PyroServer;

/// A workspace and one of its shells.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellParams {
    /// The workspace id or name.
    pub workspace: String,
    /// The shell id from workspace_shell_open (e.g. `s1`).
    pub shell: String,
}

/// Arguments of `workspace_shell_open`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellOpenParams {
    /// The workspace id or name.
    pub workspace: String,
    /// Directory to start in (default /workspace).
    pub cwd: Option<String>,
    /// Terminal rows, 1-500 (default 40).
    pub rows: Option<u16>,
    /// Terminal columns, 1-1000 (default 120).
    pub cols: Option<u16>,
}

/// Arguments of `workspace_shell_read`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellReadParams {
    /// The workspace id or name.
    pub workspace: String,
    /// The shell id.
    pub shell: String,
    /// Return once the shell printed nothing for this many milliseconds (default 500).
    pub wait_idle_ms: Option<u64>,
    /// Return after this many seconds even if it is still printing (default 15, at most 120).
    pub timeout_seconds: Option<u64>,
    /// The bytes as the program wrote them, escape sequences included (default false: plain text).
    #[serde(default)]
    pub raw: bool,
}

/// Arguments of `workspace_shell_write`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellWriteParams {
    /// The workspace id or name.
    pub workspace: String,
    /// The shell id.
    pub shell: String,
    /// Text typed as is, without Enter.
    pub text: Option<String>,
    /// A line typed and followed by Enter (after `text`).
    pub line: Option<String>,
    /// Named keys pressed after that, in order: enter, tab, esc, backspace, up, down, left,
    /// right, home, end, pageup, pagedown, delete, ctrl-a … ctrl-z (ctrl-c interrupts,
    /// ctrl-d ends input).
    #[serde(default)]
    pub keys: Vec<String>,
}

/// Arguments of `workspace_shell_signal`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellSignalParams {
    /// The workspace id or name.
    pub workspace: String,
    /// The shell id.
    pub shell: String,
    /// Signal name (INT, TERM, KILL, HUP, QUIT, …) or number.
    pub signal: String,
}

/// One shell.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ShellOut {
    /// Its id, for the other shell tools.
    pub shell: String,
    /// `open`, `exited`, `closed` or `ended` (the VM went away: stop, reset, crash).
    pub state: String,
    /// How it ended, when it did.
    pub detail: Option<String>,
    /// The directory it started in.
    pub cwd: Option<String>,
    pub rows: u16,
    pub cols: u16,
    /// When it was opened (RFC 3339).
    pub opened_at: String,
}

impl From<ShellInfo> for ShellOut {
    fn from(info: ShellInfo) -> Self {
        ShellOut {
            shell: info.id,
            detail: (!info.state.is_open()).then(|| info.state.describe()),
            state: state_label(&info.state).into(),
            cwd: info.cwd,
            rows: info.rows,
            cols: info.cols,
            opened_at: info.opened_at,
        }
    }
}

fn state_label(state: &ShellState) -> &'static str {
    match state {
        ShellState::Open => "open",
        ShellState::Exited { .. } => "exited",
        ShellState::Closed => "closed",
        ShellState::Ended { .. } => "ended",
    }
}

/// A workspace's shells.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ShellList {
    pub shells: Vec<ShellOut>,
}

/// What a shell showed since the previous read.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ShellReadOut {
    pub shell: String,
    /// New or changed text since the previous read, as a person would see it on the screen.
    pub text: String,
    /// A full-screen program (vi, top, less) is showing: `text` is its whole screen.
    pub full_screen: bool,
    /// The shell had gone quiet; false when the time limit cut the wait (read again for more).
    pub idle: bool,
    /// `open`, `exited`, `closed` or `ended`.
    pub state: String,
    /// How it ended, when it did.
    pub detail: Option<String>,
    /// Older lines (bytes in raw mode) dropped from the bounded history since the last read.
    pub dropped: u64,
    /// Bytes cut from the front of `text` to stay within the result size limit.
    pub truncated_bytes: u64,
}

/// Arguments of `workspace_service_start`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceStartParams {
    /// The workspace id or name.
    pub workspace: String,
    /// A name for the service (letters, digits, '.', '_', '-'); starting an ended name again
    /// restarts it.
    pub name: String,
    /// The command line, run with `sh -c` in the guest.
    pub command: String,
    /// Working directory (default /workspace).
    pub cwd: Option<String>,
    /// Extra environment variables, NAME -> value (values are never recorded or shown).
    #[serde(default)]
    pub env_vars: BTreeMap<String, String>,
    /// Ready when this file exists (absolute, or relative to /workspace).
    pub ready_file: Option<String>,
    /// Ready when this TCP port on the guest's 127.0.0.1 accepts connections.
    pub ready_tcp_port: Option<u16>,
    /// Ready when this http:// URL in the guest answers 2xx or 3xx, e.g. http://127.0.0.1:8000/.
    pub ready_http_url: Option<String>,
    /// Ready when this shell command exits 0 in the guest.
    pub ready_command: Option<String>,
    /// Seconds to wait for readiness (default 60); a service not ready by then is stopped.
    pub ready_timeout_seconds: Option<u64>,
}

/// A workspace and one of its services.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceParams {
    /// The workspace id or name.
    pub workspace: String,
    /// The service name.
    pub name: String,
}

/// Arguments of `workspace_service_logs`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceLogsParams {
    /// The workspace id or name.
    pub workspace: String,
    /// The service name.
    pub name: String,
    /// The last N lines (default 50 when `since_offset` is not given).
    pub tail_lines: Option<usize>,
    /// Everything from this byte offset on: pass the previous result's `end_offset` to follow.
    pub since_offset: Option<u64>,
}

/// Arguments of `workspace_service_stop`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceStopParams {
    /// The workspace id or name.
    pub workspace: String,
    /// The service name.
    pub name: String,
    /// Seconds between SIGTERM and SIGKILL (default 5).
    pub grace_seconds: Option<u64>,
}

/// One service.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ServiceOut {
    pub name: String,
    /// The command line (secrets redacted).
    pub command: String,
    /// `starting`, `running`, `failed`, `exited`, `stopped` or `ended` (the VM went away).
    pub state: String,
    /// Why it failed or ended.
    pub reason: Option<String>,
    /// Its exit code, when it exited.
    pub exit_code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    /// Milliseconds from start to ready.
    pub ready_after_ms: Option<u64>,
    /// When it started (RFC 3339).
    pub started_at: String,
    /// When it ended (RFC 3339).
    pub ended_at: Option<String>,
    /// Bytes it printed so far.
    pub log_bytes: u64,
}

impl From<ServiceInfo> for ServiceOut {
    fn from(info: ServiceInfo) -> Self {
        let (reason, exit_code, signal) = match &info.state {
            ServiceState::Failed {
                reason,
                exit_code,
                signal,
            } => (Some(reason.clone()), *exit_code, *signal),
            ServiceState::Ended { reason } => (Some(reason.clone()), None, None),
            ServiceState::Stopped { killed: true } => {
                (Some("ignored SIGTERM; killed".into()), None, None)
            }
            ServiceState::Exited => (None, Some(0), None),
            _ => (None, None, None),
        };
        ServiceOut {
            name: info.name,
            command: info.command,
            state: info.state.label().into(),
            reason,
            exit_code,
            signal,
            ready_after_ms: info.ready_after_ms,
            started_at: info.started_at,
            ended_at: info.ended_at,
            log_bytes: info.log_bytes,
        }
    }
}

impl ServiceOut {
    fn line(&self) -> String {
        match &self.reason {
            Some(reason) => format!("{}: {} ({reason})", self.name, self.state),
            None => format!("{}: {}", self.name, self.state),
        }
    }
}

/// A workspace's services.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ServiceList {
    pub services: Vec<ServiceOut>,
}

/// Part of a service's log.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ServiceLogsOut {
    pub text: String,
    /// Offset of the first byte of `text`.
    pub start_offset: u64,
    /// Offset just past `text`: pass it as `since_offset` to read on.
    pub end_offset: u64,
    /// Bytes before `start_offset` that are no longer kept (the log is bounded).
    pub skipped: u64,
    /// More follows after `end_offset`.
    pub truncated: bool,
}

impl From<LogRead> for ServiceLogsOut {
    fn from(read: LogRead) -> Self {
        ServiceLogsOut {
            text: read.text,
            start_offset: read.start_offset,
            end_offset: read.end_offset,
            skipped: read.skipped,
            truncated: read.truncated,
        }
    }
}

/// The newest [`STREAM_CAP`] bytes of `text`, and how many were cut.
fn keep_tail(text: String) -> (String, u64) {
    if text.len() <= STREAM_CAP {
        return (text, 0);
    }
    let mut cut = text.len() - STREAM_CAP;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    (text[cut..].to_string(), cut as u64)
}

fn read_out(read: ShellRead) -> ShellReadOut {
    let (text, truncated_bytes) = keep_tail(read.text);
    ShellReadOut {
        shell: read.shell,
        text,
        full_screen: read.full_screen,
        idle: read.idle,
        detail: (!read.state.is_open()).then(|| read.state.describe()),
        state: state_label(&read.state).into(),
        dropped: read.dropped,
        truncated_bytes,
    }
}

#[tool_router(router = sessions_router, vis = "pub(crate)")]
impl PyroServer {
    /// Open an interactive shell (bash) on a terminal in a workspace. Use it for interactive
    /// programs (a REPL, a prompt that asks questions, a debugger) and for state that must
    /// persist between commands (cd, exported variables, a virtualenv). For one-off commands,
    /// workspace_exec is simpler. Returns the shell id.
    #[tool(
        output_schema = schema::<ShellOut>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false)
    )]
    async fn workspace_shell_open(
        &self,
        Parameters(params): Parameters<ShellOpenParams>,
    ) -> ToolResult<ShellOut> {
        let size = match (params.rows, params.cols) {
            (None, None) => None,
            (rows, cols) => Some((rows.unwrap_or(40), cols.unwrap_or(120))),
        };
        let info = self
            .pyro
            .workspace_shell_open(&params.workspace, params.cwd.as_deref(), size)
            .await?;
        let out = ShellOut::from(info);
        Ok(Out::new(
            format!(
                "opened shell {}; type with workspace_shell_write, then read with workspace_shell_read",
                out.shell
            ),
            out,
        ))
    }

    /// Read what a shell showed since the previous read, as plain text a person would see
    /// (colours and cursor movement interpreted; a progress bar reads as its last state; a
    /// full-screen program reads as its screen). Waits until the shell is quiet, so one read
    /// after a command returns its output; if `idle` is false, read again.
    #[tool(
        output_schema = schema::<ShellReadOut>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = false, open_world_hint = false)
    )]
    async fn workspace_shell_read(
        &self,
        Parameters(params): Parameters<ShellReadParams>,
    ) -> ToolResult<ShellReadOut> {
        let options = ShellReadOptions {
            wait_idle: Duration::from_millis(params.wait_idle_ms.unwrap_or(500).min(60_000)),
            timeout: Duration::from_secs(params.timeout_seconds.unwrap_or(15).clamp(1, 120)),
            raw: params.raw,
        };
        let read = self
            .pyro
            .workspace_shell_read(&params.workspace, &params.shell, options)
            .await?;
        let out = read_out(read);
        let mut text = out.text.clone();
        if out.truncated_bytes > 0 {
            text.insert_str(
                0,
                &format!(
                    "[{} earlier bytes cut; older output is gone]\n",
                    out.truncated_bytes
                ),
            );
        }
        if let Some(detail) = &out.detail {
            text.push_str(&format!("\n[shell {} has {detail}]", out.shell));
        } else if !out.idle {
            text.push_str("\n[still printing; read again for more]");
        }
        if text.is_empty() {
            text = "[no new output]".into();
        }
        Ok(Out::new(text, out))
    }

    /// Type into a shell: `text` as is, then `line` followed by Enter, then named `keys` (e.g.
    /// ["ctrl-c"]). Read the result with workspace_shell_read.
    #[tool(
        output_schema = schema::<ShellWriteOut>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false)
    )]
    async fn workspace_shell_write(
        &self,
        Parameters(params): Parameters<ShellWriteParams>,
    ) -> ToolResult<ShellWriteOut> {
        let input = ShellInput::new(params.text.as_deref(), params.line.as_deref(), &params.keys)?;
        let sent = self
            .pyro
            .workspace_shell_write(&params.workspace, &params.shell, &input)
            .await?;
        Ok(Out::new(
            format!("sent {sent} bytes to shell {}", params.shell),
            ShellWriteOut { bytes: sent },
        ))
    }

    /// Send a signal to what runs in a shell's foreground (INT is like Ctrl-C; TERM, KILL); the
    /// shell itself gets it only when nothing else runs.
    #[tool(
        output_schema = schema::<crate::types::Done>(),
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false)
    )]
    async fn workspace_shell_signal(
        &self,
        Parameters(params): Parameters<ShellSignalParams>,
    ) -> ToolResult<crate::types::Done> {
        let signal = parse_signal(&params.signal)?;
        self.pyro
            .workspace_shell_signal(&params.workspace, &params.shell, signal)
            .await?;
        let message = format!("sent signal {signal} to shell {}", params.shell);
        Ok(Out::new(message.clone(), crate::types::Done { message }))
    }

    /// Close a shell, ending everything running in it.
    #[tool(
        output_schema = schema::<ShellOut>(),
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false)
    )]
    async fn workspace_shell_close(
        &self,
        Parameters(params): Parameters<ShellParams>,
    ) -> ToolResult<ShellOut> {
        let info = self
            .pyro
            .workspace_shell_close(&params.workspace, &params.shell)
            .await?;
        let out = ShellOut::from(info);
        Ok(Out::new(format!("closed shell {}", out.shell), out))
    }

    /// List a workspace's shells: the open ones and how recent ones ended.
    #[tool(
        output_schema = schema::<ShellList>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn workspace_shell_list(
        &self,
        Parameters(params): Parameters<WorkspaceParams>,
    ) -> ToolResult<ShellList> {
        let shells: Vec<ShellOut> = self
            .pyro
            .workspace_shell_list(&params.workspace)
            .await?
            .into_iter()
            .map(ShellOut::from)
            .collect();
        let text = if shells.is_empty() {
            "no shells".to_string()
        } else {
            shells
                .iter()
                .map(|s| match &s.detail {
                    Some(detail) => format!("{}: {} ({detail})", s.shell, s.state),
                    None => format!("{}: {}", s.shell, s.state),
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        Ok(Out::new(text, ShellList { shells }))
    }

    /// Start a named background service (a dev server, a database) and wait until it is ready:
    /// give one of ready_http_url, ready_tcp_port, ready_file or ready_command. If it exits or
    /// is not ready in time, the result is an error with its last log lines. Services keep
    /// running between calls; read their output with workspace_service_logs.
    #[tool(
        output_schema = schema::<ServiceOut>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false)
    )]
    async fn workspace_service_start(
        &self,
        Parameters(params): Parameters<ServiceStartParams>,
    ) -> ToolResult<ServiceOut> {
        let mut readiness = Vec::new();
        if let Some(path) = params.ready_file {
            readiness.push(Readiness::File { path });
        }
        if let Some(port) = params.ready_tcp_port {
            readiness.push(Readiness::Tcp { port });
        }
        if let Some(url) = params.ready_http_url {
            readiness.push(Readiness::Http { url });
        }
        if let Some(command) = params.ready_command {
            readiness.push(Readiness::Command { command });
        }
        if readiness.len() > 1 {
            return Err(ToolError(
                "give at most one of ready_file, ready_tcp_port, ready_http_url, ready_command"
                    .into(),
            ));
        }
        let spec = ServiceSpec {
            name: params.name,
            argv: vec!["sh".into(), "-c".into(), params.command],
            cwd: params.cwd,
            env: params.env_vars.into_iter().collect(),
            readiness: readiness.pop(),
            ready_timeout_ms: params
                .ready_timeout_seconds
                .map(|s| s.saturating_mul(1000))
                .unwrap_or(DEFAULT_READY_TIMEOUT.as_millis() as u64),
        };
        let info = self
            .pyro
            .workspace_service_start(&params.workspace, spec)
            .await?;
        let out = ServiceOut::from(info);
        let text = match out.ready_after_ms {
            Some(ms) => format!("service {} is ready after {ms} ms", out.name),
            None => format!("service {} started", out.name),
        };
        Ok(Out::new(text, out))
    }

    /// List a workspace's services and their states.
    #[tool(
        output_schema = schema::<ServiceList>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn workspace_service_list(
        &self,
        Parameters(params): Parameters<WorkspaceParams>,
    ) -> ToolResult<ServiceList> {
        let services: Vec<ServiceOut> = self
            .pyro
            .workspace_service_list(&params.workspace)
            .await?
            .into_iter()
            .map(ServiceOut::from)
            .collect();
        let text = if services.is_empty() {
            "no services".to_string()
        } else {
            services
                .iter()
                .map(ServiceOut::line)
                .collect::<Vec<_>>()
                .join("\n")
        };
        Ok(Out::new(text, ServiceList { services }))
    }

    /// Show one service: state, exit status, readiness time, log size.
    #[tool(
        output_schema = schema::<ServiceOut>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn workspace_service_status(
        &self,
        Parameters(params): Parameters<ServiceParams>,
    ) -> ToolResult<ServiceOut> {
        let info = self
            .pyro
            .workspace_service_status(&params.workspace, &params.name)
            .await?;
        let out = ServiceOut::from(info);
        Ok(Out::new(out.line(), out))
    }

    /// Read a service's output (stdout and stderr together): the last lines, or everything from
    /// an offset on to follow it.
    #[tool(
        output_schema = schema::<ServiceLogsOut>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn workspace_service_logs(
        &self,
        Parameters(params): Parameters<ServiceLogsParams>,
    ) -> ToolResult<ServiceLogsOut> {
        let range = match params.since_offset {
            Some(offset) => LogRange::Since(offset),
            None => LogRange::Tail(params.tail_lines.unwrap_or(50)),
        };
        let read = self
            .pyro
            .workspace_service_logs(&params.workspace, &params.name, range, STREAM_CAP as u64)
            .await?;
        let out = ServiceLogsOut::from(read);
        let mut text = out.text.clone();
        if out.truncated {
            text.push_str(&format!(
                "\n[more follows: read on with since_offset {}]",
                out.end_offset
            ));
        }
        if text.is_empty() {
            text = "[no output]".into();
        }
        Ok(Out::new(text, out))
    }

    /// Stop a service: SIGTERM, then SIGKILL after the grace period.
    #[tool(
        output_schema = schema::<ServiceOut>(),
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn workspace_service_stop(
        &self,
        Parameters(params): Parameters<ServiceStopParams>,
    ) -> ToolResult<ServiceOut> {
        let grace = params
            .grace_seconds
            .map(Duration::from_secs)
            .unwrap_or(DEFAULT_STOP_GRACE);
        let info = self
            .pyro
            .workspace_service_stop(&params.workspace, &params.name, grace)
            .await?;
        let out = ServiceOut::from(info);
        Ok(Out::new(out.line(), out))
    }
}

/// What a shell write sent.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ShellWriteOut {
    /// Bytes sent.
    pub bytes: u64,
}

/// What happened in a workspace since its last reset.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SummaryOut {
    /// Commands run since the last reset (or create).
    pub commands_run: usize,
    /// Of those, how many failed.
    pub commands_failed: usize,
    /// Files changed, from the real diff against the baseline.
    pub files_changed: usize,
    /// The whole summary, as `pyro workspace summary --json` prints it: `since`, `commands`
    /// (failures first, each with exit code and duration), `files`, `services` with their
    /// state, `snapshots_taken`, `syncs`, `exports`.
    pub details: serde_json::Value,
}

#[tool_router(router = summary_router, vis = "pub(crate)")]
impl PyroServer {
    /// Review what was done in a workspace since its last reset (or create): commands run
    /// (failures first), files changed (from the real diff), services and their state,
    /// snapshots and exports. Use it before reporting back, or to pick up a task.
    #[tool(
        output_schema = schema::<SummaryOut>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn workspace_summary(
        &self,
        Parameters(params): Parameters<WorkspaceParams>,
    ) -> ToolResult<SummaryOut> {
        let summary = self.pyro.workspace_summary(&params.workspace).await?;
        let text = summary.render_text();
        let out = SummaryOut {
            commands_run: summary.activity.commands_run,
            commands_failed: summary.activity.commands_failed,
            files_changed: summary.activity.files.len(),
            details: serde_json::to_value(&summary)
                .map_err(|e| ToolError(format!("internal error: {e}")))?,
        };
        Ok(Out::new(text, out))
    }
}
