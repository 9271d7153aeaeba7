//! Host data for one request (stdin or `WriteFile` content) on its way to its
//! destination, with the acknowledgements that pace the host.
//!
//! The reader thread must never block (a `Signal` or `PowerOff` behind a
//! stalled pipe would wedge the channel), so it only [`Inflow::push`]es each
//! data frame into this queue; one consumer thread per request takes chunks
//! out ([`Inflow::next`]), writes them to the command's stdin pipe or to the
//! file, and reports what reached it ([`Inflow::delivered`]). That report is
//! what the host's window counts on: the agent sends `Ack { bytes }` once at
//! least [`ACK_BATCH`] bytes are delivered, or whenever the queue has run
//! empty, so every delivered byte is acknowledged without an ack per frame.
//!
//! Memory stays bounded whatever the host does: a host that respects the
//! protocol never has more than [`STDIN_WINDOW`] bytes un-acked, and the
//! queue only holds un-acked bytes, so a push that would take the queue past
//! the window means the host broke the rule. The request then fails (the
//! queue is dropped, the consumer sees [`Next::Failed`]) instead of growing.
//!
//! Acks are queued under this queue's lock, and [`Inflow::retire`] takes the
//! same lock, so no `Ack` can follow the request's terminal message.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use pyro_protocol::{ErrorKind, Message, STDIN_WINDOW};

use crate::outbox::Outbox;

/// Delivered bytes that trigger an `Ack` even while more are queued.
pub const ACK_BATCH: u64 = 64 * 1024;

/// What the consumer gets next.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// A chunk to deliver; report it with [`Inflow::delivered`].
    Data(Vec<u8>),
    /// The host ended the stream (an empty frame), or the request is over.
    End,
    /// The request failed (the host overran its window, or cancelled it);
    /// stop and report this.
    Failed(ErrorKind, String),
}

/// The host overran the window: the request has failed.
#[derive(Debug)]
pub struct Overflow;

#[derive(Default)]
struct State {
    queue: VecDeque<Vec<u8>>,
    queued: u64,
    ended: bool,
    failure: Option<(ErrorKind, String)>,
    retired: bool,
    /// Delivered but not yet acknowledged.
    unacked: u64,
}

pub struct Inflow {
    id: u32,
    outbox: Arc<Outbox>,
    state: Mutex<State>,
    ready: Condvar,
}

impl Inflow {
    pub fn new(id: u32, outbox: Arc<Outbox>) -> Arc<Self> {
        Arc::new(Self {
            id,
            outbox,
            state: Mutex::default(),
            ready: Condvar::new(),
        })
    }

    /// Queues one data frame's payload (empty = end of stream); never
    /// blocks. Frames after the end, a failure or retirement are dropped.
    pub fn push(&self, chunk: Vec<u8>) -> Result<(), Overflow> {
        let mut state = self.lock();
        if state.retired || state.ended || state.failure.is_some() {
            return Ok(());
        }
        if chunk.is_empty() {
            state.ended = true;
        } else if state.queued + chunk.len() as u64 > STDIN_WINDOW {
            drop(state);
            self.fail(
                ErrorKind::InvalidRequest,
                format!(
                    "the host sent more than {STDIN_WINDOW} bytes on request {} without \
                     waiting for acks; the request is cancelled",
                    self.id
                ),
            );
            return Err(Overflow);
        } else {
            state.queued += chunk.len() as u64;
            state.queue.push_back(chunk);
        }
        drop(state);
        self.ready.notify_all();
        Ok(())
    }

    /// Waits for the next chunk, the end, or a failure.
    pub fn next(&self) -> Next {
        let mut state = self.lock();
        loop {
            if state.retired {
                return Next::End;
            }
            if let Some((kind, message)) = &state.failure {
                return Next::Failed(*kind, message.clone());
            }
            if let Some(chunk) = state.queue.pop_front() {
                state.queued -= chunk.len() as u64;
                return Next::Data(chunk);
            }
            if state.ended {
                return Next::End;
            }
            state = self
                .ready
                .wait(state)
                .unwrap_or_else(|poison| poison.into_inner());
        }
    }

    /// Whether the request has ended or failed: a consumer waiting on its
    /// destination should give up.
    pub fn is_over(&self) -> bool {
        let state = self.lock();
        state.retired || state.failure.is_some()
    }

    /// Records that `bytes` taken with [`Inflow::next`] reached their
    /// destination (or were dropped for good), acknowledging in batches.
    pub fn delivered(&self, bytes: usize) {
        let mut state = self.lock();
        state.unacked += bytes as u64;
        if state.unacked >= ACK_BATCH || state.queue.is_empty() {
            self.ack(&mut state);
        }
    }

    /// Fails the request (unless it already failed): drops what is queued
    /// and hands the consumer this error at its next [`Inflow::next`].
    pub fn fail(&self, kind: ErrorKind, message: String) {
        let mut state = self.lock();
        if state.failure.is_none() {
            state.failure = Some((kind, message));
        }
        state.queue = VecDeque::new();
        state.queued = 0;
        drop(state);
        self.ready.notify_all();
    }

    /// Ends the request: drops what is queued, wakes the consumer, and stops
    /// acks. Returns the failure, if the request failed. The caller queues
    /// the terminal message after this.
    pub fn retire(&self) -> Option<(ErrorKind, String)> {
        let mut state = self.lock();
        state.retired = true;
        state.queue = VecDeque::new();
        state.queued = 0;
        let failure = state.failure.clone();
        drop(state);
        self.ready.notify_all();
        failure
    }

    fn ack(&self, state: &mut State) {
        if state.retired || state.unacked == 0 {
            return;
        }
        self.outbox.push_control(
            self.id,
            &Message::Ack {
                bytes: state.unacked,
            },
        );
        state.unacked = 0;
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inflow() -> Arc<Inflow> {
        Inflow::new(5, Arc::new(Outbox::default()))
    }

    #[test]
    fn chunks_come_out_in_order_then_the_end() {
        let inflow = inflow();
        inflow.push(b"ab".to_vec()).unwrap();
        inflow.push(b"c".to_vec()).unwrap();
        inflow.push(Vec::new()).unwrap();
        inflow.push(b"late".to_vec()).unwrap();
        assert_eq!(inflow.next(), Next::Data(b"ab".to_vec()));
        assert_eq!(inflow.next(), Next::Data(b"c".to_vec()));
        assert_eq!(inflow.next(), Next::End);
    }

    #[test]
    fn acks_are_batched_and_sent_when_the_queue_drains() {
        let inflow = inflow();
        for _ in 0..3 {
            inflow.push(vec![0; 40 * 1024]).unwrap();
        }
        let _ = inflow.next();
        inflow.delivered(40 * 1024);
        assert_eq!(
            inflow.lock().unacked,
            40 * 1024,
            "below the batch, queue busy"
        );
        let _ = inflow.next();
        inflow.delivered(40 * 1024);
        assert_eq!(inflow.lock().unacked, 0, "past the batch");
        let _ = inflow.next();
        inflow.delivered(40 * 1024);
        assert_eq!(inflow.lock().unacked, 0, "the queue drained");
    }

    #[test]
    fn overrunning_the_window_fails_and_frees_the_queue() {
        let inflow = inflow();
        let frame = 256 * 1024;
        for _ in 0..(STDIN_WINDOW as usize / frame) {
            inflow.push(vec![1; frame]).unwrap();
        }
        assert!(inflow.push(vec![1; 1]).is_err());
        assert_eq!(inflow.lock().queued, 0);
        assert!(
            matches!(inflow.next(), Next::Failed(ErrorKind::InvalidRequest, m) if m.contains("without waiting for acks"))
        );
        assert!(inflow.retire().is_some());
        assert_eq!(inflow.next(), Next::End);
    }
}
