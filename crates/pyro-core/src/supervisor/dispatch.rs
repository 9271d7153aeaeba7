//! Answers the control socket's shell and service requests with the
//! supervisor's live shells and services.

use std::sync::Arc;

use super::protocol::{ControlReply, ControlRequest, LogRange, SessionError, DEFAULT_LOG_LINES};
use super::registry::end_all;
use serde::{Deserialize, Serialize};

use super::services::{SavedService, ServiceHub};
use super::shells::{SavedShell, ShellHub};
use crate::host::guest::Guest;
use crate::workspace::store::{now, RestoredSessions};

/// The shells and services of a memory state.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct SavedSessions {
    shells: Vec<SavedShell>,
    services: Vec<SavedService>,
}

/// The supervisor's shells and services, behind the control socket.
pub(crate) struct Sessions {
    pub(crate) shells: Arc<ShellHub>,
    pub(crate) services: Arc<ServiceHub>,
}

impl Sessions {
    pub(crate) fn new(dir: std::path::PathBuf, workspace: String, guest: Arc<Guest>) -> Self {
        // Whatever a killed supervisor left recorded as live is over.
        end_all(&dir, "the VM restarted");
        Sessions {
            shells: ShellHub::new(dir.clone(), workspace.clone(), Arc::clone(&guest)),
            services: ServiceHub::new(dir, workspace, guest),
        }
    }

    /// Records every shell and service as ended by `reason` (the VM is
    /// going away), before their own endings could say less.
    pub(crate) fn end_all(&self, reason: &str) {
        let reason = format!("{reason} at {}", now());
        self.shells.end_all(&reason);
        self.services.end_all(&reason);
    }

    /// The open shells and running services, for the memory state in
    /// `dir` (service logs are copied there).
    pub(crate) fn checkpoint(&self, dir: &std::path::Path) -> Result<SavedSessions, String> {
        Ok(SavedSessions {
            shells: self.shells.checkpoint(),
            services: self.services.checkpoint(dir)?,
        })
    }

    /// Takes back the sessions of the restored memory state in `dir`.
    pub(crate) fn adopt(&self, saved: SavedSessions, dir: &std::path::Path) -> RestoredSessions {
        RestoredSessions {
            shells: self.shells.adopt(saved.shells),
            services: self.services.adopt(saved.services, dir),
        }
    }

    /// Answers one shell or service request (not `Snapshot`: the caller
    /// owns the VM for that).
    pub(crate) async fn handle(&self, request: ControlRequest) -> ControlReply {
        use std::time::Duration;
        use ControlRequest as R;
        let shells = &self.shells;
        let services = &self.services;
        match request {
            R::Snapshot { .. }
            | R::Suspend { .. }
            | R::TransferDisk { .. }
            | R::IdleTimeout { .. }
            | R::NetworkPolicy(_)
            | R::PortPublish { .. }
            | R::PortUnpublish { .. } => ControlReply::Error(SessionError::Invalid(
                "VM requests go to the main loop".into(),
            )),
            R::ShellOpen {
                cwd,
                rows,
                cols,
                env,
            } => ControlReply::from_result(shells.open(cwd, rows, cols, env).await),
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
                    (Some(offset), _) => LogRange::Since(offset),
                    (None, lines) => LogRange::Tail(lines.unwrap_or(DEFAULT_LOG_LINES)),
                };
                ControlReply::from_result(services.logs(&name, range, max_bytes))
            }
            R::ServiceStop { name, grace_ms } => ControlReply::from_result(
                services.stop(&name, Duration::from_millis(grace_ms)).await,
            ),
        }
    }
}
