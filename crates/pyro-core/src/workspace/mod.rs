//! Persistent workspaces: a VM that keeps running between calls, owned by a
//! per-workspace supervisor process, reachable from any number of `pyro`
//! processes at once.
//!
//! The facade here creates, inspects and controls workspaces; the state on
//! disk is in [`store`]; the process that owns each VM is in [`supervisor`].

pub(crate) mod baseline;
pub(crate) mod control;
pub mod diff;
pub mod events;
pub mod files;
pub(crate) mod hostgit;
pub mod service_log;
pub mod services;
pub(crate) mod sessions;
pub mod shells;
pub mod snapshots;
pub mod store;
pub mod summary;
pub mod supervisor;
pub mod transfer;

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::guest::{Guest, Handshake};
use crate::run::{drive_exec, OutputSink};
use crate::{Error, HostPathUse, Pyro, RunEnd};
pub use hostgit::GitError;
pub use store::{WorkspaceRecord, WorkspaceState, WorkspaceStore};
pub use summary::WorkspaceSummary;

/// The workspace's disk overlay, inside its directory.
pub(crate) const DISK: &str = "disk.qcow2";
/// The supervisor's socket, inside the workspace directory (mode 0700).
pub(crate) const SOCKET: &str = "agent.sock";
/// The supervisor's control socket (disk snapshots), next to it.
pub(crate) const CONTROL: &str = "control.sock";
/// What the supervisor and its VM print, inside the workspace directory.
pub(crate) const LOG: &str = "supervisor.log";
/// The VM's serial console, inside the workspace directory.
pub(crate) const CONSOLE: &str = "console.log";
/// How long `stop` waits for a clean power-off before killing.
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a workspace call failed. Messages name the workspace and the fix.
#[derive(Debug, thiserror::Error)]
pub enum WorkspaceError {
    #[error("no workspace '{query}'; see them with: pyro workspace list")]
    Unknown { query: String },
    #[error("a workspace named '{name}' already exists; pick another name or delete it first")]
    NameTaken { name: String },
    #[error("invalid workspace name '{name}': use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit")]
    BadName { name: String },
    #[error("workspace '{name}' is stopped; start it with: pyro workspace start {name}")]
    Stopped { name: String },
    #[error("workspace '{name}' crashed: {reason}; see pyro workspace logs {name}, then start or delete it")]
    Crashed { name: String, reason: String },
    #[error("workspace '{name}' is still starting; try again in a moment")]
    Starting { name: String },
    #[error("workspace '{name}' is already running")]
    AlreadyRunning { name: String },
    #[error("workspace '{name}' did not start: {message}")]
    StartFailed { name: String, message: String },
    #[error("the workspace was stopped or deleted while the command ran")]
    GoneDuringExec,
    #[error("cannot use the pyro home {path}; make it writable or set PYRO_HOME")]
    Home {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("workspace record {path} is corrupt; delete the workspace")]
    Corrupt {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Transfer(#[from] transfer::TransferError),
    #[error(transparent)]
    Git(#[from] hostgit::GitError),
    #[error(transparent)]
    Snapshot(#[from] snapshots::SnapshotError),
    #[error(transparent)]
    Session(#[from] sessions::SessionError),
    #[error("i/o on {path} failed")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What `workspace create` asks for.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub env: String,
    pub name: Option<String>,
    pub labels: Vec<(String, String)>,
    pub cpus: u32,
    pub memory_mib: u32,
    /// What lands in /workspace: the baseline.
    pub seed: Option<Seed>,
}

/// The initial content of /workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seed {
    /// A host directory, copied in (with its `.git`, if any).
    Path(PathBuf),
    /// A Git repository cloned on the host at `reference` (default: its HEAD).
    Repo {
        url: String,
        reference: Option<String>,
    },
}

impl Seed {
    /// The seed for the review log: the path, or the URL without its
    /// password.
    fn describe(&self) -> String {
        match self {
            Seed::Path(path) => path.display().to_string(),
            Seed::Repo { url, reference } => {
                let url = events::redact_urls(url);
                reference
                    .as_ref()
                    .map_or(url.clone(), |r| format!("{url} at {r}"))
            }
        }
    }
}

/// A command for `workspace exec`.
#[derive(Debug, Clone, Default)]
pub struct ExecOptions {
    pub argv: Vec<String>,
    pub cwd: Option<String>,
    pub env_vars: Vec<(String, String)>,
    pub timeout: Option<Duration>,
    /// The command's standard input (none: `/dev/null`).
    pub stdin: crate::Input,
}

/// What `workspace logs` shows.
#[derive(Debug, Clone, Serialize)]
pub struct WorkspaceLogs {
    /// The VM's serial console: kernel and agent messages.
    pub console: String,
    /// What the supervisor process printed.
    pub supervisor: String,
}

impl std::fmt::Display for WorkspaceLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (title, text) in [
            ("VM console", &self.console),
            ("supervisor", &self.supervisor),
        ] {
            writeln!(f, "== {title} ==")?;
            f.write_str(text)?;
            if !text.is_empty() && !text.ends_with('\n') {
                writeln!(f)?;
            }
        }
        Ok(())
    }
}

/// How a workspace command ended.
#[derive(Debug, Clone, Serialize)]
pub struct ExecReport {
    #[serde(flatten)]
    pub end: RunEnd,
    pub workspace: String,
    pub duration_ms: u64,
}

impl ExecReport {
    /// Same exit-code rules as `pyro run`.
    pub fn exit_code(&self) -> i32 {
        crate::run::exit_code(&self.end)
    }
}

impl Pyro {
    /// The workspace store under `PYRO_HOME`.
    pub fn workspaces(&self) -> Result<WorkspaceStore, Error> {
        Ok(WorkspaceStore::open(self.home())?)
    }

    /// Creates a workspace, seeds it, and returns once its VM answers. A
    /// seed that cannot be copied in deletes the workspace again.
    pub async fn workspace_create(
        &self,
        request: &CreateRequest,
    ) -> Result<WorkspaceRecord, Error> {
        self.workspace_create_staged(request, &mut |_| {}).await
    }

    /// [`Pyro::workspace_create`], calling `stage` as each step begins:
    /// "booting VM", "seeding /workspace" (with a seed), "recording baseline".
    pub async fn workspace_create_staged(
        &self,
        request: &CreateRequest,
        stage: &mut (dyn FnMut(&str) + Send),
    ) -> Result<WorkspaceRecord, Error> {
        // Fetch or check the seed before anything boots.
        let cloned;
        let seed_dir = match &request.seed {
            None => None,
            Some(seed @ Seed::Path(path)) => {
                let path = match self.host_paths.trust_for(seed) {
                    hostgit::Trust::User => path.clone(),
                    hostgit::Trust::Confined(_) => {
                        self.host_paths.check(HostPathUse::Seed, path)?
                    }
                };
                if !path.is_dir() {
                    return Err(transfer::TransferError::NotADirectory { path }.into());
                }
                Some(path)
            }
            Some(seed @ Seed::Repo { url, reference }) => {
                let mut repo = hostgit::RepoUrl::parse(url).map_err(WorkspaceError::from)?;
                let trust = self.host_paths.trust_for(seed);
                // Confined: judged where it leads before anything tells
                // whether it exists.
                if let (hostgit::RepoUrl::Local(dir), hostgit::Trust::Confined(_)) = (&repo, trust)
                {
                    let checked = self.host_paths.check(HostPathUse::Repository, dir)?;
                    repo = hostgit::RepoUrl::Local(checked);
                }
                cloned = transfer::clone_repo(url, &repo, reference.as_deref(), trust)?;
                Some(cloned.path().to_path_buf())
            }
        };
        // The diff baseline of the seed is built on the host meanwhile.
        let mut host_baseline = seed_dir.as_deref().map(baseline::HostBuild::start);
        stage("booting VM");
        let record = self.create_and_boot(request)?;
        let prepared = async {
            let guest = self.connect_workspace(&record.id).await?;
            if let Some(dir) = &seed_dir {
                stage("seeding /workspace");
                transfer::push_tree(&guest, dir, "").await?;
            }
            // The baseline: for diff inside the guest, for reset on disk.
            stage("recording baseline");
            match host_baseline.take() {
                Some(build) => baseline::record_from_seed(&guest, build).await?,
                None => diff::record_baseline(&guest).await?,
            }
            self.take_baseline(&self.workspaces()?, &record.id)
        }
        .await;
        if let Err(error) = prepared {
            let _ = self.workspace_delete(&record.id);
            return Err(error);
        }
        let seed = request.seed.as_ref().map(Seed::describe);
        let env = request.env.clone();
        self.record_event(&record.id, events::EventKind::Created { env, seed });
        Ok(self.workspaces()?.read(&record.id)?)
    }

    fn create_and_boot(&self, request: &CreateRequest) -> Result<WorkspaceRecord, Error> {
        crate::run::validate_size(request.cpus, request.memory_mib)?;
        let env_store = self.env_store()?;
        // Resolve the environment before anything is written.
        let artifacts = env_store.boot_artifacts(&request.env, crate::agent_image::AGENT)?;
        let store = self.workspaces()?;
        let id = store::new_id();
        let record = WorkspaceRecord {
            id: id.clone(),
            name: request.name.clone(),
            env: request.env.clone(),
            labels: request.labels.iter().cloned().collect(),
            cpus: request.cpus,
            memory_mib: request.memory_mib,
            created_at: store::now(),
            last_activity_at: store::now(),
            state: WorkspaceState::Starting,
            supervisor_pid: None,
            active_disk: DISK.to_string(),
            baseline_layer: None,
            snapshots: Vec::new(),
        };
        let dir = store.create(&record)?;
        let created = (|| {
            pyro_vmm::disk::create_overlay(
                &artifacts.rootfs,
                pyro_vmm::DiskFormat::Qcow2,
                &dir.join(DISK),
            )
            .map_err(|e| Error::InvalidRequest(e.to_string()))?;
            env_store.pin(&id, &request.env)?;
            self.spawn_supervisor(&store, &record)
        })();
        if let Err(error) = created {
            let _ = env_store.unpin(&id);
            let _ = store.remove(&id);
            return Err(error);
        }
        Ok(store.read(&id)?)
    }

    /// All workspaces, with crashed supervisors detected; `labels` filters
    /// to those carrying every given `key=value`.
    pub fn workspace_list(
        &self,
        labels: &[(String, String)],
    ) -> Result<Vec<WorkspaceRecord>, Error> {
        let store = self.workspaces()?;
        let mut records = Vec::new();
        for record in store.list()? {
            let record = store.observe(&record.id)?;
            if labels.iter().all(|(k, v)| record.labels.get(k) == Some(v)) {
                records.push(record);
            }
        }
        Ok(records)
    }

    /// One workspace by id or name, with a dead supervisor detected.
    pub fn workspace_status(&self, query: &str) -> Result<WorkspaceRecord, Error> {
        let store = self.workspaces()?;
        let id = store.resolve(query)?.id;
        Ok(store.observe(&id)?)
    }

    /// Renames and relabels (an empty value removes a label).
    pub fn workspace_update(
        &self,
        query: &str,
        name: Option<String>,
        labels: &[(String, String)],
    ) -> Result<WorkspaceRecord, Error> {
        let store = self.workspaces()?;
        let id = store.resolve(query)?.id;
        Ok(store.rename(&id, name, labels)?)
    }

    /// Powers the VM off cleanly; the disk keeps its state.
    pub fn workspace_stop(&self, query: &str) -> Result<WorkspaceRecord, Error> {
        let store = self.workspaces()?;
        let record = store.observe(&store.resolve(query)?.id)?;
        if store.supervisor_alive(&record.id)? {
            signal_supervisor(&record, libc::SIGTERM);
            let deadline = Instant::now() + STOP_TIMEOUT;
            while store.supervisor_alive(&record.id)? {
                if Instant::now() > deadline {
                    signal_supervisor(&record, libc::SIGKILL);
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        let stopped = store.update(&record.id, |record| {
            record.state = WorkspaceState::Stopped;
            record.supervisor_pid = None;
            Ok(())
        })?;
        events::record(&store.dir(&record.id), events::EventKind::Stopped);
        Ok(stopped)
    }

    /// Boots a stopped or crashed workspace from its disk.
    pub fn workspace_start(&self, query: &str) -> Result<WorkspaceRecord, Error> {
        let store = self.workspaces()?;
        let record = store.observe(&store.resolve(query)?.id)?;
        if store.supervisor_alive(&record.id)? {
            return Err(WorkspaceError::AlreadyRunning {
                name: record.display_name().to_string(),
            }
            .into());
        }
        let record = store.update(&record.id, |record| {
            record.state = WorkspaceState::Starting;
            Ok(())
        })?;
        self.spawn_supervisor(&store, &record)?;
        events::record(&store.dir(&record.id), events::EventKind::Started);
        Ok(store.read(&record.id)?)
    }

    /// Kills the VM and removes everything of the workspace.
    pub fn workspace_delete(&self, query: &str) -> Result<WorkspaceRecord, Error> {
        let store = self.workspaces()?;
        let record = store.resolve(query)?;
        // No clean power-off: the disk is about to go.
        self.kill_supervisor(&store, &record)?;
        if let Ok(env_store) = self.env_store() {
            let _ = env_store.unpin(&record.id);
        }
        store.remove(&record.id)?;
        Ok(record)
    }

    /// Kills a workspace's supervisor (and so its VM) and waits until it is
    /// gone; records the workspace as stopped.
    pub(crate) fn kill_supervisor(
        &self,
        store: &WorkspaceStore,
        record: &WorkspaceRecord,
    ) -> Result<(), Error> {
        // Say first that this death is intended, so that nobody observing
        // the dead supervisor meanwhile records a crash.
        let current = store.update(&record.id, |record| {
            record.state = WorkspaceState::Stopped;
            Ok(())
        })?;
        while store.supervisor_alive(&record.id)? {
            signal_supervisor(&current, libc::SIGKILL);
            std::thread::sleep(Duration::from_millis(10));
        }
        store.update(&record.id, |record| {
            record.supervisor_pid = None;
            Ok(())
        })?;
        Ok(())
    }

    /// The VM console and the supervisor's log of a workspace.
    pub fn workspace_logs(&self, query: &str) -> Result<WorkspaceLogs, Error> {
        let store = self.workspaces()?;
        let dir = store.dir(&store.resolve(query)?.id);
        let read = |file: &str| {
            String::from_utf8_lossy(&std::fs::read(dir.join(file)).unwrap_or_default()).into_owned()
        };
        Ok(WorkspaceLogs {
            console: read(CONSOLE),
            supervisor: read(LOG),
        })
    }

    /// Runs a command in a running workspace, streaming its output.
    pub async fn workspace_exec(
        &self,
        query: &str,
        options: &ExecOptions,
        sink: &mut dyn OutputSink,
        cancel: impl std::future::Future<Output = ()>,
    ) -> Result<ExecReport, Error> {
        if options.argv.is_empty() {
            return Err(Error::InvalidRequest(
                "no command given; put it after `--`, e.g. pyro workspace exec ID -- ls".into(),
            ));
        }
        let started = Instant::now();
        let guest = self.connect_workspace(query).await?;
        let exec = pyro_protocol::ExecRequest {
            argv: options.argv.clone(),
            cwd: options.cwd.clone(),
            env: options.env_vars.clone(),
            timeout_ms: options.timeout.map(|t| t.as_millis() as u64),
            stdin: false,
            pty: None,
        };
        let host_deadline = options.timeout.map(|t| t + crate::run::TIMEOUT_GRACE);
        let end = tokio::select! {
            end = drive_exec(&guest, exec, &options.stdin, sink, host_deadline) => match end {
                Ok(end) => end,
                Err(crate::guest::GuestError::Disconnected) => return Err(self.why_gone(query)),
                Err(other) => return Err(Error::Guest(other)),
            },
            _ = cancel => RunEnd::Cancelled,
        };
        let duration_ms = started.elapsed().as_millis() as u64;
        let event = events::EventKind::exec(&options.argv, &end, duration_ms);
        self.record_event(query, event);
        Ok(ExecReport {
            end,
            workspace: query.to_string(),
            duration_ms,
        })
    }

    /// Records activity on a workspace (best effort: the work is done).
    pub(crate) fn record_activity(&self, query: &str) {
        if let Ok(store) = self.workspaces() {
            if let Ok(record) = store.resolve(query) {
                let _ = store.update(&record.id, |record| {
                    record.last_activity_at = store::now();
                    Ok(())
                });
            }
        }
    }

    /// Why a workspace went away under a running call: crashed (with the
    /// reason its supervisor records), else stopped or deleted.
    pub(crate) fn why_gone(&self, query: &str) -> Error {
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            let Ok(store) = self.workspaces() else { break };
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
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
        WorkspaceError::GoneDuringExec.into()
    }

    /// A guest channel to a running workspace, through its supervisor.
    pub async fn connect_workspace(&self, query: &str) -> Result<Guest, Error> {
        let (record, dir) = self.running_workspace(query)?;
        let name = record.display_name().to_string();
        let socket = dir.join(SOCKET);
        let stream = std::os::unix::net::UnixStream::connect(&socket).map_err(|_| {
            WorkspaceError::Crashed {
                name: name.clone(),
                reason: "its supervisor does not answer".into(),
            }
        })?;
        Ok(Guest::connect(stream, Handshake::FreshBoot).await?)
    }

    /// A running workspace's record and directory; else why it is not
    /// running, and what to do.
    pub(crate) fn running_workspace(
        &self,
        query: &str,
    ) -> Result<(WorkspaceRecord, PathBuf), Error> {
        let store = self.workspaces()?;
        let record = store.observe(&store.resolve(query)?.id)?;
        let name = record.display_name().to_string();
        match &record.state {
            WorkspaceState::Running => {}
            WorkspaceState::Starting => return Err(WorkspaceError::Starting { name }.into()),
            WorkspaceState::Stopped => return Err(WorkspaceError::Stopped { name }.into()),
            WorkspaceState::Crashed { reason } => {
                return Err(WorkspaceError::Crashed {
                    name,
                    reason: reason.clone(),
                }
                .into())
            }
        }
        let dir = store.dir(&record.id);
        Ok((record, dir))
    }

    /// Starts the supervisor process and waits for it to report ready.
    fn spawn_supervisor(
        &self,
        store: &WorkspaceStore,
        record: &WorkspaceRecord,
    ) -> Result<(), Error> {
        let dir = store.dir(&record.id);
        let program = supervisor_program()?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(LOG))
            .map_err(|source| WorkspaceError::Io {
                path: dir.join(LOG),
                source,
            })?;
        let (ready_read, ready_write) = pipe().map_err(|source| WorkspaceError::Io {
            path: dir.clone(),
            source,
        })?;
        let write_fd = ready_write.as_raw_fd();
        let mut command = Command::new(program);
        command
            .args(supervisor_args(self.home(), &record.id, write_fd))
            .env("PYRO_CACHE_DIR", self.cache_dir())
            .env("PYRO_HOME", self.home())
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|source| WorkspaceError::Io {
                path: dir.join(LOG),
                source,
            })?)
            .stderr(log);
        // SAFETY: runs between fork and exec; setsid and fcntl are
        // async-signal-safe and touch only this child.
        unsafe {
            command.pre_exec(move || {
                // A session of its own: the supervisor outlives the calling
                // process and its terminal.
                libc::setsid();
                if libc::fcntl(write_fd, libc::F_SETFD, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = command.spawn().map_err(|source| WorkspaceError::Io {
            path: PathBuf::from("pyro __supervise"),
            source,
        })?;
        drop(ready_write);
        // Reap it whenever it ends, so a long-lived caller keeps no zombie.
        std::thread::spawn(move || child.wait());

        let mut message = String::new();
        let mut reader = std::fs::File::from(ready_read);
        let _ = reader.read_to_string(&mut message);
        if message == "ok" {
            Ok(())
        } else {
            let message = if message.is_empty() {
                "the supervisor exited without a word; see pyro workspace logs".to_string()
            } else {
                message
            };
            Err(WorkspaceError::StartFailed {
                name: record.display_name().to_string(),
                message,
            }
            .into())
        }
    }
}

/// `__supervise -- HOME ID FD`: after `--`, a home that starts with `-` is
/// still the home.
fn supervisor_args(home: &std::path::Path, id: &str, ready_fd: i32) -> Vec<std::ffi::OsString> {
    vec![
        "__supervise".into(),
        "--".into(),
        home.into(),
        id.into(),
        ready_fd.to_string().into(),
    ]
}

/// The binary that runs supervisors: this one (`pyro`), or
/// `PYRO_SUPERVISOR_BIN` when the facade is embedded elsewhere.
fn supervisor_program() -> Result<PathBuf, Error> {
    if let Some(path) = std::env::var_os("PYRO_SUPERVISOR_BIN") {
        return Ok(PathBuf::from(path));
    }
    std::env::current_exe().map_err(|source| {
        WorkspaceError::Io {
            path: PathBuf::from("/proc/self/exe"),
            source,
        }
        .into()
    })
}

/// Signals the workspace's supervisor, if the recorded pid really is it.
fn signal_supervisor(record: &WorkspaceRecord, signal: i32) {
    let Some(pid) = record.supervisor_pid else {
        return;
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline);
    if cmdline.contains("__supervise") && cmdline.contains(&record.id) {
        // SAFETY: kill(2) on a pid we just checked is our supervisor.
        unsafe { libc::kill(pid as libc::pid_t, signal) };
    }
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are fresh descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_supervisor_home_follows_the_end_of_options() {
        let args = super::supervisor_args(std::path::Path::new("-home"), "ab12", 3);
        let args: Vec<_> = args.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(args, ["__supervise", "--", "-home", "ab12", "3"]);
    }
}
