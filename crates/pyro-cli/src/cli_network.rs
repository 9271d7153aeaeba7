//! The arguments of `pyro workspace port ...` and `pyro workspace secret ...`.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use crate::cli_common::WorkspaceRef;

#[derive(Debug, Subcommand)]
pub enum PortCommand {
    /// Forward a host port to a guest port; a running workspace listens at once.
    #[command(after_help = "Examples:
  pyro workspace port publish api-fix 0:8000
  pyro workspace port publish api-fix 8080:8000
  pyro workspace port publish api-fix 0.0.0.0:8080:8000")]
    Publish(PortArgs),
    /// Close a published port (named by its host port, or its guest port);
    /// connections through it end.
    Unpublish(PortArgs),
    /// List published ports and their URLs.
    List(WorkspaceRef),
}

#[derive(Debug, Args)]
pub struct PortArgs {
    /// Workspace id or name.
    pub workspace: String,
    /// [ADDR:]HOSTPORT:GUESTPORT to publish; HOSTPORT (or GUESTPORT) to unpublish.
    pub port: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Set or replace a secret; give it to a command with `exec --secret-env NAME`.
    #[command(
        after_help = "The value comes from --file, or else from standard input (a terminal \
prompts without echo), so it never shows in a process list. Output that carries it shows \
[secret:NAME] instead.

Examples:
  pyro workspace secret set api-fix TOKEN --file ~/.config/token
  printf %s \"$TOKEN\" | pyro workspace secret set api-fix TOKEN
  pyro workspace exec api-fix --secret-env GH_TOKEN=TOKEN -- gh auth status"
    )]
    Set(SecretSetArgs),
    /// Remove a secret.
    Unset(SecretNameArgs),
    /// List a workspace's secret names (never their values).
    List(WorkspaceRef),
}

#[derive(Debug, Args)]
pub struct SecretSetArgs {
    /// Workspace id or name.
    pub workspace: String,
    /// The secret's name: letters, digits and `_`.
    pub name: String,
    /// Read the value from this host file (one trailing newline is dropped).
    #[arg(long, value_name = "PATH")]
    pub file: Option<PathBuf>,
    /// Print the secret names as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct SecretNameArgs {
    /// Workspace id or name.
    pub workspace: String,
    /// The secret's name.
    pub name: String,
    /// Print the secret names left as JSON.
    #[arg(long)]
    pub json: bool,
}
