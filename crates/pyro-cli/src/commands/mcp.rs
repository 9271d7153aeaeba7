//! `pyro mcp serve`: the MCP server over stdio (see the `pyro-mcp` crate).

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use pyro_core::params::{project_seed, ProjectSkipped};
use pyro_core::Pyro;
use pyro_mcp::{Profile, PyroServer, ServeOptions};

#[derive(Debug, Subcommand)]
pub enum McpCommand {
    /// Serve the tools over stdin/stdout until the client disconnects.
    #[command(after_help = "Examples:
  pyro mcp serve                                   inside a Git checkout: it seeds new workspaces
  pyro mcp serve --profile workspace-full --project-path ~/src/app
  claude mcp add pyro -- pyro mcp serve")]
    Serve(ServeArgs),
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Which tools to offer: vm-run (one-shot runs), workspace-core (the
    /// default workspace loop) or workspace-full (adds snapshots, stop/start,
    /// sync, logs, update).
    #[arg(long, value_enum, default_value = "workspace-core")]
    profile: ProfileArg,
    /// The project new workspaces start from (default: the Git checkout
    /// around the current directory).
    #[arg(long, value_name = "DIR", conflicts_with = "repo_url")]
    project_path: Option<PathBuf>,
    /// Clone this Git repository into new workspaces instead.
    #[arg(long, value_name = "URL")]
    repo_url: Option<String>,
    /// The branch, tag or commit of --repo-url (default: its HEAD).
    #[arg(long, value_name = "REF", requires = "repo_url")]
    repo_ref: Option<String>,
    /// Let the model name host paths inside DIR too (repeatable). Without
    /// it, seed_path, a local repo_url, sync sources and export outputs
    /// must lie inside the project.
    #[arg(long, value_name = "DIR")]
    allow_host_path: Vec<PathBuf>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum ProfileArg {
    VmRun,
    WorkspaceCore,
    WorkspaceFull,
}

pub fn mcp(pyro: &Pyro, command: McpCommand) -> anyhow::Result<i32> {
    let McpCommand::Serve(args) = command;
    let profile = match args.profile {
        ProfileArg::VmRun => Profile::VmRun,
        ProfileArg::WorkspaceCore => Profile::WorkspaceCore,
        ProfileArg::WorkspaceFull => Profile::WorkspaceFull,
    };
    let project_path = match args.project_path {
        Some(path) if !path.is_dir() => {
            anyhow::bail!("--project-path {} is not a directory", path.display())
        }
        Some(path) => Some(std::fs::canonicalize(&path)?),
        None => None,
    };
    let cwd = std::env::current_dir()?;
    let home = std::env::var_os("HOME").map(PathBuf::from);
    let default_seed = match project_seed(
        project_path,
        args.repo_url,
        args.repo_ref,
        &cwd,
        home.as_deref(),
    ) {
        Ok(seed) => seed,
        Err(ProjectSkipped::TooWide { root }) => {
            eprintln!(
                    "pyro mcp serve: not using {} as the project (a Git checkout at your home directory or /); pass --project-path DIR",
                    root.display()
                );
            None
        }
    };
    if let Some(seed) = &default_seed {
        seed.check()?;
    }
    let server = PyroServer::new(
        pyro.clone(),
        ServeOptions {
            profile,
            default_seed,
            allowed_host_paths: args.allow_host_path,
        },
    )
    .map_err(|e| anyhow::anyhow!("--allow-host-path {e}"))?;
    // Multi-thread: worker threads live as long as the runtime, so nothing
    // the server starts is tied to a short-lived thread.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(pyro_mcp::serve_stdio(server))?;
    Ok(0)
}
