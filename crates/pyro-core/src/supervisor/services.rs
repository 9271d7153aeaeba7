//! The supervisor's side of services: each one a guest exec it keeps open,
//! its output appended to a bounded log, its readiness probed in the guest,
//! its stop carried out by a task of its own.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pyro_protocol::{ExecRequest, Probe};
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, Notify};

use super::logs::{self, ServiceLog};
use super::protocol::{
    LogRange, LogRead, Readiness, ServiceInfo, ServiceSpec, ServiceState, SessionError,
    MAX_SERVICES,
};
use super::registry::{self, lock, log_path, ServiceRegistry, SERVICES_FILE};
use crate::host::guest::{ExecEvent, ExecStream, Guest, ProbeOutcome};
use crate::workspace::events::{self, command_line, EventKind};
use crate::workspace::secrets;
use crate::workspace::store::{is_valid_name, now};

/// Log lines quoted when a service fails.
const FAILURE_LINES: usize = 20;
/// Longest pause between two readiness probes.
const MAX_PROBE_INTERVAL: Duration = Duration::from_millis(100);
/// Why a service that exited cleanly before it was ready failed: most
/// often it daemonized, which pyro cannot follow.
const EXITED_EARLY: &str = "exited (code 0) before it was ready; a service must stay in the \
    foreground (run it without daemonizing, e.g. nginx -g 'daemon off;')";
/// A `--ready-command` attempt may take this long.
const READY_COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// A service the supervisor holds.
struct LiveService {
    info: Mutex<ServiceInfo>,
    log: Mutex<ServiceLog>,
    changed: Notify,
    stop: mpsc::Sender<(Duration, oneshot::Sender<()>)>,
    /// Set when readiness failed: the reason its end is recorded with.
    failure: Mutex<Option<String>>,
    /// The agent said the command started (it was found and exec'd).
    started: std::sync::atomic::AtomicBool,
    /// Its request on the guest channel (0 until sent).
    guest_id: AtomicU32,
}

impl LiveService {
    fn info(&self) -> ServiceInfo {
        let mut info = lock(&self.info).clone();
        let log = lock(&self.log);
        info.log_bytes = log.total();
        info.log_dropped = log.dropped;
        info
    }

    fn last_lines(&self) -> Vec<String> {
        lock(&self.log)
            .read(LogRange::Tail(FAILURE_LINES), 16 * 1024)
            .text
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// The supervisor's services.
pub(crate) struct ServiceHub {
    dir: PathBuf,
    workspace: String,
    guest: Arc<Guest>,
    state: Mutex<HubState>,
}

struct HubState {
    registry: ServiceRegistry,
    live: HashMap<String, Arc<LiveService>>,
}

impl ServiceHub {
    pub(crate) fn new(dir: PathBuf, workspace: String, guest: Arc<Guest>) -> Arc<Self> {
        let registry = registry::load(&dir, SERVICES_FILE);
        Arc::new(ServiceHub {
            dir,
            workspace,
            guest,
            state: Mutex::new(HubState {
                registry,
                live: HashMap::new(),
            }),
        })
    }

    /// Records a service's current info in `services.json`.
    fn publish(&self, service: &LiveService) {
        let info = service.info();
        let mut state = lock(&self.state);
        state.registry.put(info);
        registry::save(&self.dir, SERVICES_FILE, &state.registry);
    }

    pub(crate) async fn start(
        self: &Arc<Self>,
        spec: ServiceSpec,
    ) -> Result<ServiceInfo, SessionError> {
        if !is_valid_name(&spec.name) {
            return Err(SessionError::BadServiceName { name: spec.name });
        }
        if spec.argv.is_empty() {
            return Err(SessionError::Invalid(
                "no command given for the service".into(),
            ));
        }
        if let Some(Readiness::Http { url }) = &spec.readiness {
            if !url.starts_with("http://") {
                return Err(SessionError::Invalid(format!(
                    "an HTTP readiness check takes an http:// URL in the guest, e.g. http://127.0.0.1:8000/ (not {url})"
                )));
            }
        }
        let started = Instant::now();
        let (stop, stop_rx) = mpsc::channel(4);
        let service = {
            // Claim the name first: a running service's log must not be
            // touched by a start that is about to be refused.
            let mut state = lock(&self.state);
            if let Some(existing) = state.live.get(&spec.name) {
                if lock(&existing.info).state.is_live() {
                    return Err(SessionError::ServiceRunning {
                        name: spec.name,
                        workspace: self.workspace.clone(),
                    });
                }
            }
            let live = state
                .live
                .values()
                .filter(|s| lock(&s.info).state.is_live())
                .count();
            if live >= MAX_SERVICES {
                return Err(SessionError::Invalid(format!(
                    "workspace '{}' already runs {MAX_SERVICES} services; stop some first",
                    self.workspace
                )));
            }
            let log = ServiceLog::create(&log_path(&self.dir, &spec.name)).map_err(|e| {
                SessionError::Internal(format!("cannot create the service log: {e}"))
            })?;
            let service = Arc::new(LiveService {
                info: Mutex::new(ServiceInfo {
                    name: spec.name.clone(),
                    command: secrets::secrets(&self.dir).redact(&command_line(&spec.argv)),
                    cwd: spec.cwd.clone(),
                    env_names: spec.env.iter().map(|(name, _)| name.clone()).collect(),
                    readiness: spec.readiness.clone(),
                    started_at: now(),
                    ready_after_ms: None,
                    ended_at: None,
                    state: ServiceState::Starting,
                    log_bytes: 0,
                    log_dropped: 0,
                    urls: Vec::new(),
                }),
                log: Mutex::new(log),
                changed: Notify::new(),
                stop,
                failure: Mutex::new(None),
                started: std::sync::atomic::AtomicBool::new(false),
                guest_id: AtomicU32::new(0),
            });
            state.live.insert(spec.name.clone(), Arc::clone(&service));
            service
        };
        events::record(
            &self.dir,
            EventKind::ServiceStarted {
                name: spec.name.clone(),
                command: command_line(&spec.argv),
            },
        );
        let request = ExecRequest {
            argv: spec.argv.clone(),
            cwd: spec.cwd.clone(),
            env: spec.env.clone(),
            ..ExecRequest::default()
        };
        match self.guest.exec(request).await {
            Ok(stream) => {
                service.guest_id.store(stream.id(), Ordering::Release);
                tokio::spawn(Arc::clone(self).pump(Arc::clone(&service), stream, stop_rx));
            }
            Err(e) => {
                self.finish(&service, fail(format!("could not start: {e}")));
            }
        }
        self.publish(&service);
        let ready = self
            .await_ready(&service, &spec, started)
            .await
            .and_then(|()| {
                // It may have ended between the probe and here.
                let mut info = lock(&service.info);
                if info.state != ServiceState::Starting {
                    return Err(describe_end(&info.state));
                }
                let after = started.elapsed().as_millis() as u64;
                info.state = ServiceState::Running;
                info.ready_after_ms = Some(after);
                Ok(after)
            });
        match ready {
            Ok(after) => {
                self.publish(&service);
                events::record(
                    &self.dir,
                    EventKind::ServiceReady {
                        name: spec.name.clone(),
                        after_ms: after,
                    },
                );
                Ok(service.info())
            }
            Err(reason) => {
                if lock(&service.info).state.is_live() {
                    // Not ready in time: stop it, and record why (the
                    // record is redacted as it ends: `finish`).
                    *lock(&service.failure) = Some(reason.clone());
                    let (done, finished) = oneshot::channel();
                    if service
                        .stop
                        .send((Duration::from_secs(2), done))
                        .await
                        .is_ok()
                    {
                        let _ = finished.await;
                    }
                }
                let info = service.info();
                let reason = match &info.state {
                    ServiceState::Failed { reason, .. } => reason.clone(),
                    ServiceState::Exited => EXITED_EARLY.into(),
                    ServiceState::Ended { reason } => format!("ended: {reason}"),
                    // A probe's words, from the guest.
                    _ => secrets::secrets(&self.dir).redact(&reason),
                };
                Err(SessionError::ServiceFailed {
                    name: spec.name,
                    reason,
                    last_lines: service.last_lines(),
                })
            }
        }
    }

    /// The running services, for the memory state in `dir`: each with a
    /// copy of its log.
    pub(crate) fn checkpoint(&self, dir: &Path) -> Result<Vec<SavedService>, String> {
        let live: Vec<Arc<LiveService>> = lock(&self.state).live.values().cloned().collect();
        let mut saved = Vec::new();
        for service in live {
            let info = service.info();
            let guest_id = service.guest_id.load(Ordering::Acquire);
            if info.state != ServiceState::Running || guest_id == 0 {
                continue;
            }
            let copy = saved_log(dir, &info.name);
            let dropped = lock(&service.log)
                .save_copy(&copy)
                .map_err(|e| format!("cannot save the log of service {}: {e}", info.name))?;
            saved.push(SavedService {
                info,
                guest_id,
                dropped,
            });
        }
        Ok(saved)
    }

    /// Takes the services of a restored memory state back (state `dir`):
    /// they run on in the guest, their logs are as they were. Returns
    /// their names.
    pub(crate) fn adopt(self: &Arc<Self>, saved: Vec<SavedService>, dir: &Path) -> Vec<String> {
        let mut adopted = Vec::new();
        for service in saved {
            let Some(request) = self.guest.take_adopted(service.guest_id) else {
                continue;
            };
            let name = service.info.name.clone();
            let log = ServiceLog::restore(
                &log_path(&self.dir, &name),
                &saved_log(dir, &name),
                service.dropped,
            );
            let log = match log {
                Ok(log) => log,
                // It runs on; its log starts again.
                Err(_) => match ServiceLog::create(&log_path(&self.dir, &name)) {
                    Ok(log) => log,
                    Err(_) => continue,
                },
            };
            let (stop, stop_rx) = mpsc::channel(4);
            let live = Arc::new(LiveService {
                info: Mutex::new(service.info),
                log: Mutex::new(log),
                changed: Notify::new(),
                stop,
                failure: Mutex::new(None),
                started: std::sync::atomic::AtomicBool::new(true),
                guest_id: AtomicU32::new(service.guest_id),
            });
            lock(&self.state)
                .live
                .insert(name.clone(), Arc::clone(&live));
            self.publish(&live);
            let stream = ExecStream::adopted(request);
            tokio::spawn(Arc::clone(self).pump(live, stream, stop_rx));
            adopted.push(name);
        }
        adopted
    }

    /// Probes until ready; `Err` says why it never was. A probe the guest
    /// cannot run (a URL it does not take) fails at once; one that hangs
    /// is cut at the deadline; the service ending stops the wait.
    async fn await_ready(
        &self,
        service: &LiveService,
        spec: &ServiceSpec,
        started: Instant,
    ) -> Result<(), String> {
        let deadline = started + Duration::from_millis(spec.ready_timeout_ms);
        let mut interval = Duration::from_millis(20);
        loop {
            let changed = service.changed.notified();
            tokio::pin!(changed);
            let state = lock(&service.info).state.clone();
            if !state.is_live() {
                return Err(describe_end(&state));
            }
            let Some(readiness) = &spec.readiness else {
                // No check: ready once the agent says it started.
                if service.started.load(std::sync::atomic::Ordering::Acquire) {
                    return Ok(());
                }
                let _ = tokio::time::timeout(MAX_PROBE_INTERVAL, changed).await;
                continue;
            };
            let remaining = deadline.saturating_duration_since(Instant::now());
            let miss = tokio::select! {
                result = self.probe(readiness, remaining) => match result {
                    Ok(()) => return Ok(()),
                    Err(Miss::Refused(message)) => {
                        return Err(format!("cannot be checked ({}: {message})", readiness.describe()))
                    }
                    Err(Miss::NotYet(message)) => message,
                },
                // The service ended (or started) meanwhile: look again.
                _ = &mut changed => continue,
                _ = tokio::time::sleep(remaining) => "the check did not finish in time".to_string(),
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(format!(
                    "was not ready within {} s ({}: {miss}); it was stopped",
                    spec.ready_timeout_ms.div_ceil(1000),
                    readiness.describe()
                ));
            }
            let _ = tokio::time::timeout(interval.min(deadline - now), changed).await;
            interval = (interval * 2).min(MAX_PROBE_INTERVAL);
        }
    }

    /// One readiness check, in the guest.
    async fn probe(&self, readiness: &Readiness, limit: Duration) -> Result<(), Miss> {
        let probe = match readiness {
            Readiness::File { path } => Probe::File { path: path.clone() },
            Readiness::Tcp { port } => Probe::Tcp {
                port: *port,
                host: None,
            },
            Readiness::Http { url } => Probe::Http { url: url.clone() },
            Readiness::Command { command } => return self.probe_command(command, limit).await,
        };
        match self.guest.probe_outcome(probe).await {
            Ok(ProbeOutcome::Ready) => Ok(()),
            Ok(ProbeOutcome::NotReady(message)) => Err(Miss::NotYet(message)),
            Ok(ProbeOutcome::Refused { message, .. }) => Err(Miss::Refused(message)),
            Err(e) => Err(Miss::NotYet(e.to_string())),
        }
    }

    async fn probe_command(&self, command: &str, limit: Duration) -> Result<(), Miss> {
        let limit = limit.clamp(Duration::from_millis(100), READY_COMMAND_TIMEOUT);
        let request = ExecRequest {
            argv: vec!["/bin/sh".into(), "-c".into(), command.into()],
            timeout_ms: Some(limit.as_millis() as u64),
            ..ExecRequest::default()
        };
        let not_yet = |e: crate::host::guest::GuestError| Miss::NotYet(e.to_string());
        let mut stream = self.guest.exec(request).await.map_err(not_yet)?;
        loop {
            match stream.next().await.map_err(not_yet)? {
                ExecEvent::Exited(status) if status.code == Some(0) => return Ok(()),
                ExecEvent::Exited(status) => {
                    return Err(Miss::NotYet(format!(
                        "it exited with status {}",
                        status.shell_code()
                    )))
                }
                ExecEvent::Failed { message, .. } => return Err(Miss::Refused(message)),
                _ => {}
            }
        }
    }

    /// Logs a service's output until it ends; carries out stop requests.
    async fn pump(
        self: Arc<Self>,
        service: Arc<LiveService>,
        mut stream: ExecStream,
        mut stop: mpsc::Receiver<(Duration, oneshot::Sender<()>)>,
    ) {
        let mut waiting: Vec<oneshot::Sender<()>> = Vec::new();
        let mut kill_at: Option<tokio::time::Instant> = None;
        let mut killed = false;
        // The log never holds a secret's value, whole or in pieces.
        let mut redactor = secrets::LiveRedactor::new(&self.dir);
        let end = loop {
            let kill_timer = async {
                match kill_at {
                    Some(at) if !killed => tokio::time::sleep_until(at).await,
                    _ => std::future::pending().await,
                }
            };
            tokio::select! {
                event = stream.next() => match event {
                    Ok(ExecEvent::Stdout(bytes) | ExecEvent::Stderr(bytes)) => {
                        lock(&service.log).append(&redactor.push(&bytes));
                    }
                    Ok(ExecEvent::Started) => {
                        service.started.store(true, std::sync::atomic::Ordering::Release);
                        service.changed.notify_waiters();
                    }
                    Ok(ExecEvent::Exited(status)) => break End::Exited(status),
                    Ok(ExecEvent::Failed { message, .. }) => break End::Failed(message),
                    Ok(_) => {}
                    Err(_) => break End::Gone,
                },
                Some((grace, done)) = stop.recv() => {
                    waiting.push(done);
                    if kill_at.is_none() {
                        let _ = stream.signal(libc::SIGTERM).await;
                        kill_at = Some(tokio::time::Instant::now() + grace);
                    }
                },
                _ = kill_timer => {
                    let _ = stream.signal(libc::SIGKILL).await;
                    killed = true;
                }
            }
        };
        lock(&service.log).append(&redactor.finish());
        let failure = lock(&service.failure).take();
        let state = match end {
            End::Gone => {
                // The VM is going away: the supervisor records why (end_all).
                service.changed.notify_waiters();
                None
            }
            End::Failed(message) => Some(fail(format!("could not start: {message}"))),
            End::Exited(status) => Some(match failure {
                Some(reason) => ServiceState::Failed {
                    reason,
                    exit_code: status.code,
                    signal: status.signal,
                },
                None if kill_at.is_some() => ServiceState::Stopped { killed },
                None if status.code == Some(0) => ServiceState::Exited,
                None => ServiceState::Failed {
                    reason: match (status.code, status.signal) {
                        (Some(code), _) => format!("exited with code {code}"),
                        (_, Some(signal)) => format!("was killed by signal {signal}"),
                        _ => "ended".into(),
                    },
                    exit_code: status.code,
                    signal: status.signal,
                },
            }),
        };
        if let Some(state) = state {
            self.finish(&service, state);
        }
        for done in waiting {
            let _ = done.send(());
        }
    }

    /// Records how a service ended (an ending already recorded, say by a
    /// stop of the workspace, stays).
    fn finish(&self, service: &LiveService, state: ServiceState) {
        // The guest's words (a probe's or a start's failure) may quote a value.
        let state = match state {
            ServiceState::Failed {
                reason,
                exit_code,
                signal,
            } => ServiceState::Failed {
                reason: secrets::secrets(&self.dir).redact(&reason),
                exit_code,
                signal,
            },
            state => state,
        };
        let name = {
            let mut info = lock(&service.info);
            if matches!(info.state, ServiceState::Ended { .. }) {
                return;
            }
            info.state = state.clone();
            info.ended_at = Some(now());
            info.name.clone()
        };
        service.changed.notify_waiters();
        self.publish(service);
        let event = match state {
            ServiceState::Failed { reason, .. } => EventKind::ServiceFailed { name, reason },
            ServiceState::Stopped { .. } => EventKind::ServiceStopped { name },
            ServiceState::Exited => EventKind::ServiceExited {
                name,
                exit_code: Some(0),
                signal: None,
            },
            // A VM going away is recorded as the workspace's own event.
            _ => return,
        };
        events::record(&self.dir, event);
    }

    fn live(&self, name: &str) -> Result<Arc<LiveService>, SessionError> {
        let state = lock(&self.state);
        state
            .live
            .get(name)
            .cloned()
            .ok_or_else(|| SessionError::UnknownService {
                name: name.to_string(),
                workspace: self.workspace.clone(),
            })
    }

    pub(crate) fn list(&self) -> Vec<ServiceInfo> {
        let state = lock(&self.state);
        state
            .registry
            .services
            .iter()
            .map(|recorded| match state.live.get(&recorded.name) {
                Some(live) => live.info(),
                None => recorded.clone(),
            })
            .collect()
    }

    /// Records every live service as ended (the VM is going away).
    pub(crate) fn end_all(&self, reason: &str) {
        let live: Vec<Arc<LiveService>> = lock(&self.state).live.values().cloned().collect();
        for service in live {
            {
                let mut info = lock(&service.info);
                if !info.state.is_live() {
                    continue;
                }
                info.state = ServiceState::Ended {
                    reason: reason.to_string(),
                };
                info.ended_at = Some(now());
            }
            service.changed.notify_waiters();
            self.publish(&service);
        }
    }

    pub(crate) fn status(&self, name: &str) -> Result<ServiceInfo, SessionError> {
        if let Ok(service) = self.live(name) {
            return Ok(service.info());
        }
        lock(&self.state)
            .registry
            .get(name)
            .cloned()
            .ok_or_else(|| SessionError::UnknownService {
                name: name.to_string(),
                workspace: self.workspace.clone(),
            })
    }

    pub(crate) fn logs(
        &self,
        name: &str,
        range: LogRange,
        max_bytes: u64,
    ) -> Result<LogRead, SessionError> {
        if let Ok(service) = self.live(name) {
            return Ok(lock(&service.log).read(range, max_bytes));
        }
        let info = self.status(name)?;
        Ok(logs::read(
            &log_path(&self.dir, name),
            info.log_dropped,
            range,
            max_bytes,
        ))
    }

    pub(crate) async fn stop(
        &self,
        name: &str,
        grace: Duration,
    ) -> Result<ServiceInfo, SessionError> {
        let Ok(service) = self.live(name) else {
            // Known from an earlier boot, so already over (or unknown):
            // nothing to stop.
            return self.status(name);
        };
        if lock(&service.info).state.is_live() {
            let (done, finished) = oneshot::channel();
            if service.stop.send((grace, done)).await.is_ok() {
                let _ = finished.await;
            }
        }
        Ok(service.info())
    }
}

/// A running service in a memory state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SavedService {
    info: ServiceInfo,
    guest_id: u32,
    /// The offset of its saved log's first byte.
    dropped: u64,
}

/// Where a memory state in `dir` keeps service `name`'s log.
fn saved_log(dir: &Path, name: &str) -> PathBuf {
    dir.join("logs").join(format!("{name}.log"))
}

/// Why a readiness check did not pass.
enum Miss {
    /// Not yet: try again.
    NotYet(String),
    /// The check itself cannot run (a URL the guest does not take, a
    /// missing shell): trying again will not help.
    Refused(String),
}

enum End {
    Exited(pyro_protocol::ExitStatus),
    Failed(String),
    Gone,
}

fn fail(reason: String) -> ServiceState {
    ServiceState::Failed {
        reason,
        exit_code: None,
        signal: None,
    }
}

fn describe_end(state: &ServiceState) -> String {
    match state {
        ServiceState::Failed { reason, .. } => reason.clone(),
        ServiceState::Exited => EXITED_EARLY.into(),
        ServiceState::Stopped { .. } => "was stopped before it was ready".into(),
        ServiceState::Ended { reason } => reason.clone(),
        ServiceState::Starting | ServiceState::Running => "is running".into(),
    }
}
