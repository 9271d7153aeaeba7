//! The backing chain and size of a qcow2 image, read from the images'
//! headers (never `qemu-img`, which would open what a header names): the
//! files QEMU opens below a root disk, which its jail must hold, and the
//! layers a workspace keeps. A header names its backing file relative to
//! the image's own directory, or absolutely. A header may have been
//! written by a QEMU that broke out of its device model: every name is
//! judged before it is opened.

use std::io::Read as _;
use std::path::{Path, PathBuf};

/// The qcow2 magic, `QFI\xfb`.
const MAGIC: [u8; 4] = *b"QFI\xfb";
/// QEMU refuses longer backing names.
const MAX_NAME: u32 = 1023;
/// Where a version 3 header keeps its incompatible feature bits, and the
/// one saying the image's data lives in an external file.
const INCOMPATIBLE_FEATURES: u64 = 72;
const EXTERNAL_DATA_FILE: u64 = 1 << 2;
/// More layers than any workspace makes; a loop ends here.
const MAX_DEPTH: usize = 512;

/// One image of a backing chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainImage {
    /// The image's file, as QEMU resolves it (relative names against the
    /// directory of the image that names them; not made canonical).
    pub filename: PathBuf,
    /// Its backing file's name as its header stores it (maybe relative).
    pub backing: Option<String>,
}

/// The images of `image`'s backing chain, itself first. A file that is
/// not qcow2 (a raw base) ends it. Each name below is judged before it is
/// opened: it must name a regular file (a FIFO or a device has effects of
/// its own when opened), never a protocol (`json:`, `nbd:`…); then
/// `follow` sees its canonical path and says whether the chain goes on
/// through it (`Ok(false)` ends the chain above it; an error refuses the
/// whole chain).
pub fn backing_chain(
    image: &Path,
    follow: impl Fn(&Path) -> std::io::Result<bool>,
) -> std::io::Result<Vec<ChainImage>> {
    let mut chain = Vec::new();
    let mut current = image.to_path_buf();
    // Each is opened by its canonical path, a name with no link in it.
    let mut real = canonical(image)?;
    loop {
        let backing = backing_name(&real)?;
        chain.push(ChainImage {
            filename: current.clone(),
            backing: backing.clone(),
        });
        let Some(name) = backing else {
            return Ok(chain);
        };
        if is_protocol(&name) {
            return Err(invalid(&current, "its backing file is not a file name"));
        }
        let next = current.parent().unwrap_or(Path::new("/")).join(&name);
        real = canonical(&next)?;
        if !std::fs::symlink_metadata(&real)?.is_file() {
            return Err(invalid(&next, "it is not a regular file"));
        }
        if !follow(&real)? {
            return Ok(chain);
        }
        if chain.len() > MAX_DEPTH {
            return Err(invalid(
                image,
                "its backing chain is deeper than 512 images",
            ));
        }
        current = next;
    }
}

/// Whether QEMU would read `name` as a protocol, not a file: `json:…`, or
/// a colon before the first slash (`nbd:host:port`, `fat:rw:dir`).
fn is_protocol(name: &str) -> bool {
    let head = name.split('/').next().unwrap_or_default();
    name.starts_with("json:") || head.contains(':')
}

/// The virtual size of the qcow2 image `image` (the disk its guest sees),
/// bytes.
pub fn virtual_size(image: &Path) -> std::io::Result<u64> {
    let mut file = open_regular(&canonical(image)?)?;
    let mut header = [0u8; 32];
    if file.read_exact(&mut header).is_err() || header[..4] != MAGIC {
        return Err(invalid(image, "it is not a qcow2 image"));
    }
    Ok(u64::from_be_bytes(
        header[24..32].try_into().expect("8 bytes"),
    ))
}

fn canonical(path: &Path) -> std::io::Result<PathBuf> {
    std::fs::canonicalize(path).map_err(pyro_util::fsutil::naming(path))
}

/// Opens `image` for reading, refusing anything but a regular file; the
/// last component is not followed, and a FIFO does not block.
fn open_regular(image: &Path) -> std::io::Result<std::fs::File> {
    let file = pyro_util::fsutil::open_unfollowed(image)?;
    match file.metadata()?.is_file() {
        true => Ok(file),
        false => Err(invalid(image, "it is not a regular file")),
    }
}

/// The backing file name in `image`'s header, if it is qcow2 and has one.
/// An image whose data lives in another file (a version 3 header's
/// external data file) is refused: that file is named elsewhere in it.
fn backing_name(image: &Path) -> std::io::Result<Option<String>> {
    let mut file = open_regular(image)?;
    let mut header = [0u8; 20];
    if file.read_exact(&mut header).is_err() || header[..4] != MAGIC {
        return Ok(None);
    }
    let version = u32::from_be_bytes(header[4..8].try_into().expect("4 bytes"));
    if version >= 3 {
        use std::os::unix::fs::FileExt as _;
        let mut features = [0u8; 8];
        file.read_exact_at(&mut features, INCOMPATIBLE_FEATURES)
            .map_err(|_| invalid(image, "its header is cut short"))?;
        if u64::from_be_bytes(features) & EXTERNAL_DATA_FILE != 0 {
            return Err(invalid(image, "its data lives in another file"));
        }
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

    fn every(_: &Path) -> std::io::Result<bool> {
        Ok(true)
    }

    #[test]
    fn reads_the_chain_qemu_img_made() {
        let dir = tempfile::tempdir().unwrap();
        let [base, _, top] = three_layers(dir.path());
        let chain = backing_chain(&top, every).unwrap();
        let files: Vec<_> = chain.iter().map(|image| image.filename.clone()).collect();
        assert_eq!(
            files,
            [top, dir.path().join("layers/../disk.qcow2"), base.clone()]
        );
        assert_eq!(chain[0].backing.as_deref(), Some("../disk.qcow2"));
        assert_eq!(chain[2].backing, None);
        // A chain can end where the caller stops following it.
        let inside = |path: &Path| Ok(path != std::fs::canonicalize(&base).unwrap());
        assert_eq!(backing_chain(&chain[0].filename, inside).unwrap().len(), 2);
        assert_eq!(virtual_size(&chain[1].filename).unwrap(), 1 << 20);
        assert!(virtual_size(&base).is_err());
    }

    #[test]
    fn a_file_that_is_not_qcow2_has_no_chain() {
        let dir = tempfile::tempdir().unwrap();
        let raw = dir.path().join("raw");
        std::fs::write(&raw, b"QFI").unwrap();
        assert_eq!(backing_chain(&raw, every).unwrap().len(), 1);
    }

    /// A qcow2 header naming `name` as its backing file.
    fn header(name: &str) -> Vec<u8> {
        let mut header = MAGIC.to_vec();
        header.extend(3u32.to_be_bytes());
        header.extend(112u64.to_be_bytes());
        header.extend((name.len() as u32).to_be_bytes());
        header.resize(112, 0);
        header.extend(name.as_bytes());
        header
    }

    #[test]
    fn a_loop_or_a_bad_name_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let looped = dir.path().join("loop.qcow2");
        let mut looping = header("loop.qcow2");
        std::fs::write(&looped, &looping).unwrap();
        let error = backing_chain(&looped, every).unwrap_err();
        assert!(error.to_string().contains("deeper"), "{error}");
        looping[16..20].copy_from_slice(&5000u32.to_be_bytes());
        std::fs::write(&looped, &looping).unwrap();
        assert!(backing_chain(&looped, every).is_err());
    }

    #[test]
    fn a_name_that_is_no_regular_file_is_refused_unopened() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        let path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: mkfifo with a live C string.
        assert_eq!(unsafe { libc::mkfifo(path.as_ptr(), 0o600) }, 0);
        let image = dir.path().join("top.qcow2");
        for name in [
            "fifo",
            "/dev/null",
            "json:{}",
            "nbd:localhost:1",
            "fat:rw:x/y",
        ] {
            std::fs::write(&image, header(name)).unwrap();
            let error = backing_chain(&image, every).unwrap_err();
            assert!(
                error.to_string().contains("not a regular file")
                    || error.to_string().contains("not a file name"),
                "{name}: {error}"
            );
        }
    }

    #[test]
    fn an_image_with_an_external_data_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("data.qcow2");
        let mut bytes = header("");
        bytes[16..20].copy_from_slice(&0u32.to_be_bytes());
        bytes.resize(104, 0);
        bytes[72..80].copy_from_slice(&EXTERNAL_DATA_FILE.to_be_bytes());
        std::fs::write(&image, &bytes).unwrap();
        let error = backing_chain(&image, every).unwrap_err();
        assert!(error.to_string().contains("another file"), "{error}");
    }

    #[test]
    fn protocols_are_told_from_paths() {
        for name in ["json:{}", "nbd:h:1", "fat:rw:dir", "file:x"] {
            assert!(is_protocol(name), "{name}");
        }
        for name in ["disk.qcow2", "../disk.qcow2", "/a/b:c", "./x:y"] {
            assert!(!is_protocol(name), "{name}");
        }
    }
}
