//! Offline disk tools: `workspace disk list|read|export` on a workspace
//! that is not running, without starting it.
//!
//! The disk was written by an untrusted guest, so no host code parses it
//! as a filesystem. A throw-away helper VM boots the workspace's own
//! environment over a copy-on-write layer of its disk (QEMU `snapshot=on`:
//! the disk itself is opened read-only and nothing the helper writes
//! stays), with its seed disk when it has one so `/workspace` reads as the
//! workspace saw it, and with no network. What the helper sends back is as
//! hostile as the disk: a listing is parsed strictly, a file's bytes are
//! capped, and an export goes through the same hardened unpacker as
//! `export`. The helper is killed when the call ends, on every path, and
//! the whole call has a deadline.

use std::path::Path;
use std::time::{Duration, Instant};

use pyro_protocol::ExecRequest;
use pyro_vmm::{DiskFormat, RootDisk};
use serde::Serialize;

use super::error::Error;
use super::Pyro;
use crate::host::boot::boot;
use crate::host::guest::{ExecEvent, Guest};
use crate::host::machine::Machine;
use crate::host::template::Shape;
use crate::workspace::layers::ops_lock;
use crate::workspace::store::{WorkspaceRecord, WorkspaceState};
use crate::workspace::transfer::{self, TransferReport};

/// The longest a disk call may take, helper boot included.
const DEADLINE: Duration = Duration::from_secs(300);
/// Memory of the helper VM, MiB.
const HELPER_MIB: u32 = 512;
/// Most entries `disk list` returns.
const LIST_LIMIT: usize = 10_000;
/// Largest file `disk read` returns.
pub const DISK_READ_LIMIT: u64 = 16 * 1024 * 1024;

/// Why a disk call failed.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // Each variant says what it is in its message.
pub enum DiskError {
    #[error("workspace '{workspace}' is running; the disk tools read a stopped workspace: stop it first (`pyro workspace stop`, MCP workspace_stop), or read it live with `pyro workspace file` (MCP workspace_file_read)")]
    Running { workspace: String },
    #[error("{path}: not a path on the workspace's disk; give an absolute path, or one relative to /workspace, without NUL bytes")]
    BadPath { path: String },
    #[error("no such file or directory on the disk of workspace '{workspace}': {path}")]
    NotFound { workspace: String, path: String },
    #[error("{path} on the disk of workspace '{workspace}' is a directory; list it with `disk list`, or copy it out with `disk export`")]
    IsDirectory { workspace: String, path: String },
    #[error("{path} on the disk of workspace '{workspace}' is not a directory; read it with `disk read`")]
    NotADirectory { workspace: String, path: String },
    #[error("{path} is not on the disk: /proc, /sys, /dev and /run are the kernel's and the helper VM's own")]
    NotOnDisk { path: String },
    #[error("{path} is larger than {limit} bytes; copy it out with `disk export`")]
    TooLarge { path: String, limit: u64 },
    #[error("reading the disk of workspace '{workspace}' failed: {message}")]
    Helper { workspace: String, message: String },
    #[error("reading the disk of workspace '{workspace}' took longer than {} s; the helper VM was stopped", DEADLINE.as_secs())]
    Deadline { workspace: String },
}

/// One entry of a directory on the disk.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DiskEntry {
    /// Its name in the directory.
    pub name: String,
    /// `file`, `dir`, `symlink` or `other`.
    pub kind: &'static str,
    /// Its size in bytes.
    pub size: u64,
    /// Its permission bits.
    pub mode: u32,
}

/// A directory on the disk.
#[derive(Debug, Clone, Serialize)]
pub struct DiskListing {
    /// The directory, absolute.
    pub path: String,
    /// Its entries, by name.
    pub entries: Vec<DiskEntry>,
    /// True when there were more than one listing returns.
    pub truncated: bool,
    /// How long the call took, helper VM included.
    pub duration_ms: u64,
}

/// A file read off the disk.
#[derive(Debug, Clone, Serialize)]
pub struct DiskFile {
    /// The file, absolute.
    pub path: String,
    /// Its bytes.
    #[serde(skip)]
    pub content: Vec<u8>,
    /// How many.
    pub size: u64,
    /// How long the call took, helper VM included.
    pub duration_ms: u64,
}

impl Pyro {
    /// Lists a directory on the disk of a workspace that is not running.
    pub async fn workspace_disk_list(&self, query: &str, path: &str) -> Result<DiskListing, Error> {
        let started = Instant::now();
        let full = disk_path(path)?;
        let (entries, truncated) = self
            .with_helper(query, |guest, name| {
                let full = full.clone();
                async move { list(&guest, &name, &full).await }
            })
            .await?;
        Ok(DiskListing {
            path: full,
            entries,
            truncated,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Reads a file (at most [`DISK_READ_LIMIT`] bytes) off the disk of a
    /// workspace that is not running.
    pub async fn workspace_disk_read(&self, query: &str, path: &str) -> Result<DiskFile, Error> {
        let started = Instant::now();
        let full = disk_path(path)?;
        let content = self
            .with_helper(query, |guest, name| {
                let full = full.clone();
                async move { read(&guest, &name, &full).await }
            })
            .await?;
        Ok(DiskFile {
            path: full,
            size: content.len() as u64,
            content,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Copies a file or directory off the disk of a workspace that is not
    /// running to `output` on the host (checked as for `export`).
    pub async fn workspace_disk_export(
        &self,
        query: &str,
        path: &str,
        output: &Path,
    ) -> Result<TransferReport, Error> {
        let full = disk_path(path)?;
        let output = self.host_paths.check_export(output)?;
        let skip_git_metadata = self.host_paths.is_confined();
        self.with_helper(query, |guest, name| async move {
            if !exists(&guest, &full).await? {
                return Err(DiskError::NotFound {
                    workspace: name,
                    path: full,
                }
                .into());
            }
            Ok(transfer::export_tree_at(&guest, &full, &output, skip_git_metadata).await?)
        })
        .await
    }

    /// Boots the helper VM over the disk of workspace `query` (not
    /// running), runs `work` against its agent under the deadline, and
    /// kills it.
    async fn with_helper<T, F, Fut>(&self, query: &str, work: F) -> Result<T, Error>
    where
        F: FnOnce(Guest, String) -> Fut,
        Fut: std::future::Future<Output = Result<T, Error>>,
    {
        let store = self.store()?;
        let record = store.resolve(query)?;
        let name = record.display_name().to_string();
        // No start, reset or delete meanwhile.
        let _ops = ops_lock(&store, &record.id).await?;
        let record = store.observe(&record.id)?;
        if matches!(
            record.state,
            WorkspaceState::Running | WorkspaceState::Starting
        ) {
            return Err(DiskError::Running { workspace: name }.into());
        }
        let dir = store.dir(&record.id);
        let machine = Machine::for_env(&self.cache_dir, &record.env)?;
        let spec = helper_spec(&machine, &record, &dir);
        let run = async {
            let booted = boot(&machine.engine, &spec)
                .await
                .map_err(|e| DiskError::Helper {
                    workspace: name.clone(),
                    message: format!(
                        "the helper VM could not boot from it (a filesystem the guest broke?): {e}"
                    ),
                })?;
            let mut vm = booted.vm;
            let result = work(booted.guest, name.clone()).await;
            vm.kill();
            result
        };
        match tokio::time::timeout(DEADLINE, run).await {
            Ok(result) => result,
            Err(_) => Err(DiskError::Deadline { workspace: name }.into()),
        }
    }
}

/// The helper: one vCPU and no network, booting the workspace's
/// environment over a throw-away layer of its disk, with its seed disk.
fn helper_spec(machine: &Machine, record: &WorkspaceRecord, dir: &Path) -> pyro_vmm::VmSpec {
    let disk = dir.join(&record.active_disk);
    let shape = Shape {
        cpus: 1,
        memory_mib: HELPER_MIB,
        network: false,
    };
    let seed = match record.seed_slot {
        true => record.seed_disk(dir),
        false => None,
    };
    let mut spec = machine.workspace_spec(disk.clone(), shape, seed, None);
    spec.root_disk = Some(RootDisk::Ephemeral {
        base: disk,
        format: DiskFormat::Qcow2,
    });
    spec
}

/// `path` on the disk as an absolute path: absolute as given, or relative
/// to /workspace.
pub(crate) fn disk_path(path: &str) -> Result<String, DiskError> {
    if path.contains('\0') || path.trim().is_empty() {
        return Err(DiskError::BadPath { path: path.into() });
    }
    let joined = match path.starts_with('/') {
        true => path.to_string(),
        false => format!("/workspace/{path}"),
    };
    let mut parts: Vec<&str> = Vec::new();
    for part in joined.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            part => parts.push(part),
        }
    }
    let full = format!("/{}", parts.join("/"));
    let virtual_fs = ["proc", "sys", "dev", "run"].contains(&parts.first().copied().unwrap_or(""));
    match virtual_fs {
        true => Err(DiskError::NotOnDisk { path: full }),
        false => Ok(full),
    }
}

/// Runs `argv` in the helper; its exit code, stdout (at most `cap` bytes
/// kept, and whether more came) and stderr's tail.
async fn run(
    guest: &Guest,
    argv: &[&str],
    cap: u64,
) -> Result<(i32, Vec<u8>, bool, String), Error> {
    let mut stream = guest
        .exec(ExecRequest {
            argv: argv.iter().map(|a| a.to_string()).collect(),
            ..ExecRequest::default()
        })
        .await?;
    let (mut out, mut err) = (Vec::new(), Vec::new());
    loop {
        match stream.next().await? {
            ExecEvent::Stdout(bytes) => {
                let room = (cap as usize).saturating_sub(out.len());
                out.extend_from_slice(&bytes[..room.min(bytes.len())]);
                if bytes.len() > room {
                    // Enough: the helper is killed with the call.
                    let _ = stream.signal(libc::SIGKILL).await;
                    let said = String::from_utf8_lossy(&err).trim().to_string();
                    return Ok((0, out, true, said));
                }
            }
            ExecEvent::Stderr(bytes) if err.len() < 4096 => err.extend_from_slice(&bytes),
            ExecEvent::Exited(status) => {
                let said = String::from_utf8_lossy(&err).trim().to_string();
                return Ok((status.shell_code(), out, false, said));
            }
            ExecEvent::Failed { message, .. } => return Ok((127, out, false, message)),
            _ => {}
        }
    }
}

async fn exists(guest: &Guest, path: &str) -> Result<bool, Error> {
    let (code, ..) = run(guest, &["test", "-e", path], 0).await?;
    let (link, ..) = run(guest, &["test", "-L", path], 0).await?;
    Ok(code == 0 || link == 0)
}

async fn read(guest: &Guest, workspace: &str, path: &str) -> Result<Vec<u8>, Error> {
    let (dir, ..) = run(guest, &["test", "-d", path], 0).await?;
    if dir == 0 {
        return Err(DiskError::IsDirectory {
            workspace: workspace.into(),
            path: path.into(),
        }
        .into());
    }
    let (code, out, more, said) = run(guest, &["cat", "--", path], DISK_READ_LIMIT).await?;
    if more {
        return Err(DiskError::TooLarge {
            path: path.into(),
            limit: DISK_READ_LIMIT,
        }
        .into());
    }
    match code {
        0 => Ok(out),
        _ if said.contains("No such file") => Err(DiskError::NotFound {
            workspace: workspace.into(),
            path: path.into(),
        }
        .into()),
        _ => Err(DiskError::Helper {
            workspace: workspace.into(),
            message: said,
        }
        .into()),
    }
}

async fn list(guest: &Guest, workspace: &str, path: &str) -> Result<(Vec<DiskEntry>, bool), Error> {
    if !exists(guest, path).await? {
        return Err(DiskError::NotFound {
            workspace: workspace.into(),
            path: path.into(),
        }
        .into());
    }
    let (dir, ..) = run(guest, &["test", "-d", path], 0).await?;
    if dir != 0 {
        return Err(DiskError::NotADirectory {
            workspace: workspace.into(),
            path: path.into(),
        }
        .into());
    }
    // -H: a starting point that is a link to a directory (/bin on a merged
    // /usr) is listed as the directory.
    let format = "%y %s %m %f\\0";
    let depth = ["-mindepth", "1", "-maxdepth", "1", "-printf", format];
    let argv = [&["find", "-H", path][..], &depth].concat();
    let (code, out, more, said) = run(guest, &argv, 4 * 1024 * 1024).await?;
    if code != 0 && out.is_empty() {
        return Err(DiskError::Helper {
            workspace: workspace.into(),
            message: said,
        }
        .into());
    }
    let mut entries = parse_listing(&out);
    entries.sort_by(|a, b| a.name.cmp(&b.name));
    let truncated = more || entries.len() > LIST_LIMIT;
    entries.truncate(LIST_LIMIT);
    Ok((entries, truncated))
}

/// Entries of `find -printf '%y %s %m %f\0'` output; anything malformed
/// (the helper is as hostile as the disk) is left out.
fn parse_listing(out: &[u8]) -> Vec<DiskEntry> {
    out.split(|&b| b == 0)
        .filter_map(|record| {
            let text = std::str::from_utf8(record).ok()?;
            let mut fields = text.splitn(4, ' ');
            let kind = match fields.next()? {
                "f" => "file",
                "d" => "dir",
                "l" => "symlink",
                "b" | "c" | "p" | "s" => "other",
                _ => return None,
            };
            let size = fields.next()?.parse().ok()?;
            let mode = u32::from_str_radix(fields.next()?, 8).ok()?;
            let name = fields.next()?;
            let bad = name.is_empty() || name.contains('/') || name == "." || name == "..";
            (!bad).then(|| DiskEntry {
                name: name.to_string(),
                kind,
                size,
                mode,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_paths_are_absolute_and_relative_ones_are_under_workspace() {
        assert_eq!(disk_path("/etc/os-release").unwrap(), "/etc/os-release");
        assert_eq!(disk_path("src/app.py").unwrap(), "/workspace/src/app.py");
        assert_eq!(disk_path("/workspace/../etc//x/.").unwrap(), "/etc/x");
        assert_eq!(disk_path("../../..").unwrap(), "/");
        assert!(disk_path("a\0b").is_err());
        assert!(matches!(
            disk_path("/proc/1/environ"),
            Err(DiskError::NotOnDisk { .. })
        ));
        assert!(matches!(
            disk_path("/workspace/../sys"),
            Err(DiskError::NotOnDisk { .. })
        ));
        assert_eq!(disk_path("/process").unwrap(), "/process");
        assert!(disk_path(" ").is_err());
    }

    #[test]
    fn listings_are_parsed_strictly() {
        let out = b"f 12 644 a.txt\0d 4096 755 dir\0l 7 777 link with space\0\
                    x 1 644 bad-kind\0f nope 644 bad-size\0f 1 999 bad-mode\0f 1 644 a/b\0\
                    f 1 644 \0\xff\xfe\0";
        let entries = parse_listing(out);
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, ["a.txt", "dir", "link with space"]);
        assert_eq!(entries[0].size, 12);
        assert_eq!(entries[1].kind, "dir");
        assert_eq!(entries[2].mode, 0o777);
    }
}
