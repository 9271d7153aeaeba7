//! The supervisor's side of shells: each one a PTY exec it keeps open,
//! its output fed into a terminal emulator, its commands (write, signal,
//! resize, close) carried to the guest by a task of its own.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pyro_protocol::{ExecRequest, PtySize, STDIN_WINDOW};
use pyro_term::Terminal;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, Notify};

use super::protocol::{
    check_size, SessionError, ShellInfo, ShellRead, ShellState, MAX_OPEN_SHELLS, MAX_WRITE,
};
use super::registry::{self, lock, ShellRegistry, SHELLS_FILE};
use crate::host::guest::{ExecEvent, ExecStream, Guest, GuestError};
use crate::workspace::events::{self, EventKind};
use crate::workspace::secrets;
use crate::workspace::store::now;

/// A guest channel failure, as a session error.
fn vm_gone(error: GuestError) -> SessionError {
    SessionError::VmGone(error.to_string())
}

/// How long a closing shell gets after SIGHUP before SIGKILL.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// Ended shells whose last output stays readable in memory.
const KEEP_EXITED_LIVE: usize = 8;
/// The program a shell runs: bash when the environment has it.
const SHELL_SCRIPT: &str = "command -v bash >/dev/null 2>&1 && exec bash -i; exec sh -i";

enum ShellCommand {
    Write(Vec<u8>, oneshot::Sender<Result<(), SessionError>>),
    Signal(i32),
    Resize(u16, u16),
    Close(oneshot::Sender<()>),
}

/// A shell the supervisor holds open.
struct LiveShell {
    id: String,
    /// Its request on the guest channel.
    guest_id: u32,
    term: Mutex<Terminal>,
    /// Last output or input: reads wait for quiet after either.
    activity: Mutex<Instant>,
    changed: Notify,
    /// Set once the program is gone.
    ended: Mutex<Option<ShellState>>,
    commands: mpsc::Sender<ShellCommand>,
}

impl LiveShell {
    fn touch(&self) {
        *lock(&self.activity) = Instant::now();
        self.changed.notify_waiters();
    }

    fn ended(&self) -> Option<ShellState> {
        lock(&self.ended).clone()
    }

    fn gone(&self, workspace: &str) -> Option<SessionError> {
        self.ended().map(|state| SessionError::ShellGone {
            shell: self.id.clone(),
            workspace: workspace.to_string(),
            how: state.describe(),
        })
    }
}

/// The supervisor's shells.
pub(crate) struct ShellHub {
    dir: PathBuf,
    workspace: String,
    guest: Arc<Guest>,
    state: Mutex<HubState>,
}

struct HubState {
    registry: ShellRegistry,
    live: HashMap<String, Arc<LiveShell>>,
    /// Shells being started right now (they count against the limit).
    opening: usize,
}

impl ShellHub {
    pub(crate) fn new(dir: PathBuf, workspace: String, guest: Arc<Guest>) -> Arc<Self> {
        let registry = registry::load(&dir, SHELLS_FILE);
        Arc::new(ShellHub {
            dir,
            workspace,
            guest,
            state: Mutex::new(HubState {
                registry,
                live: HashMap::new(),
                opening: 0,
            }),
        })
    }

    fn save(&self, state: &HubState) {
        registry::save(&self.dir, SHELLS_FILE, &state.registry);
    }

    pub(crate) async fn open(
        self: &Arc<Self>,
        cwd: Option<String>,
        rows: u16,
        cols: u16,
        env: Vec<(String, String)>,
    ) -> Result<ShellInfo, SessionError> {
        check_size(rows, cols)?;
        // Hold a slot while the guest starts the shell, so concurrent opens
        // cannot pass the limit together.
        {
            let mut state = lock(&self.state);
            let open = state
                .registry
                .shells
                .iter()
                .filter(|s| s.state.is_open())
                .count();
            if open + state.opening >= MAX_OPEN_SHELLS {
                return Err(SessionError::TooManyShells {
                    workspace: self.workspace.clone(),
                    limit: MAX_OPEN_SHELLS,
                });
            }
            state.opening += 1;
        }
        let started = self.start_shell(cwd.clone(), rows, cols, env).await;
        lock(&self.state).opening -= 1;
        let stream = started?;
        let guest_id = stream.id();
        let (commands, commands_rx) = mpsc::channel(16);
        let info = {
            let mut state = lock(&self.state);
            state.registry.next += 1;
            let id = format!("s{}", state.registry.next);
            let info = ShellInfo {
                id: id.clone(),
                cwd,
                rows,
                cols,
                opened_at: now(),
                state: ShellState::Open,
            };
            state.registry.shells.push(info.clone());
            let shell = Arc::new(LiveShell {
                id: id.clone(),
                guest_id,
                term: Mutex::new(Terminal::new(rows, cols)),
                activity: Mutex::new(Instant::now()),
                changed: Notify::new(),
                ended: Mutex::new(None),
                commands,
            });
            state.live.insert(id, Arc::clone(&shell));
            prune_exited(&mut state.live);
            self.save(&state);
            tokio::spawn(Arc::clone(self).pump(shell, stream, commands_rx));
            info
        };
        events::record(
            &self.dir,
            EventKind::ShellOpened {
                shell: info.id.clone(),
            },
        );
        Ok(info)
    }

    /// The open shells, for a memory state: each with its screen.
    pub(crate) fn checkpoint(&self) -> Vec<SavedShell> {
        let state = lock(&self.state);
        let open = state.live.values().filter(|shell| shell.ended().is_none());
        open.filter_map(|shell| {
            Some(SavedShell {
                info: state.registry.get(&shell.id)?.clone(),
                guest_id: shell.guest_id,
                screen: lock(&shell.term).screen_text(),
            })
        })
        .collect()
    }

    /// Takes the shells of a restored memory state back: their programs
    /// run on in the guest, their screens are as they were. Returns their
    /// ids.
    pub(crate) fn adopt(self: &Arc<Self>, saved: Vec<SavedShell>) -> Vec<String> {
        let mut adopted = Vec::new();
        let mut state = lock(&self.state);
        for shell in saved {
            let Some(request) = self.guest.take_adopted(shell.guest_id) else {
                continue;
            };
            let mut info = shell.info;
            info.state = ShellState::Open;
            let mut term = Terminal::new(info.rows, info.cols);
            term.feed(shell.screen.replace('\n', "\r\n").as_bytes());
            let (commands, commands_rx) = mpsc::channel(16);
            let live = Arc::new(LiveShell {
                id: info.id.clone(),
                guest_id: shell.guest_id,
                term: Mutex::new(term),
                activity: Mutex::new(Instant::now()),
                changed: Notify::new(),
                ended: Mutex::new(None),
                commands,
            });
            state.registry.reopen(info.clone());
            state.live.insert(info.id.clone(), Arc::clone(&live));
            let stream = ExecStream::adopted(request);
            tokio::spawn(Arc::clone(self).pump(live, stream, commands_rx));
            adopted.push(info.id);
        }
        self.save(&state);
        adopted
    }

    /// Starts the shell's program on a terminal in the guest.
    async fn start_shell(
        &self,
        cwd: Option<String>,
        rows: u16,
        cols: u16,
        extra: Vec<(String, String)>,
    ) -> Result<ExecStream, SessionError> {
        let mut env: Vec<(String, String)> = vec![
            // A pager would wait for keys nobody sends.
            ("PAGER".into(), "cat".into()),
            ("GIT_PAGER".into(), "cat".into()),
        ];
        env.extend(extra);
        let request = ExecRequest {
            argv: vec!["/bin/sh".into(), "-c".into(), SHELL_SCRIPT.into()],
            cwd,
            env,
            pty: Some(PtySize { rows, cols }),
            ..ExecRequest::default()
        };
        let mut stream = self.guest.exec(request).await.map_err(vm_gone)?;
        // The agent answers Started, or Failed (a bad cwd, say).
        match stream.next().await.map_err(vm_gone)? {
            ExecEvent::Failed { message, .. } => Err(SessionError::Invalid(message)),
            _ => Ok(stream),
        }
    }

    /// Carries a shell's output into its terminal and its commands to the
    /// guest, until its program ends.
    async fn pump(
        self: Arc<Self>,
        shell: Arc<LiveShell>,
        mut stream: ExecStream,
        mut commands: mpsc::Receiver<ShellCommand>,
    ) {
        let mut unacked: u64 = 0;
        let mut closing: Vec<oneshot::Sender<()>> = Vec::new();
        let mut kill_at: Option<tokio::time::Instant> = None;
        // What the terminal shows never holds a secret's value.
        let mut redactor = secrets::LiveRedactor::new(&self.dir);
        let end = loop {
            let kill_timer = async {
                match kill_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                event = stream.next() => match event {
                    Ok(ExecEvent::Stdout(bytes) | ExecEvent::Stderr(bytes)) => {
                        feed(&shell.term, &redactor.push(&bytes));
                        shell.touch();
                    }
                    Ok(ExecEvent::Ack(bytes)) => unacked = unacked.saturating_sub(bytes),
                    Ok(ExecEvent::Started) => {}
                    Ok(ExecEvent::Exited(status)) => break Some(ShellState::Exited {
                        exit_code: status.code,
                        signal: status.signal,
                    }),
                    Ok(ExecEvent::Failed { message, .. }) => break Some(ShellState::Ended { reason: message }),
                    // The VM is going away: the supervisor records why.
                    Err(_) => break None,
                },
                command = commands.recv() => match command {
                    Some(ShellCommand::Write(bytes, reply)) => {
                        let len = bytes.len() as u64;
                        let result = if unacked + len > STDIN_WINDOW {
                            Err(SessionError::ShellBusy { shell: shell.id.clone(), workspace: self.workspace.clone(), pending: unacked })
                        } else {
                            unacked += len;
                            stream.write_stdin(&bytes).await.map_err(vm_gone)
                        };
                        shell.touch();
                        let _ = reply.send(result);
                    }
                    Some(ShellCommand::Signal(signal)) => {
                        let _ = stream.signal_foreground(signal).await;
                        shell.touch();
                    }
                    Some(ShellCommand::Resize(rows, cols)) => {
                        let _ = stream.resize(rows, cols).await;
                        lock(&shell.term).resize(rows, cols);
                    }
                    Some(ShellCommand::Close(done)) => {
                        closing.push(done);
                        if kill_at.is_none() {
                            let _ = stream.signal(libc::SIGHUP).await;
                            kill_at = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                        }
                    }
                    None => {}
                },
                _ = kill_timer => {
                    let _ = stream.signal(libc::SIGKILL).await;
                    kill_at = Some(tokio::time::Instant::now() + Duration::from_secs(3600));
                }
            }
        };
        feed(&shell.term, &redactor.finish());
        let Some(end) = end else {
            // The guest channel closed: readers learn it now; the record is
            // written by the supervisor with the reason (stop or crash).
            *lock(&shell.ended) = Some(ShellState::Ended {
                reason: "the VM stopped".into(),
            });
            shell.changed.notify_waiters();
            return;
        };
        let end = if closing.is_empty() {
            end
        } else {
            ShellState::Closed
        };
        *lock(&shell.ended) = Some(end.clone());
        shell.changed.notify_waiters();
        {
            let mut state = lock(&self.state);
            state.registry.set_state(&shell.id, end.clone());
            if end == ShellState::Closed {
                state.live.remove(&shell.id);
            }
            self.save(&state);
        }
        if end == ShellState::Closed {
            events::record(
                &self.dir,
                EventKind::ShellClosed {
                    shell: shell.id.clone(),
                },
            );
        }
        for done in closing {
            let _ = done.send(());
        }
    }

    /// The live shell `id`, or why there is none.
    fn live(&self, id: &str) -> Result<Arc<LiveShell>, SessionError> {
        let state = lock(&self.state);
        if let Some(shell) = state.live.get(id) {
            return Ok(Arc::clone(shell));
        }
        Err(match state.registry.get(id) {
            Some(info) => SessionError::ShellGone {
                shell: id.to_string(),
                workspace: self.workspace.clone(),
                how: info.state.describe(),
            },
            None => SessionError::UnknownShell {
                shell: id.to_string(),
                workspace: self.workspace.clone(),
            },
        })
    }

    pub(crate) async fn read(
        &self,
        id: &str,
        wait_idle: Duration,
        timeout: Duration,
        raw: bool,
    ) -> Result<ShellRead, SessionError> {
        let shell = self.live(id)?;
        let deadline = Instant::now() + timeout;
        let idle = loop {
            let changed = shell.changed.notified();
            if shell.ended().is_some() {
                break true;
            }
            let quiet_since = *lock(&shell.activity);
            let now = Instant::now();
            if now >= quiet_since + wait_idle {
                break true;
            }
            if now >= deadline {
                break false;
            }
            let wake = (quiet_since + wait_idle).min(deadline);
            // Output resets the quiet period; wake on it to re-check, or at
            // the time the shell would count as idle.
            let _ = tokio::time::timeout(wake - now, changed).await;
        };
        let state = shell.ended().unwrap_or(ShellState::Open);
        let mut term = lock(&shell.term);
        let read = if raw {
            let raw = term.read_raw();
            ShellRead {
                shell: id.to_string(),
                text: String::from_utf8_lossy(&raw.bytes).into_owned(),
                full_screen: term.full_screen(),
                idle,
                dropped: raw.dropped_bytes,
                state,
            }
        } else {
            let text = term.read_text();
            ShellRead {
                shell: id.to_string(),
                text: text.text,
                full_screen: text.full_screen,
                idle,
                dropped: text.dropped_lines,
                state,
            }
        };
        Ok(read)
    }

    pub(crate) async fn write(
        &self,
        id: &str,
        data: String,
        keys: &[String],
    ) -> Result<u64, SessionError> {
        let shell = self.live(id)?;
        let mut data = data.into_bytes();
        {
            let term = lock(&shell.term);
            for key in keys {
                let bytes = term
                    .encode_key(key)
                    .ok_or_else(|| SessionError::Invalid(format!("unknown key '{key}'")))?;
                data.extend_from_slice(bytes);
            }
        }
        if data.is_empty() {
            return Err(SessionError::Invalid("nothing to write".into()));
        }
        if data.len() > MAX_WRITE {
            return Err(SessionError::Invalid(format!(
                "{} bytes is more than one shell write takes ({MAX_WRITE}); write a file and run it instead",
                data.len()
            )));
        }
        if let Some(gone) = shell.gone(&self.workspace) {
            return Err(gone);
        }
        let len = data.len() as u64;
        let (reply, replied) = oneshot::channel();
        let gone = || shell.gone(&self.workspace);
        if shell
            .commands
            .send(ShellCommand::Write(data, reply))
            .await
            .is_err()
        {
            return Err(
                gone().unwrap_or_else(|| SessionError::Internal("the shell's task ended".into()))
            );
        }
        match replied.await {
            Ok(result) => result.map(|()| len),
            Err(_) => {
                Err(gone()
                    .unwrap_or_else(|| SessionError::Internal("the shell's task ended".into())))
            }
        }
    }

    pub(crate) async fn signal(&self, id: &str, signal: i32) -> Result<(), SessionError> {
        let shell = self.live(id)?;
        if let Some(gone) = shell.gone(&self.workspace) {
            return Err(gone);
        }
        let _ = shell.commands.send(ShellCommand::Signal(signal)).await;
        Ok(())
    }

    pub(crate) async fn resize(&self, id: &str, rows: u16, cols: u16) -> Result<(), SessionError> {
        check_size(rows, cols)?;
        let shell = self.live(id)?;
        if let Some(gone) = shell.gone(&self.workspace) {
            return Err(gone);
        }
        let _ = shell.commands.send(ShellCommand::Resize(rows, cols)).await;
        let mut state = lock(&self.state);
        if let Some(info) = state.registry.shells.iter_mut().find(|s| s.id == id) {
            info.rows = rows;
            info.cols = cols;
        }
        self.save(&state);
        Ok(())
    }

    /// Ends a shell (SIGHUP, then SIGKILL) and forgets its output. Closing
    /// a shell that already ended just forgets it.
    pub(crate) async fn close(&self, id: &str) -> Result<ShellInfo, SessionError> {
        let live = lock(&self.state).live.get(id).cloned();
        if let Some(shell) = live {
            if shell.ended().is_none() {
                let (done, finished) = oneshot::channel();
                if shell.commands.send(ShellCommand::Close(done)).await.is_ok() {
                    let _ = finished.await;
                }
            }
        }
        // Whether it was closed just now, had exited by itself (maybe while
        // the close was on its way) or is long gone: forget its output.
        let mut state = lock(&self.state);
        state.live.remove(id);
        state.registry.set_state(id, ShellState::Closed);
        self.save(&state);
        state
            .registry
            .get(id)
            .cloned()
            .ok_or_else(|| SessionError::UnknownShell {
                shell: id.to_string(),
                workspace: self.workspace.clone(),
            })
    }

    pub(crate) fn list(&self) -> Vec<ShellInfo> {
        lock(&self.state).registry.shells.clone()
    }

    /// Records every open shell as ended (the VM is going away).
    pub(crate) fn end_all(&self, reason: &str) {
        let mut state = lock(&self.state);
        if state.registry.end_live(reason) {
            self.save(&state);
        }
    }
}

/// An open shell in a memory state.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct SavedShell {
    info: ShellInfo,
    guest_id: u32,
    /// What its terminal showed.
    screen: String,
}

/// Keeps the output of only the most recently opened ended shells.
fn prune_exited(live: &mut HashMap<String, Arc<LiveShell>>) {
    let mut exited: Vec<(u64, String)> = live
        .values()
        .filter(|shell| shell.ended().is_some())
        .map(|shell| (shell.id[1..].parse().unwrap_or(0), shell.id.clone()))
        .collect();
    if exited.len() > KEEP_EXITED_LIVE {
        exited.sort();
        for (_, id) in &exited[..exited.len() - KEEP_EXITED_LIVE] {
            live.remove(id);
        }
    }
}

/// Feeds output to a shell's terminal. The emulator is third-party code
/// fed by an untrusted program: should it panic, the shell keeps working on
/// a fresh screen instead of taking the supervisor's task down.
fn feed(term: &Mutex<Terminal>, bytes: &[u8]) {
    let mut term = lock(term);
    let fed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| term.feed(bytes)));
    if fed.is_err() {
        let (rows, cols) = term.size();
        *term = Terminal::new(rows, cols);
        term.feed(b"[pyro: the terminal emulator failed on this output; the screen was reset]\r\n");
    }
}
