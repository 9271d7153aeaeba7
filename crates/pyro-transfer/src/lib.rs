//! File trees across the VM boundary as tar streams.
//!
//! Two directions, two levels of trust:
//!
//! - **Host → guest** ([`pack_dir`], [`pack_file`]): seeding a workspace and
//!   `sync push`. The host tree is trusted; packing streams it in constant
//!   memory, in a deterministic order, keeping directories (empty ones too),
//!   symlinks as symlinks, permission bits and mtimes, `.git` included. The
//!   guest unpacks with its own `tar -x`.
//! - **Guest → host** ([`unpack`]): `export`. The stream comes from the guest
//!   and is untrusted. Whatever names, links, types or sizes it presents,
//!   nothing is written outside the output path, no symlink is followed while
//!   writing, sizes are capped by [`Limits`] counted on the bytes actually
//!   read, and the output appears all at once or not at all.
//!
//! This crate must not: follow a symlink while writing an unpacked member,
//! write anything outside the output path or its one staging sibling, leave a
//! partial output behind, merge into a populated directory unless asked to
//! overwrite it, or hold a whole file in memory. It knows nothing of VMs,
//! protocol frames or workspaces: callers hand it a `Read` or `Write` and
//! paths.
//!
//! The rules [`unpack`] applies to each member are listed at the top of
//! `src/unpack.rs`; the exclude pattern syntax at the top of
//! `src/exclude.rs`.

mod dirfd;
mod exclude;
mod image;
mod names;
mod pack;
mod unpack;

pub use image::{
    build_image, ExtraFile, ImageError, ImageOptions, ImageReport, SeedEntry, IGNORE_FILE,
    MAX_IMAGE_BYTES,
};
pub use pack::{pack_dir, pack_file, PackError, PackOptions, PackReport};
pub use unpack::{
    unpack, Expect, Limits, OutputKind, UnpackError, UnpackOptions, UnpackReport, MAX_WARNINGS,
};
