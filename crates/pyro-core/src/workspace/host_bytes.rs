//! What a workspace holds on the host's disk, and whether the host has room
//! for what an operation is about to write there.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use pyro_util::human_bytes;

use super::store::HostBytes;
use super::WorkspaceError;

/// The bytes under `dir`, by kind.
pub(crate) fn of_dir(dir: &Path) -> HostBytes {
    let mut bytes = HostBytes::default();
    let mut seen = HashSet::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(path) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_dir() {
                stack.push(entry.path());
                continue;
            }
            if !seen.insert((meta.dev(), meta.ino())) {
                continue;
            }
            let allocated = meta.blocks() * 512;
            let relative = entry.path();
            let relative = relative.strip_prefix(dir).unwrap_or(&relative);
            let first = relative.components().next().map(|c| c.as_os_str());
            match first.and_then(|c| c.to_str()) {
                Some("layers") | Some(super::DISK) | Some(super::TEMPLATE_DISK) => {
                    bytes.disk += allocated
                }
                Some(super::layers::MEMORY) => bytes.memory += allocated,
                _ => bytes.other += allocated,
            }
        }
    }
    bytes
}

/// Fails unless the filesystem holding `dir` has `needed` bytes free (and
/// a reserve beyond them) for `what`.
pub(crate) fn ensure_room(dir: &Path, needed: u64, what: &str) -> Result<(), WorkspaceError> {
    let Some(free) = pyro_util::fsutil::short_of_room(dir, needed) else {
        return Ok(());
    };
    Err(WorkspaceError::HostDiskFull {
        what: what.to_string(),
        needed: human_bytes(needed),
        free: human_bytes(free),
        path: dir.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind_and_each_inode_once() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("layers")).unwrap();
        std::fs::create_dir_all(root.join("memory/snapshot-a")).unwrap();
        std::fs::write(root.join("layers/a.qcow2"), vec![1u8; 64 * 1024]).unwrap();
        std::fs::hard_link(root.join("layers/a.qcow2"), root.join("layers/b.qcow2")).unwrap();
        std::fs::write(root.join("memory/snapshot-a/ram"), vec![2u8; 128 * 1024]).unwrap();
        std::fs::write(root.join("seed.img"), vec![3u8; 32 * 1024]).unwrap();
        let bytes = of_dir(root);
        assert!(
            bytes.disk >= 64 * 1024 && bytes.disk < 128 * 1024,
            "{bytes:?}"
        );
        assert!(bytes.memory >= 128 * 1024, "{bytes:?}");
        assert!(bytes.other >= 32 * 1024, "{bytes:?}");
        assert_eq!(bytes.total(), bytes.disk + bytes.memory + bytes.other);
    }

    #[test]
    fn room_is_refused_past_the_free_space() {
        let dir = tempfile::tempdir().unwrap();
        ensure_room(dir.path(), 1, "a test").unwrap();
        let error = ensure_room(dir.path(), u64::MAX / 2, "snapshot 'x'").unwrap_err();
        assert!(
            error.to_string().contains("snapshot 'x' needs about"),
            "{error}"
        );
    }
}
