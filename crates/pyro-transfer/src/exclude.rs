//! Exclude patterns for packing: glob-ish paths relative to the source root.
//!
//! A pattern is split on `/`; each part matches one path component, with `*`
//! (any run of bytes) and `?` (one byte); a part `**` matches any number of
//! components. Patterns are anchored at the root and match a path or any of
//! its ancestors, so `target` leaves out the whole `target/` tree and
//! `**/__pycache__` every `__pycache__` directory.

use std::os::unix::ffi::OsStrExt;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    AnyDepth,
    Glob(Vec<u8>),
}

/// A pattern [`Excludes::parse`] refused, and why.
#[derive(Debug, thiserror::Error)]
#[error("exclude pattern '{pattern}' {reason}")]
pub(crate) struct BadPattern {
    pub(crate) pattern: String,
    pub(crate) reason: &'static str,
}

/// Compiled exclude patterns.
#[derive(Debug, Default)]
pub(crate) struct Excludes {
    patterns: Vec<Vec<Part>>,
}

impl Excludes {
    pub(crate) fn parse(patterns: &[String]) -> Result<Excludes, BadPattern> {
        let mut compiled = Vec::new();
        for pattern in patterns {
            let bad = |reason| BadPattern {
                pattern: pattern.clone(),
                reason,
            };
            if pattern.starts_with('/') {
                return Err(bad("must be relative to the source directory"));
            }
            let mut parts = Vec::new();
            for part in pattern.split('/') {
                match part {
                    "" | "." => {}
                    ".." => return Err(bad("must not contain '..'")),
                    "**" => parts.push(Part::AnyDepth),
                    glob => parts.push(Part::Glob(glob.as_bytes().to_vec())),
                }
            }
            if parts.is_empty() {
                return Err(bad("is empty; it would exclude everything"));
            }
            compiled.push(parts);
        }
        Ok(Excludes { patterns: compiled })
    }

    /// Whether `relative` (a path under the source root) is left out. Called
    /// on every path as the walk reaches it, so a match on a directory keeps
    /// the walk out of its whole subtree.
    pub(crate) fn excludes(&self, relative: &Path) -> bool {
        if self.patterns.is_empty() {
            return false;
        }
        let components: Vec<&[u8]> = relative.iter().map(|c| c.as_bytes()).collect();
        self.patterns
            .iter()
            .any(|pattern| match_parts(pattern, &components))
    }
}

fn match_parts(parts: &[Part], components: &[&[u8]]) -> bool {
    match parts.split_first() {
        None => components.is_empty(),
        Some((Part::AnyDepth, rest)) => {
            (0..=components.len()).any(|skip| match_parts(rest, &components[skip..]))
        }
        Some((Part::Glob(glob), rest)) => match components.split_first() {
            Some((first, others)) => match_glob(glob, first) && match_parts(rest, others),
            None => false,
        },
    }
}

/// `*` and `?` over bytes, with the usual single backtrack point.
fn match_glob(glob: &[u8], name: &[u8]) -> bool {
    let (mut g, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match glob.get(g) {
            Some(b'*') => {
                star = Some((g, n));
                g += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
                g += 1;
                n += 1;
            }
            _ => match star {
                Some((star_g, star_n)) => {
                    g = star_g + 1;
                    n = star_n + 1;
                    star = Some((star_g, star_n + 1));
                }
                None => return false,
            },
        }
    }
    glob[g..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn excludes(patterns: &[&str], path: &str) -> bool {
        let patterns: Vec<String> = patterns.iter().map(|p| p.to_string()).collect();
        Excludes::parse(&patterns)
            .expect("valid patterns")
            .excludes(Path::new(path))
    }

    #[test]
    fn patterns_match_anchored_paths() {
        assert!(excludes(&["target"], "target"));
        assert!(excludes(&["./target/"], "target"));
        assert!(!excludes(&["target"], "src/target"));
        assert!(excludes(&["**/__pycache__"], "a/b/__pycache__"));
        assert!(excludes(&["**/__pycache__"], "__pycache__"));
        assert!(excludes(&["*.log"], "build.log"));
        assert!(!excludes(&["*.log"], "logs/build.log"));
        assert!(excludes(&["a/*/c"], "a/b/c"));
        assert!(excludes(&["node_?odules"], "node_modules"));
        assert!(!excludes(&[], "anything"));
    }

    #[test]
    fn globs_backtrack() {
        assert!(match_glob(b"*a*b", b"xxaxxab"));
        assert!(match_glob(b"*", b""));
        assert!(!match_glob(b"a*c", b"abcd"));
        assert!(match_glob(b"a*c*", b"abcd"));
    }

    #[test]
    fn bad_patterns_are_refused() {
        for pattern in ["/etc", "../x", "", "./"] {
            let err = Excludes::parse(&[pattern.to_string()]).expect_err(pattern);
            assert!(err.to_string().contains("exclude pattern"), "{err}");
        }
    }
}
