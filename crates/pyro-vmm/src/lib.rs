//! The VM engine layer of pyro: a small [`Engine`] trait and the QEMU
//! `microvm` engine behind it.
//!
//! An engine turns a [`VmSpec`] (kernel, initramfs, root disk, size) into a
//! running [`Vm`] whose guest agent is reachable over one byte stream. It knows
//! nothing of environments, workspaces or the agent protocol; `pyro-core`
//! drives those over the stream. Engine differences (QEMU's virtio-serial
//! port, Firecracker's vsock handshake) stay behind the trait.
//!
//! Every VM process is tied to its owner: it dies when the thread that
//! started it dies (`PR_SET_PDEATHSIG`), runs in its own process group so a
//! terminal's Ctrl-C reaches only the owner, and is killed when its [`Vm`] is
//! dropped.

pub mod accel;
mod console;
pub mod disk;
pub mod qcow2;
pub mod qemu;

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use accel::{Accel, AccelReport, KvmStatus};
pub use console::ConsoleLog;
pub use qemu::{Confinement, Gap, QemuEngine, QemuInstall, Seccomp};

/// Everything an engine needs to boot one VM.
#[derive(Debug, Clone)]
pub struct VmSpec {
    /// Uncompressed kernel (`vmlinux`, PVH entry).
    pub kernel: PathBuf,
    /// Initramfs whose `/init` is the guest agent.
    pub initramfs: PathBuf,
    /// The root disk; `None` boots without one (benchmark floor, probes).
    pub root_disk: Option<RootDisk>,
    pub cpus: u32,
    pub memory_mib: u32,
    /// Where the guest's RAM lives.
    pub ram: GuestRam,
    /// Extra kernel command-line words appended to the engine's own.
    pub extra_cmdline: Vec<String>,
    pub accel: Accel,
    /// Resume from a state file written by [`Vm::save`] instead of booting.
    /// The spec must match the saved VM's (same kernel, sizes, devices) and
    /// its disk must hold the state it had when saved. With RAM in a file
    /// ([`GuestRam::File`]) the guest's memory comes from that file, which
    /// must be the one the saved VM wrote; otherwise from the state file.
    pub restore_from: Option<PathBuf>,
    /// Append the serial console to this file as well (capped).
    pub console_log: Option<PathBuf>,
    /// Give the guest a virtio-net device whose other end the caller serves
    /// ([`Vm::take_network_link`]); without it the guest has no network
    /// device at all.
    pub network: bool,
    /// A second, read-only disk after the root disk: a workspace's seed.
    pub seed_disk: Option<SeedDisk>,
    /// A third disk of this many bytes, read-write, whose file the caller
    /// changes while the VM runs ([`Vm::set_transfer_disk`]); zeros, backed
    /// by no file, until then.
    pub transfer_slot: Option<u64>,
    /// No file the VM process writes (its disk's top layer, a saved
    /// state) grows past this many bytes: a write past it fails in the
    /// guest ([`Vm::limit_file_size`] changes it while the VM runs).
    pub file_size_limit: Option<u64>,
    /// Directories the root disk's backing chain may lie in (pyro's
    /// stores): a backing file its headers name anywhere else stops the
    /// VM from starting jailed, since a QEMU that wrote the header could
    /// otherwise name any host file.
    pub disk_roots: Vec<PathBuf>,
    /// The directory the root disk's new layers are made in while the VM
    /// runs ([`Vm::snapshot_disk`], [`Vm::save_live`]): QEMU's jail holds
    /// it (and only the layers in it are its to write, once handed over).
    pub layer_dir: Option<PathBuf>,
}

/// The read-only seed disk slot of a VM. Its size is fixed by the caller,
/// so a VM saved with one kind restores with the other (the guest saw the
/// same device).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SeedDisk {
    /// No seed: `bytes` of zeros, backed by no file.
    Empty { bytes: u64 },
    /// A raw image file of exactly `bytes`.
    Image { path: PathBuf, bytes: u64 },
}

/// Where a guest's RAM lives.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum GuestRam {
    /// Anonymous host memory; a saved state holds it all.
    #[default]
    Anonymous,
    /// Mapped from a file. `shared`: the guest writes the file itself (a
    /// memory image being made), and a saved state leaves the RAM out, the
    /// file holding it. Not shared: the file is mapped copy-on-write
    /// (private), so many VMs share its pages and none changes it; QEMU
    /// still opens it for writing.
    File { path: PathBuf, shared: bool },
}

/// The guest's root block device.
#[derive(Debug, Clone)]
pub enum RootDisk {
    /// Writes go to a throw-away layer that the engine deletes as soon as the
    /// VM opened it; the base is never written.
    Ephemeral { base: PathBuf, format: DiskFormat },
    /// Writes go to this image (a workspace's own copy-on-write overlay).
    Persistent { path: PathBuf, format: DiskFormat },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskFormat {
    Raw,
    Qcow2,
}

impl DiskFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            DiskFormat::Raw => "raw",
            DiskFormat::Qcow2 => "qcow2",
        }
    }
}

/// Starts VMs.
pub trait Engine: Send + Sync {
    /// Short engine name for diagnostics (`qemu`).
    fn name(&self) -> &'static str;

    /// Boots a VM. Returns once the VM process runs; the guest is not ready
    /// until its agent says hello on [`Vm::take_agent_stream`].
    ///
    /// Call it from a thread that lives as long as the VM should: the VM is
    /// killed when that thread exits.
    fn start(&self, spec: &VmSpec) -> Result<Box<dyn Vm>, EngineError>;
}

/// One running VM. Dropping it kills the VM.
pub trait Vm: Send {
    /// Host process id of the VM process.
    fn pid(&self) -> u32;

    /// The byte stream to the guest agent; `None` after the first call.
    fn take_agent_stream(&mut self) -> Option<UnixStream>;

    /// The host end of the guest's network device, for a spec with
    /// `network`: Ethernet frames, each behind a 4-byte big-endian length.
    /// `None` without one, and after the first call.
    fn take_network_link(&mut self) -> Option<UnixStream>;

    /// What the guest printed on its serial console (the last 64 KiB),
    /// then the engine's own complaints, each line marked `[qemu]`.
    fn console(&self) -> ConsoleLog;

    /// What the engine itself wrote to its stderr (a host fact, unlike the
    /// console): a refused option, an image it cannot open.
    fn engine_said(&self) -> String {
        String::new()
    }

    /// Kills the VM at once and reaps it. Idempotent.
    fn kill(&mut self);

    /// Waits up to `timeout` for the VM process to exit by itself; returns its
    /// exit description when it did.
    fn wait_timeout(&mut self, timeout: Duration) -> Option<VmExit>;

    /// Pauses the VM and writes its whole state (CPU, devices, RAM) to
    /// `state`; the VM stays paused. Its disks are not included: the caller
    /// keeps them unchanged while paused. RAM in a shared file stays
    /// there, out of `state`.
    fn save(&mut self, state: &Path) -> Result<(), EngineError>;

    /// Writes the VM's whole state to `state` while it runs, pausing it
    /// only for the last stretch; there, with `new_top`, its root disk is
    /// frozen as it is and its writes move to the new qcow2 layer
    /// `new_top` (made over the current top), so the frozen disk and the
    /// saved memory are one instant. The VM runs on afterwards, also when
    /// the save failed. Returns how long the VM was paused.
    fn save_live(
        &mut self,
        state: &Path,
        new_top: Option<&Path>,
    ) -> Result<Duration, LiveSaveFailed>;

    /// Resumes a paused VM (also after a save: the VM carries on).
    fn resume(&mut self) -> Result<(), EngineError>;

    /// Pauses the VM's CPUs; [`Vm::resume`] lets them run again.
    fn pause(&mut self) -> Result<(), EngineError>;

    /// Freezes the root disk as it is and moves the VM's writes to a new
    /// qcow2 layer `new_top` over it. The VM is paused for the switch,
    /// so the frozen image is crash-consistent (flush the guest first for
    /// more). Only for `RootDisk::Persistent` disks.
    fn snapshot_disk(&mut self, new_top: &Path) -> Result<(), EngineError>;

    /// The root disk's size as the VM sees it, bytes.
    fn root_size(&mut self) -> Result<u64, EngineError> {
        Err(EngineError::NoPersistentDisk)
    }

    /// Grows the root disk to `bytes` while the VM runs (the guest is told
    /// its device grew; its filesystem is the caller's to grow).
    fn grow_root(&mut self, bytes: u64) -> Result<(), EngineError> {
        let _ = bytes;
        Err(EngineError::NoPersistentDisk)
    }

    /// Lets no file the VM process writes grow past `bytes` from now on
    /// (see [`VmSpec::file_size_limit`]).
    fn limit_file_size(&mut self, bytes: u64) -> Result<(), EngineError> {
        let _ = bytes;
        Ok(())
    }

    /// Points the transfer slot at the raw image `file` (read and written
    /// by the guest; at least the slot's size), or back at zeros with
    /// `None`. The guest must drop what it cached of the device.
    fn set_transfer_disk(&mut self, file: Option<&Path>) -> Result<(), EngineError>;
}

/// Why [`Vm::save_live`] failed, and whether the VM had already moved its
/// writes onto the new top layer (the caller must record that).
#[derive(Debug, thiserror::Error)]
#[error("saving the running VM failed")]
pub struct LiveSaveFailed {
    #[source]
    pub error: EngineError,
    pub disk_switched: bool,
}

/// How a VM process ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmExit {
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl std::fmt::Display for VmExit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.code, self.signal) {
            (Some(code), _) => write!(f, "exit code {code}"),
            (None, Some(signal)) => write!(f, "signal {signal}"),
            (None, None) => f.write_str("unknown status"),
        }
    }
}

/// Why a VM could not be started.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(
        "QEMU not found: no `{binary}` on PATH; install it with: sudo apt-get install qemu-system-x86"
    )]
    QemuMissing { binary: String },
    #[error("could not jail QEMU: {0}; to run it without its jail: PYRO_QEMU_JAIL=off")]
    Jail(String),
    /// A disk whose backing chain cannot be trusted or read.
    #[error("its disk cannot be used: {0}; reset the workspace to a snapshot taken before, or delete it")]
    UnusableDisk(String),
    #[error("could not start {binary}")]
    Spawn {
        binary: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what} does not exist: {path}")]
    MissingFile { what: &'static str, path: PathBuf },
    #[error("could not open {path} for the VM")]
    Open {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not limit the VM's file sizes")]
    Limit(#[source] std::io::Error),
    #[error("could not create the guest channel")]
    Channel(#[source] std::io::Error),
    #[error("could not {action} the VM")]
    Monitor {
        action: &'static str,
        #[source]
        source: qemu::QmpError,
    },
    #[error("saving or restoring the VM state failed: {0}")]
    Migration(String),
    #[error("the VM has no persistent root disk to snapshot")]
    NoPersistentDisk,
    #[error("could not make the new disk layer")]
    Layer(#[source] disk::DiskError),
}
