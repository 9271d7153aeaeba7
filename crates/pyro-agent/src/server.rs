//! The protocol server: reads host frames and dispatches requests.
//!
//! One reader thread (the caller of [`serve`]) decodes frames and handles
//! each at once; it never waits on command output, so a `Signal` or
//! `PowerOff` gets through however busy the commands are. Forking happens
//! here too, so a request's `Started` is queued before its thread can
//! produce output. Each command then runs on its own thread (`exec.rs`), and
//! every frame to the host goes through the outbox (`outbox.rs`).
//!
//! Request ids: id 0 is the connection (`Hello`, `PowerOff`); an `Exec` takes
//! a non-zero id that stays live until its `Exited` or `Error` is queued.

use std::collections::HashMap;
use std::io::{self, Read};
use std::panic::{self, AssertUnwindSafe};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use pyro_protocol::{read_frame, ErrorKind, ExecRequest, Frame, FrameKind, Message, GENERATION};

use crate::exec;
use crate::outbox::Outbox;
use crate::power;
use crate::reaper::Reaper;
use crate::spawn;
use crate::sys::{self, log};

/// The agent's `Hello`, sent on connect and in answer to the host's.
pub fn agent_hello() -> Message {
    Message::Hello {
        generation: GENERATION,
        agent_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        uptime_ms: Some(sys::boottime_ms()),
        time_unix_ms: None,
    }
}

/// A command that is still running, by request id.
struct Live {
    /// Process group id (the command's pid; it leads its own session).
    pgid: libc::pid_t,
    stdin: Option<Sender<Vec<u8>>>,
}

type LiveTable = Arc<Mutex<HashMap<u32, Live>>>;

/// Why serving stopped.
pub enum End {
    /// The host closed the stream (stdio mode only; the port never ends).
    Eof,
    /// The stream is unusable.
    Broken(io::Error),
}

pub struct Server {
    outbox: Arc<Outbox>,
    reaper: Arc<Reaper>,
    live: LiveTable,
}

impl Server {
    pub fn new(outbox: Arc<Outbox>, reaper: Arc<Reaper>) -> Self {
        Self {
            outbox,
            reaper,
            live: LiveTable::default(),
        }
    }

    /// Reads and handles frames until the stream ends or breaks.
    pub fn serve(&self, input: &mut impl Read) -> End {
        loop {
            let frame = match read_frame(input) {
                Ok(Some(frame)) => frame,
                Ok(None) => return End::Eof,
                Err(err) => return End::Broken(err),
            };
            let id = frame.id;
            let handled = panic::catch_unwind(AssertUnwindSafe(|| self.handle(frame)));
            if handled.is_err() {
                log!("request {id}: handler panicked");
                self.reply_error(
                    id,
                    ErrorKind::Internal,
                    "the agent failed handling this request",
                );
            }
        }
    }

    /// Kills every running command (stdio mode shutdown).
    pub fn kill_all(&self) {
        for live in self.lock_live().values() {
            let _ = sys::kill_group(live.pgid, libc::SIGKILL);
        }
    }

    fn handle(&self, frame: Frame) {
        let id = frame.id;
        match frame.kind {
            FrameKind::Message => {}
            FrameKind::Stdin => return self.stdin(id, frame.payload),
            // Output kinds flow guest → host only; unknown kinds are ignored.
            _ => return,
        }
        let message = match frame.message() {
            Ok(message) => message,
            Err(err) => {
                let cause = match &err {
                    pyro_protocol::DecodeError::Json(json) => format!("{err}: {json}"),
                    _ => err.to_string(),
                };
                return self.reply_error(id, ErrorKind::InvalidRequest, &cause);
            }
        };
        match (id, message) {
            (0, Message::Hello { time_unix_ms, .. }) => {
                if let (Some(unix_ms), true) = (time_unix_ms, power::is_init()) {
                    if let Err(err) = sys::set_realtime_ms(unix_ms) {
                        log!("set the clock: {err}");
                    }
                }
                self.outbox.push_control(0, &agent_hello());
            }
            (0, Message::PowerOff) => self.power_off(),
            (0, Message::Exec(_) | Message::Signal { .. }) => self.reply_error(
                0,
                ErrorKind::InvalidRequest,
                "request id 0 is reserved for the connection; use a non-zero id",
            ),
            (_, Message::Exec(request)) => self.exec(id, request),
            (_, Message::Signal { signal }) => self.signal(id, signal),
            (_, other) => {
                let name = message_name(&other);
                self.reply_error(
                    id,
                    ErrorKind::Unsupported,
                    &format!("the agent does not handle {name} on request id {id}"),
                );
            }
        }
    }

    fn exec(&self, id: u32, request: ExecRequest) {
        if self.lock_live().contains_key(&id) {
            return self.reply_error(
                id,
                ErrorKind::InvalidRequest,
                &format!("request id {id} is already in use by a running command"),
            );
        }
        let spawned =
            spawn::prepare(&request).and_then(|prepared| spawn::spawn(&prepared, &self.reaper));
        let mut spawned = match spawned {
            Ok(spawned) => spawned,
            Err(err) => return self.reply_error(id, err.kind, &err.message),
        };
        let pid = spawned.pid;
        let stdin = spawned
            .stdin
            .take()
            .map(|file| exec::start_stdin_feeder(id, file));
        self.lock_live().insert(id, Live { pgid: pid, stdin });
        self.outbox
            .push_control(id, &Message::Started { pid: pid as u32 });

        let timeout = request.timeout_ms.map(Duration::from_millis);
        let outbox = Arc::clone(&self.outbox);
        let reaper = Arc::clone(&self.reaper);
        let live = Arc::clone(&self.live);
        let started = thread::Builder::new()
            .name(format!("exec-{id}"))
            .spawn(move || {
                let retire = || {
                    live.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                };
                exec::run_to_exit(id, spawned, timeout, &outbox, &reaper, retire);
            });
        if let Err(err) = started {
            // Without its thread the command cannot be watched: stop it.
            let _ = sys::kill_group(pid, libc::SIGKILL);
            self.lock_live().remove(&id);
            self.reaper.forget(pid);
            self.reply_error(
                id,
                ErrorKind::Internal,
                &format!("cannot start a thread: {err}"),
            );
        }
    }

    fn signal(&self, id: u32, signal: i32) {
        // A command that already ended has nothing to signal; its `Exited`
        // is on the way, so stay silent rather than end the id twice.
        let Some(pgid) = self.lock_live().get(&id).map(|live| live.pgid) else {
            return;
        };
        if let Err(err) = sys::kill_group(pgid, signal) {
            if err.raw_os_error() != Some(libc::ESRCH) {
                log!("request {id}: signal {signal}: {err}");
            }
        }
    }

    fn stdin(&self, id: u32, payload: Vec<u8>) {
        let mut live = self.lock_live();
        let Some(entry) = live.get_mut(&id) else {
            return;
        };
        if payload.is_empty() {
            // Dropping the sender lets the feeder finish and close the pipe.
            if let Some(sender) = entry.stdin.take() {
                let _ = sender.send(Vec::new());
            }
        } else if let Some(sender) = &entry.stdin {
            let _ = sender.send(payload);
        }
    }

    fn power_off(&self) -> ! {
        self.outbox.push_control(0, &Message::PoweringOff);
        if !self.outbox.flush(Duration::from_secs(2)) {
            log!("the host did not read PoweringOff; powering off anyway");
        }
        self.kill_all();
        power::power_off(0)
    }

    fn reply_error(&self, id: u32, kind: ErrorKind, message: &str) {
        self.outbox.push_control(
            id,
            &Message::Error {
                kind,
                message: message.to_owned(),
            },
        );
    }

    fn lock_live(&self) -> MutexGuard<'_, HashMap<u32, Live>> {
        self.live
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

fn message_name(message: &Message) -> &'static str {
    match message {
        Message::Hello { .. } => "hello",
        Message::Exec(_) => "exec",
        Message::Started { .. } => "started",
        Message::Signal { .. } => "signal",
        Message::Exited(_) => "exited",
        Message::Error { .. } => "error",
        Message::PowerOff => "power_off",
        Message::PoweringOff => "powering_off",
        Message::Unknown => "an unknown message type",
    }
}
