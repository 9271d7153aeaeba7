//! The pyro facade: the one library API that the CLI, the MCP server and
//! Rust users call.
//!
//! [`Pyro`] holds the host configuration (cache dir, engine) and offers
//! environments ([`Pyro::env_store`]), one-shot runs ([`Pyro::run`]),
//! diagnostics ([`Pyro::doctor`]) and benchmarks ([`Pyro::bench_floor`]). No
//! front-end concern lives here: no argument parsing, no terminal output,
//! no exit-code printing; results are plain serialisable structs.

pub mod accel;
pub mod agent_image;
pub mod bench;
pub mod boot;
pub mod doctor;
pub mod guest;
mod host_paths;
mod input;
pub mod paths;
pub mod run;
pub mod workspace;

use std::path::{Path, PathBuf};

use pyro_env::{EnvStore, StoreError};
use pyro_vmm::{AccelReport, QemuEngine};

pub use host_paths::{HostPathError, HostPathUse, HostPaths};
pub use input::Input;
pub use pyro_env;
pub use pyro_protocol::{ErrorKind, ExitStatus};
pub use pyro_vmm::Accel;
pub use run::{OutputSink, RunEnd, RunReport, RunRequest};

/// Everything that can go wrong in a facade call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    InvalidRequest(String),
    #[error(transparent)]
    Env(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] pyro_vmm::EngineError),
    #[error(transparent)]
    Boot(#[from] boot::BootError),
    #[error("the VM stopped while the command ran ({exit}){}{}", boot::hint(.diagnosis), boot::console_lines(.console_tail))]
    VmCrashed {
        exit: String,
        diagnosis: Option<String>,
        console_tail: Vec<String>,
    },
    #[error(transparent)]
    Guest(#[from] guest::GuestError),
    #[error("benchmark failed: {0}")]
    Benchmark(String),
    #[error(transparent)]
    Workspace(#[from] workspace::WorkspaceError),
    #[error(transparent)]
    Files(#[from] workspace::files::FilesError),
    #[error(transparent)]
    HostPath(#[from] HostPathError),
}

/// The pyro library entry point.
#[derive(Debug, Clone)]
pub struct Pyro {
    cache_dir: PathBuf,
    home: PathBuf,
    host_paths: HostPaths,
}

impl Pyro {
    /// Uses the cache dir and home from the environment (`PYRO_CACHE_DIR`,
    /// `PYRO_HOME`, XDG).
    pub fn from_env() -> Self {
        Pyro::with_dirs(paths::default_cache_dir(), paths::default_home())
    }

    /// Environments under `cache_dir`, workspaces under `home`.
    pub fn with_dirs(cache_dir: impl Into<PathBuf>, home: impl Into<PathBuf>) -> Self {
        Pyro {
            cache_dir: cache_dir.into(),
            home: home.into(),
            host_paths: HostPaths::Any,
        }
    }

    /// Confines the host paths calls may name (seeds, local repositories,
    /// sync sources, export outputs): the MCP server acts for a model and
    /// passes [`HostPaths::Within`]; the default is [`HostPaths::Any`].
    pub fn with_host_paths(mut self, host_paths: HostPaths) -> Self {
        self.host_paths = host_paths;
        self
    }

    /// The host paths calls may name.
    pub fn host_paths(&self) -> &HostPaths {
        &self.host_paths
    }

    /// Where workspaces live.
    pub fn home(&self) -> &Path {
        &self.home
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// The environment store under the cache dir (created on first use).
    pub fn env_store(&self) -> Result<EnvStore, Error> {
        Ok(EnvStore::open(&self.cache_dir)?)
    }

    /// The VM engine for this host.
    pub fn engine(&self) -> Result<QemuEngine, Error> {
        Ok(QemuEngine::locate()?)
    }

    /// KVM or TCG for this host; boots the probe guest once per host kernel
    /// when KVM might work.
    pub fn accel_for(&self, engine: &QemuEngine, store: &EnvStore, kernel: &Path) -> AccelReport {
        accel::choose(&self.cache_dir, engine, || {
            let initramfs = store.agent_only_initramfs(agent_image::AGENT).ok()?;
            Some(accel::ProbeImage {
                kernel: kernel.to_path_buf(),
                initramfs,
            })
        })
    }
}
