//! The shell tools (`workspace-full`): PTY shells read back as plain
//! text.

use std::time::Duration;

use pyro_core::params::{parse_signal, ShellInput, ShellReadOptions};
use pyro_core::{ShellInfo, ShellRead, ShellState};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::output::{schema, Out, ToolResult, STREAM_CAP};
use crate::tools_core::WorkspaceParams;
use crate::PyroServer;

/// A workspace and one of its shells.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellParams {
    /// The workspace id or name.
    pub workspace: String,
    /// The shell id from workspace_shell_open (e.g. `s1`).
    pub shell: String,
}

/// Arguments of `workspace_shell_open`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellOpenParams {
    /// The workspace id or name.
    pub workspace: String,
    /// Directory to start in (default /workspace; a relative one is under it).
    pub cwd: Option<String>,
    /// Terminal rows, 1-500 (default 40).
    pub rows: Option<u16>,
    /// Terminal columns, 1-1000 (default 120).
    pub cols: Option<u16>,
    /// Secrets the user set for this workspace, given as variables: "NAME", or
    /// "ENVVAR=NAME". Their values appear as [secret:NAME] in every output.
    #[serde(default)]
    pub secret_env: Vec<String>,
}

/// Arguments of `workspace_shell_read`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellReadParams {
    /// The workspace id or name.
    pub workspace: String,
    /// The shell id.
    pub shell: String,
    /// Return once the shell printed nothing for this many milliseconds (default 500).
    pub wait_idle_ms: Option<u64>,
    /// Return after this many seconds even if it is still printing (default 15, at most 120).
    pub timeout_seconds: Option<u64>,
    /// The bytes as the program wrote them, escape sequences included (default false: plain text).
    #[serde(default)]
    pub raw: bool,
}

/// Arguments of `workspace_shell_write`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellWriteParams {
    /// The workspace id or name.
    pub workspace: String,
    /// The shell id.
    pub shell: String,
    /// Text typed as is, without Enter.
    pub text: Option<String>,
    /// A line typed and followed by Enter (after `text`).
    pub line: Option<String>,
    /// Named keys pressed after that, in order: enter, tab, esc, backspace, up, down, left,
    /// right, home, end, pageup, pagedown, delete, ctrl-a … ctrl-z (ctrl-c interrupts,
    /// ctrl-d ends input).
    #[serde(default)]
    pub keys: Vec<String>,
}

/// Arguments of `workspace_shell_signal`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ShellSignalParams {
    /// The workspace id or name.
    pub workspace: String,
    /// The shell id.
    pub shell: String,
    /// Signal name (INT, TERM, KILL, HUP, QUIT, …) or number.
    pub signal: String,
}

/// One shell.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ShellOut {
    /// Its id, for the other shell tools.
    pub shell: String,
    /// `open`, `exited`, `closed` or `ended` (the VM went away: stop, reset, crash).
    pub state: String,
    /// How it ended, when it did.
    pub detail: Option<String>,
    /// The directory it started in.
    pub cwd: Option<String>,
    pub rows: u16,
    pub cols: u16,
    /// When it was opened (RFC 3339).
    pub opened_at: String,
}

impl From<ShellInfo> for ShellOut {
    fn from(info: ShellInfo) -> Self {
        ShellOut {
            shell: info.id,
            detail: (!info.state.is_open()).then(|| info.state.describe()),
            state: state_label(&info.state).into(),
            cwd: info.cwd,
            rows: info.rows,
            cols: info.cols,
            opened_at: info.opened_at,
        }
    }
}

fn state_label(state: &ShellState) -> &'static str {
    match state {
        ShellState::Open => "open",
        ShellState::Exited { .. } => "exited",
        ShellState::Closed => "closed",
        ShellState::Ended { .. } => "ended",
    }
}

/// A workspace's shells.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ShellList {
    pub shells: Vec<ShellOut>,
}

/// What a shell showed since the previous read.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ShellReadOut {
    pub shell: String,
    /// New or changed text since the previous read, as a person would see it on the screen.
    pub text: String,
    /// A full-screen program (vi, top, less) is showing: `text` is its whole screen.
    pub full_screen: bool,
    /// The shell had gone quiet; false when the time limit cut the wait (read again for more).
    pub idle: bool,
    /// `open`, `exited`, `closed` or `ended`.
    pub state: String,
    /// How it ended, when it did.
    pub detail: Option<String>,
    /// Older lines (bytes in raw mode) dropped from the bounded history since the last read.
    pub dropped: u64,
    /// Bytes cut from the front of `text` to stay within the result size limit.
    pub truncated_bytes: u64,
}

/// The newest [`STREAM_CAP`] bytes of `text`, and how many were cut.
fn keep_tail(text: String) -> (String, u64) {
    if text.len() <= STREAM_CAP {
        return (text, 0);
    }
    let mut cut = text.len() - STREAM_CAP;
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    (text[cut..].to_string(), cut as u64)
}

fn read_out(read: ShellRead) -> ShellReadOut {
    let (text, truncated_bytes) = keep_tail(read.text);
    ShellReadOut {
        shell: read.shell,
        text,
        full_screen: read.full_screen,
        idle: read.idle,
        detail: (!read.state.is_open()).then(|| read.state.describe()),
        state: state_label(&read.state).into(),
        dropped: read.dropped,
        truncated_bytes,
    }
}

#[tool_router(router = shells_router, vis = "pub(crate)")]
impl PyroServer {
    /// Open an interactive shell (bash) on a terminal in a workspace. Use it for interactive
    /// programs (a REPL, a prompt that asks questions, a debugger) and for state that must
    /// persist between commands (cd, exported variables, a virtualenv). For one-off commands,
    /// workspace_exec is simpler. Returns the shell id.
    #[tool(
        output_schema = schema::<ShellOut>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false)
    )]
    async fn workspace_shell_open(
        &self,
        Parameters(params): Parameters<ShellOpenParams>,
    ) -> ToolResult<ShellOut> {
        let info = self
            .pyro
            .workspace_shell_open(
                &params.workspace,
                params.cwd.as_deref(),
                params.rows,
                params.cols,
                &params.secret_env,
            )
            .await?;
        let out = ShellOut::from(info);
        Ok(Out::new(
            format!(
                "opened shell {}; type with workspace_shell_write, then read with workspace_shell_read",
                out.shell
            ),
            out,
        ))
    }

    /// Read what a shell showed since the previous read, as plain text a person would see
    /// (colours and cursor movement interpreted; a progress bar reads as its last state; a
    /// full-screen program reads as its screen). Waits until the shell is quiet, so one read
    /// after a command returns its output; if `idle` is false, read again.
    #[tool(
        output_schema = schema::<ShellReadOut>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = false, open_world_hint = false)
    )]
    async fn workspace_shell_read(
        &self,
        Parameters(params): Parameters<ShellReadParams>,
    ) -> ToolResult<ShellReadOut> {
        let options = ShellReadOptions::new(
            params.wait_idle_ms.map(Duration::from_millis),
            params.timeout_seconds.map(Duration::from_secs),
            params.raw,
        );
        let read = self
            .pyro
            .workspace_shell_read(&params.workspace, &params.shell, options)
            .await?;
        let out = read_out(read);
        let mut text = out.text.clone();
        if out.truncated_bytes > 0 {
            text.insert_str(
                0,
                &format!(
                    "[{} earlier bytes cut; older output is gone]\n",
                    out.truncated_bytes
                ),
            );
        }
        if let Some(detail) = &out.detail {
            text.push_str(&format!("\n[shell {} has {detail}]", out.shell));
        } else if !out.idle {
            text.push_str("\n[still printing; read again for more]");
        }
        if text.is_empty() {
            text = "[no new output]".into();
        }
        Ok(Out::new(text, out))
    }

    /// Type into a shell: `text` as is, then `line` followed by Enter, then named `keys` (e.g.
    /// ["ctrl-c"]). Read the result with workspace_shell_read.
    #[tool(
        output_schema = schema::<ShellWriteOut>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false)
    )]
    async fn workspace_shell_write(
        &self,
        Parameters(params): Parameters<ShellWriteParams>,
    ) -> ToolResult<ShellWriteOut> {
        let input = ShellInput::new(params.text.as_deref(), params.line.as_deref(), &params.keys)?;
        let sent = self
            .pyro
            .workspace_shell_write(&params.workspace, &params.shell, &input)
            .await?;
        Ok(Out::new(
            format!("sent {sent} bytes to shell {}", params.shell),
            ShellWriteOut { bytes: sent },
        ))
    }

    /// Send a signal to what runs in a shell's foreground (INT is like Ctrl-C; TERM, KILL); the
    /// shell itself gets it only when nothing else runs.
    #[tool(
        output_schema = schema::<crate::types::Done>(),
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false)
    )]
    async fn workspace_shell_signal(
        &self,
        Parameters(params): Parameters<ShellSignalParams>,
    ) -> ToolResult<crate::types::Done> {
        let signal = parse_signal(&params.signal)?;
        self.pyro
            .workspace_shell_signal(&params.workspace, &params.shell, signal)
            .await?;
        let message = format!("sent signal {signal} to shell {}", params.shell);
        Ok(Out::new(message.clone(), crate::types::Done { message }))
    }

    /// Close a shell, ending everything running in it.
    #[tool(
        output_schema = schema::<ShellOut>(),
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false)
    )]
    async fn workspace_shell_close(
        &self,
        Parameters(params): Parameters<ShellParams>,
    ) -> ToolResult<ShellOut> {
        let info = self
            .pyro
            .workspace_shell_close(&params.workspace, &params.shell)
            .await?;
        let out = ShellOut::from(info);
        Ok(Out::new(format!("closed shell {}", out.shell), out))
    }

    /// List a workspace's shells: the open ones and how recent ones ended.
    #[tool(
        output_schema = schema::<ShellList>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn workspace_shell_list(
        &self,
        Parameters(params): Parameters<WorkspaceParams>,
    ) -> ToolResult<ShellList> {
        let shells: Vec<ShellOut> = self
            .pyro
            .workspace_shell_list(&params.workspace)
            .await?
            .into_iter()
            .map(ShellOut::from)
            .collect();
        let text = if shells.is_empty() {
            "no shells".to_string()
        } else {
            shells
                .iter()
                .map(|s| match &s.detail {
                    Some(detail) => format!("{}: {} ({detail})", s.shell, s.state),
                    None => format!("{}: {}", s.shell, s.state),
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        Ok(Out::new(text, ShellList { shells }))
    }
}

/// What a shell write sent.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ShellWriteOut {
    /// Bytes sent.
    pub bytes: u64,
}
