//! The one place that calls `waitpid`: reaps every child of the agent and
//! hands exit statuses to the exec requests that wait for them.
//!
//! As PID 1 the agent inherits every orphan in the VM and must reap them all,
//! so it waits with `waitpid(-1)`. A second waiter anywhere (such as
//! `std::process::Child::wait`) would race it for statuses, so none exists:
//! commands are forked through [`Reaper::spawn_watched`], which forks and
//! registers the pid under the reaper's lock. The reaper publishes a status
//! under the same lock, so even a child that exits before `fork` returns in
//! the parent is never lost; statuses of unregistered pids (orphans) are
//! dropped. Publishing also signals the watcher's eventfd, so the exec thread
//! can wait for the exit and for output in one `poll`.
//!
//! When the agent has no children, `waitpid` fails with `ECHILD`; the reaper
//! then sleeps on a condvar until the next spawn bumps an epoch counter.

use std::collections::HashMap;
use std::io;
use std::os::fd::OwnedFd;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread;
use std::time::Instant;

use crate::sys::{self, log};

/// What `waitpid` reported for a watched child, and when.
#[derive(Debug, Clone, Copy)]
pub struct Reaped {
    /// The raw wait status.
    pub status: libc::c_int,
    pub at: Instant,
}

struct Watch {
    reaped: Option<Reaped>,
    notify: Arc<OwnedFd>,
}

#[derive(Default)]
struct State {
    /// Bumped on every spawn, so the reaper knows there may be a child again.
    epoch: u64,
    watched: HashMap<libc::pid_t, Watch>,
}

#[derive(Default)]
pub struct Reaper {
    state: Mutex<State>,
    spawned: Condvar,
}

impl Reaper {
    /// Starts the reaper thread.
    pub fn start() -> Arc<Self> {
        let reaper = Arc::new(Self::default());
        let worker = Arc::clone(&reaper);
        thread::Builder::new()
            .name("reaper".into())
            .spawn(move || worker.run())
            .expect("spawn the reaper thread");
        reaper
    }

    /// Runs `fork` (which returns the child's pid in the parent) under the
    /// reaper's lock and watches the pid it returns: its exit status will be
    /// kept for [`Reaper::take`] and `notify` signalled when it is reaped.
    pub fn spawn_watched(
        &self,
        notify: Arc<OwnedFd>,
        fork: impl FnOnce() -> io::Result<libc::pid_t>,
    ) -> io::Result<libc::pid_t> {
        let mut state = self.lock();
        let pid = fork()?;
        state.watched.insert(
            pid,
            Watch {
                reaped: None,
                notify,
            },
        );
        state.epoch += 1;
        drop(state);
        self.spawned.notify_one();
        Ok(pid)
    }

    /// Takes the status of a watched pid once it has been reaped, and stops
    /// watching it. `None` while it is still running.
    pub fn take(&self, pid: libc::pid_t) -> Option<Reaped> {
        let mut state = self.lock();
        let reaped = state.watched.get(&pid)?.reaped?;
        state.watched.remove(&pid);
        Some(reaped)
    }

    /// Stops watching `pid`; its status, if any, is dropped.
    pub fn forget(&self, pid: libc::pid_t) {
        self.lock().watched.remove(&pid);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent even if a holder panicked.
        self.state
            .lock()
            .unwrap_or_else(|poison| poison.into_inner())
    }

    fn run(&self) {
        loop {
            let epoch = self.lock().epoch;
            let mut status: libc::c_int = 0;
            // SAFETY: `status` is a valid int for waitpid to fill.
            let pid = unsafe { libc::waitpid(-1, &mut status, 0) };
            if pid > 0 {
                let at = Instant::now();
                let mut state = self.lock();
                if let Some(watch) = state.watched.get_mut(&pid) {
                    watch.reaped = Some(Reaped { status, at });
                    sys::eventfd_signal(&watch.notify);
                }
                continue;
            }
            let err = io::Error::last_os_error();
            match err.raw_os_error() {
                Some(libc::EINTR) => {}
                Some(libc::ECHILD) => {
                    let state = self.lock();
                    let _state = self
                        .spawned
                        .wait_while(state, |state| state.epoch == epoch)
                        .unwrap_or_else(|poison| poison.into_inner());
                }
                _ => {
                    log!("waitpid: {err}");
                    thread::sleep(std::time::Duration::from_millis(100));
                }
            }
        }
    }
}

/// Exit code or signal from a raw wait status.
pub fn decode_status(status: libc::c_int) -> (Option<i32>, Option<i32>) {
    if libc::WIFEXITED(status) {
        (Some(libc::WEXITSTATUS(status)), None)
    } else if libc::WIFSIGNALED(status) {
        (None, Some(libc::WTERMSIG(status)))
    } else {
        (None, None)
    }
}
