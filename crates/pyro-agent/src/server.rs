//! The protocol server: reads host frames and dispatches requests.
//!
//! One reader thread (the caller of [`serve`]) decodes frames and handles
//! each at once; it never waits on command output, so a `Signal` or
//! `PowerOff` gets through however busy the commands are. Forking happens
//! here too, so a request's `Started` is queued before its thread can
//! produce output. Each command then runs on its own thread (`exec.rs`), and
//! every frame to the host goes through the outbox (`outbox.rs`).
//!
//! File requests (`files.rs`, `write.rs`) and probes (`probe.rs`) run on a
//! thread each too. Host data for a request (stdin, `WriteFile` content) is
//! only queued here, in the request's bounded [`Inflow`], for its own thread
//! to deliver and ack.
//!
//! Request ids: id 0 is the connection (`Hello`, `Identity`, `Quiesce`, `PowerOff`); every other
//! request takes a non-zero id that stays live until its terminal message
//! (`Exited`, `Done` or `Error`) is queued. `Resize` and `Signal` act on a
//! live id and are never answered, so they cannot end an id twice.

use std::collections::HashMap;
use std::io::{self, Read};
use std::os::fd::OwnedFd;
use std::panic::{self, AssertUnwindSafe};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use pyro_protocol::{read_frame, ErrorKind, ExecRequest, Frame, FrameKind, Message, GENERATION};

use crate::confine::FileError;
use crate::exec;
use crate::files;
use crate::inflow::Inflow;
use crate::net;
use crate::outbox::Outbox;
use crate::power;
use crate::probe;
use crate::pty;
use crate::reaper::Reaper;
use crate::spawn;
use crate::sys::{self, log};
use crate::write::{self, WriteRequest};

/// The agent's `Hello`, sent on connect and in answer to the host's.
pub fn agent_hello() -> Message {
    Message::Hello {
        generation: GENERATION,
        agent_version: Some(env!("CARGO_PKG_VERSION").to_owned()),
        uptime_ms: Some(sys::boottime_ms()),
        time_unix_ms: None,
    }
}

/// A request that has not ended yet, by id.
#[derive(Default)]
struct Live {
    /// A command's process group id (its pid; it leads its own session).
    pgid: Option<libc::pid_t>,
    /// Where the host's data frames of this kind for the request go.
    inflow: Option<(FrameKind, Arc<Inflow>)>,
    /// A command's pseudo-terminal master, if it runs on one.
    pty: Option<Arc<OwnedFd>>,
}

impl Live {
    /// Ends the request's inflow; returns why the request failed, if it did.
    fn retire(self) -> Option<(ErrorKind, String)> {
        self.inflow.and_then(|(_, inflow)| inflow.retire())
    }
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
            if let Some(pgid) = live.pgid {
                pty::kill_command(pgid, live.pty.as_deref());
            }
        }
    }

    fn handle(&self, frame: Frame) {
        let id = frame.id;
        match frame.kind {
            FrameKind::Message => {}
            FrameKind::Stdin | FrameKind::File => return self.data(id, frame.kind, frame.payload),
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
                // Ahead of anything queued, and it ends a quiesce.
                self.outbox.resume(&agent_hello());
            }
            (0, Message::Quiesce) => self.outbox.quiesce(&Message::Quiesced),
            (
                0,
                Message::Identity {
                    hostname,
                    machine_id,
                    entropy,
                },
            ) => {
                // Only as the VM's init: a test agent on a host leaves the
                // host's name and RNG alone.
                if power::is_init() {
                    crate::identity::apply(&hostname, &machine_id, &entropy);
                }
            }
            (0, Message::PowerOff) => self.power_off(),
            (
                0,
                Message::Exec(_)
                | Message::Signal { .. }
                | Message::ReadFile { .. }
                | Message::WriteFile { .. }
                | Message::ListDir { .. }
                | Message::Stat { .. }
                | Message::Probe(_)
                | Message::NetworkUp { .. },
            ) => self.reply_error(
                0,
                ErrorKind::InvalidRequest,
                "request id 0 is reserved for the connection; use a non-zero id",
            ),
            (_, Message::Exec(request)) => self.exec(id, request),
            (
                _,
                Message::ReadFile {
                    path,
                    max_bytes,
                    root,
                },
            ) => self.threaded_request(id, None, move |outbox| {
                files::read(root.as_deref(), &path, max_bytes, outbox, id).map(Some)
            }),
            (_, Message::Stat { path, root }) => self.threaded_request(id, None, move |outbox| {
                files::stat(root.as_deref(), &path, outbox, id).map(|()| None)
            }),
            (
                _,
                Message::ListDir {
                    path,
                    recursive,
                    max_entries,
                    root,
                },
            ) => self.threaded_request(id, None, move |outbox| {
                files::list(root.as_deref(), &path, recursive, max_entries, outbox, id)
                    .map(|()| None)
            }),
            (
                _,
                Message::WriteFile {
                    path,
                    mode,
                    create_parents,
                    root,
                },
            ) => {
                let inflow = Inflow::new(id, Arc::clone(&self.outbox));
                let request = WriteRequest {
                    root,
                    path,
                    mode,
                    create_parents,
                };
                let source = Arc::clone(&inflow);
                self.threaded_request(id, Some(inflow), move |_| {
                    write::write(&request, &source).map(Some)
                })
            }
            (_, Message::NetworkUp { host_ca, env, mac }) => {
                let inflow = host_ca.then(|| Inflow::new(id, Arc::clone(&self.outbox)));
                let source = inflow.clone();
                self.threaded_request(id, inflow, move |_| {
                    net::up(source.as_deref(), env, mac.as_deref())
                })
            }
            (_, Message::Signal { signal, foreground }) => self.signal(id, signal, foreground),
            (_, Message::Resize { rows, cols }) => self.resize(id, rows, cols),
            (_, Message::Probe(check)) => {
                self.threaded_request(id, None, move |_| probe::check(&check).map(|()| None))
            }
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

    /// Refuses an id that a request still holds.
    fn id_in_use(&self, id: u32) -> bool {
        if !self.lock_live().contains_key(&id) {
            return false;
        }
        self.reply_error(
            id,
            ErrorKind::InvalidRequest,
            &format!("request id {id} is already in use by a running request"),
        );
        true
    }

    fn exec(&self, id: u32, request: ExecRequest) {
        if self.id_in_use(id) {
            return;
        }
        let spawned =
            spawn::prepare(&request).and_then(|prepared| spawn::spawn(&prepared, &self.reaper));
        let mut spawned = match spawned {
            Ok(spawned) => spawned,
            Err(err) => return self.reply_error(id, err.kind, &err.message),
        };
        let pid = spawned.pid;
        let pty = spawned.pty.clone();
        let on_terminal = pty.is_some();
        let inflow = spawned.stdin.take().map(|file| {
            let inflow = Inflow::new(id, Arc::clone(&self.outbox));
            exec::start_stdin_feeder(id, file, Arc::clone(&inflow), on_terminal);
            (FrameKind::Stdin, inflow)
        });
        self.lock_live().insert(
            id,
            Live {
                pgid: Some(pid),
                inflow,
                pty: pty.clone(),
            },
        );
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
                    let ended = live.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                    ended.and_then(Live::retire)
                };
                exec::run_to_exit(id, spawned, timeout, &outbox, &reaper, retire);
            });
        if let Err(err) = started {
            // Without its thread the command cannot be watched: stop it.
            pty::kill_command(pid, pty.as_deref());
            if let Some(live) = self.lock_live().remove(&id) {
                live.retire();
            }
            self.reaper.forget(pid);
            self.reply_error(
                id,
                ErrorKind::Internal,
                &format!("cannot start a thread: {err}"),
            );
        }
    }

    fn signal(&self, id: u32, signal: i32, foreground: bool) {
        // A request that already ended has nothing to signal; its terminal
        // message is on the way, so stay silent rather than end the id twice.
        let (pgid, pty) = {
            let live = self.lock_live();
            let Some(entry) = live.get(&id) else { return };
            match (entry.pgid, &entry.inflow) {
                (Some(pgid), _) => (pgid, entry.pty.clone()),
                // A `WriteFile`: any signal cancels it, keeping the old file.
                (None, Some((_, inflow))) => {
                    return inflow.fail(
                        ErrorKind::Cancelled,
                        format!("cancelled by the host (signal {signal}); the file is unchanged"),
                    )
                }
                (None, None) => return,
            }
        };
        if let Some(master) = pty {
            return pty::signal(&master, pgid, signal, foreground);
        }
        if let Err(err) = sys::kill_group(pgid, signal) {
            if err.raw_os_error() != Some(libc::ESRCH) {
                log!("request {id}: signal {signal}: {err}");
            }
        }
    }

    /// Sets the window size of a command's terminal. Anything else on the
    /// id (no such request, or one without a terminal) is only logged: a
    /// second terminal message for the id would confuse the host.
    fn resize(&self, id: u32, rows: u16, cols: u16) {
        let master = self.lock_live().get(&id).and_then(|live| live.pty.clone());
        let Some(master) = master else {
            return log!("request {id}: resize ignored: no command on a terminal has this id");
        };
        if let Err(err) = sys::set_winsize(&*master, rows, cols) {
            log!("request {id}: resize to {rows}x{cols}: {err}");
        }
    }

    /// Queues a host data frame for its request; frames for ended requests,
    /// or of a kind the request does not take, are dropped.
    fn data(&self, id: u32, kind: FrameKind, payload: Vec<u8>) {
        let live = self.lock_live();
        let Some(entry) = live.get(&id) else {
            return;
        };
        let Some((wanted, inflow)) = &entry.inflow else {
            return;
        };
        if *wanted != kind {
            return;
        }
        if inflow.push(payload).is_err() {
            // The host overran its window: the request fails. A command is
            // killed so that its thread reports the failure promptly.
            log!("request {id}: the host overran the data window");
            if let Some(pgid) = entry.pgid {
                pty::kill_command(pgid, entry.pty.as_deref());
            }
        }
    }

    /// Runs a file request or a probe on its own thread. `work` returns the
    /// byte count for `Done`, if one applies; `inflow` receives the
    /// request's `File` frames.
    fn threaded_request(
        &self,
        id: u32,
        inflow: Option<Arc<Inflow>>,
        work: impl FnOnce(&Outbox) -> Result<Option<u64>, FileError> + Send + 'static,
    ) {
        if self.id_in_use(id) {
            return;
        }
        self.lock_live().insert(
            id,
            Live {
                pgid: None,
                inflow: inflow.map(|inflow| (FrameKind::File, inflow)),
                pty: None,
            },
        );
        let outbox = Arc::clone(&self.outbox);
        let live = Arc::clone(&self.live);
        let started = thread::Builder::new()
            .name(format!("file-{id}"))
            .spawn(move || {
                let result = panic::catch_unwind(AssertUnwindSafe(|| work(&outbox)))
                    .unwrap_or_else(|_| {
                        log!("request {id}: file handler panicked");
                        Err(FileError::new(
                            ErrorKind::Internal,
                            "the agent failed handling this request",
                        ))
                    });
                let ended = live.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
                ended.and_then(Live::retire);
                let reply = match result {
                    Ok(bytes) => Message::Done { bytes },
                    Err(err) => Message::Error {
                        kind: err.kind,
                        message: err.message,
                    },
                };
                outbox.push_control(id, &reply);
            });
        if let Err(err) = started {
            if let Some(live) = self.lock_live().remove(&id) {
                live.retire();
            }
            self.reply_error(
                id,
                ErrorKind::Internal,
                &format!("cannot start a thread: {err}"),
            );
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
        Message::Identity { .. } => "identity",
        Message::Exec(_) => "exec",
        Message::Started { .. } => "started",
        Message::Signal { .. } => "signal",
        Message::Exited(_) => "exited",
        Message::Error { .. } => "error",
        Message::PowerOff => "power_off",
        Message::PoweringOff => "powering_off",
        Message::Quiesce => "quiesce",
        Message::Quiesced => "quiesced",
        Message::Ack { .. } => "ack",
        Message::ReadFile { .. } => "read_file",
        Message::WriteFile { .. } => "write_file",
        Message::ListDir { .. } => "list_dir",
        Message::Stat { .. } => "stat",
        Message::FileInfo(_) => "file_info",
        Message::DirEntries { .. } => "dir_entries",
        Message::Done { .. } => "done",
        Message::Resize { .. } => "resize",
        Message::Probe(_) => "probe",
        Message::NetworkUp { .. } => "network_up",
        Message::Unknown => "an unknown message type",
    }
}
