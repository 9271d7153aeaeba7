//! A workspace's record (`workspace.json`) and the types it holds: its
//! state, snapshots, how its VM last came up and where it resumes from.

use std::collections::BTreeMap;
use std::path::PathBuf;

use pyro_util::human_bytes;
use serde::{Deserialize, Serialize};

use crate::host::network::NetworkConfig;

/// Lifecycle state as recorded; see [`WorkspaceStore::observe`] for how a
/// dead supervisor turns `Running` into `Crashed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum WorkspaceState {
    /// The supervisor is booting the VM.
    Starting,
    /// The VM runs and its supervisor serves clients.
    Running,
    /// Stopped on request; the disk keeps its state for `start`.
    Stopped,
    /// Its VM's memory is saved on disk and no process runs for it:
    /// `start` (or any call on it) resumes it with every process alive.
    Suspended {
        /// When (RFC 3339).
        since: String,
    },
    /// The VM or its supervisor died; `reason` says how.
    Crashed {
        /// Why: the VM's last words, or that the supervisor died.
        reason: String,
    },
}

impl WorkspaceState {
    /// One word: `starting`, `running`, `stopped`, `crashed`.
    pub fn label(&self) -> &'static str {
        match self {
            WorkspaceState::Starting => "starting",
            WorkspaceState::Running => "running",
            WorkspaceState::Stopped => "stopped",
            WorkspaceState::Suspended { .. } => "suspended",
            WorkspaceState::Crashed { .. } => "crashed",
        }
    }
}

/// Everything recorded about one workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkspaceRecord {
    /// Its id.
    pub id: String,
    /// Its optional unique name.
    pub name: Option<String>,
    /// The environment it was created from.
    pub env: String,
    /// Free-form `key=value` labels.
    pub labels: BTreeMap<String, String>,
    /// The workflow it was made for, and what its creator chose over it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<crate::workspace::mode::ModeRecord>,
    /// vCPUs of its VM.
    pub cpus: u32,
    /// Memory of its VM, MiB.
    pub memory_mib: u32,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When a call last used it (RFC 3339).
    pub last_activity_at: String,
    /// Where it stands.
    #[serde(flatten)]
    pub state: WorkspaceState,
    /// Pid of the supervisor while one runs.
    pub supervisor_pid: Option<u32>,
    /// The disk image the VM writes to, relative to the workspace dir.
    #[serde(default = "default_disk")]
    pub active_disk: String,
    /// The frozen disk layer holding the state right after create.
    #[serde(default)]
    pub baseline_layer: Option<String>,
    /// Named snapshots, oldest first.
    #[serde(default)]
    pub snapshots: Vec<SnapshotRecord>,
    /// Its network: mode, allowlist, CA trust.
    #[serde(default = "NetworkConfig::off")]
    pub network: NetworkConfig,
    /// Suspend it when no call has touched it for this many seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_secs: Option<u64>,
    /// Its disk's size when larger than its environment's (the supervisor
    /// grows the disk and its filesystem to it as the VM starts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk_bytes: Option<u64>,
    /// Its ceiling on host bytes (`None`: made before ceilings, the default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_host_bytes: Option<u64>,
    /// What the next start restores instead of booting; the supervisor
    /// that takes it clears it first, so a start that fails half-way
    /// boots the next time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resume_from: Option<ResumePoint>,
    /// The warm template (key and build) whose saved state is exactly
    /// the baseline (an unseeded warm create): a reset to the baseline
    /// restores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_template: Option<(String, String)>,
    /// How its VM last came up.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_boot: Option<BootReport>,
    /// Its create (or fork) has not finished: the creating process holds
    /// `create.lock` meanwhile. One found with the lock free was cut short
    /// and reads as crashed ([`WorkspaceStore::observe`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub creating: bool,
    /// The host memory its running VM holds: measured by `status`, never
    /// stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_memory: Option<crate::host::memory::HostMemory>,
    /// Its bytes on the host's disk: measured by `status`, never stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_bytes: Option<HostBytes>,
    /// Its VM has a seed disk slot (holding [`SEED_IMAGE`](crate::workspace::SEED_IMAGE)
    /// when seeded). False for workspaces made before seed disks: their
    /// saved states have no such device.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub seed_slot: bool,
    /// What its seed put in /workspace and left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<crate::workspace::SeedSummary>,
}

/// A saved VM a start can restore.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ResumePoint {
    /// The warm template `key` of its environment, whose disk layer the
    /// workspace's disk (still empty) lies over.
    Template {
        /// The template's key in the environment store.
        key: String,
        /// Its build: one made again since is another guest.
        build: String,
        /// The file the workspace's top layer lies over (absolute): when
        /// the restore fails, the top is made empty over it again.
        below: PathBuf,
    },
    /// A VM state this workspace saved itself (a memory snapshot, a
    /// suspend), in directory `dir` (relative to the workspace dir), with
    /// the shells and services it ran.
    Memory {
        /// The state's directory, relative to the workspace dir.
        dir: String,
        /// As for a template: the layer a fresh top lies over, when the
        /// disk is one (a reset); none when it is the live disk (a resume).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        below: Option<PathBuf>,
        /// The state is used once (a suspend's): removed after the start.
        #[serde(default)]
        once: bool,
    },
}

/// How a workspace's VM came up.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BootReport {
    /// `restored` (from a saved VM) or `booted` (a kernel boot).
    pub how: String,
    /// What it was restored from: `template <key>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    /// From starting the VM until its agent answered, milliseconds.
    pub ready_ms: u64,
    /// Why a restore was tried and given up, so it booted instead.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<String>,
    /// The shells and services a restored memory state brought back.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restored: Option<RestoredSessions>,
}

/// Shells (by id) and services (by name) running again after a restore.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoredSessions {
    /// Shell ids.
    pub shells: Vec<String>,
    /// Service names.
    pub services: Vec<String>,
}

impl BootReport {
    /// One line: `restored from warm template 1a2b3c4d5e6f in 48 ms`.
    pub fn line(&self) -> String {
        let mut line = match &self.from {
            Some(from) => format!("{} from {from} in {} ms", self.how, self.ready_ms),
            None => format!("{} in {} ms", self.how, self.ready_ms),
        };
        if let Some(why) = &self.fallback {
            line.push_str(&format!(" (the restore failed: {why})"));
        }
        line
    }
}

/// A named, frozen disk layer of a workspace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    /// Its name.
    pub name: String,
    /// The layer file, relative to the workspace dir.
    pub layer: String,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// The directory (relative to the workspace dir) of the VM's memory
    /// and running sessions at that moment; none for a disk-only one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<String>,
    /// The token of the diff baseline the guest stashed on this disk
    /// before it was frozen: a reset to it adopts that baseline instead of
    /// recording one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_stash: Option<String>,
}

pub(super) fn default_disk() -> String {
    crate::workspace::DISK.to_string()
}

impl WorkspaceRecord {
    /// A create cut short by its killed creator: it reads as crashed and
    /// only `delete` may touch it (no start, no supervisor's update).
    pub fn cut_short(&self) -> bool {
        self.creating && matches!(self.state, WorkspaceState::Crashed { .. })
    }

    /// Its VM's memory in bytes: what a memory state of it takes on disk.
    pub fn memory_bytes(&self) -> u64 {
        u64::from(self.memory_mib) << 20
    }

    /// The shape of its VM: what its warm template is keyed on.
    pub(crate) fn shape(&self) -> crate::host::template::Shape {
        crate::host::template::Shape {
            cpus: self.cpus,
            memory_mib: self.memory_mib,
            network: self.network.mode.is_on(),
        }
    }

    /// The seed disk its VM has, in its directory `dir`.
    pub(crate) fn seed_disk(&self, dir: &std::path::Path) -> Option<pyro_vmm::SeedDisk> {
        // A seeded workspace names its image whether or not it is there:
        // a missing one stops the VM with that name, never an empty slot.
        match (self.seed_slot, &self.seed) {
            (false, _) => None,
            (true, None) => Some(crate::host::template::empty_seed_slot()),
            (true, Some(_)) => Some(pyro_vmm::SeedDisk::Image {
                path: dir.join(crate::workspace::SEED_IMAGE),
                bytes: crate::host::template::SEED_SLOT_BYTES,
            }),
        }
    }

    /// The name when set, else the id: how messages refer to it.
    pub fn display_name(&self) -> &str {
        self.name.as_deref().unwrap_or(&self.id)
    }
}

/// A workspace directory's bytes on the host's disk (blocks allocated, each
/// file once however many links it has: a fork shares its parent's layers).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HostBytes {
    /// Disk layers: the top, the baseline, snapshots' layers.
    pub disk: u64,
    /// Saved memory states (snapshots, a suspend).
    pub memory: u64,
    /// Everything else: the seed image, logs, the transfer file.
    pub other: u64,
    /// The workspace's ceiling on all of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ceiling: Option<u64>,
}

impl HostBytes {
    /// All of it.
    pub fn total(&self) -> u64 {
        self.disk + self.memory + self.other
    }

    /// `1.2 GiB (disk layers 900.0 MiB, memory states 300.0 MiB, other 20.0 MiB)`.
    pub fn line(&self) -> String {
        let of = match self.ceiling {
            Some(ceiling) => format!(" of its {} ceiling", human_bytes(ceiling)),
            None => String::new(),
        };
        format!(
            "{}{of} (disk layers {}, memory states {}, other {})",
            human_bytes(self.total()),
            human_bytes(self.disk),
            human_bytes(self.memory),
            human_bytes(self.other)
        )
    }
}
