//! The test harness: an agent in `--serve-stdio` mode, and a host side that
//! speaks just enough of the protocol to drive it, including the stdin and
//! file-data window.

use std::io::Write;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use pyro_protocol::{
    encode_data, encode_message, read_frame, DirEntry, ErrorKind, ExitStatus, FileInfo, Frame,
    FrameKind, Message, GENERATION, MAX_PAYLOAD_LEN, STDIN_WINDOW,
};

pub struct Agent {
    child: Child,
    input: ChildStdin,
    output: ChildStdout,
}

/// What one request produced.
#[derive(Debug, Default)]
pub struct Outcome {
    pub started: bool,
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    /// Content of `File` frames.
    pub file: Vec<u8>,
    pub info: Option<FileInfo>,
    pub entries: Vec<DirEntry>,
    pub entry_messages: usize,
    pub truncated: bool,
    /// Sum and number of `Ack`s.
    pub acked: u64,
    pub acks: usize,
    pub exited: Option<ExitStatus>,
    /// `Done { bytes }`.
    pub done: Option<Option<u64>>,
    pub error: Option<(ErrorKind, String)>,
}

impl Outcome {
    /// Takes in one frame of the request; `true` once it has ended.
    fn take(&mut self, frame: Frame) -> bool {
        match frame.kind {
            FrameKind::Stdout => self.stdout.extend_from_slice(&frame.payload),
            FrameKind::Stderr => self.stderr.extend_from_slice(&frame.payload),
            FrameKind::File => self.file.extend_from_slice(&frame.payload),
            FrameKind::Message => match frame.message().unwrap() {
                Message::Started { .. } => self.started = true,
                Message::Ack { bytes } => {
                    self.acked += bytes;
                    self.acks += 1;
                }
                Message::FileInfo(info) => self.info = Some(info),
                Message::DirEntries { entries, truncated } => {
                    self.entries.extend(entries);
                    self.entry_messages += 1;
                    self.truncated |= truncated;
                }
                Message::Exited(status) => {
                    self.exited = Some(status);
                    return true;
                }
                Message::Done { bytes } => {
                    self.done = Some(bytes);
                    return true;
                }
                Message::Error { kind, message } => {
                    self.error = Some((kind, message));
                    return true;
                }
                other => panic!("unexpected message {other:?}"),
            },
            other => panic!("unexpected frame kind {other:?}"),
        }
        false
    }

    /// The error message, failing the test if the request succeeded.
    pub fn error_message(&self) -> &str {
        &self
            .error
            .as_ref()
            .unwrap_or_else(|| panic!("no error: {self:?}"))
            .1
    }
}

impl Agent {
    pub fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_pyro-agent"))
            .arg("--serve-stdio")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the agent");
        let input = child.stdin.take().unwrap();
        let output = child.stdout.take().unwrap();
        let mut agent = Self {
            child,
            input,
            output,
        };
        let hello = agent.next_frame();
        assert_eq!(hello.id, 0);
        match hello.message().unwrap() {
            Message::Hello {
                generation,
                agent_version,
                ..
            } => {
                assert_eq!(generation, GENERATION);
                assert!(agent_version.is_some());
            }
            other => panic!("expected hello, got {other:?}"),
        }
        agent
    }

    pub fn send(&mut self, id: u32, message: &Message) {
        self.input.write_all(&encode_message(id, message)).unwrap();
    }

    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.input.write_all(bytes).unwrap();
    }

    pub fn exec(&mut self, id: u32, request: pyro_protocol::ExecRequest) {
        self.send(id, &Message::Exec(request));
    }

    pub fn next_frame(&mut self) -> Frame {
        read_frame(&mut self.output)
            .expect("read a frame")
            .expect("agent closed its output")
    }

    /// Reads frames until request `id` ends; frames of other ids are ignored.
    pub fn wait(&mut self, id: u32) -> Outcome {
        let mut outcome = Outcome::default();
        self.wait_into(id, &mut outcome);
        outcome
    }

    fn wait_into(&mut self, id: u32, outcome: &mut Outcome) {
        loop {
            let frame = self.next_frame();
            if frame.id == id && outcome.take(frame) {
                return;
            }
        }
    }

    /// Sends `data` as data frames of `kind` for request `id` the way a
    /// well-behaved host does: never more than the window un-acked. Returns
    /// what arrived meanwhile (it may already hold the request's end) and
    /// the most bytes that were ever in flight.
    pub fn send_windowed(&mut self, id: u32, kind: FrameKind, data: &[u8]) -> (Outcome, u64) {
        let mut outcome = Outcome::default();
        let mut sent = 0u64;
        let mut peak = 0u64;
        for chunk in data.chunks(MAX_PAYLOAD_LEN) {
            while sent - outcome.acked + chunk.len() as u64 > STDIN_WINDOW {
                let frame = self.next_frame();
                if frame.id == id && outcome.take(frame) {
                    return (outcome, peak);
                }
            }
            let mut wire = Vec::new();
            encode_data(id, kind, chunk, &mut wire);
            self.send_raw(&wire);
            sent += chunk.len() as u64;
            peak = peak.max(sent - outcome.acked);
        }
        let mut wire = Vec::new();
        encode_data(id, kind, b"", &mut wire);
        self.send_raw(&wire);
        (outcome, peak)
    }

    /// A whole `WriteFile` under `root`; returns its outcome with the acks.
    pub fn write_file(
        &mut self,
        id: u32,
        root: &std::path::Path,
        path: &str,
        data: &[u8],
        create_parents: bool,
    ) -> Outcome {
        self.send(
            id,
            &Message::WriteFile {
                path: path.into(),
                mode: None,
                create_parents,
                root: Some(root.to_str().unwrap().into()),
            },
        );
        let (mut outcome, _) = self.send_windowed(id, FrameKind::File, data);
        if outcome.done.is_none() && outcome.error.is_none() {
            self.wait_into(id, &mut outcome);
        }
        outcome
    }

    /// A whole `ReadFile` under `root`.
    pub fn read_file(
        &mut self,
        id: u32,
        root: &std::path::Path,
        path: &str,
        max_bytes: u64,
    ) -> Outcome {
        self.send(
            id,
            &Message::ReadFile {
                path: path.into(),
                max_bytes,
                root: Some(root.to_str().unwrap().into()),
            },
        );
        self.wait(id)
    }

    /// Reads frames of request `id` into `outcome` until its stdout
    /// contains `needle` (after byte `from`); other ids are ignored. Fails
    /// the test if the request ends first or nothing matches within
    /// `timeout` (the agent is then killed, which unblocks the read).
    pub fn stdout_until(
        &mut self,
        id: u32,
        outcome: &mut Outcome,
        from: usize,
        needle: &str,
        timeout: Duration,
    ) -> usize {
        let watchdog = Watchdog::arm(self.child.id(), timeout);
        loop {
            if let Some(at) = find(&outcome.stdout[from.min(outcome.stdout.len())..], needle) {
                return from + at + needle.len();
            }
            let Some(frame) = read_frame(&mut self.output).ok().flatten() else {
                panic!(
                    "no {needle:?} within {timeout:?} (fired: {}); output so far: {:?}",
                    watchdog.fired(),
                    String::from_utf8_lossy(&outcome.stdout)
                );
            };
            if frame.id == id && outcome.take(frame) {
                panic!(
                    "request {id} ended before printing {needle:?}: {outcome:?}; output: {:?}",
                    String::from_utf8_lossy(&outcome.stdout)
                );
            }
        }
    }

    /// Like [`Agent::wait`], but continues `outcome` and fails the test after
    /// `timeout`.
    pub fn wait_within(&mut self, id: u32, outcome: &mut Outcome, timeout: Duration) {
        let watchdog = Watchdog::arm(self.child.id(), timeout);
        loop {
            let Some(frame) = read_frame(&mut self.output).ok().flatten() else {
                panic!(
                    "request {id} did not end within {timeout:?} (fired: {}); output so far: {:?}",
                    watchdog.fired(),
                    String::from_utf8_lossy(&outcome.stdout)
                );
            };
            if frame.id == id && outcome.take(frame) {
                return;
            }
        }
    }

    /// Peak resident memory of the agent process, in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find(haystack: &[u8], needle: &str) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle.as_bytes())
}

/// Kills the agent if a wait outlives its deadline, so a blocking read
/// fails instead of hanging the test run.
struct Watchdog {
    disarmed: Arc<AtomicBool>,
    fired: Arc<AtomicBool>,
}

impl Watchdog {
    fn arm(pid: u32, timeout: Duration) -> Self {
        let disarmed = Arc::new(AtomicBool::new(false));
        let fired = Arc::new(AtomicBool::new(false));
        let (stop, shot) = (Arc::clone(&disarmed), Arc::clone(&fired));
        let deadline = Instant::now() + timeout;
        thread::spawn(move || {
            while Instant::now() < deadline {
                if stop.load(Ordering::SeqCst) {
                    return;
                }
                thread::sleep(Duration::from_millis(20));
            }
            if !stop.load(Ordering::SeqCst) {
                shot.store(true, Ordering::SeqCst);
                // SAFETY: kill takes no pointers; the pid is our child's.
                unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) };
            }
        });
        Self { disarmed, fired }
    }

    fn fired(&self) -> bool {
        self.fired.load(Ordering::SeqCst)
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.disarmed.store(true, Ordering::SeqCst);
    }
}
