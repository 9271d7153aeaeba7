//! `pyro host doctor`: is pyro registered with a host, and does the
//! registration point at a pyro binary that works?
//!
//! The registered binary is only ever started with `--version` and
//! `mcp serve --help`, each with a deadline, so a broken binary cannot hang
//! the check.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pyro_util::error_chain;
use serde::Serialize;

use crate::{hosts, is_executable, Host, HostEnv, ServerCommand};

/// How long a probe of the registered binary may take.
const PROBE_DEADLINE: Duration = Duration::from_secs(15);

/// The outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Ok,
    Warn,
    /// Not broken, but not usable yet either (a feature this build lacks).
    Pending,
    Fail,
}

/// One line of the report, with the fix when there is one.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub level: Level,
    pub detail: String,
    pub fix: Option<String>,
}

/// Everything `doctor` found out about one host.
#[derive(Debug, Clone, Serialize)]
pub struct HostReport {
    pub host: Host,
    pub cli: Option<PathBuf>,
    pub config_path: PathBuf,
    pub registered: Option<ServerCommand>,
    pub checks: Vec<Check>,
    /// No check failed.
    pub healthy: bool,
}

/// Checks pyro's registration with `host`. `current` is the running pyro,
/// which a registration should point at. When `required` is false, a host
/// pyro is not registered with is a warning rather than a failure.
pub fn doctor(env: &HostEnv, host: Host, current: &ServerCommand, required: bool) -> HostReport {
    let cli = env.find_cli(host);
    let config_path = env.config_path(host);
    let mut checks = vec![cli_check(host, cli.as_deref(), &config_path)];
    let registered = match hosts::registration(env, host) {
        Ok(registered) => registered,
        Err(err) => {
            checks.push(Check {
                name: "registered",
                level: Level::Fail,
                detail: error_chain(&err),
                fix: None,
            });
            return report(host, cli, config_path, None, checks);
        }
    };
    let Some(server) = registered.clone() else {
        checks.push(Check {
            name: "registered",
            level: if required { Level::Fail } else { Level::Warn },
            detail: format!("pyro is not registered in {}", config_path.display()),
            fix: Some(format!("pyro host connect {host}")),
        });
        return report(host, cli, config_path, None, checks);
    };
    checks.push(Check {
        name: "registered",
        level: Level::Ok,
        detail: format!("{} ({})", server.shell_line(), config_path.display()),
        fix: None,
    });
    checks.extend(binary_checks(host, &server, current));
    report(host, cli, config_path, registered, checks)
}

fn report(
    host: Host,
    cli: Option<PathBuf>,
    config_path: PathBuf,
    registered: Option<ServerCommand>,
    checks: Vec<Check>,
) -> HostReport {
    let healthy = checks.iter().all(|check| check.level != Level::Fail);
    HostReport {
        host,
        cli,
        config_path,
        registered,
        checks,
        healthy,
    }
}

fn cli_check(host: Host, cli: Option<&Path>, config_path: &Path) -> Check {
    match cli {
        Some(cli) => Check {
            name: "host cli",
            level: Level::Ok,
            detail: format!("{} at {}", host.cli_name(), cli.display()),
            fix: None,
        },
        None => Check {
            name: "host cli",
            level: Level::Warn,
            detail: format!(
                "`{}` is not on PATH; pyro reads and writes {} directly",
                host.cli_name(),
                config_path.display()
            ),
            fix: Some(format!("npm install -g {}", host.npm_package())),
        },
    }
}

/// Checks on the registered binary; stops at the first failure.
fn binary_checks(host: Host, server: &ServerCommand, current: &ServerCommand) -> Vec<Check> {
    let repair = Some(format!("pyro host repair {host}"));
    let binary = &server.command;
    if !binary.is_absolute() || !is_executable(binary) {
        let why = if !binary.is_absolute() {
            "is not an absolute path"
        } else if binary.exists() {
            "is not an executable file"
        } else {
            "does not exist"
        };
        return vec![Check {
            name: "binary",
            level: Level::Fail,
            detail: format!("stale registration: {} {why}", binary.display()),
            fix: repair,
        }];
    }
    let mut checks = vec![Check {
        name: "binary",
        level: Level::Ok,
        detail: format!("{} is executable", binary.display()),
        fix: None,
    }];
    match probe(binary, &["--version"]) {
        Ok(version) => checks.push(Check {
            name: "version",
            level: Level::Ok,
            detail: version.lines().next().unwrap_or("").trim().to_owned(),
            fix: None,
        }),
        Err(why) => {
            checks.push(Check {
                name: "version",
                level: Level::Fail,
                detail: format!("`{} --version` failed: {why}", binary.display()),
                fix: repair,
            });
            return checks;
        }
    }
    checks.push(if server.args == ["mcp", "serve"] {
        match probe(binary, &["mcp", "serve", "--help"]) {
            Ok(_) => Check {
                name: "mcp serve",
                level: Level::Ok,
                detail: "`mcp serve` is available".to_owned(),
                fix: None,
            },
            Err(_) => Check {
                name: "mcp serve",
                level: Level::Pending,
                detail: "this pyro build has no `mcp serve` yet; the host cannot start it until \
                         pyro is updated"
                    .to_owned(),
                fix: Some("install a pyro build that has `pyro mcp serve`".to_owned()),
            },
        }
    } else {
        Check {
            name: "mcp serve",
            level: Level::Warn,
            detail: format!(
                "registered arguments are {:?}, not [\"mcp\", \"serve\"]",
                server.args
            ),
            fix: repair.clone(),
        }
    });
    if server.command != current.command {
        checks.push(Check {
            name: "current",
            level: Level::Warn,
            detail: format!(
                "the host starts {}, not this pyro ({})",
                server.command.display(),
                current.command.display()
            ),
            fix: repair,
        });
    }
    checks
}

/// Runs `binary args...` with a deadline; its stdout on success.
fn probe(binary: &Path, args: &[&str]) -> Result<String, String> {
    let mut child = Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|err| err.to_string())?;
    let deadline = Instant::now() + PROBE_DEADLINE;
    let status = loop {
        match child.try_wait().map_err(|err| err.to_string())? {
            Some(status) => break status,
            None if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("no answer within {}s", PROBE_DEADLINE.as_secs()));
            }
            None => std::thread::sleep(Duration::from_millis(20)),
        }
    };
    let mut stdout = String::new();
    if let Some(mut pipe) = child.stdout.take() {
        let _ = pipe.read_to_string(&mut stdout);
    }
    if status.success() {
        Ok(stdout)
    } else {
        Err(status.to_string())
    }
}
