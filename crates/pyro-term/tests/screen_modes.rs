//! Full-screen programs, resizing, the title, key encoding and raw reads,
//! through `Terminal`'s public API.

mod common;

use common::*;
use pyro_term::{Terminal, TextRead, RAW_MAX_BYTES};

#[test]
fn full_screen_program_reads_as_whole_screens() {
    let mut term = fed(b"$ top\r\n");
    assert_eq!(text(&mut term), "$ top");
    term.feed(b"\x1b[?1049h\x1b[H\x1b[2Jtop - 10:00 up 1 day\r\n\r\n  PID USER\r\n    1 root");
    assert!(term.full_screen());
    let read = term.read_text();
    assert_eq!(
        read,
        TextRead {
            text: "top - 10:00 up 1 day\n\n  PID USER\n    1 root".into(),
            full_screen: true,
            dropped_lines: 0,
        }
    );
    let read = term.read_text();
    assert!(read.full_screen);
    assert_eq!(read.text, "");
    term.feed(b"\x1b[1;10H11");
    let read = term.read_text();
    assert!(read.full_screen);
    assert_eq!(read.text, "top - 10:11 up 1 day\n\n  PID USER\n    1 root");
    term.feed(b"\x1b[?1049l$ ");
    assert!(!term.full_screen());
    assert_eq!(text(&mut term), "$ ");
    assert_eq!(term.screen_text(), "$ top\n$");
}

#[test]
fn full_screen_scrolling_stays_out_of_the_transcript() {
    let mut term = fed(b"before\r\n\x1b[?1049h");
    for i in 0..100 {
        term.feed(format!("pager {i}\r\n").as_bytes());
    }
    let read = term.read_text();
    assert!(read.full_screen);
    assert!(read.text.ends_with("pager 99"));
    term.feed(b"\x1b[?1049lafter\r\n");
    assert_eq!(text(&mut term), "before\nafter");
}

#[test]
fn lines_written_before_entering_full_screen_wait_for_line_mode() {
    let mut term = fed(b"$ vi notes\r\n\x1b[?1049h~\r\n~");
    let read = term.read_text();
    assert!(read.full_screen);
    assert_eq!(read.text, "~\n~");
    term.feed(b"\x1b[?1049l$ ");
    assert_eq!(text(&mut term), "$ vi notes\n$ ");
}

#[test]
fn reentering_full_screen_rereads_the_screen() {
    let mut term = fed(b"\x1b[?1049hsame");
    assert_eq!(term.read_text().text, "same");
    term.feed(b"\x1b[?1049l");
    assert_eq!(text(&mut term), "");
    term.feed(b"\x1b[?1049hsame");
    assert_eq!(term.read_text().text, "same");
}

#[test]
fn resize_keeps_the_transcript() {
    let mut term = Terminal::new(10, 20);
    for i in 0..8 {
        term.feed(format!("l{i}\r\n").as_bytes());
    }
    assert_eq!(term.read_text().text.lines().count(), 8);
    // Shrinking pushes the rows above the cursor into the history.
    term.resize(3, 20);
    assert_eq!(term.size(), (3, 20));
    assert_eq!(text(&mut term), "");
    assert_eq!(term.screen_text(), "l6\nl7");
    // Growing adds blank rows at the bottom, nothing at the top.
    term.resize(30, 20);
    assert_eq!(term.screen_text(), "l6\nl7");
    term.feed(b"after\r\n");
    assert_eq!(text(&mut term), "after");
}

#[test]
fn resize_in_full_screen_after_scrolling_into_it() {
    // The shell scrolled and the program entered the alternate screen in
    // one chunk; growing the screen must not push blank rows into the
    // primary screen.
    let mut term = Terminal::new(3, 20);
    term.feed(b"a\r\nb\r\nc\r\n$ less f\r\n\x1b[?1049hpage");
    assert_eq!(term.read_text().text, "page");
    term.resize(6, 20);
    term.feed(b"\x1b[?1049l$ ");
    assert_eq!(text(&mut term), "a\nb\nc\n$ less f\n$ ");
    assert_eq!(term.screen_text(), "c\n$ less f\n$");
}

#[test]
fn zero_size_is_clamped() {
    let mut term = Terminal::new(0, 0);
    assert_eq!(term.size(), (1, 1));
    term.feed(b"ab\r\n");
    assert_eq!(text(&mut term), "a\nb");
}

#[test]
fn title_is_tracked() {
    let mut term = Terminal::new(24, 80);
    assert_eq!(term.title(), None);
    term.feed(b"\x1b]0;vim notes.txt\x07");
    assert_eq!(term.title().as_deref(), Some("vim notes.txt"));
    term.feed(b"\x1b]2;other\x1b\\");
    assert_eq!(term.title().as_deref(), Some("other"));
}

#[test]
fn application_cursor_mode_changes_key_bytes() {
    let mut term = Terminal::new(24, 80);
    assert_eq!(term.encode_key("up"), Some(&b"\x1b[A"[..]));
    term.feed(b"\x1b[?1h");
    assert!(term.application_cursor());
    assert_eq!(term.encode_key("up"), Some(&b"\x1bOA"[..]));
    assert_eq!(term.encode_key("ctrl-c"), Some(&b"\x03"[..]));
}

#[test]
fn raw_reads_return_bytes_since_the_last_raw_read() {
    let mut term = fed(b"\x1b[31mred\r\n");
    let raw = term.read_raw();
    assert_eq!(raw.bytes, b"\x1b[31mred\r\n");
    assert_eq!(raw.dropped_bytes, 0);
    assert!(term.read_raw().bytes.is_empty());
    // Text reads do not consume raw bytes, nor the other way round.
    term.feed(b"x");
    assert_eq!(text(&mut term), "red\nx");
    assert_eq!(term.read_raw().bytes, b"x");
}

#[test]
fn raw_ring_is_bounded() {
    let mut term = Terminal::new(24, 80);
    let chunk = vec![b'.'; 64 * 1024];
    let chunks = RAW_MAX_BYTES / chunk.len() + 3;
    for _ in 0..chunks {
        term.feed(&chunk);
    }
    let raw = term.read_raw();
    assert_eq!(raw.bytes.len(), RAW_MAX_BYTES);
    assert_eq!(
        raw.dropped_bytes,
        (chunks * chunk.len() - RAW_MAX_BYTES) as u64
    );
}
