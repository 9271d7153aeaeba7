//! pyro environments: the curated catalog, the builder that turns a catalog
//! entry into boot artifacts, and the content-addressed store that keeps
//! them.
//!
//! An installed environment is three blobs and a manifest:
//!
//! - `vmlinux`: the uncompressed kernel from Debian's `linux-image-*-amd64`
//!   package ([`kernel`]);
//! - `modules.cpio`: the boot modules and their load order as a cpio
//!   fragment ([`modules`], [`cpio`]);
//! - `rootfs.qcow2`: the Debian root filesystem ([`rootfs`]);
//! - `manifest.json` (stored as `envs/<name>.json`): digests and provenance.
//!
//! [`EnvStore`] is the whole public surface the CLI and the core use: `list`,
//! `pull`, `inspect`, `prune`, and `boot_artifacts` on the hot path of every
//! run. This crate builds and checks files; it never starts a VM and knows
//! nothing about workspaces beyond [`EnvStore::pin`].

pub mod catalog;
mod command;
pub mod cpio;
pub mod kernel;
pub mod modules;
pub mod rootfs;
mod store;

pub use catalog::CatalogEntry;
pub use command::{missing_build_tools, CommandError, HostTool, BOOTSTRAPPERS, BUILD_TOOLS};
pub use store::{
    hash_bytes, write_agent_only_initramfs, Artifact, ArtifactDetails, Artifacts, BlobState,
    BootArtifacts, EnvDetails, EnvStore, EnvSummary, InstalledInfo, KernelInfo, Manifest,
    PhaseTiming, PruneReport, PullOutcome, StoreError, Template, TemplateBuild, TemplateInfo,
    Unusable,
};

/// Receives progress of long operations (`pull`). Called from the pulling
/// thread; `Sync` so an implementation can be shared with a UI thread.
pub trait Progress: Sync {
    /// A new step begins ("downloading linux-image-6.1.0-56-amd64").
    fn phase(&self, name: &str);
    /// One line of output from the current step's tool.
    fn detail(&self, line: &str);
    /// The operation ended, successfully or not; no more calls follow.
    /// `pull` calls this itself, once, before it returns.
    fn finish(&self);
}

/// Ignores progress.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn phase(&self, _name: &str) {}
    fn detail(&self, _line: &str) {}
    fn finish(&self) {}
}
