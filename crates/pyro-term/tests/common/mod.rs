//! Helpers the integration tests share.

#![allow(dead_code)]

use pyro_term::Terminal;

/// A 24x80 terminal.
pub fn term() -> Terminal {
    Terminal::new(24, 80)
}

/// A 24x80 terminal that has been fed `bytes`.
pub fn fed(bytes: &[u8]) -> Terminal {
    let mut term = term();
    term.feed(bytes);
    term
}

/// The next line-mode read's text (a full-screen read fails the test).
pub fn text(term: &mut Terminal) -> String {
    let read = term.read_text();
    assert!(!read.full_screen, "unexpected full-screen read: {read:?}");
    read.text
}
