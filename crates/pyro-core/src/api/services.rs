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

use std::path::PathBuf;
use std::time::Duration;

use super::error::Error;
use super::Pyro;
use crate::supervisor::logs;
use crate::supervisor::protocol::{
    ControlRequest, LogRange, LogRead, ServiceInfo, ServiceSpec, SessionError, CALL_SLACK,
    LONGEST_WAIT,
};
use crate::supervisor::registry::{self, log_path, ServiceRegistry, SERVICES_FILE};

impl Pyro {
    /// Starts a service and returns once it is ready (or has failed).
    pub async fn workspace_service_start(
        &self,
        query: &str,
        spec: ServiceSpec,
    ) -> Result<ServiceInfo, Error> {
        let mut spec = spec;
        spec.ready_timeout_ms = spec.ready_timeout_ms.min(LONGEST_WAIT.as_millis() as u64);
        let (_, dir, _in_use) = self.running_workspace(query).await?;
        let secret_env = std::mem::take(&mut spec.secret_env);
        spec.env
            .extend(super::secrets::env_for(&dir, query, &secret_env)?);
        let wait = Duration::from_millis(spec.ready_timeout_ms).saturating_add(CALL_SLACK);
        let info = self
            .session_call(query, &ControlRequest::ServiceStart(spec), wait)
            .await?;
        Ok(self.with_urls(query, info))
    }

    /// `info` with the URLs of the published ports leading to its
    /// readiness port.
    fn with_urls(&self, query: &str, mut info: ServiceInfo) -> ServiceInfo {
        let port = info.readiness.as_ref().and_then(|r| r.port());
        if let (Some(port), Ok(record)) = (port, self.workspace_status(query)) {
            info.urls = record
                .network
                .ports
                .iter()
                .filter(|p| p.port.guest_port == port)
                .filter_map(|p| p.url.clone())
                .collect();
        }
        info
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

    /// One service and its state; on a stopped workspace, its record.
    pub async fn workspace_service_status(
        &self,
        query: &str,
        name: &str,
    ) -> Result<ServiceInfo, Error> {
        let request = ControlRequest::ServiceStatus {
            name: name.to_string(),
        };
        match self.session_call(query, &request, CALL_SLACK).await {
            Ok(info) => Ok(self.with_urls(query, info)),
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
                Ok(logs::read(&path, info.log_dropped, range, max_bytes))
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
        let store = self.store()?;
        let record = store.resolve(query)?;
        if store.supervisor_alive(&record.id)? {
            return Err(error);
        }
        let dir = store.dir(&record.id);
        Ok((registry::load(&dir, SERVICES_FILE), dir))
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
