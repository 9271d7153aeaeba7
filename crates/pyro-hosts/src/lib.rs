//! Registering pyro's MCP server with chat hosts: Claude Code, Codex and
//! OpenCode.
//!
//! Each host learns about an MCP server from one place: its own CLI
//! (`claude mcp add`, `codex mcp add`) when that is on `PATH`, otherwise its
//! config file (`~/.claude.json`, `~/.codex/config.toml`,
//! `~/.config/opencode/opencode.json`). This crate registers pyro there,
//! prints the exact snippet for people who prefer to paste it, checks that a
//! registration points at a working `pyro` binary, and repairs a stale one.
//!
//! Config files are edited with real JSON/TOML parsers, atomically (a temp
//! file renamed over the original), with a backup of the previous version,
//! and only pyro's own entry is touched: other servers and settings stay.
//!
//! This crate knows nothing about VMs or workspaces, and never starts the
//! server it registers (except `--version`/`--help` probes in [`doctor`]).
//! Every path is derived from a [`HostEnv`], so tests can isolate `HOME`.

mod config;
pub mod doctor;
mod hosts;

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use pyro_util::shell_quote;
use serde::Serialize;

pub use hosts::{connect, print_config, registration, ConnectOutcome, Method, Snippet};

/// The name pyro registers itself under in every host.
pub const SERVER_NAME: &str = "pyro";

/// A chat host pyro can register with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Host {
    ClaudeCode,
    Codex,
    OpenCode,
}

impl Host {
    /// Every supported host, in the order reports list them.
    pub const ALL: [Host; 3] = [Host::ClaudeCode, Host::Codex, Host::OpenCode];

    /// The name users type: `claude-code`, `codex`, `opencode`.
    pub fn name(self) -> &'static str {
        match self {
            Host::ClaudeCode => "claude-code",
            Host::Codex => "codex",
            Host::OpenCode => "opencode",
        }
    }

    /// The host's own executable, looked up on `PATH`.
    pub fn cli_name(self) -> &'static str {
        match self {
            Host::ClaudeCode => "claude",
            Host::Codex => "codex",
            Host::OpenCode => "opencode",
        }
    }

    /// The npm package that provides the host's CLI.
    pub fn npm_package(self) -> &'static str {
        match self {
            Host::ClaudeCode => "@anthropic-ai/claude-code",
            Host::Codex => "@openai/codex",
            Host::OpenCode => "opencode-ai",
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Host {
    type Err = Error;

    fn from_str(name: &str) -> Result<Self, Error> {
        Host::ALL
            .into_iter()
            .find(|host| host.name() == name)
            .ok_or_else(|| Error::UnknownHost(name.to_owned()))
    }
}

/// The command a host runs to start pyro's MCP server.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServerCommand {
    pub command: PathBuf,
    pub args: Vec<String>,
}

impl ServerCommand {
    /// `<pyro> mcp serve` for the given binary.
    pub fn for_binary(pyro: &Path) -> Self {
        ServerCommand {
            command: pyro.to_path_buf(),
            args: vec!["mcp".to_owned(), "serve".to_owned()],
        }
    }

    /// `<absolute path of the running pyro> mcp serve`.
    pub fn current() -> Result<Self, Error> {
        let exe = std::env::current_exe().map_err(Error::CurrentExe)?;
        let exe = fs_err::canonicalize(&exe).unwrap_or(exe);
        Ok(Self::for_binary(&exe))
    }

    /// The whole command line, each word shell-quoted when it needs it.
    pub fn shell_line(&self) -> String {
        std::iter::once(self.command.to_string_lossy().into_owned())
            .chain(self.args.iter().cloned())
            .map(|word| shell_quote(&word))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Where hosts keep their state: read once from the environment so tests can
/// point `HOME` (and `PATH`) somewhere else.
#[derive(Debug, Clone)]
pub struct HostEnv {
    pub home: PathBuf,
    /// `PATH`, searched for the hosts' CLIs.
    pub path: Option<OsString>,
    /// `XDG_CONFIG_HOME`, where OpenCode keeps its config.
    pub xdg_config_home: Option<PathBuf>,
    /// `CODEX_HOME`, where Codex keeps its config.
    pub codex_home: Option<PathBuf>,
}

impl HostEnv {
    /// Reads `HOME`, `PATH`, `XDG_CONFIG_HOME` and `CODEX_HOME`.
    pub fn from_process() -> Result<Self, Error> {
        let non_empty = |name: &str| std::env::var_os(name).filter(|value| !value.is_empty());
        let home = non_empty("HOME").map(PathBuf::from).ok_or(Error::NoHome)?;
        Ok(HostEnv {
            home,
            path: std::env::var_os("PATH"),
            xdg_config_home: non_empty("XDG_CONFIG_HOME").map(PathBuf::from),
            codex_home: non_empty("CODEX_HOME").map(PathBuf::from),
        })
    }

    /// The host's CLI when it is on `PATH`.
    pub fn find_cli(&self, host: Host) -> Option<PathBuf> {
        let path = self.path.as_ref()?;
        std::env::split_paths(path)
            .map(|dir| dir.join(host.cli_name()))
            .find(|candidate| is_executable(candidate))
    }

    /// The config file the host reads pyro's registration from.
    pub fn config_path(&self, host: Host) -> PathBuf {
        match host {
            Host::ClaudeCode => self.home.join(".claude.json"),
            Host::Codex => self
                .codex_home
                .clone()
                .unwrap_or_else(|| self.home.join(".codex"))
                .join("config.toml"),
            Host::OpenCode => self
                .xdg_config_home
                .clone()
                .unwrap_or_else(|| self.home.join(".config"))
                .join("opencode")
                .join("opencode.json"),
        }
    }
}

/// A regular file with an execute bit set.
pub fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Why registering with a host failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("unknown host '{0}'; use one of: claude-code, codex, opencode")]
    UnknownHost(String),
    #[error("HOME is not set; set it to your home directory and run the command again")]
    NoHome,
    #[error("cannot find the running pyro binary; run pyro by its absolute path")]
    CurrentExe(#[source] std::io::Error),
    #[error("cannot read or write the {host} config")]
    Io {
        host: Host,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} is not valid {format}; fix or move it aside, then run: pyro host connect {host}"
    )]
    Parse {
        host: Host,
        path: PathBuf,
        format: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error(
        "{path}: `{key}` is not a table/object; fix it by hand (see `pyro host print-config {host}`)"
    )]
    Shape {
        host: Host,
        path: PathBuf,
        key: String,
    },
    #[error(
        "cannot run {cli}; check that it works, or add pyro by hand: pyro host print-config {host}"
    )]
    CliSpawn {
        host: Host,
        cli: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}): {stderr}; add pyro by hand instead: pyro host print-config {host}")]
    CliFailed {
        host: Host,
        command: String,
        status: String,
        stderr: String,
    },
}
