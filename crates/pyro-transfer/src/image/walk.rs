//! The walk of a seed tree: what goes into the image, with which inode.
//!
//! Only metadata is kept (names, modes, times, sizes), never content, so a
//! tree of any size walks in bounded memory per entry. Every directory is
//! opened from the root one component at a time with `O_NOFOLLOW`, and every
//! entry is looked at with `fstatat(AT_SYMLINK_NOFOLLOW)`: a symlink is read
//! as a link and never followed, even one swapped in for a directory while
//! the walk runs. Sockets, FIFOs and device nodes are left out and named; a
//! regular file met again under another name (a hard link) gets the inode
//! of its first name; an entry that vanishes mid-walk is left out and
//! reported as changed.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use ignore::gitignore::{Gitignore, GitignoreBuilder};

use pyro_protocol::seed::{EXTRA, TREE};

use super::{ExtraFile, ImageError, ImageOptions, IGNORE_FILE};
use crate::dirfd::Dir;

/// The root directory's inode; others count up from [`FIRST_INODE`].
pub(super) const ROOT_INODE: u32 = 2;
/// The first inode that is not reserved.
pub(super) const FIRST_INODE: u32 = 11;
/// Named paths kept in a report (the counts are exact).
pub(super) const NAMES_KEPT: usize = 100;

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
        /// The directory it is in (an index of [`Tree::dirs`]) and its name.
        dir: u32,
        name: OsString,
        size: u64,
        /// Whether the host file looked sparse (fewer blocks than bytes).
        sparse: bool,
        /// 512-byte units the host allocated to it.
        allocated: u64,
    },
    Symlink {
        target: Vec<u8>,
    },
    /// A small file given in memory (an [`ExtraFile`]).
    Data(Vec<u8>),
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
    /// Every directory's path relative to the root; the root is `""`.
    pub(super) dirs: Vec<PathBuf>,
    /// Every name of a file or symlink (relative to the root) and its
    /// inode, in walk order: a hard-linked file has several.
    pub(super) names: Vec<(Vec<u8>, u32)>,
    pub(super) excluded: u64,
    pub(super) excluded_bytes: u64,
    pub(super) skipped: Vec<String>,
    pub(super) skipped_count: u64,
    /// Paths that vanished while the walk ran (first hundred).
    pub(super) vanished: Vec<String>,
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

/// Opens the directory `relative` beneath `root`, one component at a time,
/// never through a symlink.
pub(super) fn open_beneath(root: &Dir, relative: &Path) -> io::Result<Dir> {
    let mut dir = root.try_clone()?;
    for part in relative.iter() {
        dir = dir.open_dir(part)?;
    }
    Ok(dir)
}

/// Walks `root` (a directory, or a symlink to one), leaving out what
/// `options` excludes; at most `max_inodes` inodes.
pub(super) fn walk(
    root: &Path,
    options: &ImageOptions,
    max_inodes: u64,
) -> Result<(Dir, Tree), ImageError> {
    let real = std::fs::canonicalize(root).map_err(|source| read_error(root, source))?;
    let top = match Dir::open(&real) {
        Ok(dir) => dir,
        Err(error) if error.raw_os_error() == Some(libc::ENOTDIR) => {
            return Err(ImageError::NotADirectory {
                path: root.to_path_buf(),
            })
        }
        Err(error) => return Err(read_error(root, error)),
    };
    let meta = top
        .as_file()
        .metadata()
        .map_err(|source| read_error(root, source))?;
    let ignore = matcher(root, &top, options)?;
    // The filesystem's root holds the seed's root as `tree/` (and, later,
    // `extra/`): see `pyro_protocol::seed`.
    let seed_root = dir_inode(
        (meta.permissions().mode() & 0o777) as u16,
        mtime_of_meta(&meta),
        ROOT_INODE,
    );
    let mut root_inode = dir_inode(0o755, mtime_of_meta(&meta), ROOT_INODE);
    if let Content::Dir {
        entries, subdirs, ..
    } = &mut root_inode.content
    {
        entries.push((TREE.as_bytes().to_vec(), FIRST_INODE, FT_DIR));
        *subdirs = 1;
    }
    let mut tree = Tree {
        root: root_inode,
        inodes: vec![seed_root],
        dirs: vec![PathBuf::new()],
        names: Vec::new(),
        excluded: 0,
        excluded_bytes: 0,
        skipped: Vec::new(),
        skipped_count: 0,
        vanished: Vec::new(),
    };
    let mut hard_links: HashMap<(u64, u64), u32> = HashMap::new();
    // Directories still to read: (inode, index in `tree.dirs`).
    let mut pending = vec![(FIRST_INODE, 0u32)];
    while let Some((dir_ino, dir_index)) = pending.pop() {
        let dir_relative = tree.dirs[dir_index as usize].clone();
        let here = root.join(&dir_relative);
        let dir = match open_beneath(&top, &dir_relative) {
            Ok(dir) => dir,
            // Gone, or swapped for something else: what it held is not
            // there to copy.
            Err(error) if gone(&error) && dir_index != 0 => {
                note(&mut tree.vanished, &dir_relative);
                continue;
            }
            Err(error) => return Err(read_error(&here, error)),
        };
        let mut names = dir.names().map_err(|e| read_error(&here, e))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let mut entries = Vec::new();
        let mut subdirs = 0;
        for name in names {
            let relative = dir_relative.join(&name);
            let stat = match dir.lstat(&name) {
                Ok(stat) => stat,
                Err(error) if gone(&error) => {
                    note(&mut tree.vanished, &relative);
                    continue;
                }
                Err(error) => return Err(read_error(&here.join(&name), error)),
            };
            let kind = stat.st_mode & libc::S_IFMT;
            if ignore
                .matched_path_or_any_parents(&relative, kind == libc::S_IFDIR)
                .is_ignore()
            {
                count_excluded(&mut tree, &top, &relative, &stat);
                continue;
            }
            let next = FIRST_INODE + tree.inodes.len() as u32;
            if u64::from(next) >= max_inodes {
                return Err(ImageError::TooManyEntries { limit: max_inodes });
            }
            let perm = (stat.st_mode & 0o777) as u16;
            let mtime = mtime(&stat);
            let (ino, file_type) = match kind {
                libc::S_IFDIR => {
                    tree.inodes.push(dir_inode(perm, mtime, dir_ino));
                    tree.dirs.push(relative.clone());
                    pending.push((next, tree.dirs.len() as u32 - 1));
                    subdirs += 1;
                    (next, FT_DIR)
                }
                libc::S_IFLNK => {
                    let target = match dir.read_link(&name) {
                        Ok(target) => target,
                        Err(error) if gone(&error) => {
                            note(&mut tree.vanished, &relative);
                            continue;
                        }
                        Err(error) => return Err(read_error(&here.join(&name), error)),
                    };
                    tree.inodes.push(Inode {
                        content: Content::Symlink { target },
                        perm: 0o777,
                        mtime,
                        links: 1,
                    });
                    (next, FT_SYMLINK)
                }
                libc::S_IFREG => {
                    let key = (stat.st_dev, stat.st_ino);
                    match hard_links.get(&key) {
                        Some(&ino) => {
                            let links = &mut tree.get_mut(ino).links;
                            *links = links.saturating_add(1).min(65000);
                            (ino, FT_FILE)
                        }
                        None => {
                            if stat.st_nlink > 1 {
                                hard_links.insert(key, next);
                            }
                            let size = stat.st_size as u64;
                            let allocated = stat.st_blocks as u64;
                            tree.inodes.push(Inode {
                                content: Content::File {
                                    dir: dir_index,
                                    name: name.clone(),
                                    size,
                                    sparse: allocated * 512 < size,
                                    allocated,
                                },
                                perm,
                                mtime,
                                links: 1,
                            });
                            (next, FT_FILE)
                        }
                    }
                }
                _ => {
                    tree.skipped_count += 1;
                    if tree.skipped.len() < NAMES_KEPT {
                        tree.skipped.push(format!(
                            "{} ({})",
                            relative.display(),
                            special_kind(stat.st_mode)
                        ));
                    }
                    continue;
                }
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
    Ok((top, tree))
}

/// Adds `files` under `extra/` at the filesystem's root, with the
/// directories their paths name. Their names are not in [`Tree::names`].
pub(super) fn add_extras(tree: &mut Tree, mut files: Vec<ExtraFile>) {
    if files.is_empty() {
        return;
    }
    // Room was kept for a few thousand (`EXTRA_INODES`), directories too.
    files.truncate(2048);
    let mut dirs: HashMap<Vec<u8>, u32> = HashMap::new();
    let extra = add_child(
        tree,
        ROOT_INODE,
        EXTRA.as_bytes(),
        dir_inode(0o755, (0, 0), ROOT_INODE),
    );
    dirs.insert(Vec::new(), extra);
    for file in files {
        let mut parent = extra;
        let mut at = Vec::new();
        let parts: Vec<&[u8]> = file
            .path
            .split(|&b| b == b'/')
            .filter(|p| !p.is_empty())
            .collect();
        let Some((name, parents)) = parts.split_last() else {
            continue;
        };
        for part in parents {
            at.extend_from_slice(b"/");
            at.extend_from_slice(part);
            parent = match dirs.get(&at) {
                Some(&ino) => ino,
                None => {
                    let ino = add_child(tree, parent, part, dir_inode(0o755, (0, 0), parent));
                    dirs.insert(at.clone(), ino);
                    ino
                }
            };
        }
        let inode = Inode {
            content: Content::Data(file.data),
            perm: file.mode & 0o777,
            mtime: file.mtime,
            links: 1,
        };
        add_child(tree, parent, name, inode);
    }
}

/// Adds `inode` to the tree as `name` in directory `parent`; its number.
fn add_child(tree: &mut Tree, parent: u32, name: &[u8], inode: Inode) -> u32 {
    let ino = FIRST_INODE + tree.inodes.len() as u32;
    let file_type = match inode.content {
        Content::Dir { .. } => FT_DIR,
        _ => FT_FILE,
    };
    tree.inodes.push(inode);
    if let Content::Dir {
        entries, subdirs, ..
    } = &mut tree.get_mut(parent).content
    {
        // Kept sorted, as the walk keeps every directory.
        let at = entries.partition_point(|(existing, _, _)| existing.as_slice() < name);
        entries.insert(at, (name.to_vec(), ino, file_type));
        *subdirs += u32::from(file_type == FT_DIR);
    }
    ino
}

/// Whether an error means the entry is no longer what the walk saw: gone,
/// or (opening a directory) replaced by a symlink or a file.
fn gone(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ENOENT | libc::ELOOP | libc::ENOTDIR)
    )
}

fn note(list: &mut Vec<String>, path: &Path) {
    if list.len() < NAMES_KEPT {
        list.push(path.display().to_string());
    }
}

pub(super) const FT_FILE: u8 = 1;
pub(super) const FT_DIR: u8 = 2;
pub(super) const FT_SYMLINK: u8 = 7;

/// The exclude patterns and the root's ignore file, both gitignore syntax.
fn matcher(root: &Path, top: &Dir, options: &ImageOptions) -> Result<Gitignore, ImageError> {
    let mut builder = GitignoreBuilder::new(root);
    let ignore_file = root.join(IGNORE_FILE);
    // Read through the root's handle, never through a symlink.
    let text = match top.open_file(OsStr::new(IGNORE_FILE)) {
        Ok(file) if options.use_ignore_file && file.metadata().is_ok_and(|m| m.is_file()) => {
            let mut text = String::new();
            std::io::Read::read_to_string(&mut &file, &mut text)
                .map_err(|e| read_error(&ignore_file, e))?;
            text
        }
        _ => String::new(),
    };
    for line in text.lines() {
        builder
            .add_line(Some(ignore_file.clone()), line)
            .map_err(|error| ImageError::BadPattern {
                origin: IGNORE_FILE.to_string(),
                message: error.to_string(),
            })?;
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
/// (sizes only: nothing is opened but directories, no link followed).
fn count_excluded(tree: &mut Tree, top: &Dir, relative: &Path, stat: &libc::stat) {
    tree.excluded += 1;
    match stat.st_mode & libc::S_IFMT {
        libc::S_IFREG => tree.excluded_bytes += stat.st_size as u64,
        libc::S_IFDIR => {}
        _ => return,
    }
    let mut pending = vec![relative.to_path_buf()];
    while let Some(relative) = pending.pop() {
        let Ok(dir) = open_beneath(top, &relative) else {
            continue;
        };
        for name in dir.names().unwrap_or_default() {
            let Ok(stat) = dir.lstat(&name) else { continue };
            tree.excluded += 1;
            match stat.st_mode & libc::S_IFMT {
                libc::S_IFDIR => pending.push(relative.join(&name)),
                libc::S_IFREG => tree.excluded_bytes += stat.st_size as u64,
                _ => {}
            }
        }
    }
}

fn dir_inode(perm: u16, mtime: (i64, u32), parent: u32) -> Inode {
    Inode {
        content: Content::Dir {
            entries: Vec::new(),
            parent,
            subdirs: 0,
        },
        perm,
        mtime,
        links: 1,
    }
}

fn mtime(stat: &libc::stat) -> (i64, u32) {
    (
        stat.st_mtime,
        stat.st_mtime_nsec.clamp(0, 999_999_999) as u32,
    )
}

fn mtime_of_meta(meta: &std::fs::Metadata) -> (i64, u32) {
    use std::os::unix::fs::MetadataExt;
    (meta.mtime(), meta.mtime_nsec().clamp(0, 999_999_999) as u32)
}

fn special_kind(mode: libc::mode_t) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFSOCK => "socket",
        libc::S_IFIFO => "fifo",
        _ => "device",
    }
}

pub(super) fn read_error(path: &Path, source: std::io::Error) -> ImageError {
    ImageError::Read {
        path: path.to_path_buf(),
        source,
    }
}

/// The host path of a file, for messages.
pub(super) fn file_path(root: &Path, tree: &Tree, dir: u32, name: &OsStr) -> PathBuf {
    root.join(&tree.dirs[dir as usize]).join(name)
}
