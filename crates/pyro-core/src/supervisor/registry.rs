//! The records of a workspace's shells and services on disk:
//! `shells.json`, `services.json` and the service logs' folder, in the
//! workspace directory.
//!
//! The supervisor owns the live shells and services (they are guest
//! commands it keeps open) and writes their records on every change. Those
//! files outlive the VM, so a later call can say what happened to a shell
//! or a service (exited, closed, ended by a reset) rather than "unknown".
//! Only one writer exists at a time: the supervisor while it lives, else
//! the facade ([`end_all`]), which runs only once the supervisor is gone.

use std::path::{Path, PathBuf};

use pyro_util::fsutil::{write_atomic, Owner};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::protocol::{ServiceInfo, ServiceState, ShellInfo, ShellState};
use crate::workspace::store::{now, RestoredSessions};

/// The shells of a workspace, in `shells.json`.
pub(crate) const SHELLS_FILE: &str = "shells.json";
/// The services of a workspace, in `services.json`.
pub(crate) const SERVICES_FILE: &str = "services.json";
/// Where service logs live, inside the workspace directory.
pub(crate) const SERVICE_LOGS: &str = "services";

/// Records kept in `shells.json` beyond the open ones.
const KEEP_ENDED: usize = 64;

/// Locks a mutex, also after a panic elsewhere (the state it guards stays
/// consistent: every holder makes whole updates).
pub(crate) fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// Reads a registry file; a missing or unreadable one is empty.
pub(crate) fn load<T: DeserializeOwned + Default>(dir: &Path, file: &str) -> T {
    std::fs::read(dir.join(file))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Replaces a registry file atomically (best effort: the live state is in
/// the supervisor; the file only tells later callers what happened).
pub(crate) fn save<T: Serialize>(dir: &Path, file: &str, value: &T) {
    if let Ok(bytes) = serde_json::to_vec_pretty(value) {
        let _ = write_atomic(&dir.join(file), &bytes, 0o600, Owner::default());
    }
}

/// Marks every shell and service still recorded as live as ended, with
/// `reason` (e.g. "the workspace was reset"). Called when the VM is
/// gone: by the facade after stop or reset, by the supervisor when its VM
/// stops, and at supervisor start for whatever a killed one left.
pub(crate) fn end_all(dir: &Path, reason: &str) {
    let reason = format!("{reason} at {}", now());
    let mut shells: ShellRegistry = load(dir, SHELLS_FILE);
    if shells.end_live(&reason) {
        save(dir, SHELLS_FILE, &shells);
    }
    let mut services: ServiceRegistry = load(dir, SERVICES_FILE);
    if services.end_live(&reason) {
        save(dir, SERVICES_FILE, &services);
    }
}

/// The shells (ids) and services (names) recorded as running in `dir`.
pub(crate) fn live_sessions(dir: &Path) -> RestoredSessions {
    let shells: ShellRegistry = load(dir, SHELLS_FILE);
    let services: ServiceRegistry = load(dir, SERVICES_FILE);
    RestoredSessions {
        shells: shells
            .shells
            .into_iter()
            .filter(|s| s.state.is_open())
            .map(|s| s.id)
            .collect(),
        services: services
            .services
            .into_iter()
            .filter(|s| s.state.is_live())
            .map(|s| s.name)
            .collect(),
    }
}

/// The record of every shell a workspace has had, in `shells.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct ShellRegistry {
    /// Number of the next shell: ids are never reused, across boots too.
    pub(crate) next: u32,
    pub(crate) shells: Vec<ShellInfo>,
}

impl ShellRegistry {
    /// Marks open shells as ended; true when any was.
    pub(crate) fn end_live(&mut self, reason: &str) -> bool {
        let mut changed = false;
        for shell in &mut self.shells {
            if shell.state.is_open() {
                shell.state = ShellState::Ended {
                    reason: reason.to_string(),
                };
                changed = true;
            }
        }
        changed
    }

    pub(crate) fn get(&self, id: &str) -> Option<&ShellInfo> {
        self.shells.iter().find(|s| s.id == id)
    }

    /// Records a shell as open again (restored with a memory state).
    pub(crate) fn reopen(&mut self, info: ShellInfo) {
        let number: u32 = info.id.trim_start_matches('s').parse().unwrap_or(0);
        self.next = self.next.max(number);
        match self.shells.iter_mut().find(|s| s.id == info.id) {
            Some(slot) => *slot = info,
            None => self.shells.push(info),
        }
    }

    /// Records how an open shell ended (an ending already recorded, say by
    /// a stop, stays).
    pub(crate) fn set_state(&mut self, id: &str, state: ShellState) {
        if let Some(shell) = self.shells.iter_mut().find(|s| s.id == id) {
            if shell.state.is_open() {
                shell.state = state;
            }
        }
        // Forget the oldest ended shells beyond the bound.
        let ended = self.shells.iter().filter(|s| !s.state.is_open()).count();
        let mut excess = ended.saturating_sub(KEEP_ENDED);
        self.shells.retain(|s| {
            if excess > 0 && !s.state.is_open() {
                excess -= 1;
                return false;
            }
            true
        });
    }
}

/// Every service a workspace has had, in `services.json`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct ServiceRegistry {
    pub(crate) services: Vec<ServiceInfo>,
}

impl ServiceRegistry {
    pub(crate) fn end_live(&mut self, reason: &str) -> bool {
        let mut changed = false;
        for service in &mut self.services {
            if service.state.is_live() {
                service.state = ServiceState::Ended {
                    reason: reason.to_string(),
                };
                service.ended_at = Some(now());
                changed = true;
            }
        }
        changed
    }

    pub(crate) fn get(&self, name: &str) -> Option<&ServiceInfo> {
        self.services.iter().find(|s| s.name == name)
    }

    pub(crate) fn put(&mut self, info: ServiceInfo) {
        match self.services.iter_mut().find(|s| s.name == info.name) {
            Some(slot) => *slot = info,
            None => self.services.push(info),
        }
    }
}

/// Where a service's log lives.
pub(crate) fn log_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(SERVICE_LOGS).join(format!("{name}.log"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_ends_open_shells_and_stays_bounded() {
        let mut registry = ShellRegistry::default();
        for n in 0..100 {
            registry.shells.push(ShellInfo {
                id: format!("s{n}"),
                cwd: None,
                rows: 1,
                cols: 1,
                opened_at: String::new(),
                state: ShellState::Open,
            });
        }
        assert!(registry.end_live("ended: test"));
        assert!(!registry.end_live("ended: test"));
        registry.set_state("s0", ShellState::Closed);
        assert_eq!(registry.shells.len(), KEEP_ENDED);
        assert_eq!(registry.shells.last().unwrap().id, "s99");
    }
}
