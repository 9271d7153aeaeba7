//! A host tree as a read-only ext4 image: seeding a workspace at disk speed.
//!
//! [`build_image`] walks a directory once (`walk.rs`), then writes every
//! file's content straight into the image and the ext4 structures around it
//! (`ext4.rs`), without root, a mount or `mkfs`. It keeps what a tar would:
//! permission bits, mtimes (to the nanosecond), symlinks as symlinks (never
//! followed), hard links, holes of sparse files, names that are not UTF-8,
//! empty directories, `.git`. Owners are root, as the guest's `tar
//! --no-same-owner` would make them. Sockets, FIFOs and device nodes are
//! left out and named. Paths matching `exclude` patterns or the root's
//! [`IGNORE_FILE`] (both gitignore syntax) are left out and counted.
//!
//! While it copies a file it hashes it as a Git blob, so the host can build
//! the workspace's diff baseline (an index and trees) without reading the
//! tree twice: [`SeedEntry`].
//!
//! Content is streamed through a fixed buffer; memory grows with the number
//! of entries, never with their size. A file that changes while it is
//! copied keeps the size it had when the walk saw it (cut short, or padded
//! with zeros) and is reported.

mod copy;
mod ext4;
mod walk;

use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use walk::{Content, FIRST_INODE};

/// The optional ignore file at the root of a seed (gitignore syntax).
pub const IGNORE_FILE: &str = ".pyroignore";

/// How to build an image.
#[derive(Debug, Clone, Default)]
pub struct ImageOptions {
    /// Paths to leave out, gitignore syntax (`node_modules/`, `*.log`,
    /// `/build`), as if they were lines of the ignore file.
    pub exclude: Vec<String>,
    /// Read the root's [`IGNORE_FILE`], if there is one.
    pub use_ignore_file: bool,
    /// The largest image allowed, in bytes; at most [`MAX_IMAGE_BYTES`].
    pub max_bytes: u64,
}

/// The largest image [`build_image`] makes (16 GiB).
pub const MAX_IMAGE_BYTES: u64 = ext4::MAX_GROUPS * ext4::BLOCKS_PER_GROUP * ext4::BLOCK;

/// A file or symlink of the image, for the diff baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedEntry {
    /// Relative to the root, `/`-separated, raw bytes.
    pub path: Vec<u8>,
    /// Git's mode: `0o100644`, `0o100755` or `0o120000`.
    pub mode: u32,
    /// SHA-1 of the Git blob of its content (a symlink's is its target).
    pub blob: [u8; 20],
    /// Bytes of content.
    pub size: u64,
    /// Modification time, seconds and nanoseconds.
    pub mtime: (i64, u32),
}

/// A small file for the image's `extra/` directory (see
/// `pyro_protocol::seed`), given in memory.
#[derive(Debug, Clone)]
pub struct ExtraFile {
    /// Relative to `extra/`, `/`-separated.
    pub path: Vec<u8>,
    pub data: Vec<u8>,
    /// Permission bits.
    pub mode: u16,
    pub mtime: (i64, u32),
}

/// What an image holds and what was left out.
#[derive(Debug, Clone, Default)]
pub struct ImageReport {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Bytes of file content.
    pub bytes: u64,
    /// Bytes of the image in use (its file is sparse beyond them).
    pub image_bytes: u64,
    /// Paths an exclude pattern or the ignore file left out, counting
    /// everything beneath an excluded directory.
    pub excluded: u64,
    /// Bytes of the files left out that way.
    pub excluded_bytes: u64,
    /// Sockets, FIFOs and devices left out: how many, and the first
    /// hundred as `path (kind)`.
    pub skipped: u64,
    pub skipped_names: Vec<String>,
    /// Files that changed while they were copied (first hundred).
    pub changed: Vec<String>,
    /// Every file and symlink, sorted by path as Git sorts an index.
    pub entries: Vec<SeedEntry>,
}

/// Why an image could not be built.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{} is not a directory; seed from a directory", path.display())]
    NotADirectory { path: PathBuf },
    #[error("cannot read {}: {source}; make it readable, or leave it out with --exclude or {IGNORE_FILE}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("bad exclude pattern in {origin}: {message}")]
    BadPattern { origin: String, message: String },
    #[error("the seed needs {needed} MB but a workspace holds at most {limit} MB; leave build outputs and dependencies out with --exclude or {IGNORE_FILE}", needed = needed / 1_000_000, limit = limit / 1_000_000)]
    TooLarge { needed: u64, limit: u64 },
    #[error("the seed has more than {limit} files and directories, more than a seed image holds; leave some out with --exclude or {IGNORE_FILE}")]
    TooManyEntries { limit: u64 },
    #[error("{} has more holes than a seed image can map; leave it out with --exclude or {IGNORE_FILE}", path.display())]
    TooFragmented { path: PathBuf },
    #[error("the seed needs about {} on the host disk holding {}, which has {} free; free some space, or leave build outputs and dependencies out with --exclude or {IGNORE_FILE}", pyro_util::human_bytes(*needed), path.display(), pyro_util::human_bytes(*free))]
    NoRoom {
        needed: u64,
        free: u64,
        path: PathBuf,
    },
    #[error("writing the image {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Builds the image of directory `root` at `output`, a new file of
/// `max_bytes` (sparse past [`ImageReport::image_bytes`]): the tree under
/// `tree/`, and under `extra/` the files `extras` makes from the manifest
/// once every file is copied. On error the file is removed.
pub fn build_image(
    root: &Path,
    output: &Path,
    options: &ImageOptions,
    extras: impl FnOnce(&[SeedEntry]) -> Vec<ExtraFile>,
) -> Result<ImageReport, ImageError> {
    let limit = options.max_bytes.min(MAX_IMAGE_BYTES);
    // The inodes the groups of `limit` bytes hold, less room for the extras.
    let groups = (limit / (ext4::BLOCKS_PER_GROUP * ext4::BLOCK)).max(1);
    let max_inodes = groups * ext4::BLOCKS_PER_GROUP - EXTRA_INODES;
    let (top, mut tree) = walk::walk(root, options, max_inodes)?;
    let needed = estimate_blocks(&tree) * ext4::BLOCK;
    if needed > limit {
        return Err(ImageError::TooLarge { needed, limit });
    }
    // Before a byte is written, with the host's reserve kept free.
    let parent = output.parent().unwrap_or(Path::new("."));
    if let Some(free) = pyro_util::fsutil::short_of_room(parent, needed) {
        return Err(ImageError::NoRoom {
            needed,
            free,
            path: parent.to_path_buf(),
        });
    }
    let file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(output)
        .map_err(|source| ext4::write_error(output, source))?;
    let blocks = ext4::Blocks::new(file, output, limit / ext4::BLOCK, needed)?;
    let result = write(
        root,
        &mut tree,
        (copy::Copier::new(top), blocks),
        limit,
        extras,
    );
    if result.is_err() {
        let _ = std::fs::remove_file(output);
    }
    result
}

/// Inodes kept for the extra files (a baseline's few dozen).
const EXTRA_INODES: u64 = 4096;

fn write(
    root: &Path,
    tree: &mut walk::Tree,
    (mut copier, mut blocks): (copy::Copier, ext4::Blocks),
    limit: u64,
    extras: impl FnOnce(&[SeedEntry]) -> Vec<ExtraFile>,
) -> Result<ImageReport, ImageError> {
    let mut report = ImageReport {
        dirs: tree.dirs.len() as u64,
        excluded: tree.excluded,
        excluded_bytes: tree.excluded_bytes,
        skipped: tree.skipped_count,
        skipped_names: std::mem::take(&mut tree.skipped),
        changed: std::mem::take(&mut tree.vanished),
        ..ImageReport::default()
    };
    // Contents first, each inode's placement kept for its table entry;
    // then the extra files, made from the manifest.
    let mut placed: Vec<Placed> = Vec::with_capacity(tree.inodes.len() + 1);
    let mut blobs = vec![[0u8; 20]; tree.inodes.len()];
    let mut placer = Placer {
        root,
        copier: &mut copier,
        blocks: &mut blocks,
        report: &mut report,
        blobs: &mut blobs,
    };
    for ino in tree.numbers() {
        placed.push(placer.place(tree, ino)?);
    }
    let manifest = entries(tree, placer.blobs);
    walk::add_extras(tree, extras(&manifest));
    for ino in tree.numbers().skip(placed.len()) {
        placed.push(placer.place(tree, ino)?);
    }
    // Directories, then the extent leaves of what has many runs.
    for (index, ino) in tree.numbers().enumerate() {
        if let Content::Dir {
            entries, parent, ..
        } = &tree.get(ino).content
        {
            let data = ext4::directory(ino, *parent, entries);
            let first = blocks.append(&data)?;
            let mut extents = Vec::new();
            ext4::push_extent(&mut extents, 0, data.len() as u64 / ext4::BLOCK, first);
            placed[index] = Placed::Extents(extents, Vec::new());
        }
    }
    for place in &mut placed {
        if let Placed::Extents(extents, leaves) = place {
            if ext4::leaves_needed(extents.len()) > 4 {
                // Only a directory of over 512 MiB gets here.
                return Err(blocks.too_large(blocks.next()));
            }
            if ext4::leaves_needed(extents.len()) > 0 {
                for leaf in ext4::leaf_blocks(extents) {
                    leaves.push(blocks.append(&leaf)?);
                }
            }
        }
    }
    let last_inode = u64::from(FIRST_INODE) - 1 + tree.inodes.len() as u64;
    let geometry = ext4::Geometry::fit(blocks.next(), last_inode)
        .filter(|g| g.blocks() * ext4::BLOCK <= limit.max(ext4::BLOCKS_PER_GROUP * ext4::BLOCK))
        .ok_or_else(|| blocks.too_large(blocks.next()))?;
    let output = blocks.path().to_path_buf();
    let file = blocks.into_file()?;
    let write_error = |source| ext4::write_error(&output, source);
    let dirs_per_group = write_tables(&file, &geometry, tree, &placed).map_err(write_error)?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as u32)
        .unwrap_or(0);
    let uuid: [u8; 16] = Sha1::digest(format!("{}{now}{}", output.display(), std::process::id()))
        [..16]
        .try_into()
        .expect("16 bytes");
    let length = limit.max(geometry.blocks() * ext4::BLOCK);
    ext4::finish(&file, &geometry, last_inode, &dirs_per_group, uuid, now)
        .and_then(|()| file.set_len(length))
        .and_then(|()| file.sync_all())
        .map_err(write_error)?;
    report.image_bytes = geometry.used * ext4::BLOCK;
    report.entries = manifest;
    Ok(report)
}

/// What placing an inode's content uses.
struct Placer<'a> {
    root: &'a Path,
    copier: &'a mut copy::Copier,
    blocks: &'a mut ext4::Blocks,
    report: &'a mut ImageReport,
    blobs: &'a mut Vec<[u8; 20]>,
}

impl Placer<'_> {
    /// Writes inode `ino`'s content (a directory's comes later).
    fn place(&mut self, tree: &walk::Tree, ino: u32) -> Result<Placed, ImageError> {
        Ok(match &tree.get(ino).content {
            Content::Dir { .. } => Placed::Extents(Vec::new(), Vec::new()),
            Content::File {
                dir,
                name,
                size,
                sparse,
                ..
            } => {
                let source = copy::Source {
                    dir: *dir,
                    dir_path: &tree.dirs[*dir as usize],
                    name,
                    shown: walk::file_path(self.root, tree, *dir, name),
                };
                let copied = self.copier.copy(&source, *size, *sparse, self.blocks)?;
                if copied.changed && self.report.changed.len() < walk::NAMES_KEPT {
                    self.report.changed.push(source.shown.display().to_string());
                }
                self.report.files += 1;
                self.report.bytes += size;
                self.blobs[(ino - FIRST_INODE) as usize] = copied.blob;
                Placed::Extents(copied.extents, Vec::new())
            }
            Content::Symlink { target } => {
                self.report.symlinks += 1;
                self.blobs[(ino - FIRST_INODE) as usize] = blob_of(target);
                match target.len() < ext4::FAST_SYMLINK {
                    true => Placed::FastSymlink,
                    false => Placed::Symlink(self.blocks.append(target)?),
                }
            }
            Content::Data(data) => {
                let mut extents = Vec::new();
                if !data.is_empty() {
                    let first = self.blocks.append(data)?;
                    let len = (data.len() as u64).div_ceil(ext4::BLOCK);
                    ext4::push_extent(&mut extents, 0, len, first);
                }
                Placed::Extents(extents, Vec::new())
            }
        })
    }
}

/// Where an inode's blocks went: a directory's or file's extents (and
/// their leaf blocks), or a symlink's.
enum Placed {
    Extents(Vec<ext4::Extent>, Vec<u64>),
    FastSymlink,
    Symlink(u64),
}

/// Writes every group's inode table; returns the directories per group.
fn write_tables(
    file: &std::fs::File,
    geometry: &ext4::Geometry,
    tree: &walk::Tree,
    placed: &[Placed],
) -> std::io::Result<Vec<u64>> {
    use std::os::unix::fs::FileExt;
    let mut dirs = vec![0u64; geometry.groups as usize];
    let per_group = geometry.inodes_per_group;
    let mut table = vec![0u8; (geometry.table_blocks * ext4::BLOCK) as usize];
    let numbers: Vec<u32> = tree.numbers().collect();
    for group in 0..geometry.groups {
        table.fill(0);
        for (ino, place) in numbers.iter().zip(placed) {
            let index = u64::from(*ino) - 1;
            if index / per_group != group {
                continue;
            }
            let inode = tree.get(*ino);
            let shape = match (place, &inode.content) {
                (Placed::Extents(extents, leaves), Content::Dir { subdirs, .. }) => {
                    dirs[group as usize] += 1;
                    let links = 2 + u64::from(*subdirs);
                    ext4::Shape::Dir {
                        extents,
                        leaves,
                        links: if links > 65000 { 1 } else { links as u16 },
                    }
                }
                (Placed::Extents(extents, leaves), Content::File { size, .. }) => {
                    ext4::Shape::File {
                        size: *size,
                        extents,
                        leaves,
                        links: inode.links,
                    }
                }
                (Placed::Extents(extents, leaves), Content::Data(data)) => ext4::Shape::File {
                    size: data.len() as u64,
                    extents,
                    leaves,
                    links: inode.links,
                },
                (Placed::FastSymlink, Content::Symlink { target }) => {
                    ext4::Shape::FastSymlink { target }
                }
                (Placed::Symlink(block), Content::Symlink { target }) => ext4::Shape::Symlink {
                    len: target.len() as u64,
                    block: *block,
                },
                _ => unreachable!("every inode is placed as what it is"),
            };
            let raw = ext4::inode(&shape, inode.perm, inode.mtime);
            let at = ((index % per_group) as usize) * ext4::INODE_SIZE;
            table[at..at + ext4::INODE_SIZE].copy_from_slice(&raw);
        }
        file.write_at(&table, geometry.inode_table(group) * ext4::BLOCK)?;
    }
    Ok(dirs)
}

/// An upper bound of the blocks the tree needs, metadata included.
fn estimate_blocks(tree: &walk::Tree) -> u64 {
    let mut blocks = ext4::FIRST_DATA_BLOCK;
    for ino in tree.numbers() {
        blocks += match &tree.get(ino).content {
            Content::File {
                size,
                sparse,
                allocated,
                ..
            } => {
                // A sparse file takes at most a block per 512 bytes the
                // host allocated (fewer where its blocks are 4 KiB).
                let data = match *sparse {
                    true => size.div_ceil(ext4::BLOCK).min(*allocated + 1),
                    false => size.div_ceil(ext4::BLOCK),
                };
                let leaves = match *sparse || data > 4 * 32768 {
                    true => ext4::leaves_needed(ext4::MAX_EXTENTS) as u64,
                    false => 0,
                };
                data + leaves
            }
            Content::Symlink { target } => u64::from(target.len() >= ext4::FAST_SYMLINK),
            Content::Data(data) => (data.len() as u64).div_ceil(ext4::BLOCK),
            Content::Dir { entries, .. } => {
                let bytes: usize = entries
                    .iter()
                    .map(|e| (8 + e.0.len()).next_multiple_of(4))
                    .sum();
                (bytes as u64 + 24).div_ceil(ext4::BLOCK - 264) + 1
            }
        };
    }
    let inodes = u64::from(FIRST_INODE) + tree.inodes.len() as u64;
    blocks + inodes.div_ceil(16) + 64 * 2 + 16
}

/// The manifest of the baseline: every file and symlink name, sorted.
fn entries(tree: &walk::Tree, blobs: &[[u8; 20]]) -> Vec<SeedEntry> {
    let mut entries: Vec<SeedEntry> = tree
        .names
        .iter()
        .map(|(path, ino)| {
            let inode = tree.get(*ino);
            let (mode, size) = match &inode.content {
                Content::File { size, .. } => match inode.perm & 0o100 {
                    0 => (0o100644, *size),
                    _ => (0o100755, *size),
                },
                Content::Symlink { target } => (0o120000, target.len() as u64),
                Content::Dir { .. } | Content::Data(_) => {
                    unreachable!("only files and symlinks of the tree are named")
                }
            };
            SeedEntry {
                path: path.clone(),
                mode,
                blob: blobs[(*ino - FIRST_INODE) as usize],
                size,
                mtime: inode.mtime,
            }
        })
        .collect();
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    entries
}

/// The Git blob id of `content`.
fn blob_of(content: &[u8]) -> [u8; 20] {
    let mut hasher = Sha1::new();
    hasher.update(format!("blob {}\0", content.len()));
    hasher.update(content);
    hasher.finalize().into()
}
