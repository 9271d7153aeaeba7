//! Small host-side helpers that several pyro crates need and none of them
//! owns: locked and atomic file writes ([`fsutil`]), an error with its causes
//! on one line ([`error_chain`]), RFC 3339 timestamps ([`rfc3339`]),
//! POSIX shell quoting ([`shell_quote`]), sizes ([`human_bytes`]) and text
//! made safe for a terminal ([`text`]), descriptors kept from children
//! ([`fds`]).
//!
//! This crate must not know about environments, workspaces, VMs or hosts,
//! and must not grow dependencies beyond `libc` and `fs-err`: anything with
//! a domain belongs in the crate of that domain. The guest agent does not
//! link it.

pub mod fds;
pub mod fsutil;
mod lock;
mod owner;
mod shell;
pub mod text;
mod time;

pub use shell::shell_quote;

/// `1.5 GiB`-style sizes.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
pub use time::rfc3339;

/// An error and its causes on one line, `a: b: c`. A cause whose text the
/// line already holds (an error that repeats its source in its own message)
/// is left out, so each cause appears once.
///
/// For an `anyhow::Error`, pass `error.as_ref()`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        if !message.contains(&text) {
            message.push_str(": ");
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_sizes() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 30), "3.0 GiB");
    }

    /// An error with a message and an optional source.
    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|cause| cause as _)
        }
    }

    #[test]
    fn chains_causes_once() {
        let io = Layer("permission denied", None);
        assert_eq!(error_chain(&io), "permission denied");
        let chained = Layer(
            "cannot pull debian:12",
            Some(Box::new(Layer("writing /cache/x", Some(Box::new(io))))),
        );
        assert_eq!(
            error_chain(&chained),
            "cannot pull debian:12: writing /cache/x: permission denied"
        );
        let repeated = Layer(
            "writing /cache/x: permission denied",
            Some(Box::new(Layer("permission denied", None))),
        );
        assert_eq!(
            error_chain(&repeated),
            "writing /cache/x: permission denied"
        );
    }
}
