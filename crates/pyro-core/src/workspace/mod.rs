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
pub(crate) mod diff;
pub(crate) mod events;
pub(crate) mod files;
pub(crate) mod hostgit;
pub(crate) mod layers;
pub(crate) mod netlog;
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
