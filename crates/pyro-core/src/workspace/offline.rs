//! The offline disk tools' rules, without a VM: which paths name the
//! disk, how a helper's listing is read (strictly: the helper is as hostile
//! as the disk it mounted), and what can go wrong.

use std::time::Duration;

use serde::Serialize;

/// The longest a disk call may take, helper boot included.
pub(crate) const DEADLINE: Duration = Duration::from_secs(300);

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

/// Entries of `find -printf '%y %s %m %f\0'` output; anything malformed
/// (the helper is as hostile as the disk) is left out.
pub(crate) fn parse_listing(out: &[u8]) -> Vec<DiskEntry> {
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
