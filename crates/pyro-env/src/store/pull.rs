//! `pull`: build an environment from its catalog recipe into the store.
//!
//! Steps, each a progress phase: resolve the kernel package with the host's
//! apt, download and unpack it, extract `vmlinux`, pack the boot modules,
//! build the Debian tree, make the ext4 image, compress it to qcow2, hash
//! everything into `blobs/`, and finally write the manifest.
//!
//! Pulls of one environment serialize on `locks/<name>.lock`; the second
//! waits, then finds the environment present and returns at once. The kernel
//! of an environment already in the store is reused when apt offers the same
//! package version (unless `force`).

use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use pyro_util::fsutil::{self, FileLock, ScratchDir};
use serde::{Serialize, Serializer};

use super::manifest::{self, Artifact, Artifacts, KernelInfo, Manifest};
use super::{lookup, EnvStore, EnvSummary, StoreError};
use crate::catalog::{self, CatalogEntry};
use crate::command;
use crate::kernel::{self, KernelPackage};
use crate::modules::ModuleSet;
use crate::rootfs::{self, Bootstrapper, BuildPaths};
use crate::Progress;

/// The result of [`EnvStore::pull`].
#[derive(Debug, Clone, Serialize)]
pub struct PullOutcome {
    pub env: EnvSummary,
    /// It was installed and intact already; nothing was built.
    pub already_present: bool,
    #[serde(rename = "elapsed_seconds", serialize_with = "seconds")]
    pub elapsed: Duration,
    /// How long each phase took, in order.
    pub phases: Vec<PhaseTiming>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PhaseTiming {
    pub phase: String,
    #[serde(rename = "seconds", serialize_with = "seconds")]
    pub elapsed: Duration,
}

fn seconds<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64((d.as_secs_f64() * 1000.0).round() / 1000.0)
}

/// Forwards phases to the caller's [`Progress`] and times them.
struct Phases<'a> {
    progress: &'a dyn Progress,
    done: Vec<PhaseTiming>,
    current: Option<(String, Instant)>,
}

impl<'a> Phases<'a> {
    fn new(progress: &'a dyn Progress) -> Self {
        Self {
            progress,
            done: Vec::new(),
            current: None,
        }
    }

    fn start(&mut self, name: impl Into<String>) {
        self.close();
        let name = name.into();
        self.progress.phase(&name);
        self.current = Some((name, Instant::now()));
    }

    fn close(&mut self) {
        if let Some((phase, started)) = self.current.take() {
            self.done.push(PhaseTiming {
                phase,
                elapsed: started.elapsed(),
            });
        }
    }

    fn finish(mut self) -> Vec<PhaseTiming> {
        self.close();
        self.done
    }
}

impl EnvStore {
    /// Builds environment `name` unless it is installed and intact (or
    /// `force`). Needs root to build; an installed environment is returned
    /// without it.
    pub fn pull(
        &self,
        name: &str,
        force: bool,
        progress: &dyn Progress,
    ) -> Result<PullOutcome, StoreError> {
        let started = Instant::now();
        let result = self.pull_locked(name, force, progress, started);
        progress.finish();
        result
    }

    fn pull_locked(
        &self,
        name: &str,
        force: bool,
        progress: &dyn Progress,
        started: Instant,
    ) -> Result<PullOutcome, StoreError> {
        let entry = lookup(name)?;
        let mut phases = Phases::new(progress);

        let lock_path = self
            .locks_dir()
            .join(format!("{}.lock", catalog::safe_name(entry.name)));
        let _pull_lock = match FileLock::try_acquire(&lock_path, true)? {
            Some(lock) => lock,
            None => {
                phases.start(format!("waiting for another pull of {}", entry.name));
                FileLock::acquire_within(&lock_path, true, super::PULL_LOCK_PATIENCE)?
            }
        };

        if !force && self.is_intact(entry)? {
            return Ok(PullOutcome {
                env: self.summary(entry.name)?,
                already_present: true,
                elapsed: started.elapsed(),
                phases: phases.finish(),
            });
        }
        // Before anything that takes minutes: every tool the build runs.
        let missing = command::missing_build_tools();
        if !missing.is_empty() {
            return Err(StoreError::MissingTools {
                name: entry.name.to_owned(),
                missing,
            });
        }
        if !fsutil::is_root() {
            return Err(StoreError::NeedsRoot {
                name: entry.name.to_owned(),
            });
        }

        fsutil::sweep_stale_scratch(&self.tmp_dir())?;
        let scratch = ScratchDir::create(&self.tmp_dir(), &catalog::safe_name(entry.name))?;
        let manifest = self.build(entry, force, scratch.path(), &mut phases)?;
        drop(scratch);
        let timings = phases.finish();
        summary_line(progress, &manifest);
        Ok(PullOutcome {
            env: self.summary(entry.name)?,
            already_present: false,
            elapsed: started.elapsed(),
            phases: timings,
        })
    }

    fn build(
        &self,
        entry: &CatalogEntry,
        force: bool,
        work: &Path,
        phases: &mut Phases<'_>,
    ) -> Result<Manifest, StoreError> {
        let name = entry.name.to_owned();
        let kernel_err = |source| StoreError::Kernel {
            name: name.clone(),
            source,
        };
        let rootfs_err = |source| StoreError::Rootfs {
            name: name.clone(),
            source,
        };
        let tool = Bootstrapper::detect().map_err(rootfs_err)?;

        phases.start("resolving kernel package");
        let package = kernel::resolve(phases.progress).map_err(kernel_err)?;
        let reused = if force {
            None
        } else {
            self.reusable_kernel(&package)?
        };
        let (kernel_info, modules, vmlinux_file, modules_file) = match reused {
            Some((from, info, modules, vmlinux, modules_cpio)) => {
                phases.start(format!("reusing {} from {from}", package.name));
                (
                    info,
                    modules,
                    Staged::Stored(vmlinux),
                    Staged::Stored(modules_cpio),
                )
            }
            None => {
                phases.start(format!("downloading {}", package.name));
                let unpacked =
                    kernel::download_and_unpack(&package, &work.join("kernel"), phases.progress)
                        .map_err(kernel_err)?;
                phases.start("extracting vmlinux");
                let vmlinux = kernel::extract_vmlinux(&unpacked.vmlinuz).map_err(kernel_err)?;
                let vmlinux_path = work.join("vmlinux");
                fs_err::write(&vmlinux_path, &vmlinux)?;
                drop(vmlinux);
                phases.start("packing boot modules");
                let modules_err = |source| StoreError::Modules {
                    name: name.clone(),
                    source,
                };
                let set = ModuleSet::from_dir(&unpacked.modules_dir).map_err(modules_err)?;
                let modules_path = work.join("modules.cpio");
                fs_err::write(&modules_path, set.to_cpio().map_err(modules_err)?)?;
                fsutil::remove_tree(&work.join("kernel"))?;
                let info = KernelInfo {
                    package: package.name.clone(),
                    version: package.version.clone(),
                    release: unpacked.release,
                };
                (
                    info,
                    set.order,
                    Staged::File(vmlinux_path),
                    Staged::File(modules_path),
                )
            }
        };

        let paths = BuildPaths::new(work);
        phases.start(format!("building root filesystem ({})", tool.program()));
        rootfs::bootstrap(tool, entry, &paths.tree, phases.progress).map_err(rootfs_err)?;
        rootfs::prepare_tree(&paths.tree).map_err(rootfs_err)?;
        phases.start("making ext4 image");
        rootfs::make_ext4(&paths.tree, &paths.ext4, phases.progress).map_err(rootfs_err)?;
        fsutil::remove_tree(&paths.tree)?;
        phases.start("compressing to qcow2");
        rootfs::convert_to_qcow2(&paths.ext4, &paths.qcow2, phases.progress).map_err(rootfs_err)?;
        fs_err::remove_file(&paths.ext4)?;

        phases.start("hashing");
        // Shared with other writers, exclusive with prune: blobs inserted
        // here are unreferenced until the manifest lands.
        let _gc = FileLock::acquire_within(&self.gc_lock_path(), false, super::GC_LOCK_PATIENCE)?;
        let vmlinux = vmlinux_file.insert(self)?;
        let modules_cpio = modules_file.insert(self)?;
        let mut rootfs = self.blobs.insert(&paths.qcow2)?;
        rootfs.virtual_size = Some(rootfs::VIRTUAL_SIZE);

        let manifest = Manifest {
            schema: manifest::SCHEMA,
            name: entry.name.to_owned(),
            catalog_revision: entry.revision,
            suite: entry.suite.to_owned(),
            packages: entry.packages.iter().map(|p| (*p).to_owned()).collect(),
            kernel: kernel_info,
            modules,
            bootstrapper: tool.program().to_owned(),
            created_at: pyro_util::rfc3339(SystemTime::now()),
            artifacts: Artifacts {
                vmlinux,
                modules_cpio,
                rootfs,
            },
        };
        let json = serde_json::to_vec_pretty(&manifest).map_err(std::io::Error::other)?;
        fsutil::write_atomic(&self.manifest_path(entry.name), &json, 0o644, self.owner)?;
        Ok(manifest)
    }

    /// An installed environment built with the same kernel package, whose
    /// kernel blobs verify: (env name, kernel, modules order, vmlinux, modules.cpio).
    #[allow(clippy::type_complexity)]
    fn reusable_kernel(
        &self,
        package: &KernelPackage,
    ) -> Result<Option<(String, KernelInfo, Vec<String>, Artifact, Artifact)>, StoreError> {
        for other in catalog::entries() {
            let Ok(Some(manifest)) = self.read_manifest(other.name) else {
                continue;
            };
            if manifest.kernel.package != package.name || manifest.kernel.version != package.version
            {
                continue;
            }
            let a = &manifest.artifacts;
            if has_boot_modules(&manifest.modules)
                && self.blobs.verify(&a.vmlinux)?.is_usable()
                && self.blobs.verify(&a.modules_cpio)?.is_usable()
            {
                return Ok(Some((
                    other.name.to_owned(),
                    manifest.kernel.clone(),
                    manifest.modules.clone(),
                    a.vmlinux.clone(),
                    a.modules_cpio.clone(),
                )));
            }
        }
        Ok(None)
    }

    /// Installed, manifest readable, with every boot module this pyro loads
    /// (an environment pulled before one was added is pulled again), every
    /// blob present with its size.
    pub(super) fn is_intact(&self, entry: &CatalogEntry) -> Result<bool, StoreError> {
        let manifest = match self.read_manifest(entry.name) {
            Ok(Some(manifest)) => manifest,
            Ok(None) | Err(StoreError::BadManifest { .. }) => return Ok(false),
            Err(err) => return Err(err),
        };
        Ok(has_boot_modules(&manifest.modules)
            && manifest
                .artifacts
                .iter()
                .iter()
                .all(|(_, artifact)| self.blobs.check_quick(artifact).is_usable()))
    }

    pub(super) fn summary(&self, name: &str) -> Result<EnvSummary, StoreError> {
        self.list()?
            .into_iter()
            .find(|s| s.name == name)
            .ok_or_else(|| StoreError::NotPulled {
                name: name.to_owned(),
            })
    }
}

/// A kernel artifact either freshly built in scratch or already in the store.
enum Staged {
    File(std::path::PathBuf),
    Stored(Artifact),
}

impl Staged {
    fn insert(self, store: &EnvStore) -> Result<Artifact, StoreError> {
        match self {
            Staged::File(path) => Ok(store.blobs.insert(&path)?),
            Staged::Stored(artifact) => Ok(artifact),
        }
    }
}

/// One closing detail line with the sizes, for the log.
fn summary_line(progress: &dyn Progress, manifest: &Manifest) {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let a = &manifest.artifacts;
    progress.detail(&format!(
        "{}: vmlinux {:.1} MiB, modules.cpio {:.1} MiB, rootfs.qcow2 {:.1} MiB (kernel {} {})",
        manifest.name,
        mib(a.vmlinux.size),
        mib(a.modules_cpio.size),
        mib(a.rootfs.size),
        manifest.kernel.package,
        manifest.kernel.version
    ));
}

/// Whether a packed module list holds every module the agent loads at boot
/// (`overlay` came with seed disks).
fn has_boot_modules(packed: &[String]) -> bool {
    crate::modules::BOOT_MODULES
        .iter()
        .all(|name| packed.iter().any(|p| p == name))
}
