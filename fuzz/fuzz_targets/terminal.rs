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
    terminal.resize(cols.min(100), rows.max(2));
    let _ = terminal.screen_text();

    let text = String::from_utf8_lossy(data);
    let one_line = pyro_util::text::visible(&text);
    assert!(!one_line.chars().any(char::is_control), "{one_line:?}");
    let lines = pyro_util::text::visible_lines(&text);
    assert!(
        !lines.chars().any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r'),
        "{lines:?}"
    );
});
