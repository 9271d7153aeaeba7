//! Feeding stays cheap under a flood of output, and the bounds hold.

use pyro_term::{Terminal, HISTORY_MAX_LINES};

#[test]
fn flood_of_lines_is_cheap() {
    // A few MB even in a debug build; `flood_50mb` below measures the real
    // case in release.
    let (bytes, lines) = flood(4 * 1024 * 1024);
    let mut term = Terminal::new(24, 80);
    let start = std::time::Instant::now();
    for chunk in bytes.chunks(4096) {
        term.feed(chunk);
    }
    let elapsed = start.elapsed();
    let read = term.read_text();
    let expected_kept = (HISTORY_MAX_LINES + 23).min(lines);
    assert_eq!(read.text.lines().count(), expected_kept);
    assert_eq!(read.dropped_lines, (lines - expected_kept) as u64);
    let limit = if cfg!(debug_assertions) { 60 } else { 2 };
    assert!(elapsed.as_secs() < limit, "{elapsed:?}");
}

/// Run by hand: `cargo test -p pyro-term --release --test flood -- --ignored --nocapture`
#[test]
#[ignore = "measures throughput; run by hand in release"]
fn flood_50mb() {
    let (bytes, lines) = flood(50 * 1024 * 1024);
    let mut term = Terminal::new(24, 80);
    let start = std::time::Instant::now();
    for chunk in bytes.chunks(16 * 1024) {
        term.feed(chunk);
    }
    let elapsed = start.elapsed();
    let read = term.read_text();
    println!(
        "fed {} MiB ({lines} lines) in {elapsed:?}: {:.0} MiB/s; read {} bytes",
        bytes.len() / (1024 * 1024),
        bytes.len() as f64 / (1024.0 * 1024.0) / elapsed.as_secs_f64(),
        read.text.len()
    );
}

/// Build-log-like lines with some colour, about `size` bytes.
fn flood(size: usize) -> (Vec<u8>, usize) {
    let mut bytes = Vec::with_capacity(size + 100);
    let mut lines = 0;
    while bytes.len() < size {
        let line = if lines % 10 == 0 {
            format!(
                "\x1b[32m   Compiling\x1b[0m crate-{lines} v0.1.0 (/src/crates/crate-{lines})\r\n"
            )
        } else {
            format!("test module::tests::case_{lines} ... ok\r\n")
        };
        bytes.extend_from_slice(line.as_bytes());
        lines += 1;
    }
    (bytes, lines)
}
