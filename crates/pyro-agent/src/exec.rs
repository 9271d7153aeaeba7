//! Running one started command to its end: streaming its output, enforcing
//! its timeout, feeding its stdin (from its `Inflow`, on a thread of its
//! own, so a command that does not read never blocks anyone else), and
//! reporting how it exited.
//!
//! Each command gets one thread that `poll`s its stdout and stderr pipes and
//! the eventfd the reaper signals on exit. Output goes out in chunks of at
//! most [`READ_CHUNK`] through the bounded side of the outbox, so a host that
//! stops reading stalls the command rather than the agent. The timeout is
//! enforced even while stalled (the outbox push gives up at the deadline).
//!
//! Once the main process has exited, background processes that inherited the
//! pipes could keep them open forever; the thread then drains for at most
//! [`DRAIN_AFTER_EXIT`], takes what is immediately readable, and reports
//! `Exited` without waiting for end-of-file.
//!
//! A command on a pseudo-terminal has one output, the terminal's master,
//! streamed as stdout; reading it fails with `EIO` once no process holds the
//! slave any more, which counts as end-of-file. The master is non-blocking,
//! so its stdin feeder waits for room with `poll` and gives up when the
//! request ends, even if the command never reads its terminal.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pyro_protocol::{ErrorKind, ExitStatus, FrameKind, Message};

use crate::inflow::{Inflow, Next};
use crate::outbox::Outbox;
use crate::pty;
use crate::reaper::{decode_status, Reaped, Reaper};
use crate::spawn::Spawned;
use crate::sys::{self, log};

/// Largest read from a command's pipe, and so the largest output frame.
pub const READ_CHUNK: usize = 64 * 1024;
/// How long output may still arrive after the command's main process exits.
pub const DRAIN_AFTER_EXIT: Duration = Duration::from_millis(100);
/// After the drain window, at most this much more is taken per pipe.
const FINAL_SWEEP_LIMIT: usize = 1024 * 1024;

/// Starts the thread that writes the host's stdin frames, queued in
/// `inflow`, to the command's stdin pipe and acknowledges them. The end of
/// the stream (or of the request) closes the pipe.
/// On a terminal (`terminal: true`) the bytes go to its master.
pub fn start_stdin_feeder(id: u32, stdin: File, inflow: Arc<Inflow>, terminal: bool) {
    let spawned = thread::Builder::new()
        .name(format!("stdin-{id}"))
        .spawn(move || {
            if terminal {
                feed_terminal(stdin, &inflow)
            } else {
                feed_stdin(stdin, &inflow)
            }
        });
    if let Err(err) = spawned {
        log!("request {id}: cannot start the stdin thread: {err}");
    }
}

fn feed_stdin(stdin: File, inflow: &Inflow) {
    let mut stdin = Some(stdin);
    while let Next::Data(chunk) = inflow.next() {
        if let Some(pipe) = &mut stdin {
            if pipe.write_all(&chunk).is_err() {
                // The command closed its stdin (EPIPE): what else arrives
                // is dropped, and acked so the host is not left waiting.
                stdin = None;
            }
        }
        inflow.delivered(chunk.len());
    }
}

fn feed_terminal(master: File, inflow: &Inflow) {
    let mut master = Some(master);
    while let Next::Data(chunk) = inflow.next() {
        if let Some(terminal) = &master {
            if write_to_terminal(terminal, &chunk, inflow).is_err() {
                // The terminal is gone (EIO once nobody holds the slave) or
                // the request ended while the command was not reading.
                master = None;
            }
        }
        inflow.delivered(chunk.len());
    }
}

/// Writes all of `data` to the non-blocking master, waiting for room while
/// the request lasts.
fn write_to_terminal(mut master: &File, mut data: &[u8], inflow: &Inflow) -> io::Result<()> {
    while !data.is_empty() {
        match master.write(data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) if err.kind() == io::ErrorKind::WouldBlock => {
                if inflow.is_over() {
                    return Err(err);
                }
                let mut fds = [libc::pollfd {
                    fd: master.as_raw_fd(),
                    events: libc::POLLOUT,
                    revents: 0,
                }];
                sys::poll(&mut fds, Some(TERMINAL_WRITE_RECHECK))?;
            }
            Err(err) => return Err(err),
        }
    }
    Ok(())
}

/// How often a stdin feeder blocked on a full terminal checks whether its
/// request has ended.
const TERMINAL_WRITE_RECHECK: Duration = Duration::from_millis(100);

/// Streams a started command's output until it ends, then sends `Exited`.
/// `on_end` runs just before `Exited` is queued (to retire the request id);
/// when it returns a failure (the host overran the stdin window), `Error`
/// is sent instead.
pub fn run_to_exit(
    id: u32,
    spawned: Spawned,
    timeout: Option<Duration>,
    outbox: &Outbox,
    reaper: &Reaper,
    on_end: impl FnOnce() -> Option<(ErrorKind, String)>,
) {
    let mut stream = Stream {
        id,
        pgid: spawned.pid,
        pty: spawned.pty.clone(),
        outbox,
        kill_deadline: timeout.map(|t| spawned.started + t),
        timed_out: false,
    };
    let mut pipes = [
        Some((spawned.stdout, FrameKind::Stdout)),
        spawned.stderr.map(|stderr| (stderr, FrameKind::Stderr)),
    ];
    let mut reaped: Option<Reaped> = None;
    let mut buf = vec![0u8; READ_CHUNK];
    loop {
        if reaped.is_none() {
            reaped = reaper.take(spawned.pid);
        }
        let drain_deadline = reaped.map(|r| r.at + DRAIN_AFTER_EXIT);
        if pipes.iter().all(Option::is_none) && reaped.is_some() {
            break;
        }
        let now = Instant::now();
        if drain_deadline.is_some_and(|deadline| now >= deadline) {
            for (pipe, kind) in pipes.iter_mut().flatten() {
                stream.final_sweep(pipe, *kind, &mut buf);
            }
            break;
        }
        if reaped.is_none() {
            stream.enforce_timeout(now);
        }
        let wait = [
            drain_deadline,
            if stream.timed_out {
                None
            } else {
                stream.kill_deadline
            },
        ]
        .into_iter()
        .flatten()
        .min()
        .map(|deadline| deadline.saturating_duration_since(now));

        let mut fds = Vec::with_capacity(3);
        for (pipe, _) in pipes.iter().flatten() {
            fds.push(pollfd(pipe.as_raw_fd()));
        }
        if reaped.is_none() {
            fds.push(pollfd(spawned.exited.as_raw_fd()));
        }
        if let Err(err) = sys::poll(&mut fds, wait) {
            log!("request {id}: poll: {err}");
            thread::sleep(Duration::from_millis(10));
            continue;
        }
        let mut ready = fds.iter().map(|fd| fd.revents != 0);
        for slot in pipes.iter_mut() {
            let Some((pipe, kind)) = slot else { continue };
            if ready.next() != Some(true) {
                continue;
            }
            match read_some(pipe, &mut buf) {
                Ok(n) if n > 0 => stream.send(*kind, &buf[..n]),
                // A terminal's master is non-blocking; poll may wake early.
                Err(err) if err.kind() == io::ErrorKind::WouldBlock => {}
                Ok(_) | Err(_) => *slot = None,
            }
        }
        // The eventfd, if polled, is checked through `reaper.take` above.
    }
    drop(pipes);
    if stream.pty.is_some() {
        // What the command left running on its terminal goes with it.
        pty::end_session(spawned.pid);
    }
    let reaped = reaped.or_else(|| reaper.take(spawned.pid));
    let (code, signal) = reaped.map_or((None, None), |r| decode_status(r.status));
    let ended = reaped.map_or_else(Instant::now, |r| r.at);
    let status = ExitStatus {
        code,
        signal,
        timed_out: stream.timed_out,
        duration_ms: ended.saturating_duration_since(spawned.started).as_millis() as u64,
    };
    let reply = match on_end() {
        Some((kind, message)) => Message::Error { kind, message },
        None => Message::Exited(status),
    };
    outbox.push_control(id, &reply);
}

struct Stream<'a> {
    id: u32,
    pgid: libc::pid_t,
    /// The terminal's master, for a command on a pseudo-terminal.
    pty: Option<Arc<OwnedFd>>,
    outbox: &'a Outbox,
    kill_deadline: Option<Instant>,
    timed_out: bool,
}

impl Stream<'_> {
    /// Queues one chunk, killing the command if its time runs out while the
    /// host is not reading.
    fn send(&mut self, kind: FrameKind, chunk: &[u8]) {
        let deadline = if self.timed_out {
            None
        } else {
            self.kill_deadline
        };
        if !self.outbox.push_data(self.id, kind, chunk, deadline) {
            self.enforce_timeout(Instant::now());
            self.outbox.push_data(self.id, kind, chunk, None);
        }
    }

    fn enforce_timeout(&mut self, now: Instant) {
        if self.timed_out || self.kill_deadline.is_none_or(|deadline| now < deadline) {
            return;
        }
        self.timed_out = true;
        pty::kill_command(self.pgid, self.pty.as_deref());
    }

    /// Takes what is readable right now, up to a limit, without waiting.
    fn final_sweep(&mut self, pipe: &mut File, kind: FrameKind, buf: &mut [u8]) {
        let mut taken = 0;
        while taken < FINAL_SWEEP_LIMIT {
            let mut fds = [pollfd(pipe.as_raw_fd())];
            if !matches!(sys::poll(&mut fds, Some(Duration::ZERO)), Ok(1)) {
                return;
            }
            match read_some(pipe, buf) {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    self.send(kind, &buf[..n]);
                    taken += n;
                }
            }
        }
    }
}

fn pollfd(fd: i32) -> libc::pollfd {
    libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    }
}

fn read_some(pipe: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match pipe.read(buf) {
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            other => return other,
        }
    }
}
