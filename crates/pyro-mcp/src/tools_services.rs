//! The service tools (`workspace-full`): named background commands with
//! readiness, logs and stop.

use std::collections::BTreeMap;
use std::time::Duration;

use pyro_core::params::{self, command_argv};
use pyro_core::{LogRead, ServiceInfo, ServiceSpec, ServiceState};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::output::{schema, Out, ToolResult, STREAM_CAP};
use crate::tools_core::WorkspaceParams;
use crate::PyroServer;

/// Arguments of `workspace_service_start`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServiceStartParams {
    /// The workspace id or name.
    pub workspace: String,
    /// A name for the service (letters, digits, '.', '_', '-'); starting an ended name again
    /// restarts it.
    pub name: String,
    /// The command line, run with `sh -c` in the guest (pipes, `&&` and redirects work).
    pub command: Option<String>,
    /// The command as an exact argv list instead of `command`.
    pub argv: Option<Vec<String>>,
    /// Working directory (default /workspace; a relative one is under it).
    pub cwd: Option<String>,
    /// Extra environment variables, NAME -> value (values are never recorded or shown).
    #[serde(default)]
    pub env_vars: BTreeMap<String, String>,
    /// Secrets the user set for this workspace, given as variables: "NAME", or
    /// "ENVVAR=NAME". Their values appear as [secret:NAME] in every output.
    #[serde(default)]
    pub secret_env: Vec<String>,
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
    /// Where the user reaches it on the host: published ports leading to its readiness port.
    pub urls: Vec<String>,
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
            urls: info.urls,
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

#[tool_router(router = services_router, vis = "pub(crate)")]
impl PyroServer {
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
        let readiness = params::readiness(
            params.ready_file,
            params.ready_tcp_port,
            params.ready_http_url,
            params.ready_command,
        )?;
        let spec = ServiceSpec {
            name: params.name,
            argv: command_argv(params.command, params.argv)?,
            cwd: params.cwd,
            env: params.env_vars.into_iter().collect(),
            readiness,
            ready_timeout_ms: params::ready_timeout_ms(params.ready_timeout_seconds),
            secret_env: params.secret_env,
        };
        let info = self
            .pyro
            .workspace_service_start(&params.workspace, spec)
            .await?;
        let out = ServiceOut::from(info);
        let mut text = match out.ready_after_ms {
            Some(ms) => format!("service {} is ready after {ms} ms", out.name),
            None => format!("service {} started", out.name),
        };
        for url in &out.urls {
            text.push_str(&format!("; reachable on the host at {url}"));
        }
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
        let range = params::log_range(params.tail_lines, params.since_offset);
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
            .unwrap_or(params::DEFAULT_STOP_GRACE);
        let info = self
            .pyro
            .workspace_service_stop(&params.workspace, &params.name, grace)
            .await?;
        let out = ServiceOut::from(info);
        Ok(Out::new(out.line(), out))
    }
}
