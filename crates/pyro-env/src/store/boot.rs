//! What a VM boots from: the kernel, an initramfs (agent + modules) and the
//! root image, checked and assembled on every `pyro run`, so it must stay
//! cheap: stat calls and stamp reads, a hash of the agent, and a cached
//! initramfs.
//!
//! The initramfs is two cpio archives back to back (the kernel unpacks each
//! in turn): first the agent's, holding `init` (the agent, 0755), `dev/` and
//! `dev/console`; then the environment's `modules.cpio` as stored. It is
//! cached as `initramfs/<sha256(agent ++ modules digest)>.cpio`.

use std::path::{Path, PathBuf};
use std::time::SystemTime;

use pyro_util::fsutil;
use serde::Serialize;

use super::blob::{hash_bytes, BlobState};
use super::{lookup, EnvStore, StoreError};
use crate::cpio::CpioWriter;

/// Files to hand to the VM engine.
#[derive(Debug, Clone, Serialize)]
pub struct BootArtifacts {
    /// Uncompressed ELF `vmlinux` (PVH boot).
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
    /// Read-only base image; put an overlay on it, never write it.
    pub rootfs: PathBuf,
    /// Always `"qcow2"`.
    pub rootfs_format: &'static str,
    /// `uname -r` in the guest.
    pub kernel_release: String,
    /// SHA-256 of the root image, for overlays and pins to refer to.
    pub rootfs_sha256: String,
    /// Size the guest sees for its root disk.
    pub rootfs_virtual_size: u64,
}

impl EnvStore {
    /// Checks environment `name` and returns what to boot it with, `agent`
    /// (the guest agent binary) becoming `/init`.
    pub fn boot_artifacts(&self, name: &str, agent: &[u8]) -> Result<BootArtifacts, StoreError> {
        let entry = lookup(name)?;
        let manifest = self.require_manifest(entry)?;
        for (artifact, blob) in manifest.artifacts.iter() {
            let state = self.blobs.verify(blob)?;
            if state != BlobState::Verified {
                return Err(StoreError::Corrupt {
                    name: entry.name.to_owned(),
                    artifact: artifact.to_owned(),
                    reason: state.reason(),
                });
            }
        }
        let a = &manifest.artifacts;
        let modules_path = self.blobs.path(&a.modules_cpio.sha256);
        let key = hash_bytes(&[agent, a.modules_cpio.sha256.as_bytes()]);
        let initramfs = self.initramfs_dir().join(format!("{key}.cpio"));
        if !refresh(&initramfs) {
            let mut bytes = agent_cpio(agent)?;
            bytes.extend_from_slice(&fs_err::read(&modules_path)?);
            fsutil::write_atomic(&initramfs, &bytes, 0o644, self.owner)?;
        }
        Ok(BootArtifacts {
            kernel: self.blobs.path(&a.vmlinux.sha256),
            initramfs,
            rootfs: self.blobs.path(&a.rootfs.sha256),
            rootfs_format: "qcow2",
            kernel_release: manifest.kernel.release.clone(),
            rootfs_sha256: a.rootfs.sha256.clone(),
            rootfs_virtual_size: a.rootfs.virtual_size.unwrap_or(crate::rootfs::VIRTUAL_SIZE),
        })
    }

    /// [`write_agent_only_initramfs`] into this store's initramfs cache.
    pub fn agent_only_initramfs(&self, agent: &[u8]) -> Result<PathBuf, StoreError> {
        let path = write_agent_only_initramfs(&self.initramfs_dir(), agent)?;
        self.owner.adopt(&path)?;
        Ok(path)
    }
}

/// Writes (or finds cached) an initramfs holding only the agent as `/init`
/// and no modules: the "floor" a benchmark boots to measure the VM without
/// an environment. Cached in `cache_dir` as `agent-<sha256(agent)>.cpio`.
pub fn write_agent_only_initramfs(cache_dir: &Path, agent: &[u8]) -> Result<PathBuf, StoreError> {
    let path = cache_dir.join(format!("agent-{}.cpio", hash_bytes(&[agent])));
    if !refresh(&path) {
        fs_err::create_dir_all(cache_dir)?;
        fsutil::write_atomic(&path, &agent_cpio(agent)?, 0o644, Default::default())?;
    }
    Ok(path)
}

/// The agent's archive: `init`, `dev/`, `dev/console` (so the kernel can
/// give PID 1 a console before devtmpfs is mounted).
fn agent_cpio(agent: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut cpio = CpioWriter::new();
    cpio.dir("dev", 0o755).map_err(StoreError::Initramfs)?;
    cpio.char_device("dev/console", 0o600, 5, 1)
        .map_err(StoreError::Initramfs)?;
    cpio.file("init", 0o755, agent)
        .map_err(StoreError::Initramfs)?;
    Ok(cpio.finish())
}

/// Whether a cached file exists; if so, marks it used (for `prune`).
fn refresh(path: &Path) -> bool {
    let Ok(file) = std::fs::File::options().append(true).open(path) else {
        return path.is_file();
    };
    let _ = file.set_modified(SystemTime::now());
    true
}
