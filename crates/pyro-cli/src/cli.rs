//! Command-line arguments. Doc comments here are the help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

pub use crate::cli_common::WorkspaceRef;

const AFTER_HELP: &str = "\
Suggested zero-to-hero path:
  pyro doctor                               check the host: QEMU, KVM or TCG, cache
  pyro env list                             the curated environments
  pyro env pull debian:12                   build it once (needs root: mmdebstrap)
  pyro run debian:12 -- git --version       one command in a fresh VM

A workspace the agent lives in:
  pyro workspace create debian:12 --name task --id-only
  pyro workspace exec task -- git --version
  pyro workspace shell open task --id-only      then: shell write / shell read
  pyro workspace service start task web --ready-tcp 8000 -- python3 -m http.server
  pyro workspace summary task                   what was run and changed
  pyro workspace stop task; pyro workspace start task
  pyro workspace delete task

A chat host's model working in workspaces itself (MCP tools):
  pyro host connect claude-code             or codex, opencode; check with pyro host doctor

Exit status of `pyro run`: the command's own; 124 when --timeout stopped it;
125 when pyro or the VM failed; 126/127 when the command could not be run or
was not found; 130 when interrupted.";

/// Disposable workspaces in real VMs for chat-based coding agents.
///
/// pyro boots a small virtual machine from a curated environment, runs your
/// command in it and throws the VM away. KVM is used when it works; otherwise
/// the same VM runs under QEMU's software emulation (TCG), slower.
#[derive(Debug, Parser)]
#[command(name = "pyro", version, after_help = AFTER_HELP, propagate_version = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inspect the host and the runtime, with the fix for each failure.
    Doctor(DoctorArgs),
    /// List, build, inspect and prune environments.
    #[command(subcommand)]
    Env(EnvCommand),
    /// Run one command inside an ephemeral VM.
    Run(RunArgs),
    /// Persistent workspaces: a VM that keeps running between commands.
    #[command(subcommand)]
    Workspace(WorkspaceCommand),
    /// Measure boot and run times and print a table.
    Bench(BenchArgs),
    /// Run one of the five workflows end to end on a built-in fixture; without a name,
    /// list them.
    #[command(after_help = "Examples:
  pyro demo
  pyro demo repro-fix")]
    Demo(DemoArgs),
    /// Register pyro with a chat host (Claude Code, Codex, OpenCode) and check it.
    #[command(subcommand)]
    Host(crate::commands::host::HostCommand),
    /// Serve pyro's tools to an MCP client (a chat-hosted agent) over stdio.
    #[command(subcommand)]
    Mcp(crate::commands::mcp::McpCommand),
    /// Internal: the per-workspace supervisor process.
    #[command(name = "__supervise", hide = true)]
    Supervise {
        home: PathBuf,
        id: String,
        ready_fd: i32,
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The workflow: cold-start, repro-fix, parallel, untrusted or review.
    #[arg(value_parser = clap::builder::PossibleValuesParser::new(
        crate::commands::demo::DEMOS.map(|demo| demo.name)
    ))]
    pub name: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum WorkspaceCommand {
    /// Create a workspace and boot its VM; it keeps running after this returns.
    #[command(after_help = "Examples:
  pyro workspace create debian:12 --name api-fix --label task=123
  pyro workspace create debian:12 --network egress --allow '*.pypi.org' --allow host.pyro.internal:8080
  pyro workspace create debian:12 --network egress+ports --publish 0:8000
  ID=$(pyro workspace create debian:12 --id-only)")]
    Create(Box<CreateArgs>),
    /// List workspaces: name, environment, state, age, last activity.
    List(ListArgs),
    /// Show one workspace.
    Status(WorkspaceRef),
    /// Rename or relabel a workspace (`--label K=` removes K), or change its network
    /// (a running workspace enforces the new allowlist at once, without a reboot).
    #[command(after_help = "Examples:
  pyro workspace update api-fix --label task=124
  pyro workspace update api-fix --allow pypi.org --allow files.pythonhosted.org
  pyro workspace update api-fix --allow-any
  pyro workspace update api-fix --network off")]
    Update(UpdateArgs),
    /// Suspend a workspace: its VM's memory goes to disk and nothing of it
    /// runs; `start` (or any call on it) resumes every process. With
    /// --power-off, power the VM off instead (its disk keeps every change).
    Stop(crate::cli_states::StopArgs),
    /// Resume a suspended workspace, or boot a stopped or crashed one
    /// again from its disk.
    Start(WorkspaceRef),
    /// Kill a workspace's VM and remove everything of it.
    Delete(WorkspaceRef),
    /// Run a command in a running workspace (cwd /workspace by default).
    #[command(after_help = "Examples:
  pyro workspace exec api-fix -- git status
  pyro workspace exec api-fix --cwd /workspace/src --timeout 600 -- make test")]
    Exec(WorkspaceExecArgs),
    /// Show the VM console and supervisor log of a workspace.
    Logs(WorkspaceRef),
    /// Copy a host directory into the workspace.
    #[command(subcommand)]
    Sync(SyncCommand),
    /// Name, list and delete whole-disk snapshots.
    #[command(subcommand)]
    Snapshot(crate::cli_states::SnapshotCommand),
    /// Put the whole disk back to the baseline (right after create) or a snapshot.
    #[command(
        after_help = "Reset reboots the VM: running commands end. Installed packages and files \
anywhere in the guest return to the chosen state. After a reset to a snapshot, `diff` is \
relative to that snapshot."
    )]
    Reset(crate::cli_states::ResetArgs),
    /// Make a new workspace from a running one: a copy-on-write twin of its
    /// disk and memory, every process running in both (or from one of its
    /// snapshots).
    #[command(
        after_help = "The workspace keeps running, paused only while its state is \
saved. The fork gets its own id, hostname, machine-id, random numbers and network identity; its \
diff starts empty. Examples:
  pyro workspace fork api-fix --name api-fix-b
  pyro workspace fork api-fix --snapshot green --name retry"
    )]
    Fork(crate::cli_states::ForkArgs),
    /// Copy a file or directory of /workspace out to the host.
    #[command(
        after_help = "The guest is untrusted: names, links and sizes it presents never place \
anything outside --output. --output must not exist yet (or be an empty directory)."
    )]
    Export(ExportArgs),
    /// List, read and write files under /workspace.
    #[command(subcommand)]
    File(crate::cli_files::FileCommand),
    /// Read any path on the disk of a stopped workspace, without starting it (a helper VM).
    #[command(subcommand)]
    Disk(crate::cli_files::DiskCommand),
    /// Apply a unified diff to /workspace, atomically.
    #[command(subcommand)]
    Patch(crate::cli_files::PatchCommand),
    /// Show what changed in /workspace since the baseline (create or last reset).
    #[command(after_help = DIFF_HELP)]
    Diff(DiffArgs),
    /// Review what was run and changed since the last reset (or create).
    #[command(after_help = SUMMARY_HELP)]
    Summary(WorkspaceRef),
    /// Interactive shells on a terminal, read back as plain text.
    #[command(subcommand)]
    Shell(crate::cli_sessions::ShellCommand),
    /// Named long-running services with readiness checks, logs and stop.
    #[command(subcommand)]
    Service(crate::cli_sessions::ServiceCommand),
    /// The workspace's network: what it reached and what was denied.
    #[command(subcommand)]
    Network(NetworkCommand),
    /// Host ports forwarded into the guest (workspaces with --network egress+ports).
    #[command(subcommand)]
    Port(crate::cli_network::PortCommand),
    /// Secrets kept on the host for the workspace's commands: set, unset, list (names only).
    #[command(subcommand)]
    Secret(crate::cli_network::SecretCommand),
}

#[derive(Debug, Subcommand)]
pub enum NetworkCommand {
    /// Every lookup and connection the network decided, denials marked.
    Log(WorkspaceRef),
}

#[derive(Debug, Subcommand)]
pub enum SyncCommand {
    /// Copy a host directory into /workspace (or --dest under it).
    Push(SyncPushArgs),
}

#[derive(Debug, Args)]
pub struct SyncPushArgs {
    /// Workspace id or name.
    pub workspace: String,
    /// Host directory to copy.
    pub dir: PathBuf,
    /// Destination under /workspace (default: /workspace itself).
    #[arg(long, value_name = "PATH")]
    pub dest: Option<String>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Workspace id or name.
    pub workspace: String,
    /// File or directory under /workspace.
    pub path: String,
    /// Where to put it on the host.
    #[arg(long, short)]
    pub output: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Environment to boot, e.g. debian:12.
    pub env: String,
    /// Seed /workspace with this host directory (its .git comes along).
    #[arg(long, value_name = "DIR", conflicts_with = "repo_url")]
    pub seed_path: Option<PathBuf>,
    /// Seed /workspace with a clone of this Git repository.
    #[arg(long, value_name = "URL")]
    pub repo_url: Option<String>,
    /// Branch, tag or commit to check out (with --repo-url).
    #[arg(long, value_name = "REF", requires = "repo_url")]
    pub repo_ref: Option<String>,
    /// Leave these seed paths out (gitignore syntax, repeatable:
    /// `node_modules/`, `*.log`, `/build`), besides what the seed's
    /// .pyroignore names.
    #[arg(long, value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// A unique name to use instead of the id.
    #[arg(long)]
    pub name: Option<String>,
    /// A label (repeatable), for filtering `workspace list`.
    #[arg(long = "label", value_name = "K=V", value_parser = parse_key_value)]
    pub labels: Vec<(String, String)>,
    /// The workflow it is for: cold-start, repro-fix, parallel, untrusted or review. Its
    /// defaults fill what the other options leave out; what they give wins, and status says
    /// so (see docs/modes.md).
    #[arg(long, value_name = "MODE", value_parser = parse_mode)]
    pub mode: Option<pyro_core::Mode>,
    /// Virtual CPUs [default: the mode's, else 1].
    #[arg(long, value_name = "N")]
    pub cpus: Option<u32>,
    /// Guest memory in MiB [default: the mode's, else 1024].
    #[arg(long, value_name = "MIB")]
    pub memory: Option<u32>,
    #[command(flatten)]
    pub network: NetworkArgs,
    /// Forward a host port to a guest port (repeatable; needs --network egress+ports).
    /// HOSTPORT 0 picks a free port; ADDR defaults to 127.0.0.1.
    #[arg(long = "publish", value_name = "[ADDR:]HOSTPORT:GUESTPORT")]
    pub publish: Vec<String>,
    /// Keep a secret for the workspace's commands (repeatable); shown as [secret:NAME].
    /// The value is visible in this command's own process list entry: prefer --secret-file.
    #[arg(long = "secret", value_name = "NAME=VALUE", value_parser = parse_key_value)]
    pub secrets: Vec<(String, String)>,
    /// Keep a secret read from a host file (repeatable; one trailing newline is dropped).
    #[arg(long = "secret-file", value_name = "NAME=PATH", value_parser = parse_key_value)]
    pub secret_files: Vec<(String, String)>,
    /// Suspend the workspace after this long without a call on it (e.g. 15m, 2h, 90s, or
    /// off); the next call resumes it with every process [default: the mode's, else never].
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// The most host disk the workspace may hold, its snapshots included (e.g. 16G, 512M);
    /// past it, writes fail inside the guest [default: twice the environment's disk, 16G].
    #[arg(long, value_name = "SIZE")]
    pub max_host_disk: Option<String>,
    /// The size of the workspace's disk, larger than the environment's (e.g. 20G, up to
    /// 2T); its filesystem grows with it [default: the environment's, 8G].
    #[arg(long, value_name = "SIZE")]
    pub disk_size: Option<String>,
    /// Boot a kernel instead of restoring the environment's warm template.
    #[arg(long)]
    pub cold: bool,
    /// Print only the id.
    #[arg(long)]
    pub id_only: bool,
    /// Print the workspace as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ListArgs {
    /// Only workspaces with this label (repeatable: all must match).
    #[arg(long = "label", value_name = "K=V", value_parser = parse_key_value)]
    pub labels: Vec<(String, String)>,
    /// Print the list as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UpdateArgs {
    /// Workspace id or name.
    pub workspace: String,
    /// New unique name.
    #[arg(long)]
    pub name: Option<String>,
    /// Set a label (repeatable); `K=` removes it.
    #[arg(long = "label", value_name = "K=V", value_parser = parse_key_value)]
    pub labels: Vec<(String, String)>,
    /// New network mode: off, egress or egress+ports (turning a running workspace's
    /// network on needs a stop and a start).
    #[arg(long, value_name = "MODE")]
    pub network: Option<String>,
    /// Replace the allowlist with these destinations (repeatable; HOST[:PORT] as on create).
    #[arg(
        long = "allow",
        value_name = "HOST[:PORT]",
        conflicts_with = "allow_any"
    )]
    pub allow: Vec<String>,
    /// Drop the allowlist: every public destination opens.
    #[arg(long)]
    pub allow_any: bool,
    /// A new idle timeout (e.g. 15m), or `off`.
    #[arg(long, value_name = "DURATION")]
    pub idle_timeout: Option<String>,
    /// Print the workspace as JSON.
    #[arg(long)]
    pub json: bool,
}

impl UpdateArgs {
    pub fn network_update(&self) -> pyro_core::NetworkUpdate {
        pyro_core::NetworkUpdate {
            mode: self.network.clone(),
            allow: match (self.allow_any, self.allow.is_empty()) {
                (true, _) => Some(Vec::new()),
                (false, false) => Some(self.allow.clone()),
                (false, true) => None,
            },
        }
    }
}

#[derive(Debug, Args)]
pub struct WorkspaceExecArgs {
    /// Workspace id or name.
    pub workspace: String,
    /// Working directory in the guest (default /workspace; a relative one is under it).
    #[arg(long)]
    pub cwd: Option<String>,
    /// Set an environment variable for the command (repeatable).
    #[arg(long = "env", value_name = "K=V", value_parser = parse_key_value)]
    pub env_vars: Vec<(String, String)>,
    /// Give the command a secret as a variable: NAME, or ENVVAR=NAME (repeatable).
    #[arg(long = "secret-env", value_name = "[ENVVAR=]NAME")]
    pub secret_env: Vec<String>,
    /// Stop the command after this many seconds; exit status 124.
    #[arg(long, value_name = "S")]
    pub timeout: Option<u64>,
    /// Pass pyro's standard input to the command (else it reads /dev/null).
    #[arg(long, short = 'i')]
    pub stdin: bool,
    /// Print a JSON report (exit status, duration) on stderr afterwards.
    #[arg(long)]
    pub json: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum EnvCommand {
    /// List the curated environments and which are pulled.
    List(JsonFlag),
    /// Build an environment into the cache (instant when present).
    #[command(
        after_help = "Building needs root and the Debian packages mmdebstrap (or debootstrap), \
e2fsprogs and qemu-utils; `pyro doctor` checks them."
    )]
    Pull(PullArgs),
    /// Show an environment's manifest, files and integrity.
    Inspect(InspectArgs),
    /// Remove unreferenced images, stale build scratch and cached initramfs.
    Prune(JsonFlag),
}

#[derive(Debug, Args)]
pub struct JsonFlag {
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PullArgs {
    /// Environment name, e.g. debian:12.
    pub env: String,
    /// Rebuild even when present (repairs a corrupt image).
    #[arg(long)]
    pub force: bool,
    /// Also make its warm template (the default workspace size), so the first
    /// `workspace create` restores at once.
    #[arg(long)]
    pub warm: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Environment name, e.g. debian:12.
    pub env: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
#[command(after_help = "Examples:
  pyro run debian:12 -- git --version
  pyro run debian:12 --timeout 60 -- sh -c 'python3 -m pytest -q'
  pyro run debian:12 --cpus 2 --memory 2048 -- make -j2
  pyro run debian:12 --network egress --allow pypi.org --allow files.pythonhosted.org -- pip download six")]
pub struct RunArgs {
    /// Environment to boot, e.g. debian:12.
    pub env: String,
    /// Stop the command after this many seconds (boot not counted); exit status 124.
    #[arg(long, value_name = "S")]
    pub timeout: Option<u64>,
    /// Virtual CPUs.
    #[arg(long, value_name = "N", default_value_t = pyro_core::params::DEFAULT_CPUS)]
    pub cpus: u32,
    /// Guest memory in MiB.
    #[arg(long, value_name = "MIB", default_value_t = pyro_core::params::DEFAULT_MEMORY_MIB)]
    pub memory: u32,
    /// Set an environment variable for the command (repeatable).
    #[arg(long = "env", value_name = "K=V", value_parser = parse_key_value)]
    pub env_vars: Vec<(String, String)>,
    /// Pass pyro's standard input to the command (else it reads /dev/null).
    #[arg(long, short = 'i')]
    pub stdin: bool,
    #[command(flatten)]
    pub network: NetworkArgs,
    /// Print a JSON report (exit status, timings) on stderr after the run.
    #[arg(long)]
    pub json: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Environment to measure with.
    #[arg(long, default_value = pyro_core::params::DEFAULT_ENV)]
    pub env: String,
    /// Runs per measurement (medians are reported).
    #[arg(long, default_value_t = 5)]
    pub runs: usize,
    /// Print the table as JSON.
    #[arg(long)]
    pub json: bool,
    /// Write the table to this file too (markdown).
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Size of the generated tree for the seeding measurement.
    #[arg(long, value_name = "MB", default_value_t = 200)]
    pub seed_mb: u64,
    /// Only the run measurements, no workspaces.
    #[arg(long)]
    pub skip_workspaces: bool,
    /// Also time seeding from this Git checkout (a real project).
    #[arg(long, value_name = "DIR")]
    pub checkout: Option<PathBuf>,
}

/// The network flags `run` and `workspace create` share.
#[derive(Debug, Args, Clone, Default)]
pub struct NetworkArgs {
    /// off (no network device; the default, unless a workspace's --mode opens one), egress
    /// (outbound TCP and DNS through the host),
    /// or egress+ports (egress and published ports; workspaces only).
    #[arg(long, value_name = "MODE")]
    pub network: Option<String>,
    /// Open only these destinations (repeatable): HOST[:PORT], *.DOMAIN[:PORT], an IPv4
    /// address, or host.pyro.internal:PORT for a service on the host's loopback.
    #[arg(long = "allow", value_name = "HOST[:PORT]")]
    pub allow: Vec<String>,
    /// Do not trust the host's CA certificates in the guest (trusted by default with egress).
    #[arg(long)]
    pub no_host_ca: bool,
    /// Pass the host's HTTP_PROXY, HTTPS_PROXY and NO_PROXY to every command.
    #[arg(long)]
    pub inherit_proxy: bool,
}

impl NetworkArgs {
    pub fn request(self) -> pyro_core::NetworkRequest {
        pyro_core::NetworkRequest {
            mode: self.network,
            allow: self.allow,
            no_host_ca: self.no_host_ca,
            inherit_proxy: self.inherit_proxy,
            publish: Vec::new(),
        }
    }
}

/// A mode name, by the facade's rule (an unknown one lists the modes).
fn parse_mode(text: &str) -> Result<pyro_core::Mode, String> {
    pyro_core::Mode::parse(text).map_err(|e| e.to_string())
}

pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected K=V, got `{text}`")),
    }
}

const SUMMARY_HELP: &str = "Commands run (failures first), files changed (from the diff \
against the baseline; from the recorded writes and patches when the workspace is stopped or \
has no git), services and their state, snapshots, syncs and exports. Secrets in command lines \
are shown as ***; environment variables are never recorded.

Examples:
  pyro workspace summary api-fix
  pyro workspace summary api-fix --json";

const DIFF_HELP: &str = "Everything under /workspace is compared, .gitignored files included; \
.git directories are not. Binary files are noted, not dumped. Needs git in the \
environment (debian:12 has it).

Examples:
  pyro workspace diff api-fix
  pyro workspace diff api-fix --stat
  pyro workspace diff api-fix --json";

#[derive(Debug, Args)]
pub struct DiffArgs {
    /// Workspace id or name.
    pub workspace: String,
    /// Print one line per changed file and a total instead of the patch.
    #[arg(long)]
    pub stat: bool,
    /// Print the whole report (files, counts, patch) as JSON.
    #[arg(long)]
    pub json: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supervisor_positionals_after_the_end_of_options() {
        // What the facade spawns: `pyro __supervise -- HOME ID FD`.
        let cli = Cli::try_parse_from(["pyro", "__supervise", "--", "-home", "ab12", "3"]).unwrap();
        match cli.command {
            Command::Supervise { home, id, ready_fd } => {
                assert_eq!(home, PathBuf::from("-home"));
                assert_eq!((id.as_str(), ready_fd), ("ab12", 3));
            }
            other => panic!("{other:?}"),
        }
    }
}
