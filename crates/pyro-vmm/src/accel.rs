//! Choosing between KVM and TCG software emulation.
//!
//! `/dev/kvm` existing is not enough: on nested page-table KVM (`kvm_pvm`,
//! as on pyro's development machines) QEMU opens it, creates a VM and then
//! hangs booting a stock kernel. So the verdict comes in two steps: cheap
//! checks that explain the common failures (no device, no permission, the
//! known-bad `kvm_pvm` module), then one real boot of a trivial guest with a
//! short deadline, whose verdict is cached per host kernel so it costs once.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How the guest CPU is run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Accel {
    /// Hardware virtualisation through `/dev/kvm`.
    Kvm,
    /// QEMU's software emulation: works everywhere, several times slower.
    Tcg,
}

impl Accel {
    pub fn as_str(self) -> &'static str {
        match self {
            Accel::Kvm => "kvm",
            Accel::Tcg => "tcg",
        }
    }
}

/// What is known about KVM on this host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum KvmStatus {
    /// A trivial guest booted under KVM.
    Usable,
    /// No `/dev/kvm`.
    Missing,
    /// `/dev/kvm` exists but this user cannot open it.
    NoPermission,
    /// Nested page-table KVM (`kvm_pvm`) that cannot boot a stock kernel.
    NestedPvm,
    /// The boot probe failed; `detail` says how.
    BootFailed { detail: String },
    /// Cheap checks passed but no boot probe has run yet.
    NotProbed,
    /// `PYRO_ACCEL=tcg` asked for software emulation.
    Disabled,
}

impl KvmStatus {
    /// One line for `pyro doctor`.
    pub fn describe(&self) -> String {
        match self {
            KvmStatus::Usable => "usable".into(),
            KvmStatus::Missing => "missing: /dev/kvm does not exist".into(),
            KvmStatus::NoPermission => "no permission to open /dev/kvm".into(),
            KvmStatus::NestedPvm => {
                "present but unusable: nested page-table KVM (kvm_pvm) cannot boot stock kernels"
                    .into()
            }
            KvmStatus::BootFailed { detail } => {
                format!("present but a test guest failed to boot: {detail}")
            }
            KvmStatus::NotProbed => "present; a test boot runs on first use".into(),
            KvmStatus::Disabled => "disabled by PYRO_ACCEL=tcg".into(),
        }
    }

    /// What the user can do about it, when anything.
    pub fn fix(&self) -> Option<String> {
        match self {
            KvmStatus::Missing => Some(
                "enable virtualisation in the firmware or use a host with nested virtualisation, then `modprobe kvm_intel` or `modprobe kvm_amd`; pyro falls back to slower TCG meanwhile".into(),
            ),
            KvmStatus::NoPermission => Some(
                "add yourself to the kvm group: sudo usermod -aG kvm $USER (then log in again)".into(),
            ),
            KvmStatus::NestedPvm | KvmStatus::BootFailed { .. } => Some(
                "nothing to do: pyro uses TCG software emulation here (slower); a host with regular KVM is several times faster".into(),
            ),
            _ => None,
        }
    }
}

/// The accelerator chosen and why.
#[derive(Debug, Clone, Serialize)]
pub struct AccelReport {
    pub kvm: KvmStatus,
    pub chosen: Accel,
}

/// Checks that need no boot. `Ok(())` means KVM might work and a boot probe
/// decides.
pub fn kvm_static_check() -> Result<(), KvmStatus> {
    check_paths(Path::new("/dev/kvm"), Path::new("/sys/module/kvm_pvm"))
}

fn check_paths(dev: &Path, pvm_module: &Path) -> Result<(), KvmStatus> {
    if !dev.exists() {
        return Err(KvmStatus::Missing);
    }
    if pvm_module.exists() {
        return Err(KvmStatus::NestedPvm);
    }
    match std::fs::OpenOptions::new().read(true).write(true).open(dev) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Err(KvmStatus::NoPermission),
        Err(e) => Err(KvmStatus::BootFailed {
            detail: format!("cannot open /dev/kvm: {e}"),
        }),
    }
}

/// The `PYRO_ACCEL` override, if set to `kvm` or `tcg`.
pub fn accel_override() -> Option<Accel> {
    match std::env::var("PYRO_ACCEL")
        .ok()?
        .to_ascii_lowercase()
        .as_str()
    {
        "kvm" => Some(Accel::Kvm),
        "tcg" => Some(Accel::Tcg),
        _ => None,
    }
}

/// Cached boot-probe verdicts, one file per host kernel.
#[derive(Debug, Clone)]
pub struct ProbeCache {
    path: PathBuf,
}

#[derive(Debug, Serialize, Deserialize)]
struct CachedVerdict {
    host_kernel: String,
    status: KvmStatus,
}

impl ProbeCache {
    pub fn new(dir: &Path) -> Self {
        ProbeCache {
            path: dir.join("kvm-probe.json"),
        }
    }

    /// The verdict recorded for the running host kernel.
    pub fn get(&self) -> Option<KvmStatus> {
        let text = std::fs::read_to_string(&self.path).ok()?;
        let cached: CachedVerdict = serde_json::from_str(&text).ok()?;
        (cached.host_kernel == host_kernel_id()).then_some(cached.status)
    }

    /// Records a verdict for the running host kernel (best effort, atomic).
    pub fn put(&self, status: &KvmStatus) {
        let cached = CachedVerdict {
            host_kernel: host_kernel_id(),
            status: status.clone(),
        };
        let Ok(json) = serde_json::to_vec_pretty(&cached) else {
            return;
        };
        let tmp = self
            .path
            .with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, json).is_ok() && std::fs::rename(&tmp, &self.path).is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

/// Identifies the host kernel build: release plus version string.
fn host_kernel_id() -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    format!(
        "{} {}",
        read("/proc/sys/kernel/osrelease").trim(),
        read("/proc/sys/kernel/version").trim()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_device_and_pvm_are_recognised_without_booting() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("kvm");
        let pvm = dir.path().join("kvm_pvm");
        assert_eq!(check_paths(&dev, &pvm), Err(KvmStatus::Missing));
        std::fs::write(&dev, b"").unwrap();
        std::fs::create_dir(&pvm).unwrap();
        assert_eq!(check_paths(&dev, &pvm), Err(KvmStatus::NestedPvm));
    }

    #[test]
    fn probe_cache_round_trips_for_this_kernel() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ProbeCache::new(dir.path());
        assert_eq!(cache.get(), None);
        cache.put(&KvmStatus::Usable);
        assert_eq!(cache.get(), Some(KvmStatus::Usable));
    }
}
