//! Workspaces as data on this host: their records and locks ([`store`]),
//! event log ([`events`]) and summary ([`summary`]), the diff baseline
//! ([`diff`], [`baseline`]), files and trees through a guest channel
//! ([`files`], [`transfer`]), disk layers ([`layers`]) and git on the host
//! ([`hostgit`]).
//!
//! Each module has its own error type. Nothing here names the facade
//! (`Pyro`) or its error: the facade (`api/`) calls down into these, and
//! the supervisor process uses the store and the event log.

pub(crate) mod baseline;
pub mod ceiling;
pub(crate) mod diff;
pub(crate) mod events;
pub(crate) mod files;
pub(crate) mod host_bytes;
pub(crate) mod hostgit;
pub(crate) mod layers;
pub mod mode;
pub(crate) mod netlog;
pub(crate) mod offline;
pub(crate) mod secrets;
pub(crate) mod seed;
pub(crate) mod store;
pub(crate) mod summary;
pub(crate) mod transfer;

use std::path::PathBuf;

pub use store::{WorkspaceRecord, WorkspaceState, WorkspaceStore};

/// The workspace's disk overlay, inside its directory.
pub(crate) const DISK: &str = "disk.qcow2";
/// A warm-created workspace's copy of its template's disk layer, under
/// `DISK`.
pub(crate) const TEMPLATE_DISK: &str = "template.qcow2";
/// The seed's read-only ext4 image (the VM's second disk, under
/// /workspace), in a seeded workspace's directory; never written once made.
pub(crate) const SEED_IMAGE: &str = "seed.img";
/// The supervisor's socket, inside the workspace directory (mode 0700).
pub(crate) const SOCKET: &str = "agent.sock";
/// The supervisor's control socket (disk snapshots), next to it.
pub(crate) const CONTROL: &str = "control.sock";
/// What the supervisor and its VM print, inside the workspace directory.
pub(crate) const LOG: &str = "supervisor.log";
/// The VM's serial console, inside the workspace directory.
pub(crate) const CONSOLE: &str = "console.log";

/// Why a workspace call failed. Messages name the workspace and the fix.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // Each variant says what it is in its message.
pub enum WorkspaceError {
    #[error("no workspace '{query}'")]
    Unknown { query: String },
    #[error("a workspace named '{name}' already exists; pick another name or delete it first")]
    NameTaken { name: String },
    #[error("invalid workspace name '{name}': use 1-63 letters, digits, '.', '_' or '-', starting with a letter or digit")]
    BadName { name: String },
    #[error("workspace '{name}' is stopped")]
    Stopped { name: String },
    #[error("workspace '{name}' is stopped, and a fork copies a running VM")]
    ForkStopped { name: String },
    #[error("workspace '{name}' could not be forked: saving its VM's memory failed ({why})")]
    ForkMemory { name: String, why: String },
    #[error("workspace '{name}' is suspended, its VM's memory saved for a VM with the network as it is; a new network mode needs a fresh boot: power it off first")]
    SuspendedShape { name: String },
    #[error("workspace '{name}' could not be suspended ({why}); it keeps running")]
    SuspendFailed { name: String, why: String },
    #[error("workspace '{name}' crashed: {reason}")]
    Crashed { name: String, reason: String },
    #[error("workspace '{name}' is still starting; try again in a moment")]
    Starting { name: String },
    #[error("workspace '{name}' is already running")]
    AlreadyRunning { name: String },
    #[error("workspace '{name}' was started with the network off, so its VM has no network device; stop the workspace, change its network, and start it again")]
    NetworkNeedsRestart { name: String },
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
    #[error("cannot make the workspace's disk")]
    Disk(#[source] pyro_vmm::disk::DiskError),
    #[error("i/o on {path} failed")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the host disk holding {} has {free} free; {what} needs about {needed} there. Free some space (delete workspaces or snapshots you no longer need)", .path.display())]
    HostDiskFull {
        what: String,
        needed: String,
        free: String,
        path: PathBuf,
    },
    #[error("workspace '{name}' holds {held} on the host disk, and {what} needs about {adding} more, past its ceiling of {ceiling}. Delete snapshots it no longer needs, or take one without memory")]
    OverCeiling {
        name: String,
        held: String,
        what: String,
        adding: String,
        ceiling: String,
    },
    #[error("workspace '{name}' was never finished (the process creating it was killed); delete it and create it again")]
    CutShort { name: String },
    /// A lock still held when the wait for it ended; says who holds it.
    #[error("{0}")]
    LockTimeout(std::io::Error),
}

impl WorkspaceError {
    /// A failure to take the lock at `path`: a wait that ran out reads as
    /// such, anything else as i/o.
    pub(crate) fn lock(path: PathBuf, source: std::io::Error) -> Self {
        match source.kind() {
            std::io::ErrorKind::TimedOut => WorkspaceError::LockTimeout(source),
            _ => WorkspaceError::Io { path, source },
        }
    }
}

/// The initial content of /workspace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seed {
    /// A host directory, copied in (with its `.git`, if any).
    Path(PathBuf),
    /// A Git repository cloned on the host at `reference` (default: its HEAD).
    Repo {
        /// The repository: an https, ssh or git URL, or a local path.
        url: String,
        /// A branch, tag or commit.
        reference: Option<String>,
    },
}

impl Seed {
    /// The seed for the review log: the path, or the URL without its
    /// password.
    pub(crate) fn describe(&self) -> String {
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

/// What a seed put in /workspace and what it left out: the create's
/// report, kept in the workspace record.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SeedSummary {
    /// Files copied.
    pub files: u64,
    /// Directories copied.
    pub dirs: u64,
    /// Symlinks copied (as links).
    pub symlinks: u64,
    /// Bytes of file content copied.
    pub bytes: u64,
    /// Paths `--exclude` or `.pyroignore` left out (everything beneath an
    /// excluded directory counts).
    pub excluded: u64,
    /// Bytes of the files left out that way.
    pub excluded_bytes: u64,
    /// Sockets, FIFOs and devices left out.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub skipped: u64,
    /// The first of them, as `path (kind)`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped_names: Vec<String>,
    /// Files that changed while they were copied (they hold what was read).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<String>,
    /// How long making the image took.
    pub image_ms: u64,
}

impl SeedSummary {
    /// One line for a terminal: what came in, what was left out. Names
    /// are escaped (a host file name may hold control characters).
    pub fn line(&self) -> String {
        let mut line = format!("{} files, {:.1} MB", self.files, self.bytes as f64 / 1e6);
        if self.excluded > 0 {
            line.push_str(&format!(
                "; {} paths ({:.1} MB) left out by --exclude and .pyroignore",
                self.excluded,
                self.excluded_bytes as f64 / 1e6
            ));
        }
        if self.skipped > 0 {
            let names: Vec<String> = self
                .skipped_names
                .iter()
                .take(3)
                .map(|name| pyro_util::text::visible(name).into_owned())
                .collect();
            line.push_str(&format!(
                "; {} sockets, FIFOs or devices skipped ({})",
                self.skipped,
                names.join(", ")
            ));
        }
        if !self.changed.is_empty() {
            line.push_str(&format!("; {} changed while copied", self.changed.len()));
        }
        line
    }
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}
