//! Copy-on-write disk layers with `qemu-img`.
//!
//! A workspace's disk is a qcow2 overlay whose backing file is the
//! environment's read-only base image: creating one is O(1) in the image
//! size (a few milliseconds), and the base is shared by every workspace.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::DiskFormat;

/// Why a disk layer could not be made.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    #[error("qemu-img not found; install it with: sudo apt-get install qemu-utils")]
    QemuImgMissing,
    #[error("qemu-img could not create the overlay {path}: {stderr}")]
    Create { path: PathBuf, stderr: String },
    #[error("qemu-img failed on {path}: {stderr}")]
    Image { path: PathBuf, stderr: String },
    #[error("could not read the disk layer {path}; if it belongs to a workspace, reset it to a snapshot or delete it")]
    Header {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not run qemu-img")]
    Io(#[source] std::io::Error),
}

/// Creates `overlay` as a qcow2 layer over `base` (never written through).
/// qemu-img does not open `base` (a workspace's layer may be `base`, and
/// its header may name anything): the size comes from its header (qcow2)
/// or its length (raw).
pub fn create_overlay(
    base: &Path,
    base_format: DiskFormat,
    overlay: &Path,
) -> Result<(), DiskError> {
    let size = match base_format {
        DiskFormat::Qcow2 => virtual_size(base),
        DiskFormat::Raw => std::fs::metadata(base).map(|meta| meta.len()),
    }
    .map_err(|source| DiskError::Header {
        path: base.to_path_buf(),
        source,
    })?;
    let mut args = overlay_args(base, base_format, overlay);
    args.insert(1, "-u".into());
    args.push(size.to_string().into());
    run_create(args, overlay)
}

fn run_create(args: Vec<OsString>, overlay: &Path) -> Result<(), DiskError> {
    let output = run_qemu_img(args)?;
    if output.status.success() {
        Ok(())
    } else {
        Err(DiskError::Create {
            path: overlay.to_path_buf(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
}

/// Creates `overlay` as a qcow2 layer over the qcow2 layer `below`,
/// naming `below` relative to the overlay's directory: a chain of layers
/// in one directory stays whole when the directory's files are linked
/// elsewhere (a workspace forked from another). qemu-img never opens
/// `below` (it may be in use by a VM, and its header may name anything):
/// the layer's size is `size` (the disk's virtual size, bytes), or the
/// one `below`'s header gives.
pub fn create_layer(below: &Path, overlay: &Path, size: Option<u64>) -> Result<(), DiskError> {
    let size = match size {
        Some(size) => size,
        None => virtual_size(below).map_err(|source| DiskError::Header {
            path: below.to_path_buf(),
            source,
        })?,
    };
    let from = overlay.parent().unwrap_or(Path::new("/"));
    let backing = pyro_util::fsutil::relative_path(from, below);
    let mut args = overlay_args(&backing, DiskFormat::Qcow2, overlay);
    args.insert(1, "-u".into());
    args.push(size.to_string().into());
    run_create(args, overlay)
}

pub use crate::qcow2::{backing_chain, virtual_size, ChainImage};

/// Makes the qcow2 layer `image` name the qcow2 layer `below` (relative
/// to itself) as its backing file, reading neither: their content must
/// already agree (a copy moved beside a copy of its backing file).
pub fn rebase(image: &Path, below: &Path) -> Result<(), DiskError> {
    let from = image.parent().unwrap_or(Path::new("/"));
    let backing = pyro_util::fsutil::relative_path(from, below);
    let mut args: Vec<OsString> = ["rebase", "-u", "-f", "qcow2", "-F", "qcow2", "-b"]
        .map(Into::into)
        .to_vec();
    args.extend([backing.into(), "--".into(), image.into()]);
    let output = run_qemu_img(args)?;
    match output.status.success() {
        true => Ok(()),
        false => Err(DiskError::Image {
            path: image.to_path_buf(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        }),
    }
}

fn run_qemu_img(args: Vec<OsString>) -> Result<std::process::Output, DiskError> {
    Command::new("qemu-img")
        .args(args)
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DiskError::QemuImgMissing,
            _ => DiskError::Io(e),
        })
}

/// `qemu-img create` arguments; the overlay comes after `--`, so no path
/// is read as an option (the base is the value of `-b`).
fn overlay_args(base: &Path, base_format: DiskFormat, overlay: &Path) -> Vec<OsString> {
    let mut args: Vec<OsString> = [
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        base_format.as_str(),
        "-b",
    ]
    .map(OsString::from)
    .to_vec();
    args.extend([base.into(), "--".into(), overlay.into()]);
    args
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn paths_that_look_like_options_stay_operands() {
        let args = overlay_args(Path::new("-base"), DiskFormat::Raw, Path::new("-top"));
        let args: Vec<_> = args.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(args[args.len() - 4..], ["-b", "-base", "--", "-top"]);
    }

    #[test]
    fn creates_a_small_overlay_over_a_large_base() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.raw");
        let file = std::fs::File::create(&base).unwrap();
        file.set_len(1 << 30).unwrap();
        let overlay = dir.path().join("overlay.qcow2");
        create_overlay(&base, DiskFormat::Raw, &overlay).unwrap();
        assert!(std::fs::metadata(&overlay).unwrap().len() < 1 << 20);
    }

    /// A raw 1 MiB `base.raw`, `disk.qcow2` over it, and
    /// `layers/top.qcow2` over that, in `dir`; the paths of the three.
    pub(crate) fn three_layers(dir: &Path) -> [PathBuf; 3] {
        let base = dir.join("base.raw");
        std::fs::File::create(&base)
            .unwrap()
            .set_len(1 << 20)
            .unwrap();
        let bottom = dir.join("disk.qcow2");
        create_overlay(&base, DiskFormat::Raw, &bottom).unwrap();
        std::fs::create_dir(dir.join("layers")).unwrap();
        let top = dir.join("layers/top.qcow2");
        create_layer(&bottom, &top, None).unwrap();
        [base, bottom, top]
    }

    #[test]
    fn a_layer_names_its_backing_relative_to_itself_and_survives_a_move() {
        let dir = tempfile::tempdir().unwrap();
        let [_, _, top] = three_layers(dir.path());
        let unopened = dir.path().join("layers/unopened.qcow2");
        create_layer(&top, &unopened, Some(1 << 20)).unwrap();
        // Linked into another directory, the chain resolves there.
        let other = tempfile::tempdir().unwrap();
        std::fs::create_dir(other.path().join("layers")).unwrap();
        for file in ["disk.qcow2", "layers/top.qcow2", "layers/unopened.qcow2"] {
            std::fs::hard_link(dir.path().join(file), other.path().join(file)).unwrap();
        }
        let chain =
            backing_chain(&other.path().join("layers/unopened.qcow2"), |_| Ok(true)).unwrap();
        assert_eq!(chain.len(), 4, "{chain:?}");
        assert_eq!(chain[0].backing.as_deref(), Some("top.qcow2"));
        assert_eq!(chain[1].backing.as_deref(), Some("../disk.qcow2"));
        let resolved = std::fs::canonicalize(&chain[2].filename).unwrap();
        assert_eq!(
            resolved,
            std::fs::canonicalize(other.path().join("disk.qcow2")).unwrap()
        );
    }

    #[test]
    fn a_missing_base_is_reported_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let overlay = dir.path().join("overlay.qcow2");
        let err =
            create_overlay(&dir.path().join("nope.raw"), DiskFormat::Raw, &overlay).unwrap_err();
        assert!(err.to_string().contains("nope.raw"), "{err}");
    }
}
