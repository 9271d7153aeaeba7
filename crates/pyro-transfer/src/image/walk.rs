//! The walk of a seed tree: what goes into the image, with which inode.
//!
//! Only metadata is kept (names, modes, times, sizes), never content, so a
//! tree of any size walks in bounded memory per entry. Symlinks are read as
//! links and never followed; sockets, FIFOs and device nodes are left out
//! and named; a regular file met again under another name (a hard link) gets
//! the inode of its first name.

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::Metadata;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use super::{ImageError, ImageOptions, IGNORE_FILE};

/// The root directory's inode; others count up from [`FIRST_INODE`].
pub(super) const ROOT_INODE: u32 = 2;
/// The first inode that is not reserved.
pub(super) const FIRST_INODE: u32 = 11;
/// Named paths kept in a report (the counts are exact).
const NAMES_KEPT: usize = 100;

/// What an inode holds.
#[derive(Debug)]
pub(super) enum Content {
    Dir {
        /// `(name, inode, ext4 file type)`, sorted by name.
        entries: Vec<(Vec<u8>, u32, u8)>,
        parent: u32,
        subdirs: u32,
    },
    File {
        path: PathBuf,
        size: u64,
        /// Whether the host file looked sparse (fewer blocks than bytes).
        sparse: bool,
    },
    Symlink {
        target: Vec<u8>,
    },
}

/// One inode of the image.
#[derive(Debug)]
pub(super) struct Inode {
    pub(super) content: Content,
    /// Permission bits.
    pub(super) perm: u16,
    pub(super) mtime: (i64, u32),
    pub(super) links: u16,
}

/// The walked tree: inode `n` is `inodes[n - FIRST_INODE]`, the root is
/// `root`.
#[derive(Debug)]
pub(super) struct Tree {
    pub(super) root: Inode,
    pub(super) inodes: Vec<Inode>,
    /// Every name of a file or symlink (relative to the root) and its
    /// inode, in walk order: a hard-linked file has several.
    pub(super) names: Vec<(Vec<u8>, u32)>,
    pub(super) excluded: u64,
    pub(super) excluded_bytes: u64,
    pub(super) skipped: Vec<String>,
    pub(super) skipped_count: u64,
}

impl Tree {
    pub(super) fn get_mut(&mut self, ino: u32) -> &mut Inode {
        match ino {
            ROOT_INODE => &mut self.root,
            ino => &mut self.inodes[(ino - FIRST_INODE) as usize],
        }
    }

    pub(super) fn get(&self, ino: u32) -> &Inode {
        match ino {
            ROOT_INODE => &self.root,
            ino => &self.inodes[(ino - FIRST_INODE) as usize],
        }
    }

    /// Every inode number, the root first.
    pub(super) fn numbers(&self) -> impl Iterator<Item = u32> {
        std::iter::once(ROOT_INODE)
            .chain((0..self.inodes.len() as u32).map(|index| index + FIRST_INODE))
    }
}

/// Walks `root` (a directory), leaving out what `options` excludes.
pub(super) fn walk(root: &Path, options: &ImageOptions) -> Result<Tree, ImageError> {
    let ignore = matcher(root, options)?;
    let meta = std::fs::metadata(root).map_err(|source| read_error(root, source))?;
    if !meta.is_dir() {
        return Err(ImageError::NotADirectory {
            path: root.to_path_buf(),
        });
    }
    let mut tree = Tree {
        root: dir_inode(&meta, ROOT_INODE),
        inodes: Vec::new(),
        names: Vec::new(),
        excluded: 0,
        excluded_bytes: 0,
        skipped: Vec::new(),
        skipped_count: 0,
    };
    let mut hard_links: HashMap<(u64, u64), u32> = HashMap::new();
    // Directories still to read: (inode, host path, path relative to root).
    let mut pending = vec![(ROOT_INODE, root.to_path_buf(), PathBuf::new())];
    while let Some((dir_ino, dir_path, dir_relative)) = pending.pop() {
        let mut entries = Vec::new();
        let mut subdirs = 0;
        for name in sorted_names(&dir_path)? {
            let path = dir_path.join(&name);
            let relative = dir_relative.join(&name);
            let meta = std::fs::symlink_metadata(&path).map_err(|e| read_error(&path, e))?;
            let kind = meta.file_type();
            if ignore
                .matched_path_or_any_parents(&relative, kind.is_dir())
                .is_ignore()
            {
                count_excluded(&mut tree, &path, &meta);
                continue;
            }
            let next = FIRST_INODE + tree.inodes.len() as u32;
            let (ino, file_type) = if kind.is_dir() {
                tree.inodes.push(dir_inode(&meta, dir_ino));
                pending.push((next, path, relative.clone()));
                subdirs += 1;
                (next, FT_DIR)
            } else if kind.is_symlink() {
                let target = std::fs::read_link(&path).map_err(|e| read_error(&path, e))?;
                tree.inodes.push(Inode {
                    content: Content::Symlink {
                        target: target.into_os_string().into_vec(),
                    },
                    perm: 0o777,
                    mtime: mtime(&meta),
                    links: 1,
                });
                (next, FT_SYMLINK)
            } else if kind.is_file() {
                let key = (meta.dev(), meta.ino());
                match hard_links.get(&key) {
                    Some(&ino) if meta.nlink() > 1 => {
                        let links = &mut tree.get_mut(ino).links;
                        *links = links.saturating_add(1).min(65000);
                        (ino, FT_FILE)
                    }
                    _ => {
                        if meta.nlink() > 1 {
                            hard_links.insert(key, next);
                        }
                        tree.inodes.push(Inode {
                            content: Content::File {
                                path,
                                size: meta.len(),
                                sparse: meta.blocks() * 512 < meta.len(),
                            },
                            perm: (meta.mode() & 0o777) as u16,
                            mtime: mtime(&meta),
                            links: 1,
                        });
                        (next, FT_FILE)
                    }
                }
            } else {
                tree.skipped_count += 1;
                if tree.skipped.len() < NAMES_KEPT {
                    tree.skipped
                        .push(format!("{} ({})", relative.display(), special_kind(&meta)));
                }
                continue;
            };
            if file_type != FT_DIR {
                tree.names.push((relative.into_os_string().into_vec(), ino));
            }
            entries.push((name.into_vec(), ino, file_type));
        }
        if let Content::Dir {
            entries: slot,
            subdirs: count,
            ..
        } = &mut tree.get_mut(dir_ino).content
        {
            *slot = entries;
            *count = subdirs;
        }
    }
    Ok(tree)
}

pub(super) const FT_FILE: u8 = 1;
pub(super) const FT_DIR: u8 = 2;
pub(super) const FT_SYMLINK: u8 = 7;

/// The exclude patterns and the root's ignore file, both gitignore syntax.
fn matcher(root: &Path, options: &ImageOptions) -> Result<Gitignore, ImageError> {
    let mut builder = GitignoreBuilder::new(root);
    let ignore_file = root.join(IGNORE_FILE);
    if options.use_ignore_file && ignore_file.is_file() {
        if let Some(error) = builder.add(&ignore_file) {
            return Err(ImageError::BadPattern {
                origin: IGNORE_FILE.to_string(),
                message: error.to_string(),
            });
        }
    }
    for pattern in &options.exclude {
        builder
            .add_line(None, pattern)
            .map_err(|error| ImageError::BadPattern {
                origin: format!("--exclude {pattern}"),
                message: error.to_string(),
            })?;
    }
    builder.build().map_err(|error| ImageError::BadPattern {
        origin: "the exclude patterns".to_string(),
        message: error.to_string(),
    })
}

/// Counts an excluded path, and for a directory everything beneath it
/// (sizes only: nothing is opened, no link followed).
fn count_excluded(tree: &mut Tree, path: &Path, meta: &Metadata) {
    tree.excluded += 1;
    if meta.is_file() {
        tree.excluded_bytes += meta.len();
    }
    if !meta.is_dir() {
        return;
    }
    let mut pending = vec![path.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            tree.excluded += 1;
            if meta.is_dir() {
                pending.push(entry.path());
            } else if meta.is_file() {
                tree.excluded_bytes += meta.len();
            }
        }
    }
}

fn sorted_names(dir: &Path) -> Result<Vec<OsString>, ImageError> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| read_error(dir, e))? {
        names.push(entry.map_err(|e| read_error(dir, e))?.file_name());
    }
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

fn dir_inode(meta: &Metadata, parent: u32) -> Inode {
    Inode {
        content: Content::Dir {
            entries: Vec::new(),
            parent,
            subdirs: 0,
        },
        perm: (meta.mode() & 0o777) as u16,
        mtime: mtime(meta),
        links: 1,
    }
}

fn mtime(meta: &Metadata) -> (i64, u32) {
    (meta.mtime(), meta.mtime_nsec().clamp(0, 999_999_999) as u32)
}

fn special_kind(meta: &Metadata) -> &'static str {
    let kind = meta.file_type();
    if kind.is_socket() {
        "socket"
    } else if kind.is_fifo() {
        "fifo"
    } else {
        "device"
    }
}

pub(super) fn read_error(path: &Path, source: std::io::Error) -> ImageError {
    ImageError::Read {
        path: path.to_path_buf(),
        source,
    }
}
