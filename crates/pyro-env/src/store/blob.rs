//! Content-addressed blobs, `blobs/sha256/<hex>`, read-only once written.
//!
//! Hashing a 500 MB root image on every `pyro run` would cost more than the
//! boot, so each blob has a verification stamp, `<hex>.verified`, holding its
//! size, mtime, ctime, inode and device as they were right after a full hash
//! check. If the stamp still matches the file's metadata, the content is
//! taken as checked; any write, truncation, `chmod`, `touch` or replacement
//! changes ctime (which user space cannot set), so it forces a re-hash.

use std::io::Read as _;
use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use pyro_util::fsutil;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

use super::manifest::Artifact;

/// The result of checking a blob against its manifest entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "state")]
pub enum BlobState {
    /// Its stamp matched, or it was just re-hashed and matched.
    Verified,
    /// The stamp is stale or missing; the next boot re-hashes it.
    /// (Only returned by the quick check used by `pull`.)
    Unverified,
    Missing,
    SizeMismatch {
        expected: u64,
        actual: u64,
    },
    ChecksumMismatch {
        actual: String,
    },
}

impl BlobState {
    pub fn is_usable(&self) -> bool {
        matches!(self, Self::Verified | Self::Unverified)
    }

    /// A few words for an error message: "rootfs.qcow2 {reason}".
    pub fn reason(&self) -> String {
        match self {
            Self::Verified => "verified".into(),
            Self::Unverified => "not verified".into(),
            Self::Missing => "missing".into(),
            Self::SizeMismatch { expected, actual } => {
                format!("truncated or resized: {actual} bytes, expected {expected}")
            }
            Self::ChecksumMismatch { .. } => "checksum mismatch".into(),
        }
    }
}

/// The `blobs/sha256` directory.
#[derive(Debug, Clone)]
pub struct BlobStore {
    dir: PathBuf,
    owner: fsutil::Owner,
}

impl BlobStore {
    pub fn new(dir: PathBuf, owner: fsutil::Owner) -> Self {
        Self { dir, owner }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn path(&self, digest: &str) -> PathBuf {
        self.dir.join(digest)
    }

    fn stamp_path(&self, digest: &str) -> PathBuf {
        self.dir.join(format!("{digest}.verified"))
    }

    /// Moves `file` into the store under its digest, read-only, and stamps
    /// it. `file` must be on the same file system (it is renamed).
    pub fn insert(&self, file: &Path) -> std::io::Result<Artifact> {
        let (digest, size) = hash_file(file)?;
        let dest = self.path(&digest);
        if self.stamp_matches(&digest) {
            // Same content already present and intact.
            fs_err::remove_file(file)?;
        } else {
            fs_err::set_permissions(file, std::fs::Permissions::from_mode(0o444))?;
            self.owner.adopt(file)?;
            fs_err::rename(file, &dest)?;
            self.write_stamp(&digest)?;
        }
        Ok(Artifact {
            sha256: digest,
            size,
            virtual_size: None,
        })
    }

    /// Checks size and stamp only; never reads the content.
    pub fn check_quick(&self, artifact: &Artifact) -> BlobState {
        match self.check_size(artifact) {
            Some(bad) => bad,
            None if self.stamp_matches(&artifact.sha256) => BlobState::Verified,
            None => BlobState::Unverified,
        }
    }

    /// Checks size and stamp, and re-hashes the content when the stamp does
    /// not match; a blob that hashes correctly is stamped again.
    pub fn verify(&self, artifact: &Artifact) -> std::io::Result<BlobState> {
        match self.check_quick(artifact) {
            BlobState::Unverified => {}
            other => return Ok(other),
        }
        let path = self.path(&artifact.sha256);
        let (actual, size) = hash_file(&path)?;
        if size != artifact.size {
            return Ok(BlobState::SizeMismatch {
                expected: artifact.size,
                actual: size,
            });
        }
        if actual != artifact.sha256 {
            return Ok(BlobState::ChecksumMismatch { actual });
        }
        // A read-only store still works; it just re-hashes next time.
        let _ = self.write_stamp(&artifact.sha256);
        Ok(BlobState::Verified)
    }

    fn check_size(&self, artifact: &Artifact) -> Option<BlobState> {
        match fs_err::metadata(self.path(&artifact.sha256)) {
            Err(_) => Some(BlobState::Missing),
            Ok(meta) if meta.len() != artifact.size => Some(BlobState::SizeMismatch {
                expected: artifact.size,
                actual: meta.len(),
            }),
            Ok(_) => None,
        }
    }

    fn stamp_matches(&self, digest: &str) -> bool {
        let Ok(meta) = std::fs::metadata(self.path(digest)) else {
            return false;
        };
        std::fs::read_to_string(self.stamp_path(digest)).is_ok_and(|s| s == stamp_text(&meta))
    }

    fn write_stamp(&self, digest: &str) -> std::io::Result<()> {
        let meta = fs_err::metadata(self.path(digest))?;
        fsutil::write_atomic(
            &self.stamp_path(digest),
            stamp_text(&meta).as_bytes(),
            0o644,
            self.owner,
        )
    }

    /// Every blob digest present (stamps and temporaries excluded).
    pub fn list(&self) -> std::io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in fs_err::read_dir(&self.dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if is_digest(&name) {
                out.push(name);
            }
        }
        Ok(out)
    }

    /// Removes a blob and its stamp; returns the bytes freed.
    pub fn remove(&self, digest: &str) -> std::io::Result<u64> {
        let path = self.path(digest);
        let size = fsutil::tree_size(&path);
        let _ = fs_err::remove_file(self.stamp_path(digest));
        fs_err::remove_file(&path)?;
        Ok(size)
    }

    /// Removes stamps whose blob is gone.
    pub fn remove_orphan_stamps(&self) -> std::io::Result<()> {
        for entry in fs_err::read_dir(&self.dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if let Some(digest) = name.strip_suffix(".verified") {
                if !self.path(digest).exists() {
                    let _ = fs_err::remove_file(self.dir.join(&name));
                }
            }
        }
        Ok(())
    }
}

fn stamp_text(meta: &std::fs::Metadata) -> String {
    format!(
        "v1 size={} mtime={}.{} ctime={}.{} ino={} dev={}\n",
        meta.len(),
        meta.mtime(),
        meta.mtime_nsec(),
        meta.ctime(),
        meta.ctime_nsec(),
        meta.ino(),
        meta.dev()
    )
}

pub fn is_digest(name: &str) -> bool {
    name.len() == 64
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// SHA-256 and length of a file, streamed.
pub fn hash_file(path: &Path) -> std::io::Result<(String, u64)> {
    let mut file = fs_err::File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// SHA-256 of bytes, hex.
pub fn hash_bytes(parts: &[&[u8]]) -> String {
    let mut hasher = Sha256::new();
    for part in parts {
        hasher.update(part);
    }
    hex::encode(hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_verify_and_detect_tampering() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::new(dir.path().join("blobs"), fsutil::Owner::default());
        fs_err::create_dir_all(blobs.dir()).unwrap();
        let src = dir.path().join("a");
        std::fs::write(&src, b"hello world").unwrap();
        let artifact = blobs.insert(&src).unwrap();
        assert_eq!(artifact.size, 11);
        assert!(!src.exists());
        assert_eq!(blobs.check_quick(&artifact), BlobState::Verified);
        assert_eq!(blobs.list().unwrap(), vec![artifact.sha256.clone()]);

        // Same length, different bytes: the stamp no longer matches (ctime
        // moved), and the re-hash catches it.
        let path = blobs.path(&artifact.sha256);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(&path, b"HELLO WORLD").unwrap();
        assert_eq!(blobs.check_quick(&artifact), BlobState::Unverified);
        assert!(matches!(
            blobs.verify(&artifact).unwrap(),
            BlobState::ChecksumMismatch { .. }
        ));

        std::fs::write(&path, b"hello").unwrap();
        assert_eq!(
            blobs.verify(&artifact).unwrap(),
            BlobState::SizeMismatch {
                expected: 11,
                actual: 5
            }
        );
        std::fs::remove_file(&path).unwrap();
        assert_eq!(blobs.verify(&artifact).unwrap(), BlobState::Missing);
    }

    #[test]
    fn rehash_restamps_an_intact_blob() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = BlobStore::new(dir.path().to_owned(), fsutil::Owner::default());
        let src = dir.path().join("src");
        std::fs::write(&src, b"data").unwrap();
        let artifact = blobs.insert(&src).unwrap();
        std::fs::remove_file(blobs.stamp_path(&artifact.sha256)).unwrap();
        assert_eq!(blobs.check_quick(&artifact), BlobState::Unverified);
        assert_eq!(blobs.verify(&artifact).unwrap(), BlobState::Verified);
        assert_eq!(blobs.check_quick(&artifact), BlobState::Verified);
    }
}
