//! The ext4 on-disk structures of a read-only seed image.
//!
//! The smallest ext4 the guest's kernel mounts and `e2fsck` passes: 4 KiB
//! blocks, 256-byte inodes (nanosecond times), extents, flex_bg and
//! sparse_super2 with no backup superblocks, no journal, no checksums, no
//! htree (linear directories), no lost+found. Everything is laid out in one
//! pass, front to back:
//!
//! ```text
//! block 0        boot sector and superblock (written last)
//! block 1        group descriptors (written last)
//! 2 ..           file contents, long symlinks, directories, extent leaves
//! then           block bitmaps, inode bitmaps, inode tables of every group
//! ```
//!
//! Every block below the end of the inode tables is in use and owned by
//! something; blocks past it (up to whole groups) are free.

use std::fs::File;
use std::io::{self, BufWriter, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::ImageError;

pub(super) const BLOCK: u64 = 4096;
pub(super) const BLOCKS_PER_GROUP: u64 = 32768;
pub(super) const INODE_SIZE: usize = 256;
/// Blocks before the first data block: superblock, group descriptors.
pub(super) const FIRST_DATA_BLOCK: u64 = 2;
/// Groups one descriptor block holds (32-byte descriptors): the image is
/// at most this many groups (16 GiB).
pub(super) const MAX_GROUPS: u64 = BLOCK / 32;
/// Longest run one extent maps.
const EXTENT_MAX_LEN: u64 = 32768;
/// Extents a leaf block holds.
const LEAF_EXTENTS: usize = (BLOCK as usize - 12) / 12;
/// Extents one file may have: four leaves under the inode.
pub(super) const MAX_EXTENTS: usize = 4 * LEAF_EXTENTS;
/// Symlink targets shorter than this live in the inode.
pub(super) const FAST_SYMLINK: usize = 60;

const S_IFREG: u16 = 0o100000;
const S_IFDIR: u16 = 0o040000;
const S_IFLNK: u16 = 0o120000;
const EXTENTS_FL: u32 = 0x80000;

/// A run of a file's blocks: logical block, length, physical block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Extent {
    pub(super) logical: u64,
    pub(super) len: u64,
    pub(super) physical: u64,
}

/// Adds `len` blocks at `logical` → `physical` to `extents`, merging with
/// the last run where they continue it.
pub(super) fn push_extent(
    extents: &mut Vec<Extent>,
    mut logical: u64,
    mut len: u64,
    mut physical: u64,
) {
    while len > 0 {
        if let Some(last) = extents.last_mut() {
            let continues =
                last.logical + last.len == logical && last.physical + last.len == physical;
            if continues && last.len < EXTENT_MAX_LEN {
                let taken = (EXTENT_MAX_LEN - last.len).min(len);
                last.len += taken;
                (logical, physical, len) = (logical + taken, physical + taken, len - taken);
                continue;
            }
        }
        let taken = EXTENT_MAX_LEN.min(len);
        extents.push(Extent {
            logical,
            len: taken,
            physical,
        });
        (logical, physical, len) = (logical + taken, physical + taken, len - taken);
    }
}

/// The blocks the image is written through, front to back.
pub(super) struct Blocks {
    out: BufWriter<File>,
    path: PathBuf,
    /// Blocks written so far, counting the two reserved at the front.
    next: u64,
    /// Blocks the image may use in all.
    limit: u64,
    /// Bytes the walk estimated, for the message when the limit is hit.
    estimate: u64,
}

impl Blocks {
    pub(super) fn new(
        mut file: File,
        path: &Path,
        limit: u64,
        estimate: u64,
    ) -> Result<Blocks, ImageError> {
        file.seek(SeekFrom::Start(FIRST_DATA_BLOCK * BLOCK))
            .map_err(|source| write_error(path, source))?;
        Ok(Blocks {
            out: BufWriter::with_capacity(1 << 20, file),
            path: path.to_path_buf(),
            next: FIRST_DATA_BLOCK,
            limit,
            estimate,
        })
    }

    /// The image file's path.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// The next block to be written.
    pub(super) fn next(&self) -> u64 {
        self.next
    }

    /// The bytes-needed/limit error of this image, at `blocks` blocks.
    pub(super) fn too_large(&self, blocks: u64) -> ImageError {
        ImageError::TooLarge {
            needed: self.estimate.max(blocks * BLOCK),
            limit: self.limit * BLOCK,
        }
    }

    /// Writes `data` (padded with zeros to whole blocks) as the next blocks
    /// and returns the first one.
    pub(super) fn append(&mut self, data: &[u8]) -> Result<u64, ImageError> {
        let first = self.next;
        let blocks = (data.len() as u64).div_ceil(BLOCK);
        if first + blocks > self.limit {
            return Err(self.too_large(first + blocks));
        }
        let pad = (blocks * BLOCK) as usize - data.len();
        self.out
            .write_all(data)
            .and_then(|()| self.out.write_all(&ZEROS[..pad]))
            .map_err(|source| write_error(&self.path, source))?;
        self.next += blocks;
        Ok(first)
    }

    pub(super) fn into_file(self) -> Result<File, ImageError> {
        let path = self.path;
        self.out
            .into_inner()
            .map_err(|error| write_error(&path, error.into_error()))
    }
}

pub(super) fn write_error(path: &Path, source: io::Error) -> ImageError {
    ImageError::Write {
        path: path.to_path_buf(),
        source,
    }
}

static ZEROS: [u8; BLOCK as usize] = [0; BLOCK as usize];

/// What one inode is, for its on-disk form.
pub(super) enum Shape<'a> {
    /// A directory (its size is its blocks) or a regular file of `size`
    /// bytes: data in `extents`, with `leaves` holding them when more than
    /// four.
    Dir {
        extents: &'a [Extent],
        leaves: &'a [u64],
        links: u16,
    },
    File {
        size: u64,
        extents: &'a [Extent],
        leaves: &'a [u64],
        links: u16,
    },
    FastSymlink {
        target: &'a [u8],
    },
    Symlink {
        len: u64,
        block: u64,
    },
}

/// Block numbers of an inode's extent leaves, written by [`leaf_blocks`].
pub(super) fn leaves_needed(extents: usize) -> usize {
    match extents {
        0..=4 => 0,
        n => n.div_ceil(LEAF_EXTENTS),
    }
}

/// The extent leaf blocks of a file with more than four extents.
pub(super) fn leaf_blocks(extents: &[Extent]) -> Vec<Vec<u8>> {
    extents
        .chunks(LEAF_EXTENTS)
        .map(|chunk| {
            let mut block = vec![0u8; BLOCK as usize];
            extent_node(&mut block, chunk.len(), LEAF_EXTENTS, 0);
            for (i, extent) in chunk.iter().enumerate() {
                extent_entry(&mut block[12 + 12 * i..], extent);
            }
            block
        })
        .collect()
}

fn extent_node(out: &mut [u8], entries: usize, max: usize, depth: u16) {
    put16(out, 0, 0xF30A);
    put16(out, 2, entries as u16);
    put16(out, 4, max as u16);
    put16(out, 6, depth);
}

fn extent_entry(out: &mut [u8], extent: &Extent) {
    put32(out, 0, extent.logical as u32);
    put16(out, 4, extent.len as u16);
    put16(out, 6, (extent.physical >> 32) as u16);
    put32(out, 8, extent.physical as u32);
}

/// The 256 bytes of one inode: owner root, `perm` permission bits, all three
/// times `mtime`.
pub(super) fn inode(shape: &Shape, perm: u16, mtime: (i64, u32)) -> [u8; INODE_SIZE] {
    let mut raw = [0u8; INODE_SIZE];
    let data = |extents: &[Extent]| extents.iter().map(|e| e.len).sum::<u64>();
    let (kind, size, blocks, links) = match shape {
        Shape::Dir {
            extents,
            leaves,
            links,
        } => {
            let count = data(extents);
            (S_IFDIR, count * BLOCK, count + leaves.len() as u64, *links)
        }
        Shape::File {
            size,
            extents,
            leaves,
            links,
        } => (S_IFREG, *size, data(extents) + leaves.len() as u64, *links),
        Shape::FastSymlink { target } => (S_IFLNK, target.len() as u64, 0, 1),
        Shape::Symlink { len, .. } => (S_IFLNK, *len, 1, 1),
    };
    put16(&mut raw, 0, kind | (perm & 0o7777));
    put32(&mut raw, 4, size as u32);
    put32(&mut raw, 108, (size >> 32) as u32);
    let seconds = mtime.0 as u32;
    for offset in [8, 12, 16] {
        put32(&mut raw, offset, seconds);
    }
    put16(&mut raw, 26, links);
    let sectors = blocks * (BLOCK / 512);
    put32(&mut raw, 28, sectors as u32);
    put16(&mut raw, 116, (sectors >> 32) as u16);
    // i_extra_isize, then the times' nanoseconds and epoch bits.
    put16(&mut raw, 128, 32);
    let epoch = ((mtime.0 - i64::from(mtime.0 as i32)) >> 32) as u32 & 3;
    let extra = (mtime.1 << 2) | epoch;
    for offset in [132, 136, 140] {
        put32(&mut raw, offset, extra);
    }
    let symlink_block;
    let (extents, leaves): (&[Extent], &[u64]) = match shape {
        Shape::FastSymlink { target } => {
            raw[40..40 + target.len()].copy_from_slice(target);
            return raw;
        }
        Shape::Dir {
            extents, leaves, ..
        }
        | Shape::File {
            extents, leaves, ..
        } => (extents, leaves),
        Shape::Symlink { block, .. } => {
            symlink_block = [Extent {
                logical: 0,
                len: 1,
                physical: *block,
            }];
            (&symlink_block, &[])
        }
    };
    put32(&mut raw, 32, EXTENTS_FL);
    let i_block = &mut raw[40..100];
    if leaves.is_empty() {
        extents_in_inode(i_block, extents);
        return raw;
    }
    extent_node(i_block, leaves.len(), 4, 1);
    for (i, (chunk, leaf)) in extents.chunks(LEAF_EXTENTS).zip(leaves).enumerate() {
        let entry = &mut i_block[12 + 12 * i..];
        put32(entry, 0, chunk[0].logical as u32);
        put32(entry, 4, *leaf as u32);
        put16(entry, 8, (*leaf >> 32) as u16);
    }
    raw
}

fn extents_in_inode(i_block: &mut [u8], extents: &[Extent]) {
    extent_node(i_block, extents.len(), 4, 0);
    for (i, extent) in extents.iter().enumerate() {
        extent_entry(&mut i_block[12 + 12 * i..], extent);
    }
}

/// A directory's blocks: `.`, `..`, then `entries` (name, inode, type).
pub(super) fn directory(own: u32, parent: u32, entries: &[(Vec<u8>, u32, u8)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(BLOCK as usize);
    // Where the block's last entry starts, so its length can reach the end.
    let mut last = 0;
    let all = [(b".".to_vec(), own, 2u8), (b"..".to_vec(), parent, 2u8)];
    for (name, ino, kind) in all.iter().chain(entries) {
        let len = (8 + name.len()).next_multiple_of(4);
        let used = out.len() % BLOCK as usize;
        if used != 0 && used + len > BLOCK as usize {
            stretch(&mut out, last);
            out.resize(out.len().next_multiple_of(BLOCK as usize), 0);
        }
        last = out.len();
        let mut entry = vec![0u8; len];
        put32(&mut entry, 0, *ino);
        put16(&mut entry, 4, len as u16);
        entry[6] = name.len() as u8;
        entry[7] = *kind;
        entry[8..8 + name.len()].copy_from_slice(name);
        out.extend_from_slice(&entry);
    }
    stretch(&mut out, last);
    out.resize(out.len().next_multiple_of(BLOCK as usize), 0);
    out
}

/// Makes the entry at `at` run to the end of its block.
fn stretch(out: &mut [u8], at: usize) {
    let end = (at / BLOCK as usize + 1) * BLOCK as usize;
    put16(&mut out[at..], 4, (end - at) as u16);
}

/// The sizes of the finished image.
#[derive(Debug, Clone, Copy)]
pub(super) struct Geometry {
    pub(super) groups: u64,
    pub(super) inodes_per_group: u64,
    /// Blocks of one group's inode table.
    pub(super) table_blocks: u64,
    /// First block of the bitmaps and tables (the end of the data).
    pub(super) metadata: u64,
    /// The end of the used blocks.
    pub(super) used: u64,
}

impl Geometry {
    /// The fewest whole groups that hold `data_end` blocks of data and
    /// `inodes` inodes (the highest inode number), with their metadata.
    pub(super) fn fit(data_end: u64, inodes: u64) -> Option<Geometry> {
        (1..=MAX_GROUPS).find_map(|groups| {
            let per_group = inodes.div_ceil(groups).next_multiple_of(16);
            if per_group > BLOCKS_PER_GROUP {
                return None;
            }
            let table_blocks = per_group * INODE_SIZE as u64 / BLOCK;
            let used = data_end + groups * (2 + table_blocks);
            (used <= groups * BLOCKS_PER_GROUP).then_some(Geometry {
                groups,
                inodes_per_group: per_group,
                table_blocks,
                metadata: data_end,
                used,
            })
        })
    }

    pub(super) fn blocks(&self) -> u64 {
        self.groups * BLOCKS_PER_GROUP
    }

    fn block_bitmap(&self, group: u64) -> u64 {
        self.metadata + group
    }

    fn inode_bitmap(&self, group: u64) -> u64 {
        self.metadata + self.groups + group
    }

    pub(super) fn inode_table(&self, group: u64) -> u64 {
        self.metadata + 2 * self.groups + group * self.table_blocks
    }
}

/// Writes the bitmaps, the superblock and the group descriptors, once the
/// inode tables are in place. `last_inode` is the highest inode in use
/// (every one from 1 up to it is); `dirs_per_group` counts directories.
pub(super) fn finish(
    file: &File,
    geometry: &Geometry,
    last_inode: u64,
    dirs_per_group: &[u64],
    uuid: [u8; 16],
    now: u32,
) -> io::Result<()> {
    let mut descriptors = vec![0u8; BLOCK as usize];
    let (mut free_blocks, mut free_inodes) = (0, 0);
    for group in 0..geometry.groups {
        let first = group * BLOCKS_PER_GROUP;
        let used_here = geometry.used.clamp(first, first + BLOCKS_PER_GROUP) - first;
        let first_inode = group * geometry.inodes_per_group + 1;
        let inodes_here = (last_inode + 1).saturating_sub(first_inode);
        let inodes_here = inodes_here.min(geometry.inodes_per_group);
        let mut bitmap = vec![0u8; BLOCK as usize];
        set_bits(&mut bitmap, 0, used_here);
        file.write_at(&bitmap, geometry.block_bitmap(group) * BLOCK)?;
        let mut bitmap = vec![0u8; BLOCK as usize];
        set_bits(&mut bitmap, 0, inodes_here);
        // Bits past the group's inodes are padding, set.
        set_bits(&mut bitmap, geometry.inodes_per_group, BLOCK * 8);
        file.write_at(&bitmap, geometry.inode_bitmap(group) * BLOCK)?;
        let free_b = BLOCKS_PER_GROUP - used_here;
        let free_i = geometry.inodes_per_group - inodes_here;
        let desc = &mut descriptors[group as usize * 32..];
        put32(desc, 0, geometry.block_bitmap(group) as u32);
        put32(desc, 4, geometry.inode_bitmap(group) as u32);
        put32(desc, 8, geometry.inode_table(group) as u32);
        put16(desc, 12, free_b as u16);
        put16(desc, 14, free_i as u16);
        put16(desc, 16, dirs_per_group[group as usize] as u16);
        free_blocks += free_b;
        free_inodes += free_i;
    }
    file.write_at(&descriptors, BLOCK)?;
    let mut sb = vec![0u8; 1024];
    put32(
        &mut sb,
        0,
        (geometry.groups * geometry.inodes_per_group) as u32,
    );
    put32(&mut sb, 4, geometry.blocks() as u32);
    put32(&mut sb, 12, free_blocks as u32);
    put32(&mut sb, 16, free_inodes as u32);
    put32(&mut sb, 20, 0); // first data block
    put32(&mut sb, 24, 2); // 1024 << 2 = 4096
    put32(&mut sb, 28, 2);
    put32(&mut sb, 32, BLOCKS_PER_GROUP as u32);
    put32(&mut sb, 36, BLOCKS_PER_GROUP as u32);
    put32(&mut sb, 40, geometry.inodes_per_group as u32);
    put32(&mut sb, 44, now);
    put32(&mut sb, 48, now);
    put16(&mut sb, 54, 0xFFFF); // no mount-count checks
    put16(&mut sb, 56, 0xEF53);
    put16(&mut sb, 58, 1); // clean
    put16(&mut sb, 60, 1); // errors: continue
    put32(&mut sb, 64, now);
    put32(&mut sb, 76, 1); // dynamic inode sizes
    put32(&mut sb, 84, super::walk::FIRST_INODE);
    put16(&mut sb, 88, INODE_SIZE as u16);
    put32(&mut sb, 92, 0x200); // compat: sparse_super2
    put32(&mut sb, 96, 0x2 | 0x40 | 0x200); // incompat: filetype, extents, flex_bg
    put32(&mut sb, 100, 0x2 | 0x20 | 0x40); // ro_compat: large_file, dir_nlink, extra_isize
    sb[104..120].copy_from_slice(&uuid);
    sb[120..129].copy_from_slice(b"pyro-seed");
    put32(&mut sb, 264, now); // mkfs time
    put16(&mut sb, 348, 32); // min extra isize
    put16(&mut sb, 350, 32); // want extra isize
    sb[372] = 4; // 16 groups per flex group
                 // s_backup_bgs stay 0: no backup superblocks.
    file.write_at(&sb, 1024)?;
    Ok(())
}

fn set_bits(bitmap: &mut [u8], from: u64, to: u64) {
    for bit in from..to {
        bitmap[(bit / 8) as usize] |= 1 << (bit % 8);
    }
}

fn put16(out: &mut [u8], at: usize, value: u16) {
    out[at..at + 2].copy_from_slice(&value.to_le_bytes());
}

fn put32(out: &mut [u8], at: usize, value: u32) {
    out[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extents_merge_and_split_at_their_limit() {
        let mut extents = Vec::new();
        push_extent(&mut extents, 0, 10, 100);
        push_extent(&mut extents, 10, 5, 110);
        assert_eq!(
            extents,
            [Extent {
                logical: 0,
                len: 15,
                physical: 100
            }]
        );
        push_extent(&mut extents, 20, 1, 115);
        assert_eq!(extents.len(), 2);
        let mut long = Vec::new();
        push_extent(&mut long, 0, EXTENT_MAX_LEN + 1, 2);
        assert_eq!(long.len(), 2);
        assert_eq!(long[1].logical, EXTENT_MAX_LEN);
    }

    #[test]
    fn directory_entries_never_cross_a_block() {
        let entries: Vec<_> = (0..400)
            .map(|i| {
                (
                    format!("name-{i:04}-{}", "x".repeat(20)).into_bytes(),
                    20 + i,
                    1,
                )
            })
            .collect();
        let blocks = directory(12, 2, &entries);
        assert_eq!(blocks.len() % BLOCK as usize, 0);
        let mut seen = 0;
        for block in blocks.chunks(BLOCK as usize) {
            let mut at = 0;
            while at < BLOCK as usize {
                let len = u16::from_le_bytes([block[at + 4], block[at + 5]]) as usize;
                assert!(len >= 12 && at + len <= BLOCK as usize);
                at += len;
                seen += 1;
            }
            assert_eq!(at, BLOCK as usize);
        }
        assert_eq!(seen, 402);
    }

    #[test]
    fn geometry_grows_groups_for_data_and_for_inodes() {
        let small = Geometry::fit(100, 50).unwrap();
        assert_eq!(small.groups, 1);
        let big = Geometry::fit(40_000, 50).unwrap();
        assert_eq!(big.groups, 2);
        let many_inodes = Geometry::fit(100, 40_000).unwrap();
        assert_eq!(many_inodes.groups, 2);
        assert!(Geometry::fit(MAX_GROUPS * BLOCKS_PER_GROUP, 10).is_none());
    }
}
