//! The single writer to the host: a FIFO of encoded frames drained by one
//! writer thread, which owns all writes to the port.
//!
//! Two kinds of sender use it, with different rules:
//!
//! - Command output and file content ([`Outbox::push_data`]), and listings
//!   ([`Outbox::push_bounded_message`]), are bounded: at most
//!   [`MAX_QUEUED_DATA`] data frames wait at once, and a producer blocks
//!   beyond that. A host that stops reading therefore stalls the commands'
//!   pipes (and so the commands), never the agent's memory.
//! - Replies and lifecycle messages ([`Outbox::push_control`]) never block.
//!   The reader thread sends them, and it must keep reading host frames (a
//!   `Signal`, say) however full the queue is. They are few and small: a
//!   handful per host request, plus `Ack`s, of which a host gets no more
//!   until it reads them (its window closes first).
//!
//! One FIFO keeps per-request order: `Started` before any output of its id,
//! all output before `Exited`. Connection messages that must overtake it
//! (`Quiesced`, the `Hello` that ends a quiesce) go first: after
//! [`Outbox::quiesce`] the writer writes `Quiesced` and then nothing until
//! [`Outbox::resume`], so a VM saved meanwhile holds its pending frames in
//! its own memory, whole. (A `std::sync::mpsc::sync_channel` cannot mix
//! a bounded and a never-blocking sender, hence this small queue.)

use std::collections::VecDeque;
use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use pyro_protocol::{encode_data, encode_message, FrameKind, Message};

use crate::power;

/// Data frames (each ≤ 64 KiB of output or file) and bounded messages that
/// may wait for the writer.
pub const MAX_QUEUED_DATA: usize = 64;
/// The writer coalesces queued frames into writes of about this size.
const WRITE_BATCH: usize = 256 * 1024;

struct Queued {
    bytes: Vec<u8>,
    is_data: bool,
}

#[derive(Default)]
struct State {
    queue: VecDeque<Queued>,
    queued_data: usize,
    /// The writer holds frames it took from the queue but has not written.
    writing: bool,
    /// Quiesced: the queue waits; only `urgent` frames are written.
    paused: bool,
    /// Connection messages written before anything queued.
    urgent: VecDeque<Vec<u8>>,
}

#[derive(Default)]
pub struct Outbox {
    state: Mutex<State>,
    /// Signalled when frames are queued.
    filled: Condvar,
    /// Signalled when the writer has taken or written frames.
    drained: Condvar,
}

impl Outbox {
    /// Starts the writer thread over `output`. A write error is fatal: the
    /// stream to the host is the agent's only reason to exist.
    pub fn start(output: impl Write + Send + 'static) -> Arc<Self> {
        let outbox = Arc::new(Self::default());
        let worker = Arc::clone(&outbox);
        thread::Builder::new()
            .name("writer".into())
            .spawn(move || worker.run(output))
            .expect("spawn the writer thread");
        outbox
    }

    /// Queues a message; never blocks.
    pub fn push_control(&self, id: u32, message: &Message) {
        self.enqueue(Queued {
            bytes: encode_message(id, message),
            is_data: false,
        });
    }

    /// Queues one chunk of command output (≤ the frame payload cap), waiting
    /// while too much output is queued. With a `deadline`, gives up at that
    /// instant and returns `false` (the chunk is not queued) so the caller
    /// can act on a timeout and try again.
    pub fn push_data(
        &self,
        id: u32,
        kind: FrameKind,
        chunk: &[u8],
        deadline: Option<Instant>,
    ) -> bool {
        let mut bytes = Vec::new();
        encode_data(id, kind, chunk, &mut bytes);
        self.push_bounded(bytes, deadline)
    }

    /// Queues a message on the bounded side, like output: for replies that
    /// may come in great numbers (a long directory listing).
    pub fn push_bounded_message(&self, id: u32, message: &Message) {
        self.push_bounded(encode_message(id, message), None);
    }

    fn push_bounded(&self, bytes: Vec<u8>, deadline: Option<Instant>) -> bool {
        let mut state = self.lock();
        while state.queued_data >= MAX_QUEUED_DATA {
            match deadline {
                None => state = self.wait(&self.drained, state, None),
                Some(deadline) => {
                    let now = Instant::now();
                    if now >= deadline {
                        return false;
                    }
                    state = self.wait(&self.drained, state, Some(deadline - now));
                }
            }
        }
        state.queued_data += 1;
        state.queue.push_back(Queued {
            bytes,
            is_data: true,
        });
        drop(state);
        self.filled.notify_one();
        true
    }

    /// Waits until everything queued so far is written, for at most `timeout`.
    pub fn flush(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        while !state.queue.is_empty() || state.writing {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            state = self.wait(&self.drained, state, Some(deadline - now));
        }
        true
    }

    /// Writes `message` (id 0) ahead of the queue, then holds the queue
    /// until [`Outbox::resume`].
    pub fn quiesce(&self, message: &Message) {
        let mut state = self.lock();
        state.paused = true;
        state.urgent.push_back(encode_message(0, message));
        drop(state);
        self.filled.notify_one();
    }

    /// Writes `message` (id 0) ahead of the queue, then the queue again.
    pub fn resume(&self, message: &Message) {
        let mut state = self.lock();
        state.paused = false;
        state.urgent.push_back(encode_message(0, message));
        drop(state);
        self.filled.notify_one();
    }

    fn enqueue(&self, frame: Queued) {
        self.lock().queue.push_back(frame);
        self.filled.notify_one();
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn wait<'a>(
        &self,
        condvar: &Condvar,
        guard: MutexGuard<'a, State>,
        timeout: Option<Duration>,
    ) -> MutexGuard<'a, State> {
        match timeout {
            None => condvar
                .wait(guard)
                .unwrap_or_else(|poison| poison.into_inner()),
            Some(timeout) => {
                condvar
                    .wait_timeout(guard, timeout)
                    .unwrap_or_else(|poison| poison.into_inner())
                    .0
            }
        }
    }

    fn run(&self, mut output: impl Write) {
        let mut batch = Vec::with_capacity(WRITE_BATCH);
        loop {
            let mut state = self.lock();
            while state.urgent.is_empty() && (state.paused || state.queue.is_empty()) {
                state = self.wait(&self.filled, state, None);
            }
            batch.clear();
            if let Some(urgent) = state.urgent.pop_front() {
                batch.extend_from_slice(&urgent);
            }
            while let Some(frame) = state.queue.front().filter(|_| !state.paused) {
                if !batch.is_empty() && batch.len() + frame.bytes.len() > WRITE_BATCH {
                    break;
                }
                let frame = state.queue.pop_front().expect("front exists");
                if frame.is_data {
                    state.queued_data -= 1;
                }
                batch.extend_from_slice(&frame.bytes);
            }
            state.writing = true;
            drop(state);
            self.drained.notify_all();
            let result = output.write_all(&batch).and_then(|()| output.flush());
            self.lock().writing = false;
            self.drained.notify_all();
            if let Err(err) = result {
                power::fatal(format_args!("cannot write to the host: {err}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use pyro_protocol::{Decoder, FrameKind, Message};

    use super::Outbox;

    /// A writer that hands every write to the test.
    struct Sink(mpsc::Sender<Vec<u8>>);

    impl std::io::Write for Sink {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            let _ = self.0.send(bytes.to_vec());
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn frames(written: &mpsc::Receiver<Vec<u8>>, count: usize) -> Vec<(u32, Option<Message>)> {
        let mut decoder = Decoder::new();
        let mut out = Vec::new();
        while out.len() < count {
            let bytes = written
                .recv_timeout(std::time::Duration::from_secs(5))
                .expect("a write");
            decoder.push(&bytes);
            while let Some(frame) = decoder.next_frame().expect("a frame") {
                let message = (frame.kind == FrameKind::Message).then(|| frame.message().unwrap());
                out.push((frame.id, message));
            }
        }
        out
    }

    #[test]
    fn a_quiesced_outbox_holds_its_queue_until_the_hello() {
        let (tx, written) = mpsc::channel();
        let outbox = Outbox::start(Sink(tx));
        outbox.quiesce(&Message::Quiesced);
        assert_eq!(frames(&written, 1), vec![(0, Some(Message::Quiesced))]);
        outbox.push_control(5, &Message::Started { pid: 9 });
        assert!(outbox.push_data(5, FrameKind::Stdout, b"held", None));
        let early = written.recv_timeout(std::time::Duration::from_millis(100));
        assert!(early.is_err(), "nothing is written while quiesced");
        outbox.resume(&Message::Quiesced);
        let after = frames(&written, 3);
        assert_eq!(
            after[0],
            (0, Some(Message::Quiesced)),
            "the hello goes first"
        );
        assert_eq!(after[1], (5, Some(Message::Started { pid: 9 })));
        assert_eq!(after[2], (5, None));
    }
}
