//! What shells and services share: their records on disk, their errors, and
//! the rule that a VM ending ends them all.
//!
//! The supervisor owns the live shells and services (they are guest
//! commands it keeps open) and writes their records, `shells.json` and
//! `services.json` in the workspace directory, on every change. Those files
//! outlive the VM, so a later call can say what happened to a shell or a
//! service (exited, closed, ended by a reset) rather than "unknown". Only
//! one writer exists at a time: the supervisor while it lives, else the
//! facade (`end_all`), which runs only once the supervisor is gone.

use std::path::Path;

use pyro_util::fsutil::{write_atomic, Owner};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::control::{ControlReply, ControlRequest};
use super::store::now;
use crate::Error;

/// The shells of a workspace, in `shells.json`.
pub(crate) const SHELLS_FILE: &str = "shells.json";
/// The services of a workspace, in `services.json`.
pub(crate) const SERVICES_FILE: &str = "services.json";
/// Where service logs live, inside the workspace directory.
pub(crate) const SERVICE_LOGS: &str = "services";

/// The longest any shell or service call waits (a read, a readiness
/// check, a stop's grace), whatever it is asked.
pub(crate) const LONGEST_WAIT: std::time::Duration = std::time::Duration::from_secs(3600);
/// How long a control call may take beyond the work it asks for.
pub(crate) const CALL_SLACK: std::time::Duration = std::time::Duration::from_secs(30);

/// Why a shell or service call failed. Messages say what to do next.
#[derive(Debug, Clone, thiserror::Error, Serialize, Deserialize)]
#[serde(tag = "kind", content = "detail", rename_all = "snake_case")]
pub enum SessionError {
    #[error("no shell '{shell}' in workspace '{workspace}'; see them with: pyro workspace shell list {workspace}")]
    UnknownShell { shell: String, workspace: String },
    #[error(
        "shell '{shell}' has {how}; open a new one with: pyro workspace shell open {workspace}"
    )]
    ShellGone {
        shell: String,
        workspace: String,
        how: String,
    },
    #[error("workspace '{workspace}' already has {limit} open shells; close some with: pyro workspace shell close {workspace} SHELL")]
    TooManyShells { workspace: String, limit: usize },
    #[error("shell '{shell}' is not reading its input ({pending} bytes still pending); interrupt what runs with: pyro workspace shell signal WORKSPACE {shell} INT (workspace_shell_signal), then write again")]
    ShellBusy { shell: String, pending: u64 },
    #[error("no service '{name}' in workspace '{workspace}'; see them with: pyro workspace service list {workspace}")]
    UnknownService { name: String, workspace: String },
    #[error("service '{name}' is already running; stop it first with: pyro workspace service stop {workspace} {name}")]
    ServiceRunning { name: String, workspace: String },
    #[error("invalid service name '{name}': use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit")]
    BadServiceName { name: String },
    #[error("service '{name}' {reason}{}", log_tail(.last_lines))]
    ServiceFailed {
        name: String,
        reason: String,
        last_lines: Vec<String>,
    },
    #[error("{0}")]
    Invalid(String),
    #[error("the workspace's supervisor did not answer ({0}); see pyro workspace logs")]
    Supervisor(String),
    #[error(
        "the workspace's VM went away ({0}); see pyro workspace status and pyro workspace logs"
    )]
    VmGone(String),
    #[error("internal error in the workspace's supervisor: {0}; see pyro workspace logs")]
    Internal(String),
}

impl From<SessionError> for Error {
    fn from(error: SessionError) -> Self {
        Error::Workspace(super::WorkspaceError::Session(error))
    }
}

fn log_tail(lines: &[String]) -> String {
    if lines.is_empty() {
        return "; it printed nothing".to_string();
    }
    let mut text = String::from("; its last log lines:");
    for line in lines {
        text.push_str("\n  ");
        text.push_str(line);
    }
    text
}

/// A guest channel failure, as a session error.
pub(crate) fn vm_gone(error: crate::guest::GuestError) -> SessionError {
    SessionError::VmGone(error.to_string())
}

/// Locks a mutex, also after a panic elsewhere (the state it guards stays
/// consistent: every holder makes whole updates).
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Reads a registry file; a missing or unreadable one is empty.
pub(crate) fn load<T: DeserializeOwned + Default>(dir: &Path, file: &str) -> T {
    std::fs::read(dir.join(file))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Replaces a registry file atomically (best effort: the live state is in
/// the supervisor; the file only tells later callers what happened).
pub(crate) fn save<T: Serialize>(dir: &Path, file: &str, value: &T) {
    if let Ok(bytes) = serde_json::to_vec_pretty(value) {
        let _ = write_atomic(&dir.join(file), &bytes, 0o600, Owner::default());
    }
}

/// Marks every shell and service still recorded as live as ended, with
/// `reason` (e.g. "the workspace was reset"). Called when the VM is
/// gone: by the facade after stop or reset, by the supervisor when its VM
/// stops, and at supervisor start for whatever a killed one left.
pub(crate) fn end_all(dir: &Path, reason: &str) {
    let reason = format!("{reason} at {}", now());
    let mut shells: super::shells::ShellRegistry = load(dir, SHELLS_FILE);
    if shells.end_live(&reason) {
        save(dir, SHELLS_FILE, &shells);
    }
    let mut services: super::services::ServiceRegistry = load(dir, SERVICES_FILE);
    if services.end_live(&reason) {
        save(dir, SERVICES_FILE, &services);
    }
}

/// The supervisor's shells and services, behind the control socket.
pub(crate) struct Sessions {
    pub(crate) shells: std::sync::Arc<super::shells::ShellHub>,
    pub(crate) services: std::sync::Arc<super::services::ServiceHub>,
}

impl Sessions {
    pub(crate) fn new(
        dir: std::path::PathBuf,
        workspace: String,
        guest: std::sync::Arc<crate::guest::Guest>,
    ) -> Self {
        // Whatever a killed supervisor left recorded as live is over.
        end_all(&dir, "the VM restarted");
        Sessions {
            shells: super::shells::ShellHub::new(
                dir.clone(),
                workspace.clone(),
                std::sync::Arc::clone(&guest),
            ),
            services: super::services::ServiceHub::new(dir, workspace, guest),
        }
    }

    /// Records every shell and service as ended by `reason` (the VM is
    /// going away), before their own endings could say less.
    pub(crate) fn end_all(&self, reason: &str) {
        let reason = format!("{reason} at {}", now());
        self.shells.end_all(&reason);
        self.services.end_all(&reason);
    }

    /// Answers one shell or service request (not `Snapshot`: the caller
    /// owns the VM for that).
    pub(crate) async fn handle(&self, request: ControlRequest) -> ControlReply {
        use std::time::Duration;
        use ControlRequest as R;
        let shells = &self.shells;
        let services = &self.services;
        match request {
            R::Snapshot { .. } => ControlReply::Error(SessionError::Invalid(
                "snapshot requests go to the main loop".into(),
            )),
            R::ShellOpen { cwd, rows, cols } => {
                ControlReply::from_result(shells.open(cwd, rows, cols).await)
            }
            R::ShellRead {
                shell,
                wait_idle_ms,
                timeout_ms,
                raw,
            } => ControlReply::from_result(
                shells
                    .read(
                        &shell,
                        Duration::from_millis(wait_idle_ms),
                        Duration::from_millis(timeout_ms),
                        raw,
                    )
                    .await,
            ),
            R::ShellWrite { shell, data, keys } => {
                ControlReply::from_result(shells.write(&shell, data, &keys).await)
            }
            R::ShellSignal { shell, signal } => {
                ControlReply::from_result(shells.signal(&shell, signal).await)
            }
            R::ShellResize { shell, rows, cols } => {
                ControlReply::from_result(shells.resize(&shell, rows, cols).await)
            }
            R::ShellClose { shell } => ControlReply::from_result(shells.close(&shell).await),
            R::ShellList => ControlReply::from_result(Ok::<_, SessionError>(shells.list())),
            R::ServiceStart(spec) => ControlReply::from_result(services.start(spec).await),
            R::ServiceList => ControlReply::from_result(Ok::<_, SessionError>(services.list())),
            R::ServiceStatus { name } => ControlReply::from_result(services.status(&name)),
            R::ServiceLogs {
                name,
                tail_lines,
                since_offset,
                max_bytes,
            } => {
                let range = match (since_offset, tail_lines) {
                    (Some(offset), _) => super::service_log::LogRange::Since(offset),
                    (None, lines) => super::service_log::LogRange::Tail(lines.unwrap_or(50)),
                };
                ControlReply::from_result(services.logs(&name, range, max_bytes))
            }
            R::ServiceStop { name, grace_ms } => ControlReply::from_result(
                services.stop(&name, Duration::from_millis(grace_ms)).await,
            ),
        }
    }
}

impl crate::Pyro {
    /// Sends a shell or service request to a running workspace's supervisor.
    pub(crate) async fn session_call<T: DeserializeOwned>(
        &self,
        query: &str,
        request: &ControlRequest,
        timeout: std::time::Duration,
    ) -> Result<T, Error> {
        let (_, dir) = self.running_workspace(query)?;
        Ok(super::control::call(&dir, request, timeout).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_crosses_the_control_socket() {
        let errors = [
            SessionError::UnknownShell {
                shell: "s1".into(),
                workspace: "w".into(),
            },
            SessionError::ServiceFailed {
                name: "web".into(),
                reason: "exited with code 3".into(),
                last_lines: vec!["boom".into()],
            },
            SessionError::Invalid("bad".into()),
            SessionError::Supervisor("gone".into()),
            SessionError::VmGone("closed".into()),
            SessionError::Internal("oops".into()),
        ];
        for error in errors {
            let line = serde_json::to_string(&ControlReply::Error(error.clone())).unwrap();
            match serde_json::from_str::<ControlReply>(&line).unwrap() {
                ControlReply::Error(back) => assert_eq!(back.to_string(), error.to_string()),
                ControlReply::Ok(_) => panic!("{line}"),
            }
        }
    }
}
