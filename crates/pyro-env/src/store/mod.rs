//! The environment store: a content-addressed cache under one root
//! directory (the CLI passes `$PYRO_CACHE_DIR` or `~/.cache/pyro`).
//!
//! ```text
//! <root>/
//!   blobs/sha256/<hex>            artifacts, 0444, named by content hash
//!   blobs/sha256/<hex>.verified   verification stamp (see blob.rs)
//!   envs/<safe-name>.json         manifest naming the blobs; written last, atomically
//!   pins/<holder>.json            extra blob references that `prune` keeps
//!   initramfs/<hex>.cpio          assembled initramfs cache (agent + modules)
//!   locks/<safe-name>.lock        serializes pulls of one environment
//!   locks/gc.lock                 shared by writers, exclusive for `prune`
//!   tmp/<prefix>-<unique>/        build scratch; its .lock is held by the owner
//!   templates/<key>.<build>/      warm templates (see templates.rs)
//! ```
//!
//! A pull builds everything in `tmp/`, moves the finished files into
//! `blobs/`, then writes the manifest. A pull that fails or is killed leaves
//! at most unreferenced blobs and a dead scratch directory, which the next
//! pull or `prune` removes; it never leaves a manifest pointing at something
//! incomplete.

mod blob;
mod boot;
mod manifest;
mod pull;
mod templates;

use std::path::{Path, PathBuf};
use std::time::Duration;

use pyro_util::fsutil::{self, FileLock};
use serde::Serialize;

pub use blob::{hash_bytes, BlobState};
pub use boot::{write_agent_only_initramfs, BootArtifacts};
pub use manifest::{Artifact, Artifacts, KernelInfo, Manifest};
pub use pull::{PhaseTiming, PullOutcome};
pub use templates::{Template, TemplateBuild, TemplateInfo, Unusable};

use crate::catalog::{self, CatalogEntry};
use blob::BlobStore;

fn missing_programs(missing: &[crate::command::HostTool]) -> String {
    let names: Vec<_> = missing
        .iter()
        .map(|tool| format!("{} (package {})", tool.program, tool.package))
        .collect();
    names.join(", ")
}

fn missing_packages(missing: &[crate::command::HostTool]) -> String {
    let mut packages: Vec<_> = missing.iter().map(|tool| tool.package).collect();
    packages.dedup();
    packages.join(" ")
}

/// Cached initramfs files unused for this long are removed by `prune`.
const INITRAMFS_MAX_IDLE: Duration = Duration::from_secs(24 * 3600);
/// How long a pull waits for another pull of the same environment (a
/// build from packages takes minutes under emulation) before it names the
/// holder and gives up.
const PULL_LOCK_PATIENCE: Duration = Duration::from_secs(30 * 60);
/// How long a pull or a prune waits for the store's garbage-collection
/// lock (a prune, or another pull's hashing, holds it).
const GC_LOCK_PATIENCE: Duration = Duration::from_secs(10 * 60);

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot use {path} as the pyro cache; make it writable or set PYRO_CACHE_DIR to another directory")]
    Unwritable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("unknown environment '{name}'; known environments: {}", known.join(", "))]
    UnknownEnv { name: String, known: Vec<String> },
    #[error("environment {name} is not pulled")]
    NotPulled { name: String },
    #[error("environment {name} is corrupt ({artifact} {reason})")]
    Corrupt {
        name: String,
        artifact: String,
        reason: String,
    },
    #[error("the manifest of environment {name} ({path}) is unreadable")]
    BadManifest {
        name: String,
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "cannot build {name}: this host lacks {}; install {} with: sudo apt-get install {} (or run scripts/install-deps)",
        missing_programs(.missing),
        if .missing.len() == 1 { "it" } else { "them" },
        missing_packages(.missing),
    )]
    MissingTools {
        name: String,
        missing: Vec<crate::command::HostTool>,
    },
    #[error("building environments needs root")]
    NeedsRoot { name: String },
    #[error("could not fetch the kernel for {name}")]
    Kernel {
        name: String,
        #[source]
        source: crate::kernel::KernelError,
    },
    #[error("could not prepare the boot modules for {name}")]
    Modules {
        name: String,
        #[source]
        source: crate::modules::ModulesError,
    },
    #[error("could not build the root filesystem of {name}")]
    Rootfs {
        name: String,
        #[source]
        source: crate::rootfs::RootfsError,
    },
    #[error("could not write the initramfs")]
    Initramfs(#[source] crate::cpio::CpioError),
    #[error("environment store i/o failed")]
    Io(#[from] std::io::Error),
}

/// An environment in `pyro env list`.
#[derive(Debug, Clone, Serialize)]
pub struct EnvSummary {
    pub name: String,
    pub description: String,
    pub packages: Vec<String>,
    pub approx_size_bytes: u64,
    /// `None` when not pulled.
    pub installed: Option<InstalledInfo>,
    /// Set when a manifest exists but cannot be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}

/// What is installed of an environment.
#[derive(Debug, Clone, Serialize)]
pub struct InstalledInfo {
    /// First 12 hex digits of the root image's SHA-256.
    pub digest: String,
    /// Bytes in the store (kernel + modules + root image).
    pub size_bytes: u64,
    pub created_at: String,
    /// What `uname -r` prints in the guest, e.g. `6.1.0-56-amd64`.
    pub kernel_version: String,
    /// The kernel package version, e.g. `6.1.192-2`.
    pub kernel_package_version: String,
    /// Built from an older recipe than the catalog's; `pull --force` updates it.
    pub outdated: bool,
}

/// `pyro env inspect`: the manifest, where everything is, and its state.
#[derive(Debug, Clone, Serialize)]
pub struct EnvDetails {
    pub name: String,
    pub description: String,
    pub manifest_path: PathBuf,
    pub manifest: Manifest,
    pub artifacts: Vec<ArtifactDetails>,
    /// Every artifact verified (re-hashed where its stamp was stale).
    pub verified: bool,
    pub outdated: bool,
    /// Its warm templates (one per VM shape), oldest first.
    pub templates: Vec<TemplateInfo>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ArtifactDetails {
    /// `vmlinux`, `modules.cpio` or `rootfs.qcow2`.
    pub artifact: String,
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
    pub state: BlobState,
}

/// What `prune` removed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct PruneReport {
    /// Short digests of removed blobs.
    pub removed_blobs: Vec<String>,
    pub removed_tmp_dirs: usize,
    pub removed_initramfs: usize,
    /// Warm templates no workspace holds.
    #[serde(default)]
    pub removed_templates: usize,
    pub bytes_freed: u64,
    /// Things left in place, with why.
    pub skipped: Vec<String>,
}

impl std::fmt::Display for PruneReport {
    /// One line for people, plus one per thing left in place.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        write!(
            f,
            "removed {}, {}, {}, {}; freed {:.1} MiB",
            plural(self.removed_blobs.len(), "unreferenced blob"),
            plural(self.removed_templates, "unused warm template"),
            plural(self.removed_tmp_dirs, "stale build directory"),
            plural(self.removed_initramfs, "idle initramfs file"),
            self.bytes_freed as f64 / f64::from(1u32 << 20),
        )?;
        for skipped in &self.skipped {
            write!(f, "\nkept {skipped}")?;
        }
        Ok(())
    }
}

/// The store. Cheap to open; holds no locks between calls.
#[derive(Debug, Clone)]
pub struct EnvStore {
    root: PathBuf,
    blobs: BlobStore,
    owner: fsutil::Owner,
}

impl EnvStore {
    /// Opens (creating if needed) the store at `root`.
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StoreError> {
        let root = root.into();
        let owner = fsutil::Owner::for_store_at(&root);
        let store = Self {
            blobs: BlobStore::new(root.join("blobs").join("sha256"), owner),
            root,
            owner,
        };
        let unwritable = |path: &Path| {
            let path = path.to_owned();
            move |source| StoreError::Unwritable { path, source }
        };
        // Directories we create on the way to the root are handed over too.
        let created: Vec<PathBuf> = store
            .root
            .ancestors()
            .take_while(|p| !p.exists())
            .map(Path::to_owned)
            .collect();
        let blobs_parent = store.root.join("blobs");
        for dir in [
            store.blobs.dir(),
            &store.envs_dir(),
            &store.pins_dir(),
            &store.initramfs_dir(),
            &store.locks_dir(),
            &store.tmp_dir(),
        ] {
            fs_err::create_dir_all(dir).map_err(unwritable(dir))?;
        }
        if owner != fsutil::Owner::default() {
            let mut adopt = created;
            adopt.push(blobs_parent);
            adopt.extend([
                store.blobs.dir().to_owned(),
                store.envs_dir(),
                store.pins_dir(),
                store.initramfs_dir(),
                store.locks_dir(),
                store.tmp_dir(),
                store.gc_lock_path(),
            ]);
            adopt.extend(
                catalog::entries()
                    .iter()
                    .map(|e| store.pull_lock_path(e.name)),
            );
            for path in adopt {
                if !path.exists() {
                    // Only lock files are missing here: owner-only.
                    use fs_err::os::unix::fs::OpenOptionsExt as _;
                    fs_err::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(false)
                        .mode(0o600)
                        .open(&path)
                        .map_err(unwritable(&path))?;
                }
                owner.adopt(&path).map_err(unwritable(&path))?;
            }
        }
        Ok(store)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directories whose files a VM's disk may be backed by: the
    /// blobs (environment images) and the templates (a warm disk's).
    pub fn disk_dirs(&self) -> [PathBuf; 2] {
        [self.blobs.dir().to_path_buf(), self.templates_dir()]
    }

    /// The environments pyro can build.
    pub fn catalog() -> &'static [CatalogEntry] {
        catalog::entries()
    }

    /// Every catalog entry and what is installed of it.
    pub fn list(&self) -> Result<Vec<EnvSummary>, StoreError> {
        Ok(catalog::entries()
            .iter()
            .map(|entry| {
                let (installed, problem) = match self.read_manifest(entry.name) {
                    Ok(Some(manifest)) => (Some(installed_info(entry, &manifest)), None),
                    Ok(None) => (None, None),
                    Err(err) => (None, Some(pyro_util::error_chain(&err))),
                };
                EnvSummary {
                    name: entry.name.to_owned(),
                    description: entry.description.to_owned(),
                    packages: entry.packages.iter().map(|p| (*p).to_owned()).collect(),
                    approx_size_bytes: entry.approx_size_bytes,
                    installed,
                    problem,
                }
            })
            .collect())
    }

    /// The manifest, paths and verification state of a pulled environment.
    /// Re-hashes any blob whose stamp is stale.
    pub fn inspect(&self, name: &str) -> Result<EnvDetails, StoreError> {
        let entry = lookup(name)?;
        let manifest = self.require_manifest(entry)?;
        let mut artifacts = Vec::new();
        for (artifact, blob) in manifest.artifacts.iter() {
            artifacts.push(ArtifactDetails {
                artifact: artifact.to_owned(),
                path: self.blobs.path(&blob.sha256),
                sha256: blob.sha256.clone(),
                size: blob.size,
                state: self.blobs.verify(blob)?,
            });
        }
        Ok(EnvDetails {
            name: entry.name.to_owned(),
            description: entry.description.to_owned(),
            manifest_path: self.manifest_path(entry.name),
            verified: artifacts.iter().all(|a| a.state == BlobState::Verified),
            outdated: manifest.catalog_revision < entry.revision,
            manifest,
            artifacts,
            templates: self
                .templates()
                .into_iter()
                .filter(|t| t.env == entry.name)
                .collect(),
        })
    }

    /// Removes blobs no manifest or pin names, dead scratch directories and
    /// idle initramfs files.
    pub fn prune(&self) -> Result<PruneReport, StoreError> {
        let mut report = PruneReport::default();
        let sweep = fsutil::sweep_stale_scratch(&self.tmp_dir())?;
        report.removed_tmp_dirs = sweep.removed.len();
        report.bytes_freed += sweep.bytes_freed;
        report.skipped.extend(
            sweep
                .skipped
                .into_iter()
                .map(|(p, why)| format!("{}: {why}", p.display())),
        );

        {
            let _gc = FileLock::acquire_within(&self.gc_lock_path(), true, GC_LOCK_PATIENCE)?;
            let referenced = self.referenced_digests()?;
            for digest in self.blobs.list()? {
                if !referenced.contains(&digest) {
                    report.bytes_freed += self.blobs.remove(&digest)?;
                    report.removed_blobs.push(digest[..12].to_owned());
                }
            }
            self.blobs.remove_orphan_stamps()?;
            // A template a workspace's disk or RAM hangs on is pinned by it.
            for key in self.template_keys() {
                if !referenced.contains(&key) {
                    report.bytes_freed += self.remove_template(&key)?;
                    report.removed_templates += 1;
                }
            }
        }

        for entry in fs_err::read_dir(self.initramfs_dir())? {
            let entry = entry?;
            let meta = entry.metadata()?;
            let idle = meta
                .modified()
                .ok()
                .and_then(|m| m.elapsed().ok())
                .unwrap_or_default();
            let name = entry.file_name().to_string_lossy().into_owned();
            // Leftover temporaries of an interrupted atomic write go too.
            if idle > INITRAMFS_MAX_IDLE
                || (name.starts_with('.') && idle > Duration::from_secs(3600))
            {
                report.bytes_freed += meta.len();
                fs_err::remove_file(entry.path())?;
                report.removed_initramfs += 1;
            }
        }
        Ok(report)
    }

    /// Records that `holder` (for example a workspace) uses the current blobs
    /// of environment `name`, so `prune` keeps them even after a re-pull.
    pub fn pin(&self, holder: &str, name: &str) -> Result<(), StoreError> {
        self.pin_with_template(holder, name, None)
    }

    /// [`EnvStore::pin`], keeping warm template `template` too.
    pub fn pin_with_template(
        &self,
        holder: &str,
        name: &str,
        template: Option<&str>,
    ) -> Result<(), StoreError> {
        let entry = lookup(name)?;
        let _gc = FileLock::acquire_within(&self.gc_lock_path(), false, GC_LOCK_PATIENCE)?;
        let manifest = self.require_manifest(entry)?;
        let digests: Vec<&str> = manifest
            .artifacts
            .iter()
            .iter()
            .map(|(_, a)| a.sha256.as_str())
            .collect();
        let pin = serde_json::json!({ "env": name, "blobs": digests, "template": template });
        let json = serde_json::to_vec_pretty(&pin).map_err(std::io::Error::other)?;
        fsutil::write_atomic(&self.pin_path(holder), &json, 0o644, self.owner)?;
        Ok(())
    }

    /// Drops a pin made with [`EnvStore::pin`]; unknown holders are ignored.
    pub fn unpin(&self, holder: &str) -> Result<(), StoreError> {
        match fs_err::remove_file(self.pin_path(holder)) {
            Err(err) if err.kind() != std::io::ErrorKind::NotFound => Err(err.into()),
            _ => Ok(()),
        }
    }

    fn referenced_digests(&self) -> Result<std::collections::HashSet<String>, StoreError> {
        let mut referenced = std::collections::HashSet::new();
        for dir in [self.envs_dir(), self.pins_dir()] {
            for entry in fs_err::read_dir(&dir)? {
                let path = entry?.path();
                if path.extension().is_none_or(|e| e != "json") {
                    continue;
                }
                // Collect every digest-shaped string, so a manifest or pin of
                // any schema keeps its blobs.
                let text = fs_err::read_to_string(&path)?;
                referenced.extend(
                    text.split(|c: char| !c.is_ascii_hexdigit())
                        .filter(|s| blob::is_digest(s))
                        .map(str::to_owned),
                );
            }
        }
        Ok(referenced)
    }

    /// Reads the manifest of `name`; `Ok(None)` when not pulled.
    fn read_manifest(&self, name: &str) -> Result<Option<Manifest>, StoreError> {
        let path = self.manifest_path(name);
        let text = match fs_err::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err.into()),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|source| StoreError::BadManifest {
                name: name.to_owned(),
                path,
                source,
            })
    }

    fn require_manifest(&self, entry: &CatalogEntry) -> Result<Manifest, StoreError> {
        self.read_manifest(entry.name)?
            .ok_or_else(|| StoreError::NotPulled {
                name: entry.name.to_owned(),
            })
    }

    fn manifest_path(&self, name: &str) -> PathBuf {
        self.envs_dir()
            .join(format!("{}.json", catalog::safe_name(name)))
    }

    fn pin_path(&self, holder: &str) -> PathBuf {
        self.pins_dir()
            .join(format!("{}.json", catalog::safe_name(holder)))
    }

    fn envs_dir(&self) -> PathBuf {
        self.root.join("envs")
    }

    fn pins_dir(&self) -> PathBuf {
        self.root.join("pins")
    }

    fn initramfs_dir(&self) -> PathBuf {
        self.root.join("initramfs")
    }

    fn locks_dir(&self) -> PathBuf {
        self.root.join("locks")
    }

    fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    fn pull_lock_path(&self, name: &str) -> PathBuf {
        self.locks_dir()
            .join(format!("{}.lock", catalog::safe_name(name)))
    }

    fn gc_lock_path(&self) -> PathBuf {
        self.locks_dir().join("gc.lock")
    }
}

/// The catalog entry for `name`, or the error listing the known ones.
fn lookup(name: &str) -> Result<&'static CatalogEntry, StoreError> {
    catalog::find(name).ok_or_else(|| StoreError::UnknownEnv {
        name: name.to_owned(),
        known: catalog::names(),
    })
}

fn installed_info(entry: &CatalogEntry, manifest: &Manifest) -> InstalledInfo {
    InstalledInfo {
        digest: manifest.artifacts.rootfs.sha256.chars().take(12).collect(),
        size_bytes: manifest.artifacts.total_size(),
        created_at: manifest.created_at.clone(),
        kernel_version: manifest.kernel.release.clone(),
        kernel_package_version: manifest.kernel.version.clone(),
        outdated: manifest.catalog_revision < entry.revision,
    }
}

#[cfg(test)]
mod tests;
