//! Warm templates: boots a guest of an environment once, saves it idle
//! (disk layer, RAM, device state) into the environment store, and gives
//! the spec that restores a workspace's VM from it.
//!
//! The template's VM is the workspace's VM to the byte: the same spec
//! ([`Machine::workspace_spec`]), save for the disk file and the RAM, which
//! the template VM writes into its own file (`share=on`) so that every
//! restored VM maps that file copy-on-write and shares its pages.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use pyro_env::{Template, TemplateInfo};
use pyro_vmm::{DiskFormat, GuestRam, RootDisk, SeedDisk, VmSpec};

use super::boot::{boot, BootError};
use super::guest::Guest;
use super::machine::Machine;

/// Work on a guest, borrowed for the future's life.
pub(crate) type GuestWork<'a> = Box<
    dyn for<'g> FnOnce(
            &'g Guest,
        ) -> std::pin::Pin<
            Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'g>,
        > + Send
        + 'a,
>;

/// What the template's guest does once up, before it is saved (the
/// facade records the empty /workspace's diff baseline there), and a text
/// that changes whenever that does (it goes into the key).
pub(crate) struct Prepare<'a> {
    pub tag: &'a str,
    pub run: GuestWork<'a>,
}

/// The size of every VM's seed disk slot, and so the largest seed image: the
/// root disk's size.
pub(crate) const SEED_SLOT_BYTES: u64 = pyro_env::rootfs::VIRTUAL_SIZE;

/// The size of the transfer slot, and so the largest export through it.
pub(crate) const TRANSFER_SLOT_BYTES: u64 = SEED_SLOT_BYTES;

/// A seed slot with no seed in it.
pub(crate) fn empty_seed_slot() -> SeedDisk {
    SeedDisk::Empty {
        bytes: SEED_SLOT_BYTES,
    }
}

/// Bumped whenever what a template holds changes shape.
const FORMAT: &str = "pyro-template-2";
/// How often a waiter for another process's build looks again.
const LOCK_POLL: Duration = Duration::from_millis(100);
/// How long a create waits for another's template before booting cold.
const LOCK_WAIT: Duration = Duration::from_secs(300);
/// How long the template's guest may take to prepare, and to sync.
const PREPARE_LIMIT: Duration = Duration::from_secs(120);

/// Why a template could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    #[error("template store i/o failed")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Store(#[from] pyro_env::StoreError),
    #[error("making its disk layer failed")]
    Disk(#[from] pyro_vmm::disk::DiskError),
    #[error("its VM did not boot")]
    Boot(#[from] BootError),
    #[error("saving its VM failed")]
    Save(#[source] pyro_vmm::EngineError),
    #[error("preparing its guest failed: {0}")]
    Prepare(String),
    #[error("another process has been making a template for over {}s", LOCK_WAIT.as_secs())]
    Busy,
}

/// The shape of VM a template is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shape {
    pub cpus: u32,
    pub memory_mib: u32,
    /// With a network device.
    pub network: bool,
}

impl Machine {
    /// The spec of a workspace VM of `shape` writing to `disk`, with the
    /// seed disk slot `seed` (every VM a template may restore into has one;
    /// workspaces made before seed disks have none).
    pub(crate) fn workspace_spec(
        &self,
        disk: PathBuf,
        shape: Shape,
        seed: Option<SeedDisk>,
        console_log: Option<PathBuf>,
    ) -> VmSpec {
        let mut spec = self.spec(
            Some(RootDisk::Persistent {
                path: disk,
                format: DiskFormat::Qcow2,
            }),
            shape.cpus,
            shape.memory_mib,
            console_log,
        );
        if shape.network {
            super::network::add_nic(&mut spec);
        }
        // The VMs with a seed slot (every one since seed disks) have a
        // transfer slot after it too.
        if seed.is_some() {
            let device = pyro_protocol::seed::DEVICE;
            spec.extra_cmdline.push(format!("pyro.seed={device}"));
            spec.transfer_slot = Some(TRANSFER_SLOT_BYTES);
        }
        spec.seed_disk = seed;
        spec
    }

    /// The template key of a VM of `shape`: a digest of everything that
    /// changes the guest it saves.
    pub(crate) fn template_key(&self, shape: Shape, prepare_tag: &str) -> String {
        let spec = self.workspace_spec(PathBuf::new(), shape, Some(empty_seed_slot()), None);
        let qemu = &self.engine.install().binary;
        let qemu_stamp = std::fs::metadata(qemu)
            .map(|m| format!("{}:{:?}", m.len(), m.modified().ok()))
            .unwrap_or_default();
        let words = [
            FORMAT.to_string(),
            self.env.clone(),
            self.artifacts.rootfs_sha256.clone(),
            self.artifacts.kernel.display().to_string(),
            self.artifacts.initramfs.display().to_string(),
            // Machine, CPU, devices, sizes and the kernel command line,
            // with the RAM in a file as a restore maps it.
            pyro_vmm::qemu::machine_signature(&VmSpec {
                ram: GuestRam::File {
                    path: PathBuf::new(),
                    shared: false,
                },
                ..spec.clone()
            }),
            format!("qemu={} {qemu_stamp}", qemu.display()),
            // Under KVM the guest sees the host's CPU (`-cpu host`).
            match spec.accel {
                pyro_vmm::Accel::Kvm => host_cpu(),
                pyro_vmm::Accel::Tcg => String::new(),
            },
            prepare_tag.to_string(),
        ];
        // Each part behind its length: no two lists hash alike.
        let framed: Vec<String> = words.iter().map(|w| format!("{}:{w}", w.len())).collect();
        let parts: Vec<&[u8]> = framed.iter().map(|w| w.as_bytes()).collect();
        pyro_env::hash_bytes(&parts)
    }

    /// The spec that restores a workspace VM (writing to `disk`, an overlay
    /// over the template's disk layer) from `template`.
    pub(crate) fn restore_spec(&self, mut spec: VmSpec, template: &Template) -> VmSpec {
        spec.ram = GuestRam::File {
            path: template.memory(),
            shared: false,
        };
        spec.restore_from = Some(template.state());
        spec
    }
}

/// What became of a request for a template.
pub(crate) enum Found {
    /// It was there.
    Ready(Template),
    /// It was made now, in this long.
    Built(Template, Duration),
}

impl Found {
    pub(crate) fn template(&self) -> &Template {
        match self {
            Found::Ready(t) | Found::Built(t, _) => t,
        }
    }
}

/// The template of `shape`, made first when there is none (calling
/// `building` before it starts, and `prepare` in its guest). An unusable
/// one is removed and made again. Concurrent callers build it once.
pub(crate) async fn find_or_build(
    machine: &Machine,
    shape: Shape,
    prepare: Prepare<'_>,
    building: &mut (dyn FnMut() + Send),
) -> Result<Found, TemplateError> {
    let key = machine.template_key(shape, prepare.tag);
    let store = &machine.store;
    if let Ok(Some(template)) = store.template(&key) {
        return Ok(Found::Ready(template));
    }
    let waited = Instant::now();
    let _lock = loop {
        match store.template_lock()? {
            Some(lock) => break lock,
            None if waited.elapsed() > LOCK_WAIT => return Err(TemplateError::Busy),
            None => tokio::time::sleep(LOCK_POLL).await,
        }
    };
    // Made by whoever held the lock, maybe.
    match store.template(&key) {
        Ok(Some(template)) => return Ok(Found::Ready(template)),
        Ok(None) => {}
        Err(unusable) => {
            eprintln!(
                "pyro: the warm template {} is unusable ({unusable}); making it again",
                &key[..12]
            );
            store.remove_template_build(&key, &unusable.build)?;
        }
    }
    building();
    let started = Instant::now();
    let template = build(machine, shape, key, prepare).await?;
    Ok(Found::Built(template, started.elapsed()))
}

async fn build(
    machine: &Machine,
    shape: Shape,
    key: String,
    prepare: Prepare<'_>,
) -> Result<Template, TemplateError> {
    let store = &machine.store;
    let scratch = store.start_template()?;
    pyro_vmm::disk::create_overlay(
        &machine.artifacts.rootfs,
        DiskFormat::Qcow2,
        &scratch.disk(),
    )?;
    let mut spec = machine.workspace_spec(
        scratch.disk(),
        shape,
        Some(empty_seed_slot()),
        Some(scratch.dir().join("console.log")),
    );
    spec.ram = GuestRam::File {
        path: scratch.memory(),
        shared: true,
    };
    let started = Instant::now();
    let mut booted = boot(&machine.engine, &spec).await?;
    let late = |what: &str| {
        TemplateError::Prepare(format!(
            "{what} took longer than {}s",
            PREPARE_LIMIT.as_secs()
        ))
    };
    tokio::time::timeout(PREPARE_LIMIT, (prepare.run)(&booted.guest))
        .await
        .map_err(|_| late("preparing the guest"))?
        .map_err(TemplateError::Prepare)?;
    // The disk layer on its own is then a sound disk too: a workspace
    // whose restore fails boots it cold.
    tokio::time::timeout(PREPARE_LIMIT, booted.guest.sync())
        .await
        .map_err(|_| late("syncing the guest"))?
        .map_err(|e| TemplateError::Prepare(e.to_string()))?;
    let state = scratch.state();
    // RAM stays in its file: the state is small and quick to write.
    let saved = booted.vm.save(&state);
    booted.vm.kill();
    saved.map_err(TemplateError::Save)?;
    let info = TemplateInfo {
        key,
        build: pyro_util::fsutil::unique_suffix(),
        env: machine.env.clone(),
        cpus: shape.cpus,
        memory_mib: shape.memory_mib,
        network: shape.network,
        created_at: pyro_util::rfc3339(std::time::SystemTime::now()),
        build_ms: started.elapsed().as_millis() as u64,
        memory_bytes_on_disk: pyro_util::fsutil::tree_size(&scratch.memory()),
        state_size: 0,
        state_sha256: String::new(),
    };
    // The disk the VM wrote is frozen: the keeper's, written by no VM.
    let _ = pyro_vmm::qemu::freeze_layer(&scratch.disk());
    Ok(store.publish_template(scratch, info)?)
}

/// The host CPU's model and flags, and the host kernel: what a KVM
/// guest's saved CPU state depends on.
fn host_cpu() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let first = |field: &str| {
        cpuinfo
            .lines()
            .find(|l| l.starts_with(field))
            .unwrap_or_default()
            .to_string()
    };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!(
        "{} {} {}",
        first("model name"),
        first("flags"),
        kernel.trim()
    )
}
