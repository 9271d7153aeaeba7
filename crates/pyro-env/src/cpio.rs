//! A writer for the cpio "newc" format, the one the Linux kernel unpacks as
//! an initramfs.
//!
//! Each entry is a 110-byte ASCII header (`070701` then thirteen 8-digit hex
//! fields: ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor,
//! rdevmajor, rdevminor, namesize, check), the NUL-terminated name padded to
//! a multiple of four bytes, then the data padded the same way. An entry named
//! `TRAILER!!!` ends the archive. The kernel accepts several archives one
//! after another, which is how pyro joins the agent (`/init`) with an
//! environment's kernel modules without rewriting either.
//!
//! Entries are written with uid/gid 0 and mtime 0 so the same input always
//! gives the same bytes (and so the same content hash). Names are relative
//! (`pyro/modules/ext4.ko`), as `cpio -o` writes them.

use std::collections::BTreeSet;

/// The magic of the "new ASCII" format without CRC.
const MAGIC: &str = "070701";
const TRAILER: &str = "TRAILER!!!";

const S_IFDIR: u32 = 0o040_000;
const S_IFREG: u32 = 0o100_000;
const S_IFCHR: u32 = 0o020_000;

/// Why an archive could not be written.
#[derive(Debug, thiserror::Error)]
pub enum CpioError {
    #[error("cpio entry name {name:?} is not a plain relative path")]
    BadName { name: String },
    #[error("cpio entry {name:?} is {size} bytes; newc entries are limited to 4 GiB")]
    TooLarge { name: String, size: usize },
    #[error("cpio entry {name:?} appears twice")]
    Duplicate { name: String },
}

/// Builds a newc archive in memory. Call [`CpioWriter::finish`] to append the
/// trailer and take the bytes.
#[derive(Debug, Default)]
pub struct CpioWriter {
    out: Vec<u8>,
    next_ino: u32,
    names: BTreeSet<String>,
}

impl CpioWriter {
    pub fn new() -> Self {
        Self {
            out: Vec::new(),
            next_ino: 1,
            names: BTreeSet::new(),
        }
    }

    /// Adds a directory entry. Parents must be added first, as with any cpio.
    pub fn dir(&mut self, name: &str, perm: u32) -> Result<(), CpioError> {
        self.entry(name, S_IFDIR | (perm & 0o7777), 2, (0, 0), &[])
    }

    /// Adds a regular file with the given permission bits.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> Result<(), CpioError> {
        self.entry(name, S_IFREG | (perm & 0o7777), 1, (0, 0), data)
    }

    /// Adds a character device node (for example `dev/console`, 5:1).
    pub fn char_device(
        &mut self,
        name: &str,
        perm: u32,
        major: u32,
        minor: u32,
    ) -> Result<(), CpioError> {
        self.entry(name, S_IFCHR | (perm & 0o7777), 1, (major, minor), &[])
    }

    /// Appends the trailer and returns the archive.
    pub fn finish(mut self) -> Vec<u8> {
        self.header(TRAILER, 0, 0, 1, (0, 0), 0);
        self.out
    }

    fn entry(
        &mut self,
        name: &str,
        mode: u32,
        nlink: u32,
        rdev: (u32, u32),
        data: &[u8],
    ) -> Result<(), CpioError> {
        validate_name(name)?;
        let size = u32::try_from(data.len()).map_err(|_| CpioError::TooLarge {
            name: name.to_owned(),
            size: data.len(),
        })?;
        if !self.names.insert(name.to_owned()) {
            return Err(CpioError::Duplicate {
                name: name.to_owned(),
            });
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        self.header(name, ino, mode, nlink, rdev, size);
        self.out.extend_from_slice(data);
        self.pad();
        Ok(())
    }

    fn header(&mut self, name: &str, ino: u32, mode: u32, nlink: u32, rdev: (u32, u32), size: u32) {
        let namesize = name.len() + 1;
        let fields: [u32; 13] = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            size,
            0, // devmajor
            0, // devminor
            rdev.0,
            rdev.1,
            namesize as u32,
            0, // check
        ];
        self.out.extend_from_slice(MAGIC.as_bytes());
        for field in fields {
            self.out
                .extend_from_slice(format!("{field:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }
}

fn validate_name(name: &str) -> Result<(), CpioError> {
    let bad = name.is_empty()
        || name.starts_with('/')
        || name.contains('\0')
        || name == TRAILER
        || name
            .split('/')
            .any(|part| part.is_empty() || part == "." || part == "..");
    if bad {
        return Err(CpioError::BadName {
            name: name.to_owned(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut cpio = CpioWriter::new();
        cpio.dir("pyro", 0o755).unwrap();
        cpio.dir("pyro/modules", 0o755).unwrap();
        cpio.file("pyro/modules/a.ko", 0o644, b"abc").unwrap();
        cpio.file("pyro/modules.order", 0o644, b"a.ko\n").unwrap();
        cpio.finish()
    }

    #[test]
    fn header_layout_and_padding() {
        let bytes = sample();
        assert_eq!(bytes.len() % 4, 0);
        assert_eq!(&bytes[..6], b"070701");
        // First entry: ino 1, directory mode, name "pyro" (namesize 5).
        let header = std::str::from_utf8(&bytes[..110]).unwrap();
        assert_eq!(&header[6..14], "00000001");
        assert_eq!(&header[14..22], "000041ed");
        assert_eq!(&header[94..102], "00000005");
        assert_eq!(&bytes[110..115], b"pyro\0");
        // The archive ends with the trailer entry.
        let tail = String::from_utf8_lossy(&bytes[bytes.len() - 16..]).into_owned();
        assert!(tail.contains("TRAILER!!!"), "{tail:?}");
    }

    #[test]
    fn rejects_bad_names_and_duplicates() {
        let mut cpio = CpioWriter::new();
        for name in ["", "/abs", "a/../b", "a//b", "TRAILER!!!"] {
            assert!(
                matches!(cpio.file(name, 0o644, b""), Err(CpioError::BadName { .. })),
                "{name}"
            );
        }
        cpio.file("x", 0o644, b"").unwrap();
        assert!(matches!(
            cpio.file("x", 0o644, b""),
            Err(CpioError::Duplicate { .. })
        ));
    }

    /// Cross-checks against GNU cpio when the host has it.
    #[test]
    fn system_cpio_lists_the_entries() {
        let Ok(mut child) = std::process::Command::new("cpio")
            .args(["-it", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
        else {
            eprintln!("skipping: no cpio on this host");
            return;
        };
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(&sample()).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success());
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            "pyro\npyro/modules\npyro/modules/a.ko\npyro/modules.order\n"
        );
    }

    #[test]
    fn system_cpio_extracts_contents() {
        let dir = tempfile::tempdir().unwrap();
        let mut cpio = CpioWriter::new();
        cpio.file("init", 0o755, b"#!/bin/sh\necho hi\n").unwrap();
        cpio.dir("d", 0o700).unwrap();
        cpio.file("d/odd", 0o600, b"12345").unwrap();
        let bytes = cpio.finish();
        let Ok(mut child) = std::process::Command::new("cpio")
            .args(["-idm", "--quiet", "--no-absolute-filenames"])
            .current_dir(dir.path())
            .stdin(std::process::Stdio::piped())
            .spawn()
        else {
            eprintln!("skipping: no cpio on this host");
            return;
        };
        use std::io::Write as _;
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        assert!(child.wait().unwrap().success());
        use std::os::unix::fs::PermissionsExt as _;
        let init = dir.path().join("init");
        assert_eq!(std::fs::read(&init).unwrap(), b"#!/bin/sh\necho hi\n");
        assert_eq!(
            std::fs::metadata(&init).unwrap().permissions().mode() & 0o777,
            0o755
        );
        assert_eq!(std::fs::read(dir.path().join("d/odd")).unwrap(), b"12345");
    }
}
