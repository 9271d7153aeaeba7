//! Arguments of `pyro workspace shell ...` and `pyro workspace service ...`.

use clap::{ArgGroup, Args, Subcommand};
use pyro_core::params;

#[derive(Debug, Subcommand)]
pub enum ShellCommand {
    /// Open an interactive shell (bash, else sh) on a terminal in the workspace.
    ///
    /// The shell keeps running between calls; any later `pyro` process
    /// reaches it by its id. Prints the shell id.
    #[command(after_help = "Examples:
  SH=$(pyro workspace shell open api-fix --id-only)
  pyro workspace shell write api-fix $SH --line 'python3'
  pyro workspace shell read api-fix $SH")]
    Open(ShellOpenArgs),
    /// Print what the shell showed since the last read, as plain text.
    ///
    /// Waits until the shell has printed nothing for --wait-idle (or until
    /// --timeout), so one read after a command returns its whole output.
    /// Escape sequences are interpreted as a terminal would: colours go, a
    /// `\r` progress bar reads as its final line, a full-screen program (vi,
    /// top) reads as its screen. --raw prints the bytes as the program wrote
    /// them instead.
    Read(ShellReadArgs),
    /// Type into a shell: text, a line (with Enter), or named keys.
    #[command(after_help = "Examples:
  pyro workspace shell write api-fix s1 --line 'make test'
  pyro workspace shell write api-fix s1 --key ctrl-c
  pyro workspace shell write api-fix s1 --text ':wq' --key enter

Keys: enter, tab, esc, backspace, up, down, left, right, home, end, pageup,
pagedown, delete, ctrl-a … ctrl-z and more.")]
    Write(ShellWriteArgs),
    /// Send a signal to what runs in the shell's foreground (INT, TERM, KILL, HUP, …).
    Signal(ShellSignalArgs),
    /// Change a shell's terminal size.
    Resize(ShellResizeArgs),
    /// End a shell and everything running in it.
    Close(ShellRef),
    /// List a workspace's shells: open ones, and how recent ones ended.
    List(ShellListArgs),
}

#[derive(Debug, Args)]
pub struct ShellOpenArgs {
    /// Workspace id or name.
    pub workspace: String,
    /// Directory to start in, relative ones under /workspace [default: /workspace].
    #[arg(long)]
    pub cwd: Option<String>,
    /// Terminal rows, 1-500 [default: 40].
    #[arg(long)]
    pub rows: Option<u16>,
    /// Terminal columns, 1-1000 [default: 120].
    #[arg(long)]
    pub cols: Option<u16>,
    /// Give the shell a secret as a variable: NAME, or ENVVAR=NAME (repeatable).
    #[arg(long = "secret-env", value_name = "[ENVVAR=]NAME")]
    pub secret_env: Vec<String>,
    /// Print only the shell id.
    #[arg(long)]
    pub id_only: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShellRef {
    /// Workspace id or name.
    pub workspace: String,
    /// Shell id (from `shell open` or `shell list`).
    pub shell: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ShellReadArgs {
    #[command(flatten)]
    pub shell: ShellRef,
    /// Return once the shell printed nothing for this many milliseconds.
    #[arg(long, value_name = "MS", default_value_t = params::DEFAULT_WAIT_IDLE.as_millis() as u64)]
    pub wait_idle: u64,
    /// Return after this many seconds even if the shell is still printing.
    #[arg(long, value_name = "SECONDS", default_value_t = params::DEFAULT_READ_TIMEOUT.as_secs())]
    pub timeout: u64,
    /// The bytes as the program wrote them, escape sequences and all.
    #[arg(long)]
    pub raw: bool,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("input").required(true).multiple(true).args(["text", "line", "key"])))]
pub struct ShellWriteArgs {
    #[command(flatten)]
    pub shell: ShellRef,
    /// Text typed as is (no Enter).
    #[arg(long)]
    pub text: Option<String>,
    /// A line, followed by Enter.
    #[arg(long)]
    pub line: Option<String>,
    /// A named key, after any text or line (repeatable): enter, ctrl-c, up, …
    #[arg(long, value_name = "KEY")]
    pub key: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ShellSignalArgs {
    #[command(flatten)]
    pub shell: ShellRef,
    /// Signal name (INT, TERM, KILL, HUP, QUIT, USR1, …; SIG prefix optional) or number.
    pub signal: String,
}

#[derive(Debug, Args)]
pub struct ShellResizeArgs {
    #[command(flatten)]
    pub shell: ShellRef,
    pub rows: u16,
    pub cols: u16,
}

#[derive(Debug, Args)]
pub struct ShellListArgs {
    /// Workspace id or name.
    pub workspace: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Start a named service and wait until it is ready.
    ///
    /// Without a readiness check the service counts as ready once started.
    /// If it exits first, or is not ready within --ready-timeout (it is then
    /// stopped), the start fails and prints its last log lines. Starting a
    /// name whose service has ended starts it afresh.
    #[command(after_help = "Examples:
  pyro workspace service start api-fix web --ready-http http://127.0.0.1:8000/ -- python3 -m http.server 8000
  pyro workspace service start api-fix db --ready-tcp 5432 -- postgres -D /var/lib/pg
  pyro workspace service start api-fix worker --ready-file /tmp/worker.ready -- ./worker.sh")]
    #[command(group(ArgGroup::new("ready").args(["ready_file", "ready_tcp", "ready_http", "ready_command"])))]
    Start(ServiceStartArgs),
    /// List a workspace's services and their states.
    List(ShellListArgs),
    /// Show one service: state, exit status, readiness, log size.
    Status(ServiceRef),
    /// Print a service's log: the last lines, or from an offset on.
    Logs(ServiceLogsArgs),
    /// Stop a service: SIGTERM, then SIGKILL after --grace.
    Stop(ServiceStopArgs),
}

#[derive(Debug, Args)]
pub struct ServiceRef {
    /// Workspace id or name.
    pub workspace: String,
    /// Service name.
    pub name: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ServiceStartArgs {
    #[command(flatten)]
    pub service: ServiceRef,
    /// Ready when this file exists (absolute, or relative to /workspace).
    #[arg(long, value_name = "PATH")]
    pub ready_file: Option<String>,
    /// Ready when this TCP port of the guest's loopback accepts connections.
    #[arg(long, value_name = "PORT")]
    pub ready_tcp: Option<u16>,
    /// Ready when this http:// URL in the guest answers 2xx or 3xx.
    #[arg(long, value_name = "URL")]
    pub ready_http: Option<String>,
    /// Ready when this shell command exits 0 in the guest.
    #[arg(long, value_name = "CMD")]
    pub ready_command: Option<String>,
    /// Seconds to wait for readiness.
    #[arg(long, value_name = "SECONDS", default_value_t = params::DEFAULT_READY_TIMEOUT.as_secs())]
    pub ready_timeout: u64,
    /// Working directory, relative ones under /workspace [default: /workspace].
    #[arg(long)]
    pub cwd: Option<String>,
    /// Extra environment variable NAME=VALUE (repeatable; values are never recorded).
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env_vars: Vec<String>,
    /// Give the service a secret as a variable: NAME, or ENVVAR=NAME (repeatable).
    #[arg(long = "secret-env", value_name = "[ENVVAR=]NAME")]
    pub secret_env: Vec<String>,
    /// The service's command.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ServiceLogsArgs {
    #[command(flatten)]
    pub service: ServiceRef,
    /// The last N lines [default: 50].
    #[arg(long, value_name = "N", conflicts_with = "since")]
    pub tail: Option<usize>,
    /// Everything from this byte offset on (offsets count from the service's start).
    #[arg(long, value_name = "OFFSET")]
    pub since: Option<u64>,
    /// At most this many bytes.
    #[arg(long, value_name = "N", default_value_t = params::DEFAULT_LOG_BYTES)]
    pub max_bytes: u64,
}

#[derive(Debug, Args)]
pub struct ServiceStopArgs {
    #[command(flatten)]
    pub service: ServiceRef,
    /// Seconds between SIGTERM and SIGKILL.
    #[arg(long, value_name = "SECONDS", default_value_t = params::DEFAULT_STOP_GRACE.as_secs())]
    pub grace: u64,
}
