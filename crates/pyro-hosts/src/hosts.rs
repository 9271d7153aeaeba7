//! Per-host registration: where each host keeps pyro's entry, how to read
//! it, how to write it (the host's CLI first, its config file otherwise) and
//! the snippet to paste by hand.
//!
//! OpenCode's `opencode mcp add` only asks interactively for a local
//! command, so OpenCode is always registered through its config file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use pyro_util::shell_quote;
use serde::Serialize;
use serde_json::{json, Value};

use crate::config::{self, json_get, json_object_at, parse_json, parse_toml, render_json};
use crate::{Error, Host, HostEnv, ServerCommand, SERVER_NAME};

/// How a registration was written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "kind")]
pub enum Method {
    /// By the host's own CLI.
    Cli { cli: PathBuf },
    /// By editing the host's config file.
    ConfigFile,
    /// Nothing to do: the registration was already right.
    Unchanged,
}

/// What `connect` did.
#[derive(Debug, Clone, Serialize)]
pub struct ConnectOutcome {
    pub host: Host,
    pub method: Method,
    pub config_path: PathBuf,
    /// The registration before this call, if any.
    pub previous: Option<ServerCommand>,
    pub server: ServerCommand,
    /// A copy of the config file as it was, when pyro rewrote it.
    pub backup: Option<PathBuf>,
}

/// The exact text to add to a host's config by hand.
#[derive(Debug, Clone, Serialize)]
pub struct Snippet {
    pub host: Host,
    pub config_path: PathBuf,
    pub format: &'static str,
    pub text: String,
    /// The host CLI command that does the same, when the host has one.
    pub cli_command: Option<String>,
}

/// pyro's current registration with `host`, read from its config file.
pub fn registration(env: &HostEnv, host: Host) -> Result<Option<ServerCommand>, Error> {
    let path = env.config_path(host);
    let Some(text) = config::read_optional(host, &path)? else {
        return Ok(None);
    };
    let from_json = |command: Option<&Value>, args: Option<&Value>| {
        let command = command?.as_str()?;
        let args = match args {
            Some(args) => strings(args)?,
            None => Vec::new(),
        };
        Some(ServerCommand {
            command: PathBuf::from(command),
            args,
        })
    };
    Ok(match host {
        Host::ClaudeCode => {
            let root = parse_json(host, &path, Some(&text))?;
            json_get(&root, &["mcpServers", SERVER_NAME])
                .and_then(|entry| from_json(entry.get("command"), entry.get("args")))
        }
        Host::OpenCode => {
            let root = parse_json(host, &path, Some(&text))?;
            json_get(&root, &["mcp", SERVER_NAME])
                .and_then(|entry| entry.get("command"))
                .and_then(strings)
                .and_then(|mut words| {
                    (!words.is_empty()).then(|| ServerCommand {
                        command: PathBuf::from(words.remove(0)),
                        args: words,
                    })
                })
        }
        Host::Codex => {
            let doc = parse_toml(host, &path, Some(&text))?;
            doc.get("mcp_servers")
                .and_then(|servers| servers.get(SERVER_NAME))
                .and_then(|entry| {
                    let command = entry.get("command")?.as_str()?;
                    let args = match entry.get("args") {
                        Some(args) => args
                            .as_array()?
                            .iter()
                            .map(|arg| arg.as_str().map(str::to_owned))
                            .collect::<Option<Vec<_>>>()?,
                        None => Vec::new(),
                    };
                    Some(ServerCommand {
                        command: PathBuf::from(command),
                        args,
                    })
                })
        }
    })
}

fn strings(value: &Value) -> Option<Vec<String>> {
    value
        .as_array()?
        .iter()
        .map(|word| word.as_str().map(str::to_owned))
        .collect()
}

/// Registers `server` with `host` as `pyro`: through the host's CLI when it
/// is on `PATH`, else by editing its config file. Idempotent; other servers
/// and settings are never touched.
pub fn connect(env: &HostEnv, host: Host, server: &ServerCommand) -> Result<ConnectOutcome, Error> {
    let config_path = env.config_path(host);
    let previous = registration(env, host)?;
    let mut outcome = ConnectOutcome {
        host,
        method: Method::Unchanged,
        config_path: config_path.clone(),
        previous: previous.clone(),
        server: server.clone(),
        backup: None,
    };
    if previous.as_ref() == Some(server) {
        return Ok(outcome);
    }
    let cli = match host {
        Host::OpenCode => None,
        Host::ClaudeCode | Host::Codex => env.find_cli(host),
    };
    match cli {
        Some(cli) => {
            connect_with_cli(host, &cli, server, previous.is_some())?;
            if registration(env, host)?.as_ref() != Some(server) {
                return Err(Error::CliFailed {
                    host,
                    command: format!("{} mcp add", cli.display()),
                    status: "exit 0".to_owned(),
                    stderr: format!(
                        "{} has no matching pyro entry afterwards",
                        config_path.display()
                    ),
                });
            }
            outcome.method = Method::Cli { cli };
        }
        None => {
            outcome.backup = write_config(host, &config_path, server)?;
            outcome.method = Method::ConfigFile;
        }
    }
    Ok(outcome)
}

fn cli_add_args(host: Host, server: &ServerCommand) -> Vec<String> {
    let head: &[&str] = match host {
        Host::ClaudeCode => &["mcp", "add", "--scope", "user", SERVER_NAME, "--"],
        Host::Codex | Host::OpenCode => &["mcp", "add", SERVER_NAME, "--"],
    };
    let mut args: Vec<String> = head.iter().map(|word| word.to_string()).collect();
    args.push(server.command.to_string_lossy().into_owned());
    args.extend(server.args.iter().cloned());
    args
}

fn connect_with_cli(
    host: Host,
    cli: &Path,
    server: &ServerCommand,
    replace: bool,
) -> Result<(), Error> {
    // `claude mcp add` refuses to overwrite; `codex mcp add` replaces.
    if replace && host == Host::ClaudeCode {
        run_cli(
            host,
            cli,
            &["mcp", "remove", "--scope", "user", SERVER_NAME],
        )?;
    }
    let args = cli_add_args(host, server);
    run_cli(
        host,
        cli,
        &args.iter().map(String::as_str).collect::<Vec<_>>(),
    )
}

fn run_cli(host: Host, cli: &Path, args: &[&str]) -> Result<(), Error> {
    let output = Command::new(cli)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|source| Error::CliSpawn {
            host,
            cli: cli.to_path_buf(),
            source,
        })?;
    if output.status.success() {
        return Ok(());
    }
    let words = std::iter::once(cli.to_string_lossy().into_owned())
        .chain(args.iter().map(|arg| arg.to_string()));
    Err(Error::CliFailed {
        host,
        command: words.map(|w| shell_quote(&w)).collect::<Vec<_>>().join(" "),
        status: output.status.to_string(),
        stderr: String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    })
}

/// Writes pyro's entry into the host's config file, keeping every other key
/// (including extra keys of an existing pyro entry, such as `env`).
fn write_config(host: Host, path: &Path, server: &ServerCommand) -> Result<Option<PathBuf>, Error> {
    let old = config::read_optional(host, path)?;
    let new = match host {
        Host::ClaudeCode => {
            let mut root = parse_json(host, path, old.as_deref())?;
            let entry = json_object_at(host, path, &mut root, &["mcpServers", SERVER_NAME])?;
            entry.insert("type".into(), json!("stdio"));
            entry.insert("command".into(), json!(server.command));
            entry.insert("args".into(), json!(server.args));
            entry.entry("env").or_insert_with(|| json!({}));
            render_json(&root)
        }
        Host::OpenCode => {
            let mut root = parse_json(host, path, old.as_deref())?;
            if let Some(object) = root.as_object_mut().filter(|object| object.is_empty()) {
                object.insert("$schema".into(), json!("https://opencode.ai/config.json"));
            }
            let entry = json_object_at(host, path, &mut root, &["mcp", SERVER_NAME])?;
            entry.insert("type".into(), json!("local"));
            entry.insert("command".into(), json!(opencode_command(server)));
            entry.insert("enabled".into(), json!(true));
            render_json(&root)
        }
        Host::Codex => {
            let mut doc = parse_toml(host, path, old.as_deref())?;
            let shape = || Error::Shape {
                host,
                path: path.to_path_buf(),
                key: format!("mcp_servers.{SERVER_NAME}"),
            };
            let servers = doc.entry("mcp_servers").or_insert_with(|| {
                let mut table = toml_edit::Table::new();
                table.set_implicit(true);
                toml_edit::Item::Table(table)
            });
            // `mcp_servers = { ... }` becomes a `[mcp_servers]` table so that
            // pyro's entry can be a table of its own.
            if servers.is_inline_table() {
                let table = std::mem::take(servers).into_table().map_err(|_| shape())?;
                *servers = toml_edit::Item::Table(table);
            }
            let servers = servers.as_table_like_mut().ok_or_else(shape)?;
            let entry = servers
                .entry(SERVER_NAME)
                .or_insert(toml_edit::table())
                .as_table_like_mut()
                .ok_or_else(shape)?;
            set_codex_entry(entry, server);
            doc.to_string()
        }
    };
    config::write_atomic(host, path, old.as_deref(), &new)
}

fn set_codex_entry(entry: &mut dyn toml_edit::TableLike, server: &ServerCommand) {
    entry.insert(
        "command",
        toml_edit::value(server.command.to_string_lossy().into_owned()),
    );
    let args: toml_edit::Array = server.args.iter().map(String::as_str).collect();
    entry.insert("args", toml_edit::value(args));
}

fn opencode_command(server: &ServerCommand) -> Vec<String> {
    std::iter::once(server.command.to_string_lossy().into_owned())
        .chain(server.args.iter().cloned())
        .collect()
}

/// The snippet that registers `server` with `host`, for pasting by hand.
pub fn print_config(env: &HostEnv, host: Host, server: &ServerCommand) -> Snippet {
    let (format, text) = match host {
        Host::ClaudeCode => (
            "json",
            render_json(&json!({ "mcpServers": { SERVER_NAME: {
                "type": "stdio",
                "command": server.command,
                "args": server.args,
                "env": {},
            }}})),
        ),
        Host::OpenCode => (
            "json",
            render_json(&json!({
                "$schema": "https://opencode.ai/config.json",
                "mcp": { SERVER_NAME: {
                    "type": "local",
                    "command": opencode_command(server),
                    "enabled": true,
                }},
            })),
        ),
        Host::Codex => {
            let mut doc = toml_edit::DocumentMut::new();
            let mut servers = toml_edit::Table::new();
            servers.set_implicit(true);
            let mut entry = toml_edit::Table::new();
            set_codex_entry(&mut entry, server);
            servers.insert(SERVER_NAME, toml_edit::Item::Table(entry));
            doc.insert("mcp_servers", toml_edit::Item::Table(servers));
            ("toml", doc.to_string())
        }
    };
    let cli_command = match host {
        Host::OpenCode => None,
        Host::ClaudeCode | Host::Codex => Some(
            std::iter::once(host.cli_name().to_owned())
                .chain(cli_add_args(host, server))
                .map(|word| shell_quote(&word))
                .collect::<Vec<_>>()
                .join(" "),
        ),
    };
    Snippet {
        host,
        config_path: env.config_path(host),
        format,
        text,
        cli_command,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(home: &Path) -> HostEnv {
        HostEnv {
            home: home.to_path_buf(),
            path: None,
            xdg_config_home: None,
            codex_home: None,
        }
    }

    #[test]
    fn codex_inline_tables_and_extra_keys_survive() {
        let home = tempfile::tempdir().unwrap();
        let env = env(home.path());
        let path = env.config_path(Host::Codex);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let server = ServerCommand::for_binary(Path::new("/new/pyro"));
        for (before, kept) in [
            (
                "mcp_servers = { other = { command = \"x\" } }\n",
                "other = { command = \"x\" }",
            ),
            (
                "[mcp_servers.pyro]\ncommand = \"/old\"\nstartup_timeout_sec = 30\n",
                "startup_timeout_sec = 30",
            ),
        ] {
            std::fs::write(&path, before).unwrap();
            let outcome = connect(&env, Host::Codex, &server).unwrap();
            assert_eq!(outcome.method, Method::ConfigFile);
            assert_eq!(
                registration(&env, Host::Codex).unwrap(),
                Some(server.clone())
            );
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains(kept), "{text}");
            assert_eq!(
                std::fs::read_to_string(outcome.backup.unwrap()).unwrap(),
                before
            );
        }
    }

    #[test]
    fn a_broken_config_is_reported_with_the_fix_and_left_alone() {
        let home = tempfile::tempdir().unwrap();
        let env = env(home.path());
        let path = env.config_path(Host::ClaudeCode);
        std::fs::write(&path, "{ not json").unwrap();
        let server = ServerCommand::for_binary(Path::new("/p"));
        let err = connect(&env, Host::ClaudeCode, &server).unwrap_err();
        assert!(err.to_string().contains("fix or move it aside"), "{err}");
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{ not json");
    }

    #[test]
    fn new_config_files_are_private() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let env = env(home.path());
        let server = ServerCommand::for_binary(Path::new("/p"));
        connect(&env, Host::OpenCode, &server).unwrap();
        let mode = std::fs::metadata(env.config_path(Host::OpenCode))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn shell_lines_quote_what_needs_it() {
        let server = ServerCommand::for_binary(Path::new("/opt/my tools/pyro"));
        assert_eq!(server.shell_line(), "'/opt/my tools/pyro' mcp serve");
    }

    #[test]
    fn the_server_command_follows_the_end_of_options() {
        let server = ServerCommand::for_binary(Path::new("-pyro"));
        for host in [Host::ClaudeCode, Host::Codex, Host::OpenCode] {
            let args = cli_add_args(host, &server);
            let dashes = args.iter().position(|a| a == "--").unwrap();
            assert_eq!(args[dashes + 1..], ["-pyro", "mcp", "serve"], "{host:?}");
        }
    }
}
