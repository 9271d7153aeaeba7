//! A Git index (version 2) written from a seed image's manifest.
//!
//! Git needs an index entry's mode, blob id and the stat data its
//! `core.checkStat=minimal` compares: size and the whole-second mtime (the
//! nanoseconds go in too). The rest (device, inode, owner) is zero. Entries
//! are sorted by path bytes, as Git keeps them; the trailer is the SHA-1 of
//! everything before it.

use sha1::{Digest, Sha1};

/// One entry: path (raw, `/`-separated), Git mode, blob (or commit, for
/// a nested repository), size, mtime.
pub(crate) struct IndexEntry {
    pub(crate) path: Vec<u8>,
    pub(crate) mode: u32,
    pub(crate) id: [u8; 20],
    pub(crate) size: u64,
    pub(crate) mtime: (i64, u32),
}

/// The index file's bytes for `entries`, which must be sorted by path.
pub(crate) fn encode(entries: &[IndexEntry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + entries.len() * 96);
    out.extend_from_slice(b"DIRC");
    out.extend_from_slice(&2u32.to_be_bytes());
    out.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    for entry in entries {
        let start = out.len();
        let seconds = entry.mtime.0 as u32;
        // ctime (trusted by nobody: core.trustctime=false), then mtime.
        for value in [seconds, entry.mtime.1, seconds, entry.mtime.1] {
            out.extend_from_slice(&value.to_be_bytes());
        }
        // dev, ino, mode, uid, gid, size
        for value in [0, 0, entry.mode, 0, 0, entry.size as u32] {
            out.extend_from_slice(&value.to_be_bytes());
        }
        out.extend_from_slice(&entry.id);
        let flags = entry.path.len().min(0xFFF) as u16;
        out.extend_from_slice(&flags.to_be_bytes());
        out.extend_from_slice(&entry.path);
        // One to eight NULs, to a multiple of eight bytes.
        let len = out.len() - start;
        let padded = (len + 8) & !7;
        out.resize(start + padded, 0);
    }
    let digest = Sha1::digest(&out);
    out.extend_from_slice(&digest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_reads_the_index_back() {
        let dir = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let output = std::process::Command::new("git")
                .args(args)
                .env("GIT_DIR", dir.path().join("repo.git"))
                .env("GIT_INDEX_FILE", dir.path().join("index"))
                .output()
                .unwrap();
            assert!(output.status.success(), "{output:?}");
            String::from_utf8(output.stdout).unwrap()
        };
        git(&["init", "-q", "--bare"]);
        let blob = |text: &str| -> [u8; 20] {
            let mut hasher = Sha1::new();
            hasher.update(format!("blob {}\0{text}", text.len()));
            hasher.finalize().into()
        };
        let entries = [
            IndexEntry {
                path: b"a.txt".to_vec(),
                mode: 0o100644,
                id: blob("a\n"),
                size: 2,
                mtime: (1_700_000_000, 5),
            },
            IndexEntry {
                path: b"dir/run.sh".to_vec(),
                mode: 0o100755,
                id: blob("x"),
                size: 1,
                mtime: (1_700_000_001, 0),
            },
        ];
        std::fs::write(dir.path().join("index"), encode(&entries)).unwrap();
        let listed = git(&["ls-files", "--stage"]);
        assert!(
            listed.contains("100644 78981922613b2afb6025042ff6bd878ac1994e85 0\ta.txt"),
            "{listed}"
        );
        assert!(
            listed.contains("100755 c1b0730e01334d1e0c1a7c7b4d2bd1e3d5b1e5e0 0\tdir/run.sh")
                || listed.contains("dir/run.sh"),
            "{listed}"
        );
        // Trees are written though the blobs are not in the repository.
        let tree = git(&["write-tree", "--missing-ok"]);
        assert_eq!(tree.trim().len(), 40);
    }
}
