//! pyro: disposable workspaces inside real virtual machines, for chat-based
//! coding agents. This crate is the one library API that the `pyro` CLI,
//! its MCP server and Rust programs call.
//!
//! [`Pyro`] is the facade: environments ([`Pyro::env_list`],
//! [`Pyro::env_pull`]), one-shot runs ([`Pyro::run`]), workspaces
//! ([`Pyro::workspace_create`], [`Pyro::workspace_exec`],
//! [`Pyro::workspace_diff`], snapshots, shells, services, ...), diagnostics
//! ([`Pyro::doctor`]) and the benchmark ([`Pyro::bench`]). Results are
//! plain serialisable structs; failures are an [`Error`] whose
//! [`Error::hint`] says what to do, for each front end to word itself.
//!
//! ```no_run
//! use pyro_core::{CollectOutput, CreateRequest, ExecOptions, Pyro, Seed};
//!
//! # async fn example() -> Result<(), pyro_core::Error> {
//! let pyro = Pyro::from_env();
//! let mut request = CreateRequest::new("debian:12");
//! request.seed = Some(Seed::Path("./my-project".into()));
//! let workspace = pyro.workspace_create(&request).await?;
//!
//! let test = ExecOptions {
//!     argv: vec!["sh".into(), "-c".into(), "python3 -m pytest -q".into()],
//!     ..ExecOptions::default()
//! };
//! let mut output = CollectOutput::default();
//! let report = pyro
//!     .workspace_exec(&workspace.id, &test, &mut output, std::future::pending())
//!     .await?;
//! println!("tests exited {}: {}", report.exit_code(), output.stdout_text());
//!
//! let diff = pyro.workspace_diff(&workspace.id).await?;
//! println!("{} files changed", diff.files_changed);
//! pyro.workspace_delete(&workspace.id).await?;
//! # Ok(())
//! # }
//! ```
//!
//! A workspace's VM belongs to a supervisor process, `pyro __supervise`,
//! which the facade starts from the running binary: a program embedding
//! the facade either answers `__supervise HOME ID FD` with
//! [`run_supervisor`], or points `PYRO_SUPERVISOR_BIN` at the `pyro`
//! binary. (The `pyro` integration tests run this very example that way,
//! in `tests/it/library.rs`.)
//!
//! The source is cut along the process boundary: `api/` is the facade
//! (every `impl Pyro`, the shared rules in `params`), `host/` what this
//! process uses to reach a VM, `workspace/` workspaces as data on disk and
//! through a guest channel, `supervisor/` the `pyro __supervise` process
//! and the facade's client of it. See `docs/architecture.md`.

#![warn(missing_docs)]

mod api;
mod host;
mod supervisor;
mod workspace;

pub use api::bench::{BenchOptions, BenchReport, BenchRow, Samples};
pub use api::disk::{DiskFile, DiskListing, DISK_READ_LIMIT};
pub use api::doctor::{Check, DoctorReport, Level};
pub use api::error::Error;
pub use api::exec::{ExecOptions, ExecReport};
pub use api::fork::{ForkReport, ForkRequest};
pub use api::hints::{Action, Hint};
pub use api::host_paths::{HostPathError, HostPathUse, HostPaths};
pub use api::logs::WorkspaceLogs;
pub use api::network::{
    allow_entries, denial_summary, describe_denial, NetworkLog, NetworkLogEntry, NetworkRequest,
    NetworkUpdate,
};
pub use api::params;
pub use api::params::{InvalidRequest, ShellInput, ShellReadOptions};
pub use api::ports::PortList;
pub use api::run::{RunReport, RunRequest};
pub use api::secrets::{read_secret_file, without_line_end, SecretInput};
pub use api::snapshots::ResetReport;
pub use api::suspend::{noting_resumes, ResumeNotes, Resumed, StopMode};
pub use api::warm::WarmOutcome;
pub use api::workspaces::{CreateRequest, UpdateRequest};
pub use api::Pyro;
pub use host::exec::{CollectOutput, OutputSink, RunEnd};
pub use host::input::Input;
pub use host::memory::HostMemory;
pub use host::network::{NetworkConfig, NetworkError, NetworkMode, PublishedPort};
pub use pyro_env::{
    EnvDetails, EnvSummary, NoProgress, Progress, PruneReport, PullOutcome, StoreError,
};
pub use pyro_net::{Allow, DenyReason, NetEvent, Publish, Via, HOST_NAME};
pub use pyro_protocol::{DirEntry, ErrorKind, ExitStatus, FileKind};
pub use pyro_vmm::Accel;
#[doc(hidden)]
pub use supervisor::protocol::fuzz_control;
pub use supervisor::protocol::{
    LogRange, LogRead, Readiness, ServiceInfo, ServiceSpec, ServiceState, SessionError, ShellInfo,
    ShellRead, ShellState,
};
pub use supervisor::run as run_supervisor;
pub use workspace::diff::{ChangeStatus, ChangedFile, DiffReport};
pub use workspace::files::{FilesError, Listing, PatchReport, WriteReport};
pub use workspace::hostgit::GitError;
pub use workspace::layers::SnapshotError;
pub use workspace::mode::{Mode, ModeOverride, ModeRecord, UnknownMode};
pub use workspace::offline::{DiskEntry, DiskError};
pub use workspace::secrets::SecretError;
pub use workspace::store::SnapshotRecord;
pub use workspace::store::{BootReport, RestoredSessions, ResumePoint};
pub use workspace::summary::WorkspaceSummary;
pub use workspace::transfer::{TransferError, TransferReport};
pub use workspace::{Seed, SeedSummary, WorkspaceError, WorkspaceRecord, WorkspaceState};
