//! The arguments of the commands that save, restore and copy a
//! workspace's state: `stop`, `snapshot ...`, `reset` and `fork`.

use clap::{Args, Subcommand};

use crate::cli_common::WorkspaceRef;

#[derive(Debug, Subcommand)]
pub enum SnapshotCommand {
    /// Name the current state: the whole disk (a frozen copy-on-write
    /// layer) and the running VM's memory, so that a reset to it has its
    /// shells and services running again.
    Create(SnapshotCreateArgs),
    /// List a workspace's snapshots.
    List(WorkspaceRef),
    /// Delete a snapshot (its disk layer goes when nothing else needs it).
    Delete(SnapshotArgs),
}

#[derive(Debug, Args)]
pub struct SnapshotCreateArgs {
    /// Workspace id or name.
    pub workspace: String,
    /// Snapshot name.
    pub name: String,
    /// Keep the disk only, not the VM's memory (a reset to it boots).
    #[arg(long)]
    pub disk_only: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct StopArgs {
    /// Workspace id (or a unique prefix of it) or name.
    pub workspace: String,
    /// Power the VM off (every process ends) instead of suspending it.
    #[arg(long)]
    pub power_off: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SnapshotArgs {
    /// Workspace id or name.
    pub workspace: String,
    /// Snapshot name.
    pub name: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ResetArgs {
    /// Workspace id or name.
    pub workspace: String,
    /// Reset to this snapshot instead of the baseline.
    #[arg(long, value_name = "NAME")]
    pub snapshot: Option<String>,
    /// Print the workspace as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ForkArgs {
    /// Workspace id or name.
    pub workspace: String,
    /// A unique name for the new workspace.
    #[arg(long)]
    pub name: Option<String>,
    /// Fork this snapshot instead of the running VM (the workspace need not run).
    #[arg(long, value_name = "NAME")]
    pub snapshot: Option<String>,
    /// Print only the new workspace's id.
    #[arg(long)]
    pub id_only: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}
