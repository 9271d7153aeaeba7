//! `pyro host connect|print-config|doctor|repair`: register pyro's MCP server
//! with a chat host (Claude Code, Codex, OpenCode) and keep it working.
//!
//! The arguments live here rather than in `cli.rs` because nothing else
//! shares them; the logic is in the `pyro-hosts` crate.

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};
use pyro_hosts::doctor::{self, HostReport, Level};
use pyro_hosts::{ConnectOutcome, Host, HostEnv, Method, ServerCommand};

const CONNECT_HELP: &str = "\
Uses the host's own CLI when it is on PATH (`claude mcp add --scope user`,
`codex mcp add`); otherwise edits its config file (~/.claude.json,
~/.codex/config.toml, ~/.config/opencode/opencode.json) with a backup next
to it. Other servers and settings are never touched; running it twice is
harmless.

Examples:
  pyro host connect claude-code && claude mcp list
  pyro host connect codex && codex mcp list
  pyro host connect opencode";

#[derive(Debug, Subcommand)]
pub enum HostCommand {
    /// Register `<this pyro> mcp serve` with a chat host as the MCP server `pyro`.
    #[command(after_help = CONNECT_HELP)]
    Connect(HostArgs),
    /// Print the exact config snippet that registers pyro with a host.
    PrintConfig(HostArgs),
    /// Check that pyro is registered and points at a working pyro binary.
    Doctor(HostDoctorArgs),
    /// Point a stale registration at this pyro binary again.
    Repair(HostArgs),
}

/// A chat host pyro can register with.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum HostName {
    ClaudeCode,
    Codex,
    Opencode,
}

impl From<HostName> for Host {
    fn from(name: HostName) -> Host {
        match name {
            HostName::ClaudeCode => Host::ClaudeCode,
            HostName::Codex => Host::Codex,
            HostName::Opencode => Host::OpenCode,
        }
    }
}

#[derive(Debug, Args)]
pub struct HostArgs {
    /// The chat host.
    pub host: HostName,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct HostDoctorArgs {
    /// The chat host; every host when omitted.
    pub host: Option<HostName>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn host(command: HostCommand) -> anyhow::Result<i32> {
    let env = HostEnv::from_process()?;
    let current = ServerCommand::current()?;
    match command {
        HostCommand::Connect(args) => connect(&env, &current, &args, false),
        HostCommand::Repair(args) => connect(&env, &current, &args, true),
        HostCommand::PrintConfig(args) => {
            let snippet = pyro_hosts::print_config(&env, args.host.into(), &current);
            if args.json {
                super::print_json(&snippet)?;
            } else {
                // The snippet alone on stdout, so it can be piped or pasted.
                print!("{}", snippet.text);
                eprintln!("# merge into {}", snippet.config_path.display());
                if let Some(cli) = &snippet.cli_command {
                    eprintln!("# or run: {cli}");
                }
            }
            Ok(0)
        }
        HostCommand::Doctor(args) => {
            let reports: Vec<HostReport> = match args.host {
                Some(host) => vec![doctor::doctor(&env, host.into(), &current, true)],
                None => Host::ALL
                    .into_iter()
                    .map(|host| doctor::doctor(&env, host, &current, false))
                    .collect(),
            };
            let healthy = reports.iter().all(|report| report.healthy);
            if args.json {
                super::print_json(&reports)?;
            } else {
                print_reports(&reports);
            }
            Ok(if healthy { 0 } else { 1 })
        }
    }
}

fn connect(
    env: &HostEnv,
    current: &ServerCommand,
    args: &HostArgs,
    repair: bool,
) -> anyhow::Result<i32> {
    let host: Host = args.host.into();
    let outcome = pyro_hosts::connect(env, host, current).with_context(|| {
        let verb = if repair { "repair" } else { "register" };
        format!("cannot {verb} pyro with {host}")
    })?;
    if args.json {
        super::print_json(&outcome)?;
    } else {
        print_outcome(&outcome, repair);
    }
    Ok(0)
}

fn print_outcome(outcome: &ConnectOutcome, repair: bool) {
    let host = outcome.host;
    let line = outcome.server.shell_line();
    match &outcome.method {
        Method::Unchanged => {
            println!("pyro is already registered with {host}: {line}");
        }
        Method::Cli { cli } => {
            println!("registered pyro with {host} via {}: {line}", cli.display());
        }
        Method::ConfigFile => {
            println!(
                "registered pyro with {host} in {}: {line}",
                outcome.config_path.display()
            );
            if let Some(backup) = &outcome.backup {
                println!("previous config saved as {}", backup.display());
            }
        }
    }
    if let (true, Some(previous)) = (repair, &outcome.previous) {
        if previous != &outcome.server {
            println!("was: {}", previous.shell_line());
        }
    }
    println!("check it with: pyro host doctor {host}");
}

fn print_reports(reports: &[HostReport]) {
    for (index, report) in reports.iter().enumerate() {
        if index > 0 {
            println!();
        }
        println!("{}", report.host);
        for check in &report.checks {
            let mark = match check.level {
                Level::Ok => "ok  ",
                Level::Warn => "warn",
                Level::Pending => "wait",
                Level::Fail => "FAIL",
            };
            println!("  {mark}  {:<11} {}", check.name, check.detail);
            if let Some(fix) = &check.fix {
                println!("        {:<11} fix: {fix}", "");
            }
        }
    }
}
