//! Warm templates: a booted, idle guest of an environment saved once (its
//! disk layer, its RAM, its device state), so a workspace can start by
//! restoring it instead of booting a kernel.
//!
//! ```text
//! <root>/templates/<key>.<build>/
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
//! renamed into place whole, so a half-made one never looks valid. Each
//! build has a directory of its own, never reused: a restore of build B
//! maps B's RAM or nothing, even while a template found unusable is made
//! again beside it. Nothing writes its files after it is published (QEMU
//! still opens `memory.ram` for writing to map it copy-on-write, so that
//! one is 0644); a workspace holding it pins its key, and `prune` removes
//! the rest. Workspaces copy the (small) disk layer into their own
//! directory, so removing a template never breaks a disk; it only makes
//! the next restore or reset of it boot cold instead.

use std::path::{Path, PathBuf};

use pyro_util::fsutil::{self, FileLock, ScratchDir};
use serde::{Deserialize, Serialize};

use super::blob::{hash_file, is_digest};
use super::{EnvStore, StoreError};

const META: &str = "template.json";
const DISK: &str = "disk.qcow2";
const MEMORY: &str = "memory.ram";
const STATE: &str = "state";

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
        self.dir.join(DISK)
    }
    pub fn memory(&self) -> PathBuf {
        self.dir.join(MEMORY)
    }
    pub fn state(&self) -> PathBuf {
        self.dir.join(STATE)
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
        self.dir().join(DISK)
    }
    pub fn memory(&self) -> PathBuf {
        self.dir().join(MEMORY)
    }
    pub fn state(&self) -> PathBuf {
        self.dir().join(STATE)
    }
}

impl EnvStore {
    pub(super) fn templates_dir(&self) -> PathBuf {
        self.root.join("templates")
    }

    /// Serialises the making of templates across processes (one lock
    /// file for all: they are made rarely).
    pub fn template_lock(&self) -> std::io::Result<Option<FileLock>> {
        fs_err::create_dir_all(self.locks_dir())?;
        FileLock::try_acquire(&self.locks_dir().join("templates.lock"), true)
    }

    /// The newest build of template `key`: `Ok(None)` when there is none,
    /// `Err` when it is there but unusable (its files changed, cut short
    /// or missing).
    pub fn template(&self, key: &str) -> Result<Option<Template>, Unusable> {
        let mut builds = self.template_dirs(key);
        builds.sort_by_key(|(_, dir)| std::fs::metadata(dir).and_then(|m| m.modified()).ok());
        match builds.pop() {
            None => Ok(None),
            Some((build, _)) => self.template_build(key, &build).map(Some),
        }
    }

    /// Build `build` of template `key`, checked.
    pub fn template_build(&self, key: &str, build: &str) -> Result<Template, Unusable> {
        let dir = self.templates_dir().join(format!("{key}.{build}"));
        check_template(dir, key, build).map_err(|why| Unusable {
            build: build.to_string(),
            why,
        })
    }

    /// `(key, build, dir)` of every template directory, readable or not.
    fn template_entries(&self) -> Vec<(String, String, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(self.templates_dir()) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let (key, build) = name.split_once('.')?;
                is_digest(key).then(|| (key.to_string(), build.to_string(), e.path()))
            })
            .collect()
    }

    /// `(build, dir)` of every build of `key`.
    fn template_dirs(&self, key: &str) -> Vec<(String, PathBuf)> {
        let entries = self.template_entries().into_iter();
        let builds = entries.filter(|(k, _, _)| k == key);
        builds.map(|(_, build, dir)| (build, dir)).collect()
    }

    /// Starts building a template.
    pub fn start_template(&self) -> std::io::Result<TemplateBuild> {
        Ok(TemplateBuild {
            scratch: ScratchDir::create(&self.tmp_dir(), "template")?,
        })
    }

    /// Moves a finished build into a directory of its own,
    /// `<info.key>.<info.build>` (its files made read-only but the RAM
    /// image, the state hashed into `info`).
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
        let dir = self
            .templates_dir()
            .join(format!("{}.{}", info.key, info.build));
        fs_err::create_dir_all(self.templates_dir())?;
        // Built as root for another user's store: theirs to use and prune.
        let files = [
            build.disk(),
            build.memory(),
            build.state(),
            build.dir().join(META),
        ];
        for path in [self.templates_dir(), build.dir().to_path_buf()]
            .iter()
            .chain(&files)
        {
            self.owner.adopt(path)?;
        }
        fs_err::rename(build.dir(), &dir)?;
        Ok(Template { dir, info })
    }

    /// Removes build `build` of template `key` (found unusable); VMs that
    /// map its files keep them until they end. Returns the bytes freed.
    pub fn remove_template_build(&self, key: &str, build: &str) -> std::io::Result<u64> {
        let dir = self.templates_dir().join(format!("{key}.{build}"));
        let bytes = fsutil::tree_size(&dir);
        match fsutil::remove_tree(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(bytes),
        }
    }

    /// Removes every build of template `key` (for `prune`).
    pub(super) fn remove_template(&self, key: &str) -> std::io::Result<u64> {
        let mut freed = 0;
        for (build, _) in self.template_dirs(key) {
            freed += self.remove_template_build(key, &build)?;
        }
        Ok(freed)
    }

    /// Every template in the store (readable ones), oldest first.
    pub fn templates(&self) -> Vec<TemplateInfo> {
        let mut found: Vec<TemplateInfo> = self
            .template_entries()
            .into_iter()
            .filter_map(|(_, _, dir)| std::fs::read_to_string(dir.join(META)).ok())
            .filter_map(|text| serde_json::from_str(&text).ok())
            .collect();
        found.sort_by(|a, b| a.created_at.cmp(&b.created_at));
        found
    }

    /// Keys of every template directory, readable or not.
    pub(super) fn template_keys(&self) -> Vec<String> {
        let entries = self.template_entries().into_iter();
        let mut keys: Vec<String> = entries.map(|(key, _, _)| key).collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

/// Why a template cannot be used.
#[derive(Debug, Clone)]
pub struct Unusable {
    /// The build found unusable.
    pub build: String,
    pub why: String,
}

impl std::fmt::Display for Unusable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.why)
    }
}

/// Reads and checks a template directory.
fn check_template(dir: PathBuf, key: &str, build: &str) -> Result<Template, String> {
    if !dir.is_dir() {
        return Err("it is gone".into());
    }
    let text = std::fs::read_to_string(dir.join(META))
        .map_err(|e| format!("its {META} is unreadable ({e})"))?;
    let info: TemplateInfo =
        serde_json::from_str(&text).map_err(|e| format!("its {META} is malformed ({e})"))?;
    let template = Template { dir, info };
    if template.info.key != key || template.info.build != build {
        return Err("its template.json names another template".into());
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
    Ok(template)
}
