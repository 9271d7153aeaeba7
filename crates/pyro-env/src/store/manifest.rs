//! The manifest of an installed environment, `envs/<safe-name>.json`.
//!
//! It names the blobs by digest and records how they were made. It is the
//! last thing a pull writes (atomically), so its presence means every blob it
//! names was already in place when it was written.

use std::time::SystemTime;

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

/// Formats a time as RFC 3339 in UTC with second precision.
pub fn rfc3339(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        rem % 3_600 / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_rfc3339() {
        let at = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(rfc3339(at(0)), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(at(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(at(1_763_719_545)), "2025-11-21T10:05:45Z");
    }
}
