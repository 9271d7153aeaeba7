//! Deadlines on the guest's half of a transfer. The guest's `tar` is the
//! guest's to replace: one that sleeps, or writes forever, must not hold an
//! export or a push (and the workspace's transfer lock) for good. Every
//! transfer has an overall deadline, and goes stalled when the guest shows
//! no progress (a byte, an ack, a block written) for a while; the command
//! is then killed, so nothing of it keeps running.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

use super::TransferError;
use crate::host::guest::GuestError;

/// The least time any transfer is given in all: far past a full 8 GiB
/// disk's tree at the speed measured under emulation (about 40 MB/s). A
/// transfer whose quiet limit is long (a large push, `PYRO_TRANSFER_STALL`)
/// gets fifteen of those instead.
const TRANSFER_DEADLINE: Duration = Duration::from_secs(30 * 60);
/// The largest `PYRO_TRANSFER_STALL` taken: a week.
const MAX_QUIET_SECS: u64 = 7 * 24 * 3600;
/// How long the guest's `tar` may show no progress before it counts as
/// stalled: a real `tar` moves bytes every second even under emulation,
/// and the guest's page cache reaches the transfer disk within 30 s.
const TRANSFER_QUIET: Duration = Duration::from_secs(120);

/// [`TRANSFER_QUIET`], or `PYRO_TRANSFER_STALL` seconds when set.
pub(crate) fn transfer_quiet() -> Duration {
    std::env::var("PYRO_TRANSFER_STALL")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|&s| s > 0)
        .map_or(TRANSFER_QUIET, |s| {
            Duration::from_secs(s.min(MAX_QUIET_SECS))
        })
}

/// A transfer's clock: fires past the deadline or after `quiet` without
/// progress. Shared by reference between the branches of a `select!`.
pub(super) struct Watchdog {
    started: Instant,
    /// Milliseconds from `started` to the last progress.
    last_ms: AtomicU64,
    /// Milliseconds from `started` to the deadline; shortened by
    /// [`Watchdog::end_within`].
    deadline_ms: AtomicU64,
    quiet: Duration,
}

impl Watchdog {
    pub(super) fn new(quiet: Duration) -> Self {
        Watchdog {
            started: Instant::now(),
            last_ms: AtomicU64::new(0),
            deadline_ms: AtomicU64::new(TRANSFER_DEADLINE.max(quiet * 15).as_millis() as u64),
            quiet,
        }
    }

    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// The guest moved the transfer on.
    pub(super) fn progress(&self) {
        self.last_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Brings the deadline to `grace` from now, if that is sooner.
    pub(super) fn end_within(&self, grace: Duration) {
        let end = self.now_ms() + grace.as_millis() as u64;
        self.deadline_ms.fetch_min(end, Ordering::Relaxed);
    }

    /// A write to the guest, unless it blocks past the quiet limit (the
    /// guest stopped reading, and the channel's buffers are full). The
    /// channel may then hold part of a frame: the caller drops its
    /// connection, which has the supervisor end the command.
    pub(super) async fn write(
        &self,
        write: impl std::future::Future<Output = Result<(), GuestError>>,
    ) -> Result<(), TransferError> {
        match tokio::time::timeout(self.quiet, write).await {
            Ok(written) => Ok(written?),
            Err(_) => Err(TransferError::GuestTar(format!(
                "the guest stopped reading for {}; the transfer was stopped",
                seconds(self.quiet.as_millis() as u64)
            ))),
        }
    }

    /// Resolves when the transfer ran out of time; says how.
    pub(super) async fn fired(&self) -> String {
        loop {
            let deadline = self.deadline_ms.load(Ordering::Relaxed);
            let quiet_end = self.last_ms.load(Ordering::Relaxed) + self.quiet.as_millis() as u64;
            let now = self.now_ms();
            if now >= deadline {
                return format!(
                    "it ran past its deadline ({}; PYRO_TRANSFER_STALL=SECONDS raises it too)",
                    seconds(deadline)
                );
            }
            if now >= quiet_end {
                return format!(
                    "the guest's tar showed no progress for {} (PYRO_TRANSFER_STALL=SECONDS allows longer)",
                    seconds(self.quiet.as_millis() as u64)
                );
            }
            let wake = deadline.min(quiet_end);
            tokio::time::sleep_until(self.started + Duration::from_millis(wake)).await;
        }
    }
}

fn seconds(ms: u64) -> String {
    format!("{} s", ms.div_ceil(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fires_when_quiet_and_progress_puts_it_off() {
        let watchdog = Watchdog::new(Duration::from_secs(10));
        tokio::time::sleep(Duration::from_secs(8)).await;
        watchdog.progress();
        let started = Instant::now();
        let why = watchdog.fired().await;
        assert_eq!(started.elapsed(), Duration::from_secs(10));
        assert!(
            why.starts_with("the guest's tar showed no progress for 10 s"),
            "{why}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_holds_whatever_the_progress() {
        // Progress every minute: the deadline still comes.
        let watchdog = Watchdog::new(Duration::from_secs(90));
        let ticking = async {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                watchdog.progress();
            }
        };
        let started = Instant::now();
        tokio::select! {
            why = watchdog.fired() => {
                assert!(why.starts_with("it ran past its deadline (1800 s"), "{why}")
            }
            _ = ticking => unreachable!(),
        }
        assert_eq!(started.elapsed(), TRANSFER_DEADLINE);
        // A long quiet limit brings a longer deadline.
        let watchdog = Watchdog::new(Duration::from_secs(3600));
        assert_eq!(
            watchdog.deadline_ms.load(Ordering::Relaxed),
            15 * 3600 * 1000
        );
        let watchdog = Watchdog::new(transfer_quiet());
        watchdog.end_within(Duration::from_secs(5));
        watchdog.end_within(Duration::from_secs(60));
        let started = Instant::now();
        watchdog.fired().await;
        assert_eq!(started.elapsed(), Duration::from_secs(5));
    }
}
