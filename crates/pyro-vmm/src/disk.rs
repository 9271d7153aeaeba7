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
    #[error("could not run qemu-img")]
    Io(#[source] std::io::Error),
}

/// Creates `overlay` as a qcow2 layer over `base` (never written through).
pub fn create_overlay(
    base: &Path,
    base_format: DiskFormat,
    overlay: &Path,
) -> Result<(), DiskError> {
    let output = Command::new("qemu-img")
        .args(overlay_args(base, base_format, overlay))
        .output()
        .map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => DiskError::QemuImgMissing,
            _ => DiskError::Io(e),
        })?;
    if output.status.success() {
        Ok(())
    } else {
        Err(DiskError::Create {
            path: overlay.to_path_buf(),
            stderr: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        })
    }
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
mod tests {
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

    #[test]
    fn a_missing_base_is_reported_with_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let overlay = dir.path().join("overlay.qcow2");
        let err =
            create_overlay(&dir.path().join("nope.raw"), DiskFormat::Raw, &overlay).unwrap_err();
        assert!(err.to_string().contains("overlay.qcow2"), "{err}");
    }
}
