//! The facade: [`Pyro`] and every call on it, one file per area. This is
//! the only place that implements `Pyro`; the rules every front end shares
//! (defaults, limits, precedence) are in [`params`], the errors in
//! [`error`], what to do about them in [`hints`].

pub(crate) mod bench;
pub(crate) mod diff;
pub(crate) mod disk;
pub(crate) mod doctor;
pub(crate) mod envs;
pub(crate) mod error;
pub(crate) mod exec;
pub(crate) mod files;
pub(crate) mod fork;
pub(crate) mod hints;
pub(crate) mod host_paths;
pub(crate) mod logs;
pub(crate) mod network;
pub mod params;
pub(crate) mod ports;
pub(crate) mod run;
pub(crate) mod secrets;
pub(crate) mod services;
pub(crate) mod shells;
pub(crate) mod snapshots;
pub(crate) mod summary;
pub(crate) mod suspend;
pub(crate) mod transfer;
mod transfer_slot;
pub(crate) mod warm;
pub(crate) mod workspaces;

use std::path::{Path, PathBuf};

use crate::host::paths;
use crate::workspace::WorkspaceStore;
use error::Error;
use host_paths::HostPaths;

/// The pyro library entry point: where environments and workspaces live,
/// and which host paths calls may name. Cheap to clone; holds no open
/// resources.
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

    /// Where environments live.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// The workspace store under the home.
    pub(crate) fn store(&self) -> Result<WorkspaceStore, Error> {
        Ok(WorkspaceStore::open(&self.home)?)
    }

    /// The environment store under the cache dir (created on first use).
    pub(crate) fn env_store(&self) -> Result<pyro_env::EnvStore, Error> {
        Ok(pyro_env::EnvStore::open(&self.cache_dir)?)
    }
}
