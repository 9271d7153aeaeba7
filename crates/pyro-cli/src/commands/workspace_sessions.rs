//! `pyro workspace shell ...` and `pyro workspace service ...`.

use std::io::Write;
use std::time::Duration;

use anyhow::Context;
use pyro_core::params::{self, parse_signal, ShellInput, ShellReadOptions};
use pyro_core::{Pyro, Readiness, ServiceInfo, ServiceSpec, ServiceState, ShellInfo, ShellState};
use pyro_util::text::visible;

use crate::cli_sessions::{ServiceCommand, ShellCommand};

pub fn shell(pyro: &Pyro, command: ShellCommand) -> anyhow::Result<i32> {
    let runtime = super::runtime();
    match command {
        ShellCommand::Open(args) => {
            let info = runtime.block_on(pyro.workspace_shell_open(
                &args.workspace,
                args.cwd.as_deref(),
                args.rows,
                args.cols,
                &args.secret_env,
            ))?;
            if args.id_only {
                println!("{}", info.id);
            } else if args.json {
                super::print_json(&info)?;
            } else {
                println!(
                    "opened shell {} ({}x{}); read it with: pyro workspace shell read {} {}",
                    info.id, info.cols, info.rows, args.workspace, info.id
                );
            }
        }
        ShellCommand::Read(args) => {
            let options = ShellReadOptions::new(
                Some(Duration::from_millis(args.wait_idle)),
                Some(Duration::from_secs(args.timeout)),
                args.raw,
            );
            let read = runtime.block_on(pyro.workspace_shell_read(
                &args.shell.workspace,
                &args.shell.shell,
                options,
            ))?;
            if args.shell.json {
                super::print_json(&read)?;
            } else {
                let mut stdout = std::io::stdout().lock();
                stdout
                    .write_all(read.text.as_bytes())
                    .context("cannot write to stdout")?;
                if !read.text.is_empty() && !read.text.ends_with('\n') && !args.raw {
                    writeln!(stdout).context("cannot write to stdout")?;
                }
                stdout.flush().context("cannot write to stdout")?;
                if read.dropped > 0 {
                    let unit = if args.raw { "bytes" } else { "lines" };
                    eprintln!(
                        "pyro: {} older {unit} were dropped (bounded history)",
                        read.dropped
                    );
                }
                if !read.state.is_open() {
                    eprintln!("pyro: shell {} has {}", read.shell, read.state.describe());
                } else if !read.idle {
                    eprintln!("pyro: the shell is still printing; read again for more");
                }
            }
        }
        ShellCommand::Write(args) => {
            let input = ShellInput::new(args.text.as_deref(), args.line.as_deref(), &args.key)?;
            let sent = runtime.block_on(pyro.workspace_shell_write(
                &args.shell.workspace,
                &args.shell.shell,
                &input,
            ))?;
            if args.shell.json {
                super::print_json(
                    &serde_json::json!({ "shell": args.shell.shell, "bytes": sent }),
                )?;
            }
        }
        ShellCommand::Signal(args) => {
            let signal = parse_signal(&args.signal)?;
            runtime.block_on(pyro.workspace_shell_signal(
                &args.shell.workspace,
                &args.shell.shell,
                signal,
            ))?;
            if args.shell.json {
                super::print_json(
                    &serde_json::json!({ "shell": args.shell.shell, "signal": signal }),
                )?;
            }
        }
        ShellCommand::Resize(args) => {
            runtime.block_on(pyro.workspace_shell_resize(
                &args.shell.workspace,
                &args.shell.shell,
                args.rows,
                args.cols,
            ))?;
        }
        ShellCommand::Close(args) => {
            let info =
                runtime.block_on(pyro.workspace_shell_close(&args.workspace, &args.shell))?;
            if args.json {
                super::print_json(&info)?;
            } else {
                println!("closed shell {}", info.id);
            }
        }
        ShellCommand::List(args) => {
            let shells = runtime.block_on(pyro.workspace_shell_list(&args.workspace))?;
            if args.json {
                super::print_json(&shells)?;
            } else {
                print_shells(&shells);
            }
        }
    }
    Ok(0)
}

fn print_shells(shells: &[ShellInfo]) {
    if shells.is_empty() {
        println!("no shells");
        return;
    }
    println!("{:<6} {:<24} {:<9} STATE", "SHELL", "OPENED", "SIZE");
    for shell in shells {
        let state = match &shell.state {
            ShellState::Open => "open".to_string(),
            other => other.describe(),
        };
        println!(
            "{:<6} {:<24} {:<9} {state}",
            shell.id,
            shell.opened_at,
            format!("{}x{}", shell.cols, shell.rows)
        );
    }
}

pub fn service(pyro: &Pyro, command: ServiceCommand) -> anyhow::Result<i32> {
    let runtime = super::runtime();
    match command {
        ServiceCommand::Start(args) => {
            let readiness = params::readiness(
                args.ready_file,
                args.ready_tcp,
                args.ready_http,
                args.ready_command,
            )?;
            let env = args
                .env_vars
                .iter()
                .map(|pair| {
                    pair.split_once('=')
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .with_context(|| format!("--env takes NAME=VALUE, not {pair:?}"))
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            let spec = ServiceSpec {
                name: args.service.name.clone(),
                argv: args.command,
                cwd: args.cwd,
                env,
                readiness,
                ready_timeout_ms: pyro_core::params::ready_timeout_ms(Some(args.ready_timeout)),
                secret_env: args.secret_env,
            };
            let info =
                runtime.block_on(pyro.workspace_service_start(&args.service.workspace, spec))?;
            if args.service.json {
                super::print_json(&info)?;
            } else {
                match info.ready_after_ms {
                    Some(ms) if info.readiness.is_some() => {
                        println!("service {} is ready ({ms} ms)", info.name)
                    }
                    _ => println!("service {} started", info.name),
                }
                for url in &info.urls {
                    println!("reachable on the host at {url}");
                }
            }
        }
        ServiceCommand::List(args) => {
            let services = runtime.block_on(pyro.workspace_service_list(&args.workspace))?;
            if args.json {
                super::print_json(&services)?;
            } else {
                print_services(&services);
            }
        }
        ServiceCommand::Status(args) => {
            let info =
                runtime.block_on(pyro.workspace_service_status(&args.workspace, &args.name))?;
            if args.json {
                super::print_json(&info)?;
            } else {
                print_status(&info);
            }
            if matches!(info.state, ServiceState::Failed { .. }) {
                return Ok(1);
            }
        }
        ServiceCommand::Logs(args) => {
            let range = params::log_range(args.tail, args.since);
            let read = runtime.block_on(pyro.workspace_service_logs(
                &args.service.workspace,
                &args.service.name,
                range,
                args.max_bytes,
            ))?;
            if args.service.json {
                super::print_json(&read)?;
            } else {
                if read.skipped > 0 {
                    eprintln!(
                        "pyro: {} bytes before offset {} are no longer kept (the log is bounded)",
                        read.skipped, read.start_offset
                    );
                }
                let mut stdout = std::io::stdout().lock();
                stdout
                    .write_all(read.text.as_bytes())
                    .and_then(|()| stdout.flush())
                    .context("cannot write to stdout")?;
                if read.truncated {
                    eprintln!(
                        "pyro: more follows; read on with --since {}",
                        read.end_offset
                    );
                }
            }
        }
        ServiceCommand::Stop(args) => {
            let info = runtime.block_on(pyro.workspace_service_stop(
                &args.service.workspace,
                &args.service.name,
                Duration::from_secs(args.grace),
            ))?;
            if args.service.json {
                super::print_json(&info)?;
            } else {
                match &info.state {
                    ServiceState::Stopped { killed: true } => println!(
                        "service {} ignored SIGTERM for {} s and was killed",
                        info.name, args.grace
                    ),
                    ServiceState::Stopped { killed: false } => {
                        println!("service {} stopped", info.name)
                    }
                    _ => println!(
                        "service {} was not running ({})",
                        info.name,
                        describe(&info)
                    ),
                }
            }
        }
    }
    Ok(0)
}

/// "running", "failed: exited with code 2", "ended: the workspace was reset …".
/// A reason may quote the guest's agent: escaped.
fn describe(info: &ServiceInfo) -> String {
    match &info.state {
        ServiceState::Failed { reason, .. } => format!("failed: {}", visible(reason)),
        ServiceState::Ended { reason } => format!("ended: {}", visible(reason)),
        ServiceState::Stopped { killed: true } => "stopped (killed after SIGTERM)".into(),
        other => other.label().to_string(),
    }
}

fn print_services(services: &[ServiceInfo]) {
    if services.is_empty() {
        println!("no services");
        return;
    }
    println!("{:<16} {:<40} STATE", "NAME", "COMMAND");
    for info in services {
        let mut command = visible(&info.command).into_owned();
        if command.chars().count() > 40 {
            command = command.chars().take(37).collect::<String>() + "...";
        }
        println!("{:<16} {command:<40} {}", info.name, describe(info));
    }
}

fn print_status(info: &ServiceInfo) {
    println!("name:       {}", info.name);
    println!("state:      {}", describe(info));
    println!("command:    {}", visible(&info.command));
    if let Some(cwd) = &info.cwd {
        println!("cwd:        {}", visible(cwd));
    }
    if let Some(readiness) = &info.readiness {
        let ready = match readiness {
            Readiness::File { path } => format!("file {path}"),
            Readiness::Tcp { port } => format!("tcp {port}"),
            Readiness::Http { url } => format!("http {url}"),
            Readiness::Command { command } => format!("command {command}"),
        };
        println!("readiness:  {}", visible(&ready));
    }
    println!("started:    {}", info.started_at);
    if let Some(ms) = info.ready_after_ms {
        println!("ready:      after {ms} ms");
    }
    if let Some(ended) = &info.ended_at {
        println!("ended:      {ended}");
    }
    println!(
        "log:        {} bytes{}",
        info.log_bytes,
        if info.log_dropped > 0 {
            format!(" ({} dropped, bounded)", info.log_dropped)
        } else {
            String::new()
        }
    );
}
