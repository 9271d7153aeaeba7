//! Picking KVM or TCG for this host, probing KVM with one real boot when the
//! cheap checks cannot decide.

use std::path::{Path, PathBuf};
use std::time::Duration;

use pyro_vmm::accel::{accel_override, kvm_static_check, ProbeCache};
use pyro_vmm::{Accel, AccelReport, Engine, KvmStatus, VmSpec};

/// How long a trivial guest may take to power off under KVM before KVM is
/// declared unusable. A working KVM host does it in well under a second.
const PROBE_DEADLINE: Duration = Duration::from_secs(6);

/// A kernel and an agent-only initramfs to boot the probe guest with.
pub(crate) struct ProbeImage {
    pub kernel: PathBuf,
    pub initramfs: PathBuf,
}

/// [`choose`] with the probe guest booted from `kernel` and the store's
/// agent-only initramfs.
pub(crate) fn for_kernel(
    cache_dir: &Path,
    engine: &dyn Engine,
    store: &pyro_env::EnvStore,
    kernel: &Path,
) -> AccelReport {
    choose(cache_dir, engine, || {
        let initramfs = store.agent_only_initramfs(super::agent_image::AGENT).ok()?;
        Some(ProbeImage {
            kernel: kernel.to_path_buf(),
            initramfs,
        })
    })
}

/// Decides the accelerator. With no cached verdict for this host kernel and
/// a probe image from `probe_image`, boots a trivial guest under KVM once and
/// caches how it went; without an image, an unprobed KVM reads as
/// `NotProbed` and TCG is used.
pub(crate) fn choose(
    cache_dir: &Path,
    engine: &dyn Engine,
    probe_image: impl FnOnce() -> Option<ProbeImage>,
) -> AccelReport {
    if let Some(forced) = accel_override() {
        let kvm = if forced == Accel::Tcg {
            KvmStatus::Disabled
        } else {
            KvmStatus::Usable
        };
        return AccelReport {
            kvm,
            chosen: forced,
        };
    }
    if let Err(status) = kvm_static_check() {
        return AccelReport {
            kvm: status,
            chosen: Accel::Tcg,
        };
    }
    let cache = ProbeCache::new(cache_dir);
    let status = match cache.get() {
        Some(status) => status,
        None => match probe_image() {
            Some(image) => {
                let status = boot_probe(engine, &image);
                cache.put(&status);
                status
            }
            None => KvmStatus::NotProbed,
        },
    };
    let chosen = if status == KvmStatus::Usable {
        Accel::Kvm
    } else {
        Accel::Tcg
    };
    AccelReport {
        kvm: status,
        chosen,
    }
}

fn boot_probe(engine: &dyn Engine, image: &ProbeImage) -> KvmStatus {
    let spec = VmSpec {
        kernel: image.kernel.clone(),
        initramfs: image.initramfs.clone(),
        root_disk: None,
        cpus: 1,
        memory_mib: 128,
        ram: pyro_vmm::GuestRam::Anonymous,
        extra_cmdline: vec!["pyro.mode=poweroff".into()],
        accel: Accel::Kvm,
        restore_from: None,
        console_log: None,
        network: false,
        seed_disk: None,
        transfer_slot: None,
        file_size_limit: None,
        disk_roots: Vec::new(),
        layer_dir: None,
    };
    let mut vm = match engine.start(&spec) {
        Ok(vm) => vm,
        Err(e) => {
            return KvmStatus::BootFailed {
                detail: e.to_string(),
            }
        }
    };
    match vm.wait_timeout(PROBE_DEADLINE) {
        Some(exit) if exit.code == Some(0) => KvmStatus::Usable,
        Some(exit) => KvmStatus::BootFailed {
            detail: format!(
                "QEMU ended with {exit}: {}",
                vm.console().tail(3).join(" | ")
            ),
        },
        None => {
            vm.kill();
            KvmStatus::BootFailed {
                detail: format!("no power-off within {}s", PROBE_DEADLINE.as_secs()),
            }
        }
    }
}
