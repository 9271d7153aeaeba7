//! Warm templates: a booted, idle guest of an environment saved once (its
//! disk layer, its RAM, its device state), so a workspace can start by
//! restoring it instead of booting a kernel.
//!
//! ```text
//! <root>/templates/<key>/
//!   disk.qcow2      the guest's disk layer, over the environment's root image
//!   memory.ram      the guest's RAM, sparse; mapped copy-on-write by every
//!                   VM restored from it, so they share its pages
//!   state           device and CPU state (QEMU migration stream, RAM left out)
//!   template.json   what it was made from; written last
//! ```
//!
//! The key is a digest of everything that changes the saved guest
//! (computed by whoever boots it): environment, kernel, agent, kernel
//! command line, CPUs, memory, devices. A template is built in `tmp/` and
//! renamed into place whole, so a half-made one never looks valid. Its
//! files are read-only and never change; a workspace holding it pins its
//! key, and `prune` removes the rest. Workspaces copy the (small) disk
//! layer into their own directory, so removing a template never breaks a
//! disk; it only makes the next restore of it boot cold instead.

use std::path::{Path, PathBuf};

use pyro_util::fsutil::{self, FileLock, ScratchDir};
use serde::{Deserialize, Serialize};

use super::blob::{hash_file, is_digest};
use super::{EnvStore, StoreError};

const META: &str = "template.json";

/// What a template was made from, and what it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TemplateInfo {
    /// Digest of everything that changes the saved guest.
    pub key: String,
    /// Unique to this build: a template made again under the same key is
    /// another guest, whose RAM fits no disk of the one before.
    pub build: String,
    pub env: String,
    pub cpus: u32,
    pub memory_mib: u32,
    /// Whether the guest has a network device.
    pub network: bool,
    pub created_at: String,
    /// From starting the VM to the saved state, milliseconds.
    pub build_ms: u64,
    /// Bytes the RAM image really takes on disk (it is sparse).
    pub memory_bytes_on_disk: u64,
    pub state_size: u64,
    pub state_sha256: String,
}

/// A usable template's files.
#[derive(Debug, Clone)]
pub struct Template {
    pub dir: PathBuf,
    pub info: TemplateInfo,
}

impl Template {
    pub fn disk(&self) -> PathBuf {
        self.dir.join("disk.qcow2")
    }
    pub fn memory(&self) -> PathBuf {
        self.dir.join("memory.ram")
    }
    pub fn state(&self) -> PathBuf {
        self.dir.join("state")
    }
}

/// A template being built: its files go in a scratch directory until
/// [`EnvStore::publish_template`] moves them into place.
#[derive(Debug)]
pub struct TemplateBuild {
    scratch: ScratchDir,
}

impl TemplateBuild {
    pub fn dir(&self) -> &Path {
        self.scratch.path()
    }
    pub fn disk(&self) -> PathBuf {
        self.dir().join("disk.qcow2")
    }
    pub fn memory(&self) -> PathBuf {
        self.dir().join("memory.ram")
    }
    pub fn state(&self) -> PathBuf {
        self.dir().join("state")
    }
}

impl EnvStore {
    fn templates_dir(&self) -> PathBuf {
        self.root.join("templates")
    }

    /// Serialises the building of one template across processes.
    pub fn template_lock(&self, key: &str) -> std::io::Result<Option<FileLock>> {
        fs_err::create_dir_all(self.locks_dir())?;
        FileLock::try_acquire(&self.locks_dir().join(format!("template-{key}.lock")), true)
    }

    /// The template `key`: `Ok(None)` when there is none, `Err(why)` when
    /// one is there but unusable (its files changed, cut short or missing).
    pub fn template(&self, key: &str) -> Result<Option<Template>, String> {
        let dir = self.templates_dir().join(key);
        if !dir.exists() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(dir.join(META))
            .map_err(|e| format!("its {META} is unreadable ({e})"))?;
        let info: TemplateInfo =
            serde_json::from_str(&text).map_err(|e| format!("its {META} is malformed ({e})"))?;
        let template = Template { dir, info };
        if template.info.key != key {
            return Err(format!(
                "it was made for another key ({})",
                template.info.key
            ));
        }
        let memory = std::fs::metadata(template.memory())
            .map_err(|e| format!("its memory image is unreadable ({e})"))?;
        if memory.len() != u64::from(template.info.memory_mib) << 20 {
            return Err(format!(
                "its memory image is {} bytes, not the {} MiB it was saved with",
                memory.len(),
                template.info.memory_mib
            ));
        }
        if !template.disk().is_file() {
            return Err("its disk layer is missing".into());
        }
        let (digest, size) =
            hash_file(&template.state()).map_err(|e| format!("its state is unreadable ({e})"))?;
        if size != template.info.state_size || digest != template.info.state_sha256 {
            return Err("its saved state does not match what was recorded".into());
        }
        Ok(Some(template))
    }

    /// Starts building a template.
    pub fn start_template(&self) -> std::io::Result<TemplateBuild> {
        Ok(TemplateBuild {
            scratch: ScratchDir::create(&self.tmp_dir(), "template")?,
        })
    }

    /// Moves a finished build into place under `info.key` (its files made
    /// read-only, the state hashed into `info`), replacing an unusable one.
    pub fn publish_template(
        &self,
        build: TemplateBuild,
        mut info: TemplateInfo,
    ) -> Result<Template, StoreError> {
        let (digest, size) = hash_file(&build.state())?;
        info.state_sha256 = digest;
        info.state_size = size;
        // The RAM image stays owner-writable: QEMU opens it for writing
        // even to map it copy-on-write. Nothing writes it after this.
        for (file, mode) in [
            (build.disk(), 0o444),
            (build.memory(), 0o644),
            (build.state(), 0o444),
        ] {
            fs_err::File::open(&file)?.sync_all()?;
            std::fs::set_permissions(&file, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
        }
        let json = serde_json::to_vec_pretty(&info).map_err(std::io::Error::other)?;
        fsutil::write_atomic(&build.dir().join(META), &json, 0o444, self.owner)?;
        let dir = self.templates_dir().join(&info.key);
        fs_err::create_dir_all(self.templates_dir())?;
        if dir.exists() {
            fsutil::remove_tree(&dir)?;
        }
        fs_err::rename(build.dir(), &dir)?;
        Ok(Template { dir, info })
    }

    /// Removes template `key` (an unusable one, or for `prune`); VMs that
    /// map its files keep them until they end. Returns the bytes freed.
    pub fn remove_template(&self, key: &str) -> std::io::Result<u64> {
        let dir = self.templates_dir().join(key);
        let bytes = fsutil::tree_size(&dir);
        match fsutil::remove_tree(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(bytes),
        }
    }

    /// Every template in the store (readable ones), oldest first.
    pub fn templates(&self) -> Vec<TemplateInfo> {
        let Ok(entries) = std::fs::read_dir(self.templates_dir()) else {
            return Vec::new();
        };
        let mut found: Vec<TemplateInfo> = entries
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join(META)).ok())
            .filter_map(|text| serde_json::from_str(&text).ok())
            .collect();
        found.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        found
    }

    /// Keys of every template directory, readable or not.
    pub(super) fn template_keys(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.templates_dir()) else {
            return Vec::new();
        };
        entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| is_digest(name))
            .collect()
    }
}
