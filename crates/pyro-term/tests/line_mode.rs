//! Line mode: what a chat model reads back from a shell session on the
//! primary screen, through `Terminal`'s public API.

mod common;

use common::*;
use pyro_term::{Terminal, HISTORY_MAX_LINES};

#[test]
fn lines_then_nothing_new() {
    let mut term = fed(b"hello\r\nworld\r\n");
    assert_eq!(text(&mut term), "hello\nworld");
    assert_eq!(text(&mut term), "");
}

#[test]
fn nothing_fed_reads_nothing() {
    let mut term = term();
    assert_eq!(text(&mut term), "");
    assert_eq!(term.screen_text(), "");
}

#[test]
fn progress_bar_reads_as_its_last_state() {
    let mut term = term();
    for pct in (0..=100).step_by(10) {
        term.feed(format!("{pct}%\r").as_bytes());
    }
    term.feed(b"\r\n");
    assert_eq!(text(&mut term), "100%");
}

#[test]
fn progress_bar_read_midway_is_repeated_when_it_changes() {
    let mut term = fed(b"downloading 10%\r");
    assert_eq!(text(&mut term), "downloading 10%");
    term.feed(b"downloading 55%\r");
    assert_eq!(text(&mut term), "downloading 55%");
    term.feed(b"downloading 100%\r\ndone\r\n");
    assert_eq!(text(&mut term), "downloading 100%\ndone");
}

#[test]
fn prompt_then_echo_rereads_the_prompt_line() {
    let mut term = fed(b"$ ");
    assert_eq!(text(&mut term), "$ ");
    term.feed(b"ls\r\nfile\r\n$ ");
    assert_eq!(text(&mut term), "$ ls\nfile\n$ ");
    assert_eq!(text(&mut term), "");
}

#[test]
fn empty_enter_at_a_prompt_reads_only_the_new_prompt() {
    let mut term = fed(b"$ ");
    assert_eq!(text(&mut term), "$ ");
    term.feed(b"\r\n$ ");
    assert_eq!(text(&mut term), "$ ");
    assert_eq!(term.screen_text(), "$\n$");
}

#[test]
fn unchanged_lines_before_a_change_are_not_repeated() {
    let mut term = fed(b"one\r\ntwo\r\n$ ");
    assert_eq!(text(&mut term), "one\ntwo\n$ ");
    term.feed(b"echo hi\r\nhi\r\n$ ");
    assert_eq!(text(&mut term), "$ echo hi\nhi\n$ ");
}

#[test]
fn colours_vanish() {
    let mut term = fed(b"\x1b[31mred\x1b[0m\r\n");
    assert_eq!(text(&mut term), "red");
    term.feed(b"\x1b[1;32;44mbold green\x1b[m plain\r\n");
    assert_eq!(text(&mut term), "bold green plain");
}

#[test]
fn scrolling_loses_no_lines() {
    let mut term = term();
    let mut expected = Vec::new();
    for i in 0..100 {
        term.feed(format!("line {i}\r\n").as_bytes());
        expected.push(format!("line {i}"));
    }
    assert_eq!(text(&mut term), expected.join("\n"));
    // Reading midway through scrolling too.
    term.feed(b"a\r\nb\r\n");
    assert_eq!(text(&mut term), "a\nb");
    for i in 0..30 {
        term.feed(format!("more {i}\r\n").as_bytes());
    }
    let more: Vec<_> = (0..30).map(|i| format!("more {i}")).collect();
    assert_eq!(text(&mut term), more.join("\n"));
}

#[test]
fn scrolled_off_colour_rows_read_plain() {
    let mut term = Terminal::new(2, 40);
    for i in 0..10 {
        term.feed(
            format!(
                "\x1b[3{}m\x1b[4{}mrow {i}\x1b[0m tail\r\n",
                i % 8,
                (i + 1) % 8
            )
            .as_bytes(),
        );
    }
    let expected: Vec<_> = (0..10).map(|i| format!("row {i} tail")).collect();
    assert_eq!(text(&mut term), expected.join("\n"));
}

#[test]
fn line_changed_then_scrolled_off_is_reread() {
    let mut term = fed(b"$ ");
    assert_eq!(text(&mut term), "$ ");
    let mut expected = vec!["$ make".to_string()];
    term.feed(b"make\r\n");
    for i in 0..50 {
        term.feed(format!("cc {i}\r\n").as_bytes());
        expected.push(format!("cc {i}"));
    }
    assert_eq!(text(&mut term), expected.join("\n"));
}

#[test]
fn clear_screen_then_new_text() {
    let mut term = fed(b"old 1\r\nold 2\r\n");
    assert_eq!(text(&mut term), "old 1\nold 2");
    term.feed(b"\x1b[2J\x1b[Hnew text\r\n");
    assert_eq!(text(&mut term), "new text");
    assert_eq!(term.screen_text(), "new text");
}

#[test]
fn clear_to_fewer_lines_reports_nothing_then_follows_the_screen() {
    let mut term = fed(b"a\r\nb\r\n");
    assert_eq!(text(&mut term), "a\nb");
    term.feed(b"\x1b[2J\x1b[Ha\r\n");
    assert_eq!(text(&mut term), "");
    term.feed(b"c\r\n");
    assert_eq!(text(&mut term), "c");
}

#[test]
fn utf8_split_across_feeds() {
    let mut term = term();
    let bytes = "héllo wörld ✓ 日本\r\n".as_bytes();
    for byte in bytes {
        term.feed(std::slice::from_ref(byte));
    }
    assert_eq!(text(&mut term), "héllo wörld ✓ 日本");
}

#[test]
fn escape_sequence_split_across_feeds() {
    let mut term = term();
    term.feed(b"ab\x1b[");
    term.feed(b"3");
    term.feed(b"1mcd\x1b");
    term.feed(b"[0m\r\n");
    assert_eq!(text(&mut term), "abcd");
}

#[test]
fn long_line_wraps_into_one_logical_line() {
    let mut term = Terminal::new(24, 10);
    let long = "abcdefghijklmnopqrstuvwxyz";
    term.feed(format!("{long}\r\nnext\r\n").as_bytes());
    assert_eq!(text(&mut term), format!("{long}\nnext"));
    assert_eq!(term.screen_text(), "abcdefghij\nklmnopqrst\nuvwxyz\nnext");
}

#[test]
fn wrapped_line_scrolling_off_in_pieces_stays_one_line() {
    let mut term = Terminal::new(3, 10);
    // 25 characters: three rows; the first two scroll off while the third
    // is still on the screen.
    let long: String = ('a'..='y').collect();
    term.feed(format!("top\r\n{long}").as_bytes());
    term.feed(b"\r\nx\r\n");
    assert_eq!(text(&mut term), format!("top\n{long}\nx"));

    let mut term = Terminal::new(2, 10);
    term.feed(long.as_bytes());
    assert_eq!(text(&mut term), long);
    term.feed(b"!");
    assert_eq!(text(&mut term), format!("{long}!"));
}

#[test]
fn cursor_movement_rewrites_inside_a_line() {
    let mut term = fed(b"abc\x1b[2Dx");
    assert_eq!(text(&mut term), "axc");
    // Backspace and erase-to-end-of-line, as readline does.
    let mut term = fed(b"$ lss\x08\x1b[K\r\n");
    assert_eq!(text(&mut term), "$ ls");
}

#[test]
fn trailing_spaces_and_blank_lines_are_trimmed() {
    let mut term = fed(b"a   \r\n\r\nb\t\r\n\r\n\r\n");
    assert_eq!(text(&mut term), "a\n\nb");
    assert_eq!(term.screen_text(), "a\n\nb");
}

#[test]
fn cursor_line_keeps_spaces_up_to_the_cursor() {
    let mut term = fed(b"name:   ");
    assert_eq!(text(&mut term), "name:   ");
    let mut term = fed(b"abc\x1b[6C");
    assert_eq!(text(&mut term), "abc      ");
    assert_eq!(term.screen_text(), "abc");
}

#[test]
fn state_carries_across_heavy_scrolling() {
    // The colour set before a flood, the half-typed line and the cursor
    // position are all intact after thousands of rows went through the
    // history.
    let mut term = Terminal::new(5, 20);
    term.feed(b"\x1b[31m");
    for i in 0..3000 {
        term.feed(format!("{i}\r\n").as_bytes());
    }
    term.feed(b"$ half-ty");
    let read = text(&mut term);
    assert!(read.ends_with("2998\n2999\n$ half-ty"), "{read}");
    term.feed(b"ped\x1b[3D\x1b[32mP");
    assert_eq!(text(&mut term), "$ half-tyPed");
    assert_eq!(term.screen_text(), "2996\n2997\n2998\n2999\n$ half-tyPed");
}

#[test]
fn history_bound_counts_dropped_lines() {
    let mut term = Terminal::new(10, 40);
    let total = HISTORY_MAX_LINES + 500;
    for i in 0..total {
        term.feed(format!("{i}\r\n").as_bytes());
    }
    let read = term.read_text();
    // Ten screen rows, the last of them blank (the cursor's).
    let on_screen = 9;
    let kept = HISTORY_MAX_LINES + on_screen;
    assert_eq!(read.dropped_lines, (total - kept) as u64);
    let lines: Vec<_> = read.text.lines().collect();
    assert_eq!(lines.len(), kept);
    assert_eq!(lines[0], (total - kept).to_string());
    assert_eq!(*lines.last().unwrap(), (total - 1).to_string());
    assert_eq!(term.read_text().dropped_lines, 0);
}

#[test]
fn status_line_below_a_scroll_region_stays_last() {
    // apt and similar reserve the bottom row for a progress line and scroll
    // the rest; rows leaving the top of the region still reach the history.
    let mut term = Terminal::new(5, 40);
    term.feed(b"\x1b[1;4r\x1b[5;1HProgress: [ 10%]\x1b[1;1Hunpack 0");
    for i in 1..7 {
        term.feed(format!("\r\nunpack {i}").as_bytes());
    }
    let unpacked: Vec<_> = (0..7).map(|i| format!("unpack {i}")).collect();
    assert_eq!(
        text(&mut term),
        format!("{}\nProgress: [ 10%]", unpacked.join("\n"))
    );
    term.feed(b"\x1b7\x1b[5;1HProgress: [ 60%]\x1b8\r\nunpack 7");
    assert_eq!(text(&mut term), "unpack 7\nProgress: [ 60%]");
}

#[test]
fn wide_characters_wrap_and_join() {
    let mut term = Terminal::new(24, 4);
    term.feed("日本語です\r\n".as_bytes());
    assert_eq!(text(&mut term), "日本語です");
    assert_eq!(term.screen_text(), "日本\n語で\nす");
}

#[test]
fn title_sequences_do_not_show_as_text() {
    let mut term = fed(b"a\x1b]0;user@host: ~\x07b\r\n");
    assert_eq!(text(&mut term), "ab");
}
