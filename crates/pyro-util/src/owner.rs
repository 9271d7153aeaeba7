//! Who pyro runs as, and who should own what it makes: root working in a
//! user's store hands new files to that user.

use std::path::Path;

/// Whether the process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Who should own what the store creates. When root works in a store that
/// lives in someone else's directory (`sudo pyro env pull` with the user's
/// cache), new files and directories are handed to that user, so their later
/// unprivileged runs can write locks and initramfs files next to them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Owner(Option<(u32, u32)>);

impl Owner {
    /// The owner of `path`'s nearest existing ancestor, when we are root and
    /// it is not.
    pub fn for_store_at(path: &Path) -> Self {
        use std::os::unix::fs::MetadataExt as _;
        if !is_root() {
            return Self(None);
        }
        match path.ancestors().find_map(|p| std::fs::metadata(p).ok()) {
            Some(meta) if meta.uid() != 0 => Self(Some((meta.uid(), meta.gid()))),
            _ => Self(None),
        }
    }

    /// Hands `path` to the owner (no-op when there is none).
    pub fn adopt(self, path: &Path) -> std::io::Result<()> {
        let Some((uid, gid)) = self.0 else {
            return Ok(());
        };
        std::os::unix::fs::lchown(path, Some(uid), Some(gid)).map_err(|err| {
            std::io::Error::new(
                err.kind(),
                format!("could not hand {} to uid {uid}: {err}", path.display()),
            )
        })
    }
}
