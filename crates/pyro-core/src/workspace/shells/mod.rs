//! Interactive shells: a PTY command per shell, kept open by the supervisor
//! and read back as plain text.
//!
//! The supervisor runs each shell as a guest exec with a pseudo-terminal and
//! feeds everything it prints into a terminal emulator (`pyro-term`), so a
//! read returns what a person would see: colours and cursor games
//! interpreted, a `\r` progress bar as its final line, a full-screen
//! program as its screen. Output accumulates between reads; a read waits
//! until the shell has been quiet for a while (or a time limit passes), so
//! one read after a command returns its whole output. Shells live as long
//! as the VM: any number of CLI and MCP calls reach the same shell by id.

mod hub;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub(crate) use self::hub::ShellHub;
use super::control::ControlRequest;
use super::sessions::{self, SessionError, CALL_SLACK, LONGEST_WAIT, SHELLS_FILE};
use crate::{Error, Pyro};

/// Open shells a workspace may have at once.
pub const MAX_OPEN_SHELLS: usize = 32;
/// Largest single write to a shell.
pub const MAX_WRITE: usize = 64 * 1024;
/// Default terminal size: roomy, so fewer lines wrap.
pub const DEFAULT_ROWS: u16 = 40;
pub const DEFAULT_COLS: u16 = 120;
/// Largest terminal: the emulator keeps rows x cols cells.
pub const MAX_ROWS: u16 = 500;
pub const MAX_COLS: u16 = 1000;
/// Records kept in `shells.json` beyond the open ones.
const KEEP_ENDED: usize = 64;

/// Where a shell stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum ShellState {
    Open,
    /// Its program exited by itself (`exit`, Ctrl-D).
    Exited {
        exit_code: Option<i32>,
        signal: Option<i32>,
    },
    /// Someone closed it.
    Closed,
    /// The VM under it went away (stop, reset, crash).
    Ended {
        reason: String,
    },
}

impl ShellState {
    pub fn is_open(&self) -> bool {
        matches!(self, ShellState::Open)
    }

    /// "exited (code 0)", "been closed", "ended: the workspace was reset …".
    pub fn describe(&self) -> String {
        match self {
            ShellState::Open => "open".into(),
            ShellState::Exited {
                exit_code: Some(code),
                ..
            } => format!("exited (code {code})"),
            ShellState::Exited {
                signal: Some(signal),
                ..
            } => format!("exited (killed by signal {signal})"),
            ShellState::Exited { .. } => "exited".into(),
            ShellState::Closed => "been closed".into(),
            ShellState::Ended { reason } => format!("ended: {reason}"),
        }
    }
}

/// One shell, as listed.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShellInfo {
    pub id: String,
    /// The directory it started in (`/workspace` when not given).
    pub cwd: Option<String>,
    pub rows: u16,
    pub cols: u16,
    pub opened_at: String,
    #[serde(flatten)]
    pub state: ShellState,
}

/// What one read returns.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ShellRead {
    pub shell: String,
    /// New or changed text since the previous read (raw bytes, lossily
    /// decoded, in raw mode).
    pub text: String,
    /// A full-screen program (vi, top) is showing: `text` is its screen.
    pub full_screen: bool,
    /// The shell had gone quiet when the read returned; false when the time
    /// limit cut the wait short (the program is still printing).
    pub idle: bool,
    /// Lines (bytes, in raw mode) that fell out of the bounded history since
    /// the previous read.
    pub dropped: u64,
    #[serde(flatten)]
    pub state: ShellState,
}

/// The record of every shell a workspace has had, in `shells.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct ShellRegistry {
    /// Number of the next shell: ids are never reused, across boots too.
    next: u32,
    shells: Vec<ShellInfo>,
}

impl ShellRegistry {
    /// Marks open shells as ended; true when any was.
    pub(crate) fn end_live(&mut self, reason: &str) -> bool {
        let mut changed = false;
        for shell in &mut self.shells {
            if shell.state.is_open() {
                shell.state = ShellState::Ended {
                    reason: reason.to_string(),
                };
                changed = true;
            }
        }
        changed
    }

    fn get(&self, id: &str) -> Option<&ShellInfo> {
        self.shells.iter().find(|s| s.id == id)
    }

    /// Records how an open shell ended (an ending already recorded, say by
    /// a stop, stays).
    fn set_state(&mut self, id: &str, state: ShellState) {
        if let Some(shell) = self.shells.iter_mut().find(|s| s.id == id) {
            if shell.state.is_open() {
                shell.state = state;
            }
        }
        // Forget the oldest ended shells beyond the bound.
        let ended = self.shells.iter().filter(|s| !s.state.is_open()).count();
        let mut excess = ended.saturating_sub(KEEP_ENDED);
        self.shells.retain(|s| {
            if excess > 0 && !s.state.is_open() {
                excess -= 1;
                return false;
            }
            true
        });
    }
}

/// Refuses terminal sizes outside 1x1 ..= MAX_ROWS x MAX_COLS.
fn check_size(rows: u16, cols: u16) -> Result<(), SessionError> {
    if (1..=MAX_ROWS).contains(&rows) && (1..=MAX_COLS).contains(&cols) {
        return Ok(());
    }
    Err(SessionError::Invalid(format!(
        "a terminal of {rows} rows and {cols} columns is not possible; use 1-{MAX_ROWS} rows and 1-{MAX_COLS} columns"
    )))
}

/// How `workspace shell read` waits.
#[derive(Debug, Clone, Copy)]
pub struct ShellReadOptions {
    /// Return once the shell printed nothing for this long.
    pub wait_idle: Duration,
    /// Return after this long however busy the shell is.
    pub timeout: Duration,
    /// Bytes as the program wrote them, escape sequences and all.
    pub raw: bool,
}

impl Default for ShellReadOptions {
    fn default() -> Self {
        ShellReadOptions {
            wait_idle: Duration::from_millis(500),
            timeout: Duration::from_secs(15),
            raw: false,
        }
    }
}

impl Pyro {
    /// Opens an interactive shell (bash, else sh) on a PTY in the workspace.
    pub async fn workspace_shell_open(
        &self,
        query: &str,
        cwd: Option<&str>,
        size: Option<(u16, u16)>,
    ) -> Result<ShellInfo, Error> {
        let (rows, cols) = size.unwrap_or((DEFAULT_ROWS, DEFAULT_COLS));
        let request = ControlRequest::ShellOpen {
            cwd: cwd.map(str::to_string),
            rows,
            cols,
        };
        self.session_call(query, &request, CALL_SLACK).await
    }

    /// What the shell printed since the previous read, once it is quiet.
    pub async fn workspace_shell_read(
        &self,
        query: &str,
        shell: &str,
        options: ShellReadOptions,
    ) -> Result<ShellRead, Error> {
        let options = ShellReadOptions {
            wait_idle: options.wait_idle.min(LONGEST_WAIT),
            timeout: options.timeout.min(LONGEST_WAIT),
            raw: options.raw,
        };
        let request = ControlRequest::ShellRead {
            shell: shell.to_string(),
            wait_idle_ms: options.wait_idle.as_millis() as u64,
            timeout_ms: options.timeout.as_millis() as u64,
            raw: options.raw,
        };
        self.session_call(query, &request, options.timeout.saturating_add(CALL_SLACK))
            .await
            .map_err(|e| self.shell_gone(query, shell, e))
    }

    /// Types into a shell; returns the bytes sent.
    pub async fn workspace_shell_write(
        &self,
        query: &str,
        shell: &str,
        input: &ShellInput,
    ) -> Result<u64, Error> {
        let request = ControlRequest::ShellWrite {
            shell: shell.to_string(),
            data: input.data.clone(),
            keys: input.keys.clone(),
        };
        self.session_call(query, &request, CALL_SLACK)
            .await
            .map_err(|e| self.shell_gone(query, shell, e))
    }

    /// Signals what runs in the shell's foreground.
    pub async fn workspace_shell_signal(
        &self,
        query: &str,
        shell: &str,
        signal: i32,
    ) -> Result<(), Error> {
        let request = ControlRequest::ShellSignal {
            shell: shell.to_string(),
            signal,
        };
        self.session_call(query, &request, CALL_SLACK)
            .await
            .map_err(|e| self.shell_gone(query, shell, e))
    }

    /// Changes a shell's terminal size.
    pub async fn workspace_shell_resize(
        &self,
        query: &str,
        shell: &str,
        rows: u16,
        cols: u16,
    ) -> Result<(), Error> {
        let request = ControlRequest::ShellResize {
            shell: shell.to_string(),
            rows,
            cols,
        };
        self.session_call(query, &request, CALL_SLACK)
            .await
            .map_err(|e| self.shell_gone(query, shell, e))
    }

    /// Ends a shell and what runs in it.
    pub async fn workspace_shell_close(
        &self,
        query: &str,
        shell: &str,
    ) -> Result<ShellInfo, Error> {
        let request = ControlRequest::ShellClose {
            shell: shell.to_string(),
        };
        self.session_call(query, &request, CALL_SLACK)
            .await
            .map_err(|e| self.shell_gone(query, shell, e))
    }

    /// Every shell the workspace has had (open ones and recently ended).
    pub async fn workspace_shell_list(&self, query: &str) -> Result<Vec<ShellInfo>, Error> {
        match self
            .session_call(query, &ControlRequest::ShellList, CALL_SLACK)
            .await
        {
            Ok(list) => Ok(list),
            Err(error) => {
                // A stopped workspace still tells what its shells were.
                let store = self.workspaces()?;
                let record = store.resolve(query)?;
                if store.supervisor_alive(&record.id)? {
                    return Err(error);
                }
                let registry: ShellRegistry = sessions::load(&store.dir(&record.id), SHELLS_FILE);
                Ok(registry.shells)
            }
        }
    }

    /// When a shell call fails because the workspace is not running, says
    /// what became of the shell instead (ended by a reset, say), if known.
    fn shell_gone(&self, query: &str, shell: &str, error: Error) -> Error {
        let Error::Workspace(
            super::WorkspaceError::Stopped { .. } | super::WorkspaceError::Crashed { .. },
        ) = &error
        else {
            return error;
        };
        let Ok(store) = self.workspaces() else {
            return error;
        };
        let Ok(record) = store.resolve(query) else {
            return error;
        };
        let registry: ShellRegistry = sessions::load(&store.dir(&record.id), SHELLS_FILE);
        match registry.get(shell) {
            Some(info) if !info.state.is_open() => SessionError::ShellGone {
                shell: shell.to_string(),
                workspace: record.display_name().to_string(),
                how: info.state.describe(),
            }
            .into(),
            _ => error,
        }
    }
}

/// What to type into a shell: `text` as is, then `line` and Enter, then
/// each named key (see [`pyro_term::keys`]). Keys are encoded by the
/// supervisor, which knows the terminal's mode (arrows differ in
/// full-screen programs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ShellInput {
    pub data: String,
    pub keys: Vec<String>,
}

impl ShellInput {
    pub fn new(text: Option<&str>, line: Option<&str>, keys: &[String]) -> Result<Self, Error> {
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
            return Err(Error::InvalidRequest(format!(
                "unknown key '{unknown}'; use one of: {}",
                pyro_term::keys::NAMES.join(", ")
            )));
        }
        if data.is_empty() && keys.is_empty() {
            return Err(Error::InvalidRequest(
                "nothing to write: give text, a line or keys".into(),
            ));
        }
        Ok(ShellInput {
            data,
            keys: keys.to_vec(),
        })
    }
}

/// Signal numbers by name (`INT`, `SIGINT`, `int`) or number.
pub fn parse_signal(name: &str) -> Result<i32, Error> {
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
        .ok_or_else(|| {
            let names: Vec<&str> = SIGNALS.iter().map(|(name, _)| *name).collect();
            Error::InvalidRequest(format!(
                "unknown signal '{name}'; use a number or one of: {}",
                names.join(", ")
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signals_by_name_or_number() {
        assert_eq!(parse_signal("INT").unwrap(), libc::SIGINT);
        assert_eq!(parse_signal("sigterm").unwrap(), libc::SIGTERM);
        assert_eq!(parse_signal("9").unwrap(), 9);
        assert!(parse_signal("NOPE").is_err());
        assert!(parse_signal("0").is_err());
    }

    #[test]
    fn input_is_text_then_line_then_keys() {
        let input = ShellInput::new(Some("a"), Some("b"), &["ctrl-c".into()]).unwrap();
        assert_eq!(input.data, "ab\r");
        assert_eq!(input.keys, ["ctrl-c"]);
        assert!(ShellInput::new(None, None, &[]).is_err());
        assert!(ShellInput::new(None, None, &["no-such-key".into()]).is_err());
    }

    #[test]
    fn registry_ends_open_shells_and_stays_bounded() {
        let mut registry = ShellRegistry::default();
        for n in 0..100 {
            registry.shells.push(ShellInfo {
                id: format!("s{n}"),
                cwd: None,
                rows: 1,
                cols: 1,
                opened_at: String::new(),
                state: ShellState::Open,
            });
        }
        assert!(registry.end_live("ended: test"));
        assert!(!registry.end_live("ended: test"));
        registry.set_state("s0", ShellState::Closed);
        assert_eq!(registry.shells.len(), KEEP_ENDED);
        assert_eq!(registry.shells.last().unwrap().id, "s99");
    }
}
