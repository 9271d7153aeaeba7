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
use std::time::Instant;

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
use crate::workspace::offline::{disk_path, parse_listing, DiskEntry, DiskError, DEADLINE};
use crate::workspace::store::{WorkspaceRecord, WorkspaceState};
use crate::workspace::transfer::{self, TransferReport};

/// Memory of the helper VM, MiB.
const HELPER_MIB: u32 = 512;
/// Most entries `disk list` returns.
const LIST_LIMIT: usize = 10_000;
/// Largest file `disk read` returns.
pub const DISK_READ_LIMIT: u64 = 16 * 1024 * 1024;

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
    spec.disk_roots
        .extend(crate::workspace::layers::disk_files(dir));
    spec.root_disk = Some(RootDisk::Ephemeral {
        base: disk,
        format: DiskFormat::Qcow2,
    });
    spec
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
                    let said = visible(&err);
                    return Ok((0, out, true, said));
                }
            }
            ExecEvent::Stderr(bytes) if err.len() < 4096 => err.extend_from_slice(&bytes),
            ExecEvent::Exited(status) => {
                let said = visible(&err);
                return Ok((status.shell_code(), out, false, said));
            }
            ExecEvent::Failed { message, .. } => {
                return Ok((127, out, false, visible(message.as_bytes())))
            }
            _ => {}
        }
    }
}

/// What the helper printed, for an error on the host's terminal: its
/// control characters escaped (the disk's binaries chose it).
fn visible(said: &[u8]) -> String {
    pyro_util::text::visible_lines(String::from_utf8_lossy(said).trim()).into_owned()
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

#[cfg(test)]
mod tests {
    #[test]
    fn what_the_helper_says_reaches_the_terminal_escaped() {
        let said = super::visible(b"cat: x\x1b]0;owned\x07: No such file\nnext\r\n");
        assert_eq!(said, "cat: x\\u{1b}]0;owned\\u{7}: No such file\nnext");
    }
}
