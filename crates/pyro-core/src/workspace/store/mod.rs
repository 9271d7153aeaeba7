//! Workspace state on disk: one directory per workspace under
//! `$PYRO_HOME/workspaces/<id>/` holding `workspace.json` (the record), the
//! disk overlay, the supervisor's socket, lock and log.
//!
//! Records are written atomically (temp + rename) under the workspace's
//! `record.lock`; name uniqueness is checked under the store-wide
//! `names.lock`, so concurrent `pyro` processes never see a half-written
//! record or two workspaces with one name. Whether a supervisor is alive is
//! never guessed from a pid: the supervisor holds `supervisor.lock` for its
//! whole life and the kernel drops it when the process dies.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use pyro_util::fsutil::{self, write_atomic, FileLock, Owner};

use super::WorkspaceError;

const RECORD: &str = "workspace.json";
const RECORD_LOCK: &str = "record.lock";
pub(crate) const SUPERVISOR_LOCK: &str = "supervisor.lock";
/// Held shared by every call while it reaches the supervisor, and
/// exclusively by a supervisor that suspends its idle workspace: no call
/// finds the supervisor gone half-way.
const USE_LOCK: &str = "use.lock";
/// Held by the process creating a workspace until the create is done.
const CREATE_LOCK: &str = "create.lock";
/// How long a record or name update waits for the lock: holders keep it
/// for a read-modify-write, milliseconds.
const RECORD_LOCK_PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);
/// Longest workspace name.
const MAX_NAME: usize = 63;

mod record;
pub use record::{
    BootReport, HostBytes, RestoredSessions, ResumePoint, SnapshotRecord, WorkspaceRecord,
    WorkspaceState,
};

/// The set of workspaces under one `PYRO_HOME`.
#[derive(Debug, Clone)]
pub struct WorkspaceStore {
    root: PathBuf,
}

impl WorkspaceStore {
    /// Opens (creating) `<home>/workspaces`. Both stay private (0700):
    /// they hold shells into VMs, secrets, and locks another user could
    /// otherwise hold.
    pub fn open(home: &Path) -> Result<Self, WorkspaceError> {
        let root = home.join("workspaces");
        for dir in [home, &root] {
            fsutil::private_dir(dir).map_err(|source| WorkspaceError::Home {
                path: dir.to_path_buf(),
                source,
            })?;
        }
        Ok(WorkspaceStore { root })
    }

    /// The pyro home the store lives in.
    pub fn home(&self) -> &Path {
        self.root.parent().unwrap_or(&self.root)
    }

    pub fn dir(&self, id: &str) -> PathBuf {
        self.root.join(id)
    }

    /// Fails if `name` is not a valid name or is taken. [`create`] checks
    /// again under the names lock; callers check early to fail before slow
    /// work.
    ///
    /// [`create`]: WorkspaceStore::create
    pub fn check_new_name(&self, name: &str) -> Result<(), WorkspaceError> {
        validate_name(name)?;
        if self.list()?.iter().any(|r| r.name.as_deref() == Some(name)) {
            return Err(WorkspaceError::NameTaken {
                name: name.to_string(),
            });
        }
        Ok(())
    }

    /// Creates the directory and first record of a new workspace; fails if
    /// the name is taken.
    ///
    /// The record says `creating` until [`WorkspaceStore::created`], and the
    /// returned lock is the creator's: held until it is done, it tells
    /// every other process that the create still runs.
    pub fn create(&self, record: &WorkspaceRecord) -> Result<(PathBuf, FileLock), WorkspaceError> {
        let _names = self.names_lock()?;
        if let Some(name) = &record.name {
            self.check_new_name(name)?;
        }
        let dir = self.dir(&record.id);
        std::fs::create_dir(&dir).map_err(|source| WorkspaceError::Io {
            path: dir.clone(),
            source,
        })?;
        // It holds a shell into the VM: private.
        let _ = fsutil::private_dir(&dir);
        let path = dir.join(CREATE_LOCK);
        let lock = FileLock::try_acquire(&path, true)
            .map_err(|source| WorkspaceError::Io {
                path: path.clone(),
                source,
            })?
            .ok_or_else(|| WorkspaceError::Io {
                path,
                source: std::io::ErrorKind::WouldBlock.into(),
            })?;
        self.write(&WorkspaceRecord {
            creating: true,
            ..record.clone()
        })?;
        Ok((dir, lock))
    }

    /// Marks a create done; its creator lets go of `create.lock` after.
    pub fn created(&self, id: &str) -> Result<WorkspaceRecord, WorkspaceError> {
        self.update(id, |record| {
            record.creating = false;
            Ok(())
        })
    }

    /// All records, oldest first. Unreadable entries are skipped.
    pub fn list(&self) -> Result<Vec<WorkspaceRecord>, WorkspaceError> {
        let entries = fs_err::read_dir(&self.root).map_err(|source| WorkspaceError::Io {
            path: self.root.clone(),
            source,
        })?;
        let mut records: Vec<_> = entries
            .flatten()
            .filter_map(|entry| self.read(&entry.file_name().to_string_lossy()).ok())
            .collect();
        records.sort_by(|a, b| a.created_at.cmp(&b.created_at).then(a.id.cmp(&b.id)));
        Ok(records)
    }

    /// Finds a workspace by id, unique id prefix, or name.
    pub fn resolve(&self, query: &str) -> Result<WorkspaceRecord, WorkspaceError> {
        let records = self.list()?;
        if let Some(record) = records
            .iter()
            .find(|r| r.id == query || r.name.as_deref() == Some(query))
        {
            return Ok(record.clone());
        }
        let prefixed: Vec<_> = records.iter().filter(|r| r.id.starts_with(query)).collect();
        match prefixed.as_slice() {
            [one] if query.len() >= 4 => Ok((*one).clone()),
            _ => Err(WorkspaceError::Unknown {
                query: query.to_string(),
            }),
        }
    }

    /// Reads one record.
    pub fn read(&self, id: &str) -> Result<WorkspaceRecord, WorkspaceError> {
        let path = self.dir(id).join(RECORD);
        let mut text = String::new();
        fs_err::File::open(&path)
            .and_then(|mut f| f.read_to_string(&mut text))
            .map_err(|_| WorkspaceError::Unknown {
                query: id.to_string(),
            })?;
        serde_json::from_str(&text).map_err(|source| WorkspaceError::Corrupt { path, source })
    }

    /// Read-modify-write of a record under its lock.
    pub fn update(
        &self,
        id: &str,
        change: impl FnOnce(&mut WorkspaceRecord) -> Result<(), WorkspaceError>,
    ) -> Result<WorkspaceRecord, WorkspaceError> {
        let _lock = self.lock(id, RECORD_LOCK)?;
        let mut record = self.read(id)?;
        change(&mut record)?;
        self.write(&record)?;
        Ok(record)
    }

    /// Renames or relabels under the store-wide name lock.
    pub fn rename(
        &self,
        id: &str,
        name: Option<String>,
        labels: &[(String, String)],
    ) -> Result<WorkspaceRecord, WorkspaceError> {
        let _names = self.names_lock()?;
        if let Some(name) = &name {
            validate_name(name)?;
            if self
                .list()?
                .iter()
                .any(|r| r.id != id && r.name.as_deref() == Some(name))
            {
                return Err(WorkspaceError::NameTaken { name: name.clone() });
            }
        }
        self.update(id, |record| {
            if name.is_some() {
                record.name = name;
            }
            for (key, value) in labels {
                if value.is_empty() {
                    record.labels.remove(key);
                } else {
                    record.labels.insert(key.clone(), value.clone());
                }
            }
            Ok(())
        })
    }

    /// The record with its state corrected for a supervisor that died
    /// without saying so (killed): `Running`/`Starting` with no live
    /// supervisor reads, and is saved, as `Crashed`.
    pub fn observe(&self, id: &str) -> Result<WorkspaceRecord, WorkspaceError> {
        let record = self.read(id)?;
        if record.creating {
            if !self.creator_gone(id)? {
                // In the making: its creator answers for it.
                return Ok(record);
            }
            // One policy for a create cut short by a killed process: it
            // reads as crashed, and `delete` ends its VM and removes it.
            // It stays `creating`: nothing may run it again, only delete.
            return self.update(id, |record| {
                if record.creating && !record.cut_short() {
                    record.state = WorkspaceState::Crashed {
                        reason: "its create did not finish (the process making it was killed); \
                                 delete it"
                            .into(),
                    };
                }
                Ok(())
            });
        }
        if !matches!(
            record.state,
            WorkspaceState::Running | WorkspaceState::Starting
        ) {
            return Ok(record);
        }
        if self.supervisor_alive(id)? {
            return Ok(record);
        }
        self.update(id, |record| {
            if matches!(
                record.state,
                WorkspaceState::Running | WorkspaceState::Starting
            ) {
                record.state = WorkspaceState::Crashed {
                    reason: "its supervisor process died (killed?); the VM died with it".into(),
                };
                record.supervisor_pid = None;
            }
            Ok(())
        })
    }

    /// Whether the process that made this workspace let go of
    /// `create.lock` without finishing.
    fn creator_gone(&self, id: &str) -> Result<bool, WorkspaceError> {
        let path = self.dir(id).join(CREATE_LOCK);
        // Never made here: a `delete` emptying the directory meanwhile
        // must not find a lock file reappear.
        let held =
            FileLock::is_held(&path).map_err(|source| WorkspaceError::Io { path, source })?;
        Ok(held != Some(true))
    }

    /// Whether a supervisor holds this workspace's supervisor lock.
    pub fn supervisor_alive(&self, id: &str) -> Result<bool, WorkspaceError> {
        let path = self.dir(id).join(SUPERVISOR_LOCK);
        let probe = FileLock::try_acquire(&path, true).map_err(|source| WorkspaceError::Io {
            path: path.clone(),
            source,
        })?;
        Ok(probe.is_none())
    }

    /// Tries to take the workspace's use lock: shared by calls, exclusive
    /// for an idle suspend. `None` while the other side holds it.
    pub fn try_use_lock(
        &self,
        id: &str,
        exclusive: bool,
    ) -> Result<Option<FileLock>, WorkspaceError> {
        let path = self.use_lock_path(id);
        FileLock::try_acquire(&path, exclusive)
            .map_err(|source| WorkspaceError::Io { path, source })
    }

    /// The use lock's file (see [`WorkspaceStore::try_use_lock`]).
    pub fn use_lock_path(&self, id: &str) -> PathBuf {
        self.dir(id).join(USE_LOCK)
    }

    /// Takes the supervisor lock (the supervisor holds it for its life).
    pub fn supervisor_lock(&self, id: &str) -> Result<Option<FileLock>, WorkspaceError> {
        let path = self.dir(id).join(SUPERVISOR_LOCK);
        FileLock::try_acquire(&path, true).map_err(|source| WorkspaceError::Io { path, source })
    }

    /// Removes a workspace's directory.
    pub fn remove(&self, id: &str) -> Result<(), WorkspaceError> {
        let dir = self.dir(id);
        let removed = fs_err::remove_dir_all(&dir).map_err(|source| WorkspaceError::Io {
            path: dir.clone(),
            source,
        });
        super::secrets::remove(&dir);
        removed
    }

    fn write(&self, record: &WorkspaceRecord) -> Result<(), WorkspaceError> {
        let path = self.dir(&record.id).join(RECORD);
        let stored = WorkspaceRecord {
            host_memory: None,
            host_bytes: None,
            ..record.clone()
        };
        let json = serde_json::to_vec_pretty(&stored).expect("records serialise");
        write_atomic(&path, &json, 0o600, Owner::for_store_at(&self.root))
            .map_err(|source| WorkspaceError::Io { path, source })
    }

    fn lock(&self, id: &str, name: &str) -> Result<FileLock, WorkspaceError> {
        let path = self.dir(id).join(name);
        if !self.dir(id).is_dir() {
            return Err(WorkspaceError::Unknown {
                query: id.to_string(),
            });
        }
        FileLock::acquire_within(&path, true, RECORD_LOCK_PATIENCE)
            .map_err(|source| WorkspaceError::lock(path, source))
    }

    fn names_lock(&self) -> Result<FileLock, WorkspaceError> {
        let path = self.root.join("names.lock");
        FileLock::acquire_within(&path, true, RECORD_LOCK_PATIENCE)
            .map_err(|source| WorkspaceError::lock(path, source))
    }
}

/// Names: a letter or digit, then letters, digits, `.`, `_`, `-`; not an
/// id's shape, so that ids and names never collide.
pub fn validate_name(name: &str) -> Result<(), WorkspaceError> {
    if is_valid_name(name) {
        Ok(())
    } else {
        Err(WorkspaceError::BadName {
            name: name.to_string(),
        })
    }
}

/// The shape rule shared by workspace and snapshot names.
pub fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && !looks_like_id(name)
}

fn looks_like_id(text: &str) -> bool {
    text.len() == ID_LEN
        && text
            .chars()
            .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
}

const ID_LEN: usize = 12;

/// A fresh random workspace id: 12 lower-case hex digits.
pub fn new_id() -> String {
    let mut bytes = [0u8; ID_LEN / 2];
    if fs_err::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .is_err()
    {
        let nanos = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        bytes.copy_from_slice(&(nanos as u64 ^ u64::from(std::process::id())).to_le_bytes()[..6]);
    }
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Now, as recorded in records.
pub fn now() -> String {
    pyro_util::rfc3339(SystemTime::now())
}

#[cfg(test)]
mod tests;
