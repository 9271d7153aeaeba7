//! The idle timeout: a supervisor suspends its workspace when no call has
//! touched it for that long (a client connected to either socket is a
//! call in progress; its end is its last touch).
//!
//! A call never finds the supervisor half-gone: every call holds the
//! workspace's use lock (shared) while it reaches the supervisor, and the
//! supervisor suspends only with the lock held exclusively, after seeing
//! no connection waiting on its sockets. A call that comes later finds the
//! workspace suspended, and resumes it.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::net::UnixListener;
use tokio::sync::Notify;

/// How long a suspend that could not begin (a call on its way) waits
/// before it looks again.
const RETRY: Duration = Duration::from_secs(1);

/// When the workspace was last touched, and by how many clients now.
pub(super) struct Activity {
    state: Mutex<Idle>,
    clients: AtomicUsize,
    changed: Notify,
}

struct Idle {
    last: Instant,
    timeout: Option<Duration>,
    /// No suspend before this (one that could not begin).
    not_before: Option<Instant>,
}

impl Activity {
    pub(super) fn new(timeout: Option<Duration>) -> Arc<Self> {
        Arc::new(Activity {
            state: Mutex::new(Idle {
                last: Instant::now(),
                timeout,
                not_before: None,
            }),
            clients: AtomicUsize::new(0),
            changed: Notify::new(),
        })
    }

    fn touch(&self) {
        self.state.lock().expect("idle").last = Instant::now();
    }

    /// A client connected: busy until the guard drops, touched then.
    pub(super) fn client(self: &Arc<Self>) -> ClientGuard {
        self.clients.fetch_add(1, Ordering::SeqCst);
        self.touch();
        ClientGuard(Arc::clone(self))
    }

    /// A new timeout (none: never suspend by itself), counted from now.
    pub(super) fn set_timeout(&self, timeout: Option<Duration>) {
        {
            let mut state = self.state.lock().expect("idle");
            state.timeout = timeout;
            state.last = Instant::now();
        }
        self.changed.notify_one();
    }

    /// Puts the next try off a second: a call is on its way.
    pub(super) fn put_off_briefly(&self) {
        self.put_off(RETRY);
    }

    /// Puts the next try off a whole timeout: the suspend failed.
    pub(super) fn put_off_a_while(&self) {
        let timeout = self.state.lock().expect("idle").timeout;
        self.put_off(timeout.unwrap_or(RETRY).max(RETRY));
    }

    fn put_off(&self, by: Duration) {
        let mut state = self.state.lock().expect("idle");
        state.not_before = Some(Instant::now() + by);
    }

    /// Whether no client is connected and none has touched it for its
    /// timeout.
    pub(super) fn is_idle(&self) -> bool {
        self.due_in() == Some(Duration::ZERO)
    }

    /// How long until it is idle, if nothing touches it; `None` without a
    /// timeout.
    fn due_in(&self) -> Option<Duration> {
        let state = self.state.lock().expect("idle");
        let timeout = state.timeout?;
        let now = Instant::now();
        let mut due = state.last + timeout;
        if let Some(not_before) = state.not_before {
            due = due.max(not_before);
        }
        if self.clients.load(Ordering::SeqCst) > 0 {
            // Looked at again when the client leaves (it touches then).
            due = due.max(now + timeout);
        }
        Some(due.saturating_duration_since(now))
    }

    /// Resolves when the workspace may have become idle, or its timeout
    /// changed: the caller checks [`Activity::is_idle`].
    pub(super) async fn wait(&self) {
        let changed = self.changed.notified();
        match self.due_in() {
            Some(due) => {
                tokio::select! {
                    () = tokio::time::sleep(due) => {}
                    () = changed => {}
                }
            }
            None => changed.await,
        }
    }
}

/// Held for as long as a client stays connected.
pub(super) struct ClientGuard(Arc<Activity>);

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.touch();
        self.0.clients.fetch_sub(1, Ordering::SeqCst);
        self.0.changed.notify_one();
    }
}

/// Whether any of `listeners` has a connection waiting to be accepted.
pub(super) fn connection_waiting(listeners: &[&UnixListener]) -> bool {
    let mut fds: Vec<libc::pollfd> = listeners
        .iter()
        .map(|listener| libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `fds` is a valid array of `fds.len()` pollfd entries that
    // lives across the call; a zero timeout never blocks.
    let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, 0) };
    ready != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connected_client_keeps_it_busy_and_its_end_counts_as_a_touch() {
        let activity = Activity::new(Some(Duration::from_millis(50)));
        assert!(!activity.is_idle());
        std::thread::sleep(Duration::from_millis(60));
        assert!(activity.is_idle());
        let client = activity.client();
        assert!(!activity.is_idle());
        std::thread::sleep(Duration::from_millis(60));
        assert!(!activity.is_idle(), "a client is connected");
        drop(client);
        assert!(!activity.is_idle(), "it just left");
        std::thread::sleep(Duration::from_millis(60));
        assert!(activity.is_idle());
        activity.put_off(Duration::from_millis(100));
        assert!(!activity.is_idle());
        activity.set_timeout(None);
        assert_eq!(activity.due_in(), None);
    }
}
