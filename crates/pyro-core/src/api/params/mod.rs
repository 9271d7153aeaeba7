//! The rules every front end shares: defaults, limits, and how loose
//! arguments become one request. The CLI and the MCP server parse their
//! own syntax, then call these, so a default or a limit is written once
//! and both front ends agree (the way `uv`'s settings are resolved once).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::supervisor::protocol::{LogRange, Readiness};
use crate::workspace::Seed;

pub use crate::supervisor::protocol::{
    DEFAULT_LOG_LINES, LONGEST_WAIT, MAX_COLS, MAX_OPEN_SHELLS, MAX_ROWS, MAX_SERVICES, MAX_WRITE,
};
pub use crate::workspace::diff::PATCH_LIMIT;
pub use crate::workspace::files::{
    DEFAULT_READ_LIMIT, LIST_LIMIT, MAX_FILE_WRITE, MAX_PATCH_BYTES, PATCH_READ_LIMIT,
    PATCH_TREE_LIMIT,
};

/// The environment used when a call names none.
pub const DEFAULT_ENV: &str = "debian:12";
/// vCPUs of a VM unless asked otherwise.
pub const DEFAULT_CPUS: u32 = 1;
/// Memory of a VM unless asked otherwise, MiB.
pub const DEFAULT_MEMORY_MIB: u32 = 1024;
/// Smallest VM memory accepted (MiB); below it Debian's kernel cannot even
/// unpack its initramfs.
pub const MIN_MEMORY_MIB: u32 = 128;

/// Whether creates restore the warm template unless told otherwise: yes,
/// but `PYRO_COLD_BOOT=1` makes every create boot a kernel (for a host
/// where restores misbehave, and to measure).
pub fn warm_by_default() -> bool {
    std::env::var_os("PYRO_COLD_BOOT").is_none_or(|v| v != "1")
}
/// Most vCPUs accepted.
pub const MAX_CPUS: u32 = 64;

/// Default terminal size of a shell: roomy, so fewer lines wrap.
pub const DEFAULT_ROWS: u16 = 40;
/// Default terminal width of a shell.
pub const DEFAULT_COLS: u16 = 120;
/// A shell read returns once the shell printed nothing for this long...
pub const DEFAULT_WAIT_IDLE: Duration = Duration::from_millis(500);
/// ...at most this long.
pub const MAX_WAIT_IDLE: Duration = Duration::from_secs(60);
/// A shell read returns after this long however busy the shell is...
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(15);
/// ...between these bounds.
pub const MIN_READ_TIMEOUT: Duration = Duration::from_secs(1);
/// The longest a shell read may wait.
pub const MAX_READ_TIMEOUT: Duration = Duration::from_secs(120);

/// How long a service may take to become ready unless asked otherwise.
pub const DEFAULT_READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Time between SIGTERM and SIGKILL when a service stops.
pub const DEFAULT_STOP_GRACE: Duration = Duration::from_secs(5);
/// Most bytes of a service's log one read returns unless asked otherwise.
pub const DEFAULT_LOG_BYTES: u64 = 1024 * 1024;

/// The shortest idle timeout: any shorter, and a workspace would suspend
/// between an agent's calls.
pub const MIN_IDLE_TIMEOUT: Duration = Duration::from_secs(5);
/// The longest idle timeout: 30 days.
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 24 * 3600);

/// An idle timeout as given (`--idle-timeout`, MCP `idle_timeout`): `off`
/// or `0` for none; else a duration such as `90s`, `15m`, `2h`, `1d`,
/// `1h30m`, or a bare number of seconds.
pub fn idle_timeout(text: &str) -> Result<Option<Duration>, InvalidRequest> {
    let text = text.trim();
    if text == "off" || text == "0" {
        return Ok(None);
    }
    let bad = || InvalidRequest::BadDuration { text: text.into() };
    let mut total = 0u64;
    let mut number = String::new();
    for c in text.chars() {
        if c.is_ascii_digit() {
            number.push(c);
            continue;
        }
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            _ => return Err(bad()),
        };
        let value: u64 = number.parse().map_err(|_| bad())?;
        total = total.saturating_add(value.saturating_mul(unit));
        number.clear();
    }
    if !number.is_empty() {
        total = total.saturating_add(number.parse::<u64>().map_err(|_| bad())?);
    }
    if text.is_empty() {
        return Err(bad());
    }
    let timeout = Duration::from_secs(total);
    if !(MIN_IDLE_TIMEOUT..=MAX_IDLE_TIMEOUT).contains(&timeout) {
        return Err(InvalidRequest::IdleTimeoutOutOfRange { text: text.into() });
    }
    Ok(Some(timeout))
}

/// The smallest ceiling on a workspace's host bytes: room for its disk's
/// first layers and a small memory state.
pub const MIN_MAX_HOST_DISK: u64 = 512 << 20;
/// The largest: 64 TiB.
pub const MAX_MAX_HOST_DISK: u64 = 64 << 40;

/// A ceiling on a workspace's host bytes as given (`--max-host-disk`, MCP
/// `max_host_disk`), in the words [`size`] reads: 512M to 64T.
pub fn max_host_disk(text: &str) -> Result<u64, InvalidRequest> {
    let range = MIN_MAX_HOST_DISK..=MAX_MAX_HOST_DISK;
    size_within(text, range, "a ceiling on the host disk", "512M to 64T")
}

/// The largest workspace disk: 2 TiB.
pub const MAX_DISK_SIZE: u64 = 2 << 40;

/// A workspace's disk size as given (`--disk-size`, MCP `disk_size`), in
/// the words [`size`] reads: up to 2T, and no smaller than its
/// environment's disk (checked at create).
pub fn disk_size(text: &str) -> Result<u64, InvalidRequest> {
    let range = 1 << 30..=MAX_DISK_SIZE;
    let bytes = size_within(text, range, "a disk size", "the environment's (8G) to 2T")?;
    // Whole MiB: a disk grows by whole sectors.
    Ok(bytes.div_ceil(1 << 20) << 20)
}

/// A [`size`] within `range`; out of it, an error saying `what` it is
/// and the `range` in words.
fn size_within(
    text: &str,
    range: std::ops::RangeInclusive<u64>,
    what: &'static str,
    words: &'static str,
) -> Result<u64, InvalidRequest> {
    let bytes = size(text)?;
    match range.contains(&bytes) {
        true => Ok(bytes),
        false => Err(InvalidRequest::SizeOutOfRange {
            text: text.into(),
            what,
            range: words,
        }),
    }
}

/// A size: a number with K, M, G or T (binary: `512M`, `16G`, `1.5T`;
/// `16GiB` and `16GB` read the same), or a bare number of GiB.
pub fn size(text: &str) -> Result<u64, InvalidRequest> {
    let bad = || InvalidRequest::BadSize { text: text.into() };
    let lower = text.trim().to_ascii_lowercase();
    let number_end = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (number, unit) = lower.split_at(number_end);
    let shift = match unit
        .trim_start()
        .trim_end_matches("ib")
        .trim_end_matches('b')
    {
        "" if unit.is_empty() => 30,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(bad()),
    };
    let value: f64 = number.parse().map_err(|_| bad())?;
    let bytes = value * (1u64 << shift) as f64;
    match bytes.is_finite() && bytes < u64::MAX as f64 {
        true => Ok(bytes as u64),
        false => Err(bad()),
    }
}

/// A duration in the words [`idle_timeout`] reads: `1h30m`, `45s`.
pub fn describe_duration(duration: Duration) -> String {
    let mut left = duration.as_secs();
    let mut text = String::new();
    for (unit, seconds) in [("d", 86400), ("h", 3600), ("m", 60), ("s", 1)] {
        if left >= seconds {
            text.push_str(&format!("{}{unit}", left / seconds));
            left %= seconds;
        }
    }
    if text.is_empty() {
        text.push_str("0s");
    }
    text
}

/// Arguments that break a rule, before anything runs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs)] // Each variant says what it is in its message.
pub enum InvalidRequest {
    #[error("no command given")]
    NoCommand,
    #[error(transparent)]
    UnknownMode(#[from] crate::workspace::mode::UnknownMode),
    #[error("give the command either as one shell line or as an argv list, not both")]
    TwoCommandForms,
    #[error("{mib} MiB of memory is too small to boot; use at least {MIN_MEMORY_MIB}")]
    MemoryTooSmall { mib: u32 },
    #[error("a VM takes 1 to {MAX_CPUS} vCPUs, not {cpus}")]
    CpusOutOfRange { cpus: u32 },
    #[error("a timeout must be at least 1 second")]
    ZeroTimeout,
    #[error("`{text}` is not a duration; use off, or a number with s, m, h or d, such as 90s, 15m, 2h or 1h30m")]
    BadDuration { text: String },
    #[error("an idle timeout of `{text}` is out of range; use 5s to 30d, or off")]
    IdleTimeoutOutOfRange { text: String },
    #[error("`{text}` is not a size; use a number with K, M, G or T, such as 512M, 16G or 1.5T")]
    BadSize { text: String },
    #[error("{what} of `{text}` is out of range; use {range}")]
    SizeOutOfRange {
        text: String,
        what: &'static str,
        range: &'static str,
    },
    #[error("a disk of {asked} is smaller than environment {env}'s {disk}; give {disk} or more")]
    DiskSmallerThanEnv {
        asked: String,
        env: String,
        disk: String,
    },
    #[error("mode {mode:o} is not a permission mode; use octal bits like 644 or 755")]
    BadMode { mode: u32 },
    #[error("unknown key '{key}'; use one of: {}", pyro_term::keys::NAMES.join(", "))]
    UnknownKey { key: String },
    #[error("nothing to write: give text, a line or keys")]
    NothingToWrite,
    #[error("unknown signal '{name}'; use a number or one of: {}", signal_names())]
    UnknownSignal { name: String },
    #[error(
        "give one readiness check (a file, a TCP port, an HTTP URL or a command), not {count}"
    )]
    TwoReadinessChecks { count: usize },
    #[error("give either a seed path or a repository URL, not both")]
    TwoSeeds,
    #[error("a repository ref needs a repository URL")]
    RefWithoutRepo,
    #[error(
        "exclude patterns leave paths of a seed out; give a seed path or a repository URL too"
    )]
    ExcludeWithoutSeed,
    #[error("at most {MAX_EXCLUDES} exclude patterns of at most 1024 bytes each; put longer lists in the seed's .pyroignore")]
    TooManyExcludes,
    #[error("unknown network mode '{mode}'; use off, egress or egress+ports")]
    BadNetworkMode { mode: String },
    #[error("allowing `{entry}` needs egress: set the network to egress as well")]
    AllowNeedsEgress { entry: String },
    #[error("passing the host's proxy settings needs egress: set the network to egress as well")]
    ProxyNeedsEgress,
    #[error("bad allowlist entry {0}")]
    BadAllow(pyro_net::AllowError),
    #[error("a one-shot run has no published ports; use the egress network, or a workspace for egress+ports")]
    RunHasNoPorts,
    #[error("publishing `{entry}` needs the egress+ports network: set the network to egress+ports as well")]
    PublishNeedsPorts { entry: String },
    #[error("bad published port {0}")]
    BadPublish(pyro_net::PublishError),
    #[error("host port {port} is published twice; give each --publish its own host port")]
    PublishedTwice { port: String },
    #[error("the workspace publishes {ports}; unpublish them first (`pyro workspace port unpublish`), or keep the egress+ports network")]
    PortsStillPublished { ports: String },
    #[error(
        "port {port} is not published (published: {published}); see `pyro workspace port list`"
    )]
    NotPublished { port: String, published: String },
    #[error("a model publishes on the host's loopback only (drop `{address}:`); the user can publish on other addresses with `pyro workspace port publish WORKSPACE {entry}`")]
    PublishOffLoopback { entry: String, address: String },
}

/// Checks VM sizes before anything boots.
pub(crate) fn validate_size(cpus: u32, memory_mib: u32) -> Result<(), InvalidRequest> {
    if memory_mib < MIN_MEMORY_MIB {
        return Err(InvalidRequest::MemoryTooSmall { mib: memory_mib });
    }
    if cpus == 0 || cpus > MAX_CPUS {
        return Err(InvalidRequest::CpusOutOfRange { cpus });
    }
    Ok(())
}

/// A command given as one shell line (run with `sh -c`, so pipes and `&&`
/// work) or as an exact argv; exactly one of them.
pub fn command_argv(
    line: Option<String>,
    argv: Option<Vec<String>>,
) -> Result<Vec<String>, InvalidRequest> {
    match (line, argv) {
        (Some(_), Some(_)) => Err(InvalidRequest::TwoCommandForms),
        (Some(line), None) if !line.trim().is_empty() => Ok(vec!["sh".into(), "-c".into(), line]),
        (None, Some(argv)) if !argv.is_empty() => Ok(argv),
        _ => Err(InvalidRequest::NoCommand),
    }
}

/// A service's readiness wait in milliseconds, from the seconds a caller
/// gave (default [`DEFAULT_READY_TIMEOUT`]); huge values saturate and are
/// capped by the facade.
pub fn ready_timeout_ms(seconds: Option<u64>) -> u64 {
    seconds
        .map(|s| s.saturating_mul(1000))
        .unwrap_or(DEFAULT_READY_TIMEOUT.as_millis() as u64)
}

/// The terminal size of a new shell: what was given, the default for a
/// half that was not. (The supervisor refuses sizes out of range.)
pub fn shell_size(rows: Option<u16>, cols: Option<u16>) -> (u16, u16) {
    (rows.unwrap_or(DEFAULT_ROWS), cols.unwrap_or(DEFAULT_COLS))
}

/// How a shell read waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShellReadOptions {
    /// Return once the shell printed nothing for this long.
    pub wait_idle: Duration,
    /// Return after this long however busy the shell is.
    pub timeout: Duration,
    /// Bytes as the program wrote them, escape sequences and all.
    pub raw: bool,
}

impl ShellReadOptions {
    /// The defaults for what was not given, and every value within its
    /// bounds.
    pub fn new(wait_idle: Option<Duration>, timeout: Option<Duration>, raw: bool) -> Self {
        ShellReadOptions {
            wait_idle: wait_idle.unwrap_or(DEFAULT_WAIT_IDLE).min(MAX_WAIT_IDLE),
            timeout: timeout
                .unwrap_or(DEFAULT_READ_TIMEOUT)
                .clamp(MIN_READ_TIMEOUT, MAX_READ_TIMEOUT),
            raw,
        }
    }
}

impl Default for ShellReadOptions {
    fn default() -> Self {
        ShellReadOptions::new(None, None, false)
    }
}

/// What to type into a shell: `text` as is, then `line` and Enter, then
/// each named key (see [`pyro_term::keys`]). Keys are encoded by the
/// supervisor, which knows the terminal's mode (arrows differ in
/// full-screen programs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShellInput {
    /// Bytes to type: `text`, then `line` and Enter.
    pub data: String,
    /// Named keys pressed after `data`.
    pub keys: Vec<String>,
}

impl ShellInput {
    /// Checks the keys and that something is typed at all.
    pub fn new(
        text: Option<&str>,
        line: Option<&str>,
        keys: &[String],
    ) -> Result<Self, InvalidRequest> {
        let mut data = String::new();
        if let Some(text) = text {
            data.push_str(text);
        }
        if let Some(line) = line {
            data.push_str(line);
            data.push('\r');
        }
        if let Some(unknown) = keys
            .iter()
            .find(|key| pyro_term::keys::encode(key).is_none())
        {
            return Err(InvalidRequest::UnknownKey {
                key: unknown.clone(),
            });
        }
        if data.is_empty() && keys.is_empty() {
            return Err(InvalidRequest::NothingToWrite);
        }
        Ok(ShellInput {
            data,
            keys: keys.to_vec(),
        })
    }
}

const SIGNALS: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("USR2", libc::SIGUSR2),
    ("TERM", libc::SIGTERM),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("WINCH", libc::SIGWINCH),
    ("ALRM", libc::SIGALRM),
];

fn signal_names() -> String {
    let names: Vec<&str> = SIGNALS.iter().map(|(name, _)| *name).collect();
    names.join(", ")
}

/// Signal numbers by name (`INT`, `SIGINT`, `int`) or number.
pub fn parse_signal(name: &str) -> Result<i32, InvalidRequest> {
    if let Ok(number) = name.parse::<i32>() {
        if (1..=64).contains(&number) {
            return Ok(number);
        }
    }
    let upper = name.to_ascii_uppercase();
    let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
    SIGNALS
        .iter()
        .find(|(known, _)| *known == bare)
        .map(|(_, number)| *number)
        .ok_or_else(|| InvalidRequest::UnknownSignal {
            name: name.to_string(),
        })
}

/// The one readiness check of a service start, from the four ways to give
/// one; none is fine (the service is ready once started), two are not.
pub fn readiness(
    file: Option<String>,
    tcp_port: Option<u16>,
    http_url: Option<String>,
    command: Option<String>,
) -> Result<Option<Readiness>, InvalidRequest> {
    let mut given = Vec::new();
    given.extend(file.map(|path| Readiness::File { path }));
    given.extend(tcp_port.map(|port| Readiness::Tcp { port }));
    given.extend(http_url.map(|url| Readiness::Http { url }));
    given.extend(command.map(|command| Readiness::Command { command }));
    match given.len() {
        0 | 1 => Ok(given.pop()),
        count => Err(InvalidRequest::TwoReadinessChecks { count }),
    }
}

/// Which part of a service log to read: from `since_offset` on when given,
/// else the last `tail_lines` (default [`DEFAULT_LOG_LINES`]).
pub fn log_range(tail_lines: Option<usize>, since_offset: Option<u64>) -> LogRange {
    match since_offset {
        Some(offset) => LogRange::Since(offset),
        None => LogRange::Tail(tail_lines.unwrap_or(DEFAULT_LOG_LINES)),
    }
}

/// The seed of a create call: `seed_path` or `repo_url` (with
/// `repo_ref`), else `default` (the server's project).
pub fn call_seed(
    seed_path: Option<PathBuf>,
    repo_url: Option<String>,
    repo_ref: Option<String>,
    default: Option<&Seed>,
) -> Result<Option<Seed>, InvalidRequest> {
    match (seed_path, repo_url, repo_ref) {
        (Some(_), Some(_), _) => Err(InvalidRequest::TwoSeeds),
        (_, None, Some(_)) => Err(InvalidRequest::RefWithoutRepo),
        (Some(path), None, None) => Ok(Some(Seed::Path(path))),
        (None, Some(url), reference) => Ok(Some(Seed::Repo { url, reference })),
        (None, None, None) => Ok(default.cloned()),
    }
}

/// Exclude patterns a create may give.
pub const MAX_EXCLUDES: usize = 256;

/// Checks a create's exclude patterns (gitignore syntax, applied to its
/// seed beside the seed's own `.pyroignore`).
pub fn check_excludes(seed: Option<&Seed>, exclude: &[String]) -> Result<(), InvalidRequest> {
    if exclude.is_empty() {
        return Ok(());
    }
    if seed.is_none() {
        return Err(InvalidRequest::ExcludeWithoutSeed);
    }
    if exclude.len() > MAX_EXCLUDES || exclude.iter().any(|p| p.len() > 1024) {
        return Err(InvalidRequest::TooManyExcludes);
    }
    Ok(())
}

/// Why project-aware startup found no project where it looked.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)] // Each variant says what it is in its message.
pub enum ProjectSkipped {
    /// The Git checkout around the working directory is the home directory
    /// (dotfiles) or `/`: it would let a model reach everything under it.
    TooWide { root: PathBuf },
}

/// The seed for project-aware startup: `repo_url` (with `repo_ref`), else
/// `project_path`, else the Git checkout around `cwd` (the nearest
/// ancestor holding `.git`) unless that is `home` or `/`, else none.
pub fn project_seed(
    project_path: Option<PathBuf>,
    repo_url: Option<String>,
    repo_ref: Option<String>,
    cwd: &Path,
    home: Option<&Path>,
) -> Result<Option<Seed>, ProjectSkipped> {
    if let Some(url) = repo_url {
        return Ok(Some(Seed::Repo {
            url,
            reference: repo_ref,
        }));
    }
    if let Some(path) = project_path {
        return Ok(Some(Seed::Path(path)));
    }
    let Some(root) = cwd.ancestors().find(|dir| dir.join(".git").exists()) else {
        return Ok(None);
    };
    let canonical = std::fs::canonicalize(root).unwrap_or_else(|_| root.to_path_buf());
    let home = home.and_then(|home| std::fs::canonicalize(home).ok());
    if canonical == Path::new("/") || Some(&canonical) == home.as_ref() {
        return Err(ProjectSkipped::TooWide {
            root: root.to_path_buf(),
        });
    }
    Ok(Some(Seed::Path(root.to_path_buf())))
}

pub mod modes;

#[cfg(test)]
mod tests;
