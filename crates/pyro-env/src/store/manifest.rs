//! The manifest of an installed environment, `envs/<safe-name>.json`.
//!
//! It names the blobs by digest and records how they were made. It is the
//! last thing a pull writes (atomically), so its presence means every blob it
//! names was already in place when it was written.

use serde::{Deserialize, Serialize};

/// Bumped if the manifest layout changes incompatibly.
pub const SCHEMA: u32 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    pub schema: u32,
    pub name: String,
    /// The [`crate::CatalogEntry::revision`] this was built from.
    pub catalog_revision: u32,
    pub suite: String,
    /// Packages requested on top of `minbase`.
    pub packages: Vec<String>,
    pub kernel: KernelInfo,
    /// Boot modules in load order, as in `pyro/modules.order`.
    pub modules: Vec<String>,
    /// `mmdebstrap` or `debootstrap`.
    pub bootstrapper: String,
    /// RFC 3339, UTC.
    pub created_at: String,
    pub artifacts: Artifacts,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelInfo {
    /// e.g. `linux-image-6.1.0-56-amd64`.
    pub package: String,
    /// e.g. `6.1.192-2`.
    pub version: String,
    /// e.g. `6.1.0-56-amd64`.
    pub release: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifacts {
    pub vmlinux: Artifact,
    #[serde(rename = "modules.cpio")]
    pub modules_cpio: Artifact,
    #[serde(rename = "rootfs.qcow2")]
    pub rootfs: Artifact,
}

impl Artifacts {
    /// (file name, artifact) pairs, in a stable order.
    pub fn iter(&self) -> [(&'static str, &Artifact); 3] {
        [
            ("vmlinux", &self.vmlinux),
            ("modules.cpio", &self.modules_cpio),
            ("rootfs.qcow2", &self.rootfs),
        ]
    }

    pub fn total_size(&self) -> u64 {
        self.iter().iter().map(|(_, a)| a.size).sum()
    }
}

/// One content-addressed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Artifact {
    /// Lower-case hex SHA-256 of the file; also its name under `blobs/sha256/`.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// For disk images: the size the guest sees.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_size: Option<u64>,
}
