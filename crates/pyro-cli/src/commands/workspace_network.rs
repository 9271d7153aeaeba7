//! `pyro workspace network ...`, and how the CLI words the network in
//! other commands' output: the mode line of `status`, and the note after a
//! command whose connections were denied.

use pyro_core::{NetEvent, NetworkConfig, Pyro};

use crate::cli::NetworkCommand;
use crate::cli_network::PortCommand;

pub fn port(pyro: &Pyro, command: PortCommand) -> anyhow::Result<i32> {
    match command {
        PortCommand::Publish(args) => {
            let port = super::runtime()
                .block_on(pyro.workspace_port_publish(&args.workspace, &args.port))?;
            match args.json {
                true => super::print_json(&port)?,
                false => println!("published {}", port.line()),
            }
        }
        PortCommand::Unpublish(args) => {
            let port = super::runtime()
                .block_on(pyro.workspace_port_unpublish(&args.workspace, &args.port))?;
            match args.json {
                true => super::print_json(&port)?,
                false => println!("unpublished {}", port.describe()),
            }
        }
        PortCommand::List(args) => {
            let list = pyro.workspace_port_list(&args.workspace)?;
            if args.json {
                super::print_json(&list)?;
                return Ok(0);
            }
            if list.ports.is_empty() {
                println!("no published ports");
            }
            for port in &list.ports {
                println!("{}", port.line());
            }
            if !list.running && !list.ports.is_empty() {
                println!("(the workspace is stopped: they open when it starts)");
            }
        }
    }
    Ok(0)
}

pub fn network(pyro: &Pyro, command: NetworkCommand) -> anyhow::Result<i32> {
    match command {
        NetworkCommand::Log(args) => {
            let log = pyro.workspace_network_log(&args.workspace)?;
            if args.json {
                super::print_json(&log)?;
                return Ok(0);
            }
            let allow = match log.allow.is_empty() {
                true => "every public destination".to_string(),
                false => log.allow.join(", "),
            };
            println!("network: {} (open: {allow})", log.mode);
            if log.entries.is_empty() {
                println!("no lookups or connections recorded");
            }
            for entry in &log.entries {
                let event = &entry.event;
                let at = pyro_util::rfc3339(
                    std::time::UNIX_EPOCH + std::time::Duration::from_millis(event.time_unix_ms),
                );
                let verdict = match &event.denied {
                    Some(reason) => format!("DENIED  {} ({reason})", event.target()),
                    None => format!("allowed {}", event.target()),
                };
                let via = format!("{:?}", event.via).to_lowercase();
                let mut line = format!("{at}  {via:<3}  {verdict}");
                if let Some(address) = event.address.filter(|a| a.to_string() != event.destination)
                {
                    line.push_str(&format!(" [{address}]"));
                }
                if let Some(command) = entry.commands.first() {
                    line.push_str(&format!("  during: {command}"));
                }
                // Names the guest looked up or sent: escapes visible.
                println!("{}", pyro_util::text::visible(&line));
            }
            if log.denied > 0 {
                println!(
                    "{} denied; open a destination with: pyro workspace update {} --allow HOST[:PORT] \
                     (the --allow list replaces the current one)",
                    log.denied, log.workspace
                );
            }
        }
    }
    Ok(0)
}

/// `egress (allow: pypi.org, *.pythonhosted.org)` for `status`.
pub fn describe(network: &NetworkConfig) -> String {
    let mut text = network.mode.to_string();
    if network.mode.is_on() {
        if network.allow.is_empty() {
            text.push_str(" (every public destination)");
        } else {
            let allow: Vec<String> = network.allow.iter().map(|a| a.to_string()).collect();
            text.push_str(&format!(" (allow: {})", allow.join(", ")));
        }
        if !network.host_ca {
            text.push_str(", host CAs not trusted");
        }
    }
    text
}

/// Where the command that met a denial ran, for the way to open it.
pub enum Opened<'a> {
    /// `pyro run`: a flag on the next run.
    Run,
    /// A workspace: `workspace update` with its allowlist and the new entries.
    Workspace {
        name: &'a str,
        network: &'a NetworkConfig,
    },
}

/// After a command: what the network refused it, and how to open it.
pub fn note_denials(denied: &[NetEvent], opened: Opened<'_>) {
    let Some(summary) = pyro_core::denial_summary(denied) else {
        return;
    };
    let entries = pyro_core::allow_entries(denied);
    if entries.is_empty() {
        eprintln!("pyro: {summary}");
        return;
    }
    let flags = |entries: &[String]| -> String {
        let flags: Vec<String> = entries
            .iter()
            .map(|e| format!("--allow {}", pyro_util::shell_quote(e)))
            .collect();
        flags.join(" ")
    };
    let fix = match opened {
        Opened::Run => format!("run again with {}", flags(&entries)),
        Opened::Workspace { name, network } => {
            let mut all: Vec<String> = network.allow.iter().map(|a| a.to_string()).collect();
            let was_open = all.is_empty();
            all.extend(
                entries
                    .iter()
                    .filter(|e| !all.contains(e))
                    .cloned()
                    .collect::<Vec<_>>(),
            );
            let name = pyro_util::shell_quote(name);
            let mut fix = format!("pyro workspace update {name} {}", flags(&all));
            if was_open {
                fix.push_str(
                    " (an allowlist closes what it does not name: add every host the task needs)",
                );
            }
            fix
        }
    };
    eprintln!("pyro: {summary}; to open it: {fix}");
}
