//! Everything that can go wrong in a facade call, as data: one variant per
//! kind of failure, each carrying its module's typed error. A front end
//! prints the message and renders the [`Hint`](super::hints::Hint) in its
//! own words.

use pyro_env::StoreError;

use crate::api::host_paths::HostPathError;
use crate::host::boot::{self, BootError};
use crate::host::guest::GuestError;
use crate::host::machine::MachineError;
use crate::supervisor::protocol::SessionError;
use crate::workspace::diff::DiffError;
use crate::workspace::files::FilesError;
use crate::workspace::hostgit::GitError;
use crate::workspace::layers::SnapshotError;
use crate::workspace::transfer::TransferError;
use crate::workspace::WorkspaceError;

/// Everything that can go wrong in a facade call.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // Each variant says what it is in its message.
pub enum Error {
    /// The call's arguments break a rule of [`params`](super::params).
    #[error(transparent)]
    Invalid(#[from] super::params::InvalidRequest),
    #[error(transparent)]
    Env(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] pyro_vmm::EngineError),
    #[error(transparent)]
    Boot(#[from] BootError),
    #[error("the VM stopped while the command ran ({exit}){}{}", boot::hint(.diagnosis), boot::console_lines(.console_tail))]
    VmCrashed {
        exit: String,
        diagnosis: Option<String>,
        console_tail: Vec<String>,
    },
    #[error(transparent)]
    Guest(#[from] GuestError),
    #[error("benchmark failed: {0}")]
    Benchmark(String),
    #[error(transparent)]
    Workspace(#[from] WorkspaceError),
    #[error(transparent)]
    Files(#[from] FilesError),
    #[error(transparent)]
    Diff(#[from] DiffError),
    #[error(transparent)]
    Transfer(#[from] TransferError),
    #[error(transparent)]
    Disk(#[from] crate::workspace::offline::DiskError),
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Git(#[from] GitError),
    #[error(transparent)]
    HostPath(#[from] HostPathError),
    #[error(transparent)]
    Network(#[from] crate::host::network::NetworkError),
    #[error(transparent)]
    Secret(#[from] crate::workspace::secrets::SecretError),
    #[error("cannot make the warm template")]
    Template(#[from] crate::host::template::TemplateError),
    /// A create failed after it had made the workspace, and deleted it
    /// again: nothing of it is left to look at.
    #[error("{0}; the workspace was deleted")]
    CreateFailed(Box<Error>),
    /// A fork failed after it had made the new workspace, and deleted it
    /// again; the workspace it forked runs on.
    #[error("{0}; the fork was deleted")]
    ForkFailed(Box<Error>),
    /// The caller cancelled a create; the workspace it made was deleted.
    #[error("cancelled; workspace {workspace} was deleted")]
    CreateCancelled { workspace: String },
}

impl From<MachineError> for Error {
    fn from(error: MachineError) -> Self {
        match error {
            MachineError::Env(error) => Error::Env(error),
            MachineError::Engine(error) => Error::Engine(error),
        }
    }
}
