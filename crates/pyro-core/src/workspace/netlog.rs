//! The workspace's network log: every lookup and connection the host's
//! stack decided, one JSON object per line in `network.jsonl`, with the
//! commands that were running. The supervisor writes it ([`NetLog`], the
//! stack's observer); `workspace network log`, exec results and the
//! summary read it. Denials also go to the review log ([`super::events`]).
//!
//! The log holds destinations only, never payloads. It is capped: past
//! [`MAX_BYTES`] the file moves to `network.jsonl.1` (replacing the one
//! before) and a new one starts.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use pyro_net::{NetEvent, Observer};
use serde::{Deserialize, Serialize};

use super::events::{self, EventKind};

/// The log, inside the workspace directory.
pub(crate) const NETWORK_LOG: &str = "network.jsonl";
const PREVIOUS: &str = "network.jsonl.1";
const MAX_BYTES: u64 = 2 * 1024 * 1024;
/// Most commands named on one entry.
const COMMANDS_CAP: usize = 64;
/// Distinct denied destinations recorded in the events; past that, only
/// the network log has them, so a flooding guest cannot push the rest of
/// the workspace's history out of the events.
const EVENT_DESTINATIONS: usize = 256;

/// One line of the log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetRecord {
    #[serde(flatten)]
    pub event: NetEvent,
    /// The commands running in the workspace (through `exec`) at the time.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<String>,
}

/// The commands running now, by a key the caller picks.
#[derive(Debug, Default)]
pub(crate) struct Running {
    commands: Mutex<Vec<(u64, String)>>,
    next: std::sync::atomic::AtomicU64,
}

impl Running {
    /// Notes `command` as running until the returned guard drops.
    pub(crate) fn start(self: &Arc<Self>, command: String) -> RunningGuard {
        let key = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.lock().push((key, command));
        RunningGuard {
            running: Arc::clone(self),
            key,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, String)>> {
        self.commands.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> Vec<String> {
        self.lock()
            .iter()
            .take(COMMANDS_CAP)
            .map(|(_, c)| c.clone())
            .collect()
    }
}

/// Removes its command from [`Running`] when dropped.
pub(crate) struct RunningGuard {
    running: Arc<Running>,
    key: u64,
}

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.running.lock().retain(|(key, _)| *key != self.key);
    }
}

/// The stack's observer for one workspace.
pub(crate) struct NetLog {
    dir: PathBuf,
    running: Arc<Running>,
    /// Serialises appends and the rotation.
    file: Mutex<()>,
    /// Denied destinations already in the events.
    noted: Mutex<std::collections::HashSet<String>>,
}

impl NetLog {
    pub(crate) fn new(dir: PathBuf, running: Arc<Running>) -> NetLog {
        NetLog {
            dir,
            running,
            file: Mutex::new(()),
            noted: Mutex::new(Default::default()),
        }
    }

    /// Whether a denial of `target` is the first one the events get.
    fn first_denial(&self, target: String) -> bool {
        let mut noted = self.noted.lock().unwrap_or_else(|e| e.into_inner());
        noted.len() < EVENT_DESTINATIONS && noted.insert(target)
    }
}

impl Observer for NetLog {
    fn event(&self, mut event: NetEvent) {
        // Guest-chosen names (DNS, TLS, HTTP) may spell a secret's value.
        let secrets = super::secrets::secrets(&self.dir);
        if !secrets.is_empty() {
            event.destination = secrets.redact(&event.destination);
            if let Some(pyro_net::DenyReason::NameMismatch { name }) = &mut event.denied {
                *name = secrets.redact(name);
            }
        }
        let record = NetRecord {
            event,
            commands: self.running.now(),
        };
        let denial = record.event.denied.as_ref();
        if let Some(reason) = denial.filter(|_| self.first_denial(record.event.target())) {
            events::record(
                &self.dir,
                EventKind::NetworkDenied {
                    destination: record.event.target(),
                    reason: reason.to_string(),
                    allow: record.event.allow_entry(),
                    command: record.commands.first().cloned(),
                },
            );
        }
        let Ok(mut line) = serde_json::to_vec(&record) else {
            return;
        };
        line.push(b'\n');
        let _guard = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let path = self.dir.join(NETWORK_LOG);
        if std::fs::metadata(&path).is_ok_and(|m| m.len() > MAX_BYTES) {
            let _ = std::fs::rename(&path, self.dir.join(PREVIOUS));
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path);
        if let Ok(mut file) = file {
            let _ = file.write_all(&line);
        }
    }
}

/// Every entry, oldest first (the rotated file, then the current one).
pub(crate) fn read(dir: &Path) -> Vec<NetRecord> {
    [PREVIOUS, NETWORK_LOG]
        .iter()
        .flat_map(|name| {
            let text = std::fs::read(dir.join(name)).unwrap_or_default();
            text.split(|b| *b == b'\n')
                .filter_map(|line| serde_json::from_slice::<NetRecord>(line).ok())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The denials recorded from `from_ms` on (Unix milliseconds) while
/// `command` was running.
pub(crate) fn denied_since(dir: &Path, from_ms: u64, command: &str) -> Vec<NetEvent> {
    // Only the current file can hold recent entries worth reading.
    let text = std::fs::read(dir.join(NETWORK_LOG)).unwrap_or_default();
    text.split(|b| *b == b'\n')
        .filter_map(|line| serde_json::from_slice::<NetRecord>(line).ok())
        .filter(|r| r.event.denied.is_some() && r.event.time_unix_ms >= from_ms)
        .filter(|r| r.commands.iter().any(|c| c == command))
        .map(|r| r.event)
        .collect()
}

/// An observer that keeps events in memory (`pyro run`, which has no
/// workspace directory).
#[derive(Debug, Default)]
pub(crate) struct Collected(Mutex<Vec<NetEvent>>);

impl Collected {
    pub(crate) fn denied(&self) -> Vec<NetEvent> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|e| e.denied.is_some())
            .cloned()
            .collect()
    }
}

impl Observer for Collected {
    fn event(&self, event: NetEvent) {
        let mut events = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if event.denied.is_some() && events.len() < 10_000 {
            events.push(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyro_net::{DenyReason, Via};

    fn event(destination: &str, denied: Option<DenyReason>, at: u64) -> NetEvent {
        NetEvent {
            time_unix_ms: at,
            via: Via::Tcp,
            destination: destination.into(),
            address: Some("203.0.113.80".parse().unwrap()),
            port: Some(443),
            denied,
            unreported: 0,
        }
    }

    #[test]
    fn records_with_the_running_command_and_reads_back() {
        let dir = tempfile::tempdir().unwrap();
        let running = Arc::new(Running::default());
        let log = NetLog::new(dir.path().to_path_buf(), Arc::clone(&running));
        let guard = running.start("pip download six".into());
        log.event(event("pypi.org", None, 10));
        log.event(event("evil.example", Some(DenyReason::NotAllowed), 20));
        log.event(event("evil.example", Some(DenyReason::NotAllowed), 25));
        drop(guard);
        log.event(event("later.example", Some(DenyReason::NotAllowed), 30));
        let all = read(dir.path());
        assert_eq!(all.len(), 4);
        assert_eq!(all[1].commands, vec!["pip download six".to_string()]);
        assert!(all[3].commands.is_empty());
        let six = "pip download six";
        assert_eq!(denied_since(dir.path(), 15, six).len(), 2);
        assert_eq!(denied_since(dir.path(), 22, six).len(), 1);
        assert!(denied_since(dir.path(), 15, "other").is_empty());
        let events = events::read_since_reset(dir.path());
        assert_eq!(
            events.len(),
            2,
            "each denied destination reaches the review log once"
        );
    }
}
