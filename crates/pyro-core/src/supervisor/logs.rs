//! A service's log: everything it prints (stdout and stderr interleaved as
//! they arrive), in a file with a size bound.
//!
//! Offsets are absolute: byte N of everything the service ever printed
//! keeps the number N, even after older bytes are dropped to stay within
//! the bound. A reader can follow a log with `since` offsets and learns
//! when it fell behind what was kept.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use super::protocol::{LogRange, LogRead};

/// When the file passes this size, only the newest [`KEEP`] bytes stay.
pub const LIMIT: u64 = 1024 * 1024;
/// What compaction keeps.
pub const KEEP: u64 = LIMIT / 2;

/// The writer side, owned by the supervisor's service task.
pub(crate) struct ServiceLog {
    path: PathBuf,
    file: Option<File>,
    /// Bytes dropped from the front so far.
    pub(crate) dropped: u64,
    /// Bytes in the file.
    pub(crate) kept: u64,
}

impl ServiceLog {
    /// Starts an empty log at `path` (a restart starts afresh).
    pub(crate) fn create(path: &Path) -> std::io::Result<Self> {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(path)?;
        Ok(ServiceLog {
            path: path.to_path_buf(),
            file: Some(file),
            dropped: 0,
            kept: 0,
        })
    }

    /// Puts a log saved with a memory state (`saved`, whose first byte
    /// had offset `dropped`) back at `path` and appends to it from there.
    pub(crate) fn restore(path: &Path, saved: &Path, dropped: u64) -> std::io::Result<Self> {
        if saved != path {
            std::fs::copy(saved, path)?;
        }
        let file = OpenOptions::new().append(true).open(path)?;
        let kept = file.metadata()?.len();
        Ok(ServiceLog {
            path: path.to_path_buf(),
            file: Some(file),
            dropped,
            kept,
        })
    }

    /// Copies the log as it is to `to`, for a memory state; returns the
    /// offset of its first byte.
    pub(crate) fn save_copy(&self, to: &Path) -> std::io::Result<u64> {
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::copy(&self.path, to)?;
        Ok(self.dropped)
    }

    /// Total bytes the service printed.
    pub(crate) fn total(&self) -> u64 {
        self.dropped + self.kept
    }

    pub(crate) fn append(&mut self, bytes: &[u8]) {
        let Some(file) = &mut self.file else { return };
        if file.write_all(bytes).is_err() {
            // A full host disk: stop logging rather than fail the service.
            self.file = None;
            return;
        }
        self.kept += bytes.len() as u64;
        if self.kept > LIMIT {
            self.compact();
        }
    }

    /// Keeps the newest `KEEP` bytes, through a temporary file and rename.
    fn compact(&mut self) {
        let tmp = self.path.with_extension("log.tmp");
        let compacted = read_tail(&self.path, KEEP).and_then(|tail| {
            std::fs::write(&tmp, &tail)?;
            std::fs::rename(&tmp, &self.path)?;
            Ok(tail)
        });
        let tail = match compacted {
            Ok(tail) => tail,
            Err(_) => {
                // A full host disk, say: stop logging rather than let the
                // file grow past its bound.
                let _ = std::fs::remove_file(&tmp);
                self.file = None;
                return;
            }
        };
        self.file = OpenOptions::new().append(true).open(&self.path).ok();
        self.dropped += self.kept - tail.len() as u64;
        self.kept = tail.len() as u64;
    }

    pub(crate) fn read(&self, range: LogRange, max_bytes: u64) -> LogRead {
        read(&self.path, self.dropped, range, max_bytes)
    }
}

fn read_tail(path: &Path, bytes: u64) -> std::io::Result<Vec<u8>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    file.seek(SeekFrom::Start(len.saturating_sub(bytes)))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    Ok(tail)
}

/// Reads part of the log at `path`, whose first byte has offset `dropped`.
pub(crate) fn read(path: &Path, dropped: u64, range: LogRange, max_bytes: u64) -> LogRead {
    let content = std::fs::read(path).unwrap_or_default();
    slice(&content, dropped, range, max_bytes)
}

/// The pure part of [`read`].
fn slice(content: &[u8], dropped: u64, range: LogRange, max_bytes: u64) -> LogRead {
    let end = dropped + content.len() as u64;
    let (start, skipped) = match range {
        LogRange::Since(offset) if offset < dropped => (dropped, dropped - offset),
        LogRange::Since(offset) => (offset.min(end), 0),
        LogRange::Tail(lines) => {
            // The start of the last `lines` lines; a final newline does not
            // start an empty line.
            let body = content.strip_suffix(b"\n").unwrap_or(content);
            let mut at = body.len();
            let mut found = 0;
            while at > 0 && found < lines {
                at -= 1;
                if body[at] == b'\n' {
                    found += 1;
                    if found == lines {
                        at += 1;
                        break;
                    }
                }
            }
            if lines == 0 {
                at = content.len();
            }
            (dropped + at as u64, 0)
        }
    };
    let from = (start - dropped) as usize;
    let available = &content[from..];
    let take = available.len().min(max_bytes as usize);
    LogRead {
        text: String::from_utf8_lossy(&available[..take]).into_owned(),
        start_offset: start,
        end_offset: start + take as u64,
        skipped,
        truncated: take < available.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_counts_lines_from_the_end() {
        let log = b"a\nb\nc\n";
        assert_eq!(slice(log, 0, LogRange::Tail(2), 100).text, "b\nc\n");
        assert_eq!(slice(log, 0, LogRange::Tail(10), 100).text, "a\nb\nc\n");
        assert_eq!(slice(b"a\nb", 0, LogRange::Tail(1), 100).text, "b");
        assert_eq!(slice(log, 0, LogRange::Tail(0), 100).text, "");
    }

    #[test]
    fn since_uses_absolute_offsets_and_reports_what_was_dropped() {
        let read = slice(b"world\n", 6, LogRange::Since(2), 100);
        assert_eq!(read.text, "world\n");
        assert_eq!(
            (read.start_offset, read.end_offset, read.skipped),
            (6, 12, 4)
        );
        let read = slice(b"world\n", 6, LogRange::Since(8), 2);
        assert_eq!(read.text, "rl");
        assert!(read.truncated);
        assert_eq!(read.end_offset, 10);
        assert_eq!(slice(b"x", 0, LogRange::Since(99), 10).text, "");
    }

    #[test]
    fn the_file_stays_bounded_and_offsets_keep_counting() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = ServiceLog::create(&dir.path().join("svc.log")).unwrap();
        let line = [b'x'; 99];
        for _ in 0..30_000 {
            log.append(&line);
            log.append(b"\n");
        }
        assert_eq!(log.total(), 3_000_000);
        let size = std::fs::metadata(dir.path().join("svc.log")).unwrap().len();
        assert!(size <= LIMIT, "{size}");
        let tail = log.read(LogRange::Tail(1), 1000);
        assert_eq!(tail.text.len(), 100);
        assert_eq!(tail.end_offset, 3_000_000);
        let old = log.read(LogRange::Since(0), 10);
        assert!(old.skipped > 0);
    }
}
