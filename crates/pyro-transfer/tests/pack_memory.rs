//! Packing streams in constant memory: a 200 MB, 10 000-file tree is packed
//! into a writer that only counts, and the peak RSS may not grow by more than
//! 50 MB. Its own test binary, so no other test shares the process's peak.
//!
//! Prints the throughput; see it with
//! `cargo test -p pyro-transfer --release --test pack_memory -- --nocapture`.

use std::fs::{self, File};
use std::io::{self, Write};
use std::time::Instant;

use pyro_transfer::{pack_dir, PackOptions};

struct CountingWriter(u64);

impl Write for CountingWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0 += buf.len() as u64;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A field of /proc/self/status, in KiB.
fn status_kib(field: &str) -> u64 {
    let status = fs::read_to_string("/proc/self/status").expect("status");
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .expect(field);
    line.split_whitespace()
        .nth(1)
        .expect("value")
        .parse()
        .expect("number")
}

#[test]
fn packing_200_mb_streams_in_small_memory() {
    const FILES: usize = 10_000;
    const SPARSE_FILES: u64 = 19;
    const SPARSE_LEN: u64 = 10 << 20;
    let src = tempfile::tempdir().expect("tempdir");
    let chunk: Vec<u8> = (0..1024u32).map(|i| (i * 7 % 251) as u8).collect();
    for i in 0..FILES {
        let dir = src.path().join(format!("d{:03}", i % 100));
        fs::create_dir_all(&dir).expect("mkdir");
        fs::write(dir.join(format!("file-{i:05}.txt")), &chunk).expect("write");
    }
    for i in 0..SPARSE_FILES {
        // Holes read as zeros: 190 MB to stream without 190 MB of disk.
        File::create(src.path().join(format!("sparse-{i}.img")))
            .and_then(|file| file.set_len(SPARSE_LEN))
            .expect("sparse file");
    }
    let expected = FILES as u64 * 1024 + SPARSE_FILES * SPARSE_LEN;

    // Reset the peak so tree generation does not count (Linux >= 4.0).
    let reset = fs::write("/proc/self/clear_refs", "5").is_ok();
    let rss_before = status_kib("VmRSS:");
    let hwm_before = status_kib("VmHWM:");
    let started = Instant::now();
    let mut sink = CountingWriter(0);
    let report = pack_dir(src.path(), &mut sink, &PackOptions::default()).expect("pack");
    let elapsed = started.elapsed();
    let growth_kib =
        status_kib("VmHWM:").saturating_sub(if reset { rss_before } else { hwm_before });

    assert_eq!(report.files, FILES as u64 + SPARSE_FILES);
    assert_eq!(report.bytes, expected);
    assert!(sink.0 > expected, "the stream holds the data plus headers");
    let mb = expected as f64 / 1e6;
    eprintln!(
        "packed {mb:.0} MB in {} files in {:.2?}: {:.0} MB/s, peak RSS growth {} KiB (peak reset: {reset})",
        report.files,
        elapsed,
        mb / elapsed.as_secs_f64(),
        growth_kib
    );
    assert!(
        growth_kib < 50 * 1024,
        "peak RSS grew by {growth_kib} KiB while packing"
    );
}
