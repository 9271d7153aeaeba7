//! What booting a VM of an environment needs on this host: the engine, the
//! environment's boot artifacts, and the accelerator. `pyro run`, the
//! benchmark floor and the supervisor all start from here.

use std::path::{Path, PathBuf};

use pyro_env::{BootArtifacts, EnvStore, StoreError};
use pyro_vmm::{AccelReport, EngineError, QemuEngine, RootDisk, VmSpec};

use super::{accel, agent_image};

/// Why a VM of an environment cannot be prepared.
#[derive(Debug, thiserror::Error)]
pub enum MachineError {
    #[error(transparent)]
    Env(#[from] StoreError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// The engine, store, artifacts and accelerator for one environment.
pub(crate) struct Machine {
    /// The environment's name.
    pub(crate) env: String,
    pub(crate) engine: QemuEngine,
    pub(crate) store: EnvStore,
    pub(crate) artifacts: BootArtifacts,
    pub(crate) accel: AccelReport,
}

impl Machine {
    /// Resolves `env` in the store under `cache_dir` (it must be pulled and
    /// intact) and finds QEMU and the accelerator.
    pub(crate) fn for_env(cache_dir: &Path, env: &str) -> Result<Machine, MachineError> {
        let store = EnvStore::open(cache_dir)?;
        let artifacts = store.boot_artifacts(env, agent_image::AGENT)?;
        let engine = QemuEngine::locate()?;
        let accel = accel::for_kernel(cache_dir, &engine, &store, &artifacts.kernel);
        Ok(Machine {
            env: env.to_string(),
            engine,
            store,
            artifacts,
            accel,
        })
    }

    /// A VM of this environment with `root_disk`, booted normally.
    pub(crate) fn spec(
        &self,
        root_disk: Option<RootDisk>,
        cpus: u32,
        memory_mib: u32,
        console_log: Option<PathBuf>,
    ) -> VmSpec {
        VmSpec {
            kernel: self.artifacts.kernel.clone(),
            initramfs: self.artifacts.initramfs.clone(),
            root_disk,
            cpus,
            memory_mib,
            ram: pyro_vmm::GuestRam::Anonymous,
            extra_cmdline: Vec::new(),
            accel: self.accel.chosen,
            restore_from: None,
            console_log,
            network: false,
            seed_disk: None,
            transfer_slot: None,
            file_size_limit: None,
            disk_roots: self.store.disk_dirs().to_vec(),
            layer_dir: None,
        }
    }
}
