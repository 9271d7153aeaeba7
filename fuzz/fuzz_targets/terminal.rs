//! Fuzzes the terminal renderer with arbitrary program output (a guest's
//! shell) and the escaping of guest text for the host's terminal: neither
//! may panic, and escaped text holds no control character.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let (size, output) = data.split_at(data.len().min(2));
    let rows = size.first().map_or(24, |&b| u16::from(b % 60) + 1);
    let cols = size.get(1).map_or(80, |&b| u16::from(b) + 1);
    let mut terminal = pyro_term::Terminal::new(rows, cols);
    for piece in output.chunks(97) {
        terminal.feed(piece);
    }
    let _ = terminal.read_text();
    let _ = terminal.read_raw();
    terminal.resize(rows.max(2), cols.min(100));
    let _ = terminal.screen_text();

    let text = String::from_utf8_lossy(data);
    let bidi = |c: char| matches!(c, '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}');
    let one_line = pyro_util::text::visible(&text);
    assert!(!one_line.chars().any(|c| c.is_control() || bidi(c)), "{one_line:?}");
    let lines = pyro_util::text::visible_lines(&text);
    let chars: Vec<char> = lines.chars().collect();
    for (i, &c) in chars.iter().enumerate() {
        let kept = c == '\n' || c == '\t' || (c == '\r' && chars.get(i + 1) == Some(&'\n'));
        assert!(kept || !(c.is_control() || bidi(c)), "{lines:?}");
    }
});
