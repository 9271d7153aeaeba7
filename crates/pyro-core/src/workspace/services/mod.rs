//! Services: named long-running commands with readiness, logs and stop.
//!
//! The supervisor starts a service as a guest command it keeps open (so it
//! survives between calls), appends everything it prints to a bounded log
//! file, and answers `start` only once the service is ready: a file exists,
//! a TCP port accepts, an HTTP URL answers 2xx/3xx, or a command succeeds,
//! each probed in the guest. A service that exits before it is ready, or
//! is not ready in time, fails with its last log lines (and one that is not
//! ready in time is stopped). `stop` sends SIGTERM and, after a grace
//! period, SIGKILL. Records live in `services.json` so a stopped or reset
//! workspace still says what its services were.

mod hub;

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub(crate) use self::hub::ServiceHub;
use super::control::ControlRequest;
use super::service_log::{self, LogRange, LogRead};
use super::sessions::{self, SessionError, CALL_SLACK, LONGEST_WAIT, SERVICES_FILE, SERVICE_LOGS};
use super::store::now;
use crate::{Error, Pyro};

/// Default wait for readiness.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Default time between SIGTERM and SIGKILL on stop.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(5);

/// How a service shows it is ready.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Readiness {
    /// This file exists (absolute, or relative to /workspace).
    File { path: String },
    /// Something accepts connections on this TCP port of the guest's
    /// loopback.
    Tcp { port: u16 },
    /// This http:// URL in the guest answers with a 2xx or 3xx status.
    Http { url: String },
    /// This shell command exits 0 in the guest.
    Command { command: String },
}

impl Readiness {
    fn describe(&self) -> String {
        match self {
            Readiness::File { path } => format!("file {path}"),
            Readiness::Tcp { port } => format!("tcp port {port}"),
            Readiness::Http { url } => format!("http {url}"),
            Readiness::Command { command } => format!("command `{command}`"),
        }
    }
}

/// What `service start` asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceSpec {
    pub name: String,
    pub argv: Vec<String>,
    pub cwd: Option<String>,
    /// Never recorded anywhere: only the names reach the service's record.
    #[serde(default)]
    pub env: Vec<(String, String)>,
    pub readiness: Option<Readiness>,
    pub ready_timeout_ms: u64,
}

/// Where a service stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ServiceState {
    /// Started, not ready yet.
    Starting,
    /// Ready (or started, when it has no readiness check) and running.
    Running,
    /// Exited with a failure, never became ready, or could not start.
    Failed {
        reason: String,
        exit_code: Option<i32>,
        signal: Option<i32>,
    },
    /// Exited by itself with status 0.
    Exited,
    /// Stopped on request; `killed` when it ignored SIGTERM.
    Stopped { killed: bool },
    /// The VM under it went away (stop, reset, crash).
    Ended { reason: String },
}

impl ServiceState {
    pub fn is_live(&self) -> bool {
        matches!(self, ServiceState::Starting | ServiceState::Running)
    }

    pub fn label(&self) -> &'static str {
        match self {
            ServiceState::Starting => "starting",
            ServiceState::Running => "running",
            ServiceState::Failed { .. } => "failed",
            ServiceState::Exited => "exited",
            ServiceState::Stopped { .. } => "stopped",
            ServiceState::Ended { .. } => "ended",
        }
    }
}

/// One service, as listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ServiceInfo {
    pub name: String,
    /// The command line, secrets redacted.
    pub command: String,
    pub cwd: Option<String>,
    /// Names of the extra environment variables (never their values).
    #[serde(default)]
    pub env_names: Vec<String>,
    pub readiness: Option<Readiness>,
    pub started_at: String,
    /// Milliseconds from start until it was ready.
    pub ready_after_ms: Option<u64>,
    pub ended_at: Option<String>,
    #[serde(flatten)]
    pub state: ServiceState,
    /// Bytes it printed in all.
    pub log_bytes: u64,
    /// Of those, bytes no longer kept (the log is bounded).
    pub log_dropped: u64,
}

/// Every service a workspace has had, in `services.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct ServiceRegistry {
    services: Vec<ServiceInfo>,
}

impl ServiceRegistry {
    pub(crate) fn end_live(&mut self, reason: &str) -> bool {
        let mut changed = false;
        for service in &mut self.services {
            if service.state.is_live() {
                service.state = ServiceState::Ended {
                    reason: reason.to_string(),
                };
                service.ended_at = Some(now());
                changed = true;
            }
        }
        changed
    }

    fn get(&self, name: &str) -> Option<&ServiceInfo> {
        self.services.iter().find(|s| s.name == name)
    }

    fn put(&mut self, info: ServiceInfo) {
        match self.services.iter_mut().find(|s| s.name == info.name) {
            Some(slot) => *slot = info,
            None => self.services.push(info),
        }
    }
}

fn log_path(dir: &std::path::Path, name: &str) -> PathBuf {
    dir.join(SERVICE_LOGS).join(format!("{name}.log"))
}

impl Pyro {
    /// Starts a service and returns once it is ready (or has failed).
    pub async fn workspace_service_start(
        &self,
        query: &str,
        spec: ServiceSpec,
    ) -> Result<ServiceInfo, Error> {
        let mut spec = spec;
        spec.ready_timeout_ms = spec.ready_timeout_ms.min(LONGEST_WAIT.as_millis() as u64);
        let wait = Duration::from_millis(spec.ready_timeout_ms).saturating_add(CALL_SLACK);
        self.session_call(query, &ControlRequest::ServiceStart(spec), wait)
            .await
    }

    /// Every service the workspace has had, with its state.
    pub async fn workspace_service_list(&self, query: &str) -> Result<Vec<ServiceInfo>, Error> {
        match self
            .session_call(query, &ControlRequest::ServiceList, CALL_SLACK)
            .await
        {
            Ok(list) => Ok(list),
            Err(error) => Ok(self.offline_services(query, error)?.0.services),
        }
    }

    pub async fn workspace_service_status(
        &self,
        query: &str,
        name: &str,
    ) -> Result<ServiceInfo, Error> {
        let request = ControlRequest::ServiceStatus {
            name: name.to_string(),
        };
        match self.session_call(query, &request, CALL_SLACK).await {
            Ok(info) => Ok(info),
            Err(error) => Ok(self.offline_service(query, name, error)?.0),
        }
    }

    /// Part of a service's log: the last lines, or from an offset on.
    pub async fn workspace_service_logs(
        &self,
        query: &str,
        name: &str,
        range: LogRange,
        max_bytes: u64,
    ) -> Result<LogRead, Error> {
        let (tail_lines, since_offset) = match range {
            LogRange::Tail(lines) => (Some(lines), None),
            LogRange::Since(offset) => (None, Some(offset)),
        };
        let request = ControlRequest::ServiceLogs {
            name: name.to_string(),
            tail_lines,
            since_offset,
            max_bytes,
        };
        match self.session_call(query, &request, CALL_SLACK).await {
            Ok(read) => Ok(read),
            Err(error) => {
                let (info, dir) = self.offline_service(query, name, error)?;
                let path = log_path(&dir, name);
                Ok(service_log::read(&path, info.log_dropped, range, max_bytes))
            }
        }
    }

    /// Stops a service: SIGTERM, then SIGKILL after `grace`. On a stopped
    /// workspace there is nothing to stop: the record says how it ended.
    pub async fn workspace_service_stop(
        &self,
        query: &str,
        name: &str,
        grace: Duration,
    ) -> Result<ServiceInfo, Error> {
        let grace = grace.min(LONGEST_WAIT);
        let request = ControlRequest::ServiceStop {
            name: name.to_string(),
            grace_ms: grace.as_millis() as u64,
        };
        match self
            .session_call(query, &request, grace.saturating_add(CALL_SLACK))
            .await
        {
            Ok(info) => Ok(info),
            Err(error) => Ok(self.offline_service(query, name, error)?.0),
        }
    }

    /// The recorded services of a workspace whose supervisor is gone, and
    /// its directory; else `error` (the supervisor is up and the call
    /// failed for real).
    fn offline_services(
        &self,
        query: &str,
        error: Error,
    ) -> Result<(ServiceRegistry, PathBuf), Error> {
        let store = self.workspaces()?;
        let record = store.resolve(query)?;
        if store.supervisor_alive(&record.id)? {
            return Err(error);
        }
        let dir = store.dir(&record.id);
        Ok((sessions::load(&dir, SERVICES_FILE), dir))
    }

    /// One recorded service of a workspace whose supervisor is gone.
    fn offline_service(
        &self,
        query: &str,
        name: &str,
        error: Error,
    ) -> Result<(ServiceInfo, PathBuf), Error> {
        let (registry, dir) = self.offline_services(query, error)?;
        let info = registry
            .get(name)
            .cloned()
            .ok_or_else(|| SessionError::UnknownService {
                name: name.to_string(),
                workspace: query.to_string(),
            })?;
        Ok((info, dir))
    }
}
