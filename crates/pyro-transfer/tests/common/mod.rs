//! Helpers shared by the integration tests: hand-built (possibly hostile)
//! tar streams and a comparable snapshot of a tree.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use pyro_transfer::{unpack, UnpackError, UnpackOptions, UnpackReport};
use tar::{EntryType, Header};

/// A tar stream built header by header, with names and link targets written
/// as raw bytes so nothing is sanitised on the way.
#[derive(Default)]
pub struct RawTar(pub Vec<u8>);

impl RawTar {
    pub fn header(name: &[u8], kind: EntryType, size: u64, link: &[u8], mode: u32) -> Header {
        let mut header = Header::new_gnu();
        {
            let old = header.as_old_mut();
            old.name[..name.len()].copy_from_slice(name);
            old.linkname[..link.len()].copy_from_slice(link);
        }
        header.set_entry_type(kind);
        header.set_size(size);
        header.set_mode(mode);
        header.set_mtime(1_600_000_000);
        header.set_cksum();
        header
    }

    /// Appends a header and `data`, padded to the block size.
    pub fn push(mut self, header: &Header, data: &[u8]) -> Self {
        self.0.extend_from_slice(header.as_bytes());
        self.0.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.0.extend(std::iter::repeat_n(0u8, pad));
        self
    }

    pub fn file(self, name: &str, data: &[u8]) -> Self {
        let header = Self::header(
            name.as_bytes(),
            EntryType::Regular,
            data.len() as u64,
            b"",
            0o644,
        );
        self.push(&header, data)
    }

    pub fn file_mode(self, name: &str, data: &[u8], mode: u32) -> Self {
        let header = Self::header(
            name.as_bytes(),
            EntryType::Regular,
            data.len() as u64,
            b"",
            mode,
        );
        self.push(&header, data)
    }

    pub fn dir(self, name: &str) -> Self {
        let header = Self::header(name.as_bytes(), EntryType::Directory, 0, b"", 0o755);
        self.push(&header, b"")
    }

    pub fn symlink(self, name: &str, target: &str) -> Self {
        let header = Self::header(
            name.as_bytes(),
            EntryType::Symlink,
            0,
            target.as_bytes(),
            0o777,
        );
        self.push(&header, b"")
    }

    pub fn hard_link(self, name: &str, target: &str) -> Self {
        let header = Self::header(
            name.as_bytes(),
            EntryType::Link,
            0,
            target.as_bytes(),
            0o644,
        );
        self.push(&header, b"")
    }

    /// A member of `kind` whose name comes from a GNU long-name header.
    pub fn long_name(self, name: &str, kind: EntryType, data: &[u8]) -> Self {
        let mut payload = name.as_bytes().to_vec();
        payload.push(0);
        let long = Self::header(
            b"././@LongLink",
            EntryType::GNULongName,
            payload.len() as u64,
            b"",
            0o644,
        );
        let member = Self::header(b"placeholder", kind, data.len() as u64, b"", 0o644);
        self.push(&long, &payload).push(&member, data)
    }

    /// A member whose name comes from a PAX `path` record.
    pub fn pax_name(self, name: &str, data: &[u8]) -> Self {
        let record = pax_record("path", name);
        let pax = Self::header(
            b"PaxHeader",
            EntryType::XHeader,
            record.len() as u64,
            b"",
            0o644,
        );
        let member = Self::header(
            b"placeholder",
            EntryType::Regular,
            data.len() as u64,
            b"",
            0o644,
        );
        self.push(&pax, &record).push(&member, data)
    }

    /// The stream with its end-of-archive marker.
    pub fn finish(mut self) -> Vec<u8> {
        self.0.extend([0u8; 1024]);
        self.0
    }
}

pub fn pax_record(key: &str, value: &str) -> Vec<u8> {
    let body = format!(" {key}={value}\n");
    let mut len = body.len() + 1;
    while format!("{len}{body}").len() != len {
        len += 1;
    }
    format!("{len}{body}").into_bytes()
}

/// One node of a tree, as far as a transfer should preserve it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir {
        mode: u32,
        mtime: i64,
    },
    File {
        mode: u32,
        mtime: i64,
        content: Vec<u8>,
    },
    Symlink {
        target: String,
    },
}

/// Every path under `root` (relative, sorted) with what it is.
pub fn snapshot(root: &Path) -> BTreeMap<String, Node> {
    let mut nodes = BTreeMap::new();
    walk(root, root, &mut nodes);
    nodes
}

fn walk(root: &Path, dir: &Path, nodes: &mut BTreeMap<String, Node>) {
    for entry in fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        let meta = fs::symlink_metadata(&path).expect("lstat");
        let relative = path
            .strip_prefix(root)
            .expect("under root")
            .to_string_lossy()
            .into_owned();
        let mode = meta.permissions().mode() & 0o7777;
        let node = if meta.file_type().is_symlink() {
            let target = fs::read_link(&path)
                .expect("readlink")
                .to_string_lossy()
                .into_owned();
            Node::Symlink { target }
        } else if meta.is_dir() {
            walk(root, &path, nodes);
            Node::Dir {
                mode,
                mtime: meta.mtime(),
            }
        } else {
            let content = fs::read(&path).expect("read");
            Node::File {
                mode,
                mtime: meta.mtime(),
                content,
            }
        };
        nodes.insert(relative, node);
    }
}

/// Every path under `root`, relative and sorted, symlinks not followed.
pub fn listing(root: &Path) -> Vec<String> {
    snapshot(root).into_keys().collect()
}

/// A temporary `<tmp>/p/out` output, and checks that nothing landed elsewhere.
pub struct Scene {
    pub tmp: tempfile::TempDir,
    pub dest: PathBuf,
}

impl Scene {
    pub fn new() -> Scene {
        let tmp = tempfile::tempdir().expect("tempdir");
        fs::create_dir(tmp.path().join("p")).expect("mkdir p");
        let dest = tmp.path().join("p/out");
        Scene { tmp, dest }
    }

    pub fn unpack(&self, stream: &[u8], opts: &UnpackOptions) -> Result<UnpackReport, UnpackError> {
        unpack(stream, &self.dest, opts)
    }

    /// Asserts the unpack failed and left nothing at all behind.
    pub fn fails(&self, stream: &[u8], opts: &UnpackOptions) -> UnpackError {
        let err = self
            .unpack(stream, opts)
            .expect_err("hostile archive must be refused");
        assert!(
            !self.dest.exists(),
            "nothing may be left at the output after: {err}"
        );
        assert_eq!(listing(self.tmp.path()), ["p"], "after: {err}");
        err
    }

    /// Asserts everything that exists is `p`, `p/out` or under `p/out`.
    pub fn only_inside(&self) {
        for path in listing(self.tmp.path()) {
            assert!(
                path == "p" || path == "p/out" || path.starts_with("p/out/"),
                "{path} escaped"
            );
        }
    }
}
