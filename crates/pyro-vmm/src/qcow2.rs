//! The backing chain of a qcow2 image, read from the images' headers
//! (no `qemu-img`): the files QEMU opens below a root disk, which its
//! jail must hold. A header names its backing file relative to the
//! image's own directory, or absolutely.

use std::io::Read as _;
use std::path::{Path, PathBuf};

/// The qcow2 magic, `QFI\xfb`.
const MAGIC: [u8; 4] = *b"QFI\xfb";
/// QEMU refuses longer backing names.
const MAX_NAME: u32 = 1023;
/// More layers than any workspace makes; a loop ends here.
const MAX_DEPTH: usize = 512;

/// The files below `image` in its backing chain, nearest first, each as
/// QEMU resolves it (relative names against the directory of the image
/// that names them). A file that is not qcow2 (a raw base) ends the chain.
/// `allowed` judges each name before it is opened: a header may have been
/// written by a QEMU that broke out, and opening a FIFO or a device has
/// effects of its own.
pub(crate) fn backing_files(
    image: &Path,
    allowed: impl Fn(&Path) -> std::io::Result<()>,
) -> std::io::Result<Vec<PathBuf>> {
    let mut chain = Vec::new();
    let mut current = image.to_path_buf();
    while let Some(name) = backing_name(&current)? {
        let dir = current.parent().unwrap_or(Path::new("/"));
        if name.starts_with("json:") || name.contains("://") {
            return Err(invalid(&current, "its backing file is not a file name"));
        }
        let next = dir.join(&name);
        allowed(&next)?;
        if chain.len() >= MAX_DEPTH {
            return Err(invalid(
                image,
                "its backing chain is deeper than 512 images",
            ));
        }
        chain.push(next.clone());
        current = next;
    }
    Ok(chain)
}

/// The backing file name in `image`'s header, if it is qcow2 and has one.
fn backing_name(image: &Path) -> std::io::Result<Option<String>> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(image)
        .map_err(|e| std::io::Error::new(e.kind(), format!("{}: {e}", image.display())))?;
    if !file.metadata()?.is_file() {
        return Err(invalid(image, "it is not a regular file"));
    }
    let mut header = [0u8; 20];
    if file.read_exact(&mut header).is_err() || header[..4] != MAGIC {
        return Ok(None);
    }
    let offset = u64::from_be_bytes(header[8..16].try_into().expect("8 bytes"));
    let size = u32::from_be_bytes(header[16..20].try_into().expect("4 bytes"));
    if offset == 0 || size == 0 {
        return Ok(None);
    }
    if size > MAX_NAME {
        return Err(invalid(image, "its backing file name is too long"));
    }
    use std::os::unix::fs::FileExt as _;
    let mut name = vec![0u8; size as usize];
    file.read_exact_at(&mut name, offset)
        .map_err(|_| invalid(image, "its backing file name lies past its end"))?;
    String::from_utf8(name)
        .map(Some)
        .map_err(|_| invalid(image, "its backing file name is not UTF-8"))
}

fn invalid(image: &Path, why: &str) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{}: {why}", image.display()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::disk::tests::three_layers;

    #[test]
    fn reads_the_chain_qemu_img_made() {
        let dir = tempfile::tempdir().unwrap();
        let [base, _, top] = three_layers(dir.path());
        let chain = backing_files(&top, |_| Ok(())).unwrap();
        assert_eq!(chain.len(), 2, "{chain:?}");
        assert_eq!(chain[0], dir.path().join("layers/../disk.qcow2"));
        assert_eq!(chain[1], base);
    }

    #[test]
    fn a_file_that_is_not_qcow2_has_no_chain() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw");
        std::fs::write(&raw, b"QFI").unwrap();
        assert!(backing_files(&raw, |_| Ok(())).unwrap().is_empty());
    }

    #[test]
    fn a_loop_or_a_bad_name_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let looped = dir.path().join("loop.qcow2");
        let mut header = MAGIC.to_vec();
        header.extend(3u32.to_be_bytes());
        header.extend(64u64.to_be_bytes());
        header.extend(10u32.to_be_bytes());
        header.resize(64, 0);
        header.extend(b"loop.qcow2");
        std::fs::write(&looped, &header).unwrap();
        let error = backing_files(&looped, |_| Ok(())).unwrap_err();
        assert!(error.to_string().contains("deeper"), "{error}");
        header[16..20].copy_from_slice(&5000u32.to_be_bytes());
        std::fs::write(&looped, &header).unwrap();
        assert!(backing_files(&looped, |_| Ok(())).is_err());
    }
}
