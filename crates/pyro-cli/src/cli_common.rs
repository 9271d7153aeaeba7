//! Arguments many commands share: which workspace, and JSON or not.

use clap::Args;

#[derive(Debug, Args)]
pub struct WorkspaceRef {
    /// Workspace id (or a unique prefix of it) or name.
    pub workspace: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}
