//! Commands in a running workspace, and reaching its guest through the
//! supervisor.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pyro_net::NetEvent;
use pyro_util::fsutil::FileLock;
use serde::Serialize;

use super::error::Error;
use super::params::InvalidRequest;
use super::Pyro;
use crate::host::exec::{drive_exec, OutputSink, RunEnd, TIMEOUT_GRACE};
use crate::host::guest::{Adoption, Guest, GuestError, Handshake};
use crate::host::input::Input;
use crate::workspace::store::{self, WorkspaceRecord, WorkspaceState};
use crate::workspace::{events, netlog, WorkspaceError, SOCKET};

/// A command for `workspace exec`.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    /// The command and its arguments (`sh -c LINE` for a shell line).
    pub argv: Vec<String>,
    /// The working directory in the guest (default `/workspace`).
    pub cwd: Option<String>,
    /// Extra environment variables.
    pub env_vars: Vec<(String, String)>,
    /// Secrets to give the command as variables: `NAME`, or `ENVVAR=NAME`.
    pub secret_env: Vec<String>,
    /// Stop the command after this long.
    pub timeout: Option<Duration>,
    /// The command's standard input (none: `/dev/null`).
    pub stdin: Input,
}

/// How a workspace command ended.
#[derive(Debug, Clone, Serialize)]
pub struct ExecReport {
    /// How it ended.
    #[serde(flatten)]
    pub end: RunEnd,
    /// The workspace, as the caller named it.
    pub workspace: String,
    /// From start to end of the command.
    pub duration_ms: u64,
    /// Lookups and connections the workspace's network refused while it
    /// ran (from any command running then).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub network_denied: Vec<NetEvent>,
}

impl ExecReport {
    /// Same exit-code rules as `pyro run`.
    pub fn exit_code(&self) -> i32 {
        self.end.exit_code()
    }
}

impl Pyro {
    /// Runs a command in a running workspace, streaming its output.
    pub async fn workspace_exec(
        &self,
        query: &str,
        options: &ExecOptions,
        sink: &mut dyn OutputSink,
        cancel: impl std::future::Future<Output = ()>,
    ) -> Result<ExecReport, Error> {
        if options.argv.is_empty() {
            return Err(InvalidRequest::NoCommand.into());
        }
        if options.timeout == Some(Duration::ZERO) {
            return Err(InvalidRequest::ZeroTimeout.into());
        }
        let started = Instant::now();
        // On the clock the network's events carry.
        let started_ms = pyro_net::now_unix_ms();
        let (record, dir, _in_use) = self.running_workspace(query).await?;
        let mut env = options.env_vars.clone();
        env.extend(super::secrets::env_for(&dir, query, &options.secret_env)?);
        let guest = self.connect_running(&record, &dir).await?;
        let exec = pyro_protocol::ExecRequest {
            argv: options.argv.clone(),
            cwd: options.cwd.clone(),
            env,
            timeout_ms: options.timeout.map(|t| t.as_millis() as u64),
            stdin: false,
            pty: None,
        };
        let host_deadline = options.timeout.map(|t| t + TIMEOUT_GRACE);
        let end = tokio::select! {
            end = drive_exec(&guest, exec, &options.stdin, sink, host_deadline) => match end {
                Ok(end) => end,
                Err(GuestError::Disconnected) => return Err(self.why_gone(query).await),
                Err(other) => return Err(Error::Guest(other)),
            },
            _ = cancel => RunEnd::Cancelled,
        };
        let end = match end {
            // The guest's own words may quote the command line.
            RunEnd::Failed { kind, message } => RunEnd::Failed {
                kind,
                message: crate::workspace::secrets::secrets(&dir).redact(&message),
            },
            end => end,
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        let event = events::EventKind::exec(&options.argv, &end, duration_ms);
        self.record_event(query, event);
        let network_denied = match record.network.mode.is_on() {
            true => netlog::denied_since(&dir, started_ms, &events::command_line(&options.argv)),
            false => Vec::new(),
        };
        Ok(ExecReport {
            end,
            workspace: query.to_string(),
            duration_ms,
            network_denied,
        })
    }

    /// Records activity on a workspace (best effort: the work is done).
    pub(crate) fn record_activity(&self, query: &str) {
        if let Ok(store) = self.store() {
            if let Ok(record) = store.resolve(query) {
                let _ = store.update(&record.id, |record| {
                    record.last_activity_at = store::now();
                    Ok(())
                });
            }
        }
    }

    /// Records `event` in the log of the workspace `query` names, if it
    /// still exists (best effort, like [`events::record`]).
    pub(crate) fn record_event(&self, query: &str, event: events::EventKind) {
        if let Ok(store) = self.store() {
            if let Ok(workspace) = store.resolve(query) {
                events::record(&store.dir(&workspace.id), event);
            }
        }
    }

    /// Why a workspace went away under a running call: crashed (with the
    /// reason its supervisor records), else stopped or deleted.
    pub(crate) async fn why_gone(&self, query: &str) -> Error {
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            let Ok(store) = self.store() else { break };
            let Ok(record) = store.resolve(query).and_then(|r| store.observe(&r.id)) else {
                break;
            };
            match &record.state {
                WorkspaceState::Crashed { reason } => {
                    return WorkspaceError::Crashed {
                        name: record.display_name().to_string(),
                        reason: reason.clone(),
                    }
                    .into()
                }
                WorkspaceState::Stopped => break,
                _ => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
        WorkspaceError::GoneDuringExec.into()
    }

    /// A guest channel to a running workspace, through its supervisor.
    pub(crate) async fn connect_workspace(&self, query: &str) -> Result<Guest, Error> {
        let (record, dir, _in_use) = self.running_workspace(query).await?;
        self.connect_running(&record, &dir).await
    }

    /// Connects to the guest of a workspace [`Pyro::running_workspace`]
    /// found running.
    pub(crate) async fn connect_running(
        &self,
        record: &WorkspaceRecord,
        dir: &std::path::Path,
    ) -> Result<Guest, Error> {
        let name = record.display_name().to_string();
        let stream = tokio::net::UnixStream::connect(dir.join(SOCKET))
            .await
            .and_then(|stream| stream.into_std())
            .map_err(|_| WorkspaceError::Crashed {
                name,
                reason: "its supervisor does not answer".into(),
            })?;
        Ok(Guest::connect(stream, Handshake::FreshBoot, &Adoption::default()).await?)
    }

    /// A running workspace's record and directory, and its use lock (see
    /// [`Pyro::in_use`]: hold it until connected); else why it is not
    /// running, and what to do. A suspended workspace is resumed first:
    /// any call on it wakes it.
    pub(crate) async fn running_workspace(
        &self,
        query: &str,
    ) -> Result<(WorkspaceRecord, PathBuf, FileLock), Error> {
        let store = self.store()?;
        let id = store.resolve(query)?.id;
        let in_use = self.in_use(&id).await?;
        let mut record = store.observe(&id)?;
        if let WorkspaceState::Suspended { .. } = record.state {
            record = self.resume_for_call(&record.id).await?;
        }
        let name = record.display_name().to_string();
        match &record.state {
            WorkspaceState::Running => {}
            WorkspaceState::Starting => return Err(WorkspaceError::Starting { name }.into()),
            WorkspaceState::Stopped | WorkspaceState::Suspended { .. } => {
                return Err(WorkspaceError::Stopped { name }.into())
            }
            WorkspaceState::Crashed { reason } => {
                return Err(WorkspaceError::Crashed {
                    name,
                    reason: reason.clone(),
                }
                .into())
            }
        }
        let dir = store.dir(&record.id);
        Ok((record, dir, in_use))
    }
}
