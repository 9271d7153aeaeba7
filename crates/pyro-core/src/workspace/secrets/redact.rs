//! Secret values replaced by `[secret:NAME]` in whatever pyro shows or
//! stores: whole texts ([`Secrets::redact`]), and byte streams whose value
//! may arrive split across chunks ([`Redactor`]), which hold back only the
//! tail that could still become a value: fewer bytes than the longest one.

use std::collections::BTreeMap;
use std::sync::Arc;

/// The values to hide, longest first, so a value that contains another is
/// replaced whole.
#[derive(Debug, Clone)]
pub(crate) struct Secrets {
    values: Arc<Vec<(String, Vec<u8>)>>,
    /// Bytes a value may start with.
    first: [bool; 256],
}

impl Secrets {
    pub(crate) fn new(named: &BTreeMap<String, String>) -> Secrets {
        let mut values: Vec<(String, Vec<u8>)> = named
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| (name.clone(), value.as_bytes().to_vec()))
            .collect();
        values.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then(a.0.cmp(&b.0)));
        let mut first = [false; 256];
        for (_, value) in &values {
            first[usize::from(value[0])] = true;
        }
        Secrets {
            values: Arc::new(values),
            first,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `text` with every value replaced.
    pub(crate) fn redact(&self, text: &str) -> String {
        if self.is_empty() {
            return text.to_string();
        }
        let (out, _) = self.scan(text.as_bytes(), true);
        // Markers are ASCII and values whole UTF-8, so this stays UTF-8.
        String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into())
    }

    /// A streaming redactor over these values.
    pub(crate) fn stream(&self) -> Redactor {
        Redactor {
            secrets: self.clone(),
            held: Vec::new(),
        }
    }

    /// Replaces values in `input`; unless `end`, stops before a tail that
    /// is the start of a value. Returns the output and the bytes consumed.
    /// Where values overlap, the run they cover together is replaced, one
    /// marker for each.
    fn scan(&self, input: &[u8], end: bool) -> (Vec<u8>, usize) {
        let mut out = Vec::with_capacity(input.len());
        let mut i = 0;
        'bytes: while i < input.len() {
            if !self.first[usize::from(input[i])] {
                out.push(input[i]);
                i += 1;
                continue;
            }
            // A longer value may still follow what is here so far.
            if !end && self.may_continue(&input[i..]) {
                break;
            }
            let Some((name, len)) = self.longest_at(&input[i..], 0) else {
                out.push(input[i]);
                i += 1;
                continue;
            };
            let mut names = vec![name];
            let mut stop = i + len;
            let mut j = i + 1;
            while j < stop {
                if !end && self.may_continue(&input[j..]) {
                    break 'bytes;
                }
                if let Some((name, len)) = self.longest_at(&input[j..], stop - j) {
                    names.push(name);
                    stop = j + len;
                }
                j += 1;
            }
            for name in names {
                out.extend_from_slice(format!("[secret:{name}]").as_bytes());
            }
            i = stop;
        }
        (out, i)
    }

    /// Whether `rest` is the start of a value longer than it.
    fn may_continue(&self, rest: &[u8]) -> bool {
        self.values
            .iter()
            .any(|(_, value)| value.len() > rest.len() && value.starts_with(rest))
    }

    /// The longest value `rest` starts with, if it is longer than `beyond`.
    fn longest_at(&self, rest: &[u8], beyond: usize) -> Option<(&str, usize)> {
        self.values
            .iter()
            .find(|(_, value)| value.len() > beyond && rest.starts_with(value))
            .map(|(name, value)| (name.as_str(), value.len()))
    }
}

/// Redacts one stream chunk by chunk.
#[derive(Debug, Clone)]
pub(crate) struct Redactor {
    secrets: Secrets,
    held: Vec<u8>,
}

impl Redactor {
    /// What may be shown of the stream so far, given its next chunk.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.secrets.is_empty() && self.held.is_empty() {
            return chunk.to_vec();
        }
        self.held.extend_from_slice(chunk);
        let (out, used) = self.secrets.scan(&self.held, false);
        self.held.drain(..used);
        out
    }

    pub(crate) fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// Redacts with `secrets` from now on (what is held back is scanned
    /// again with them).
    pub(crate) fn replace(&mut self, secrets: Secrets) {
        self.secrets = secrets;
    }

    /// The rest, at the stream's end.
    pub(crate) fn finish(&mut self) -> Vec<u8> {
        let held = std::mem::take(&mut self.held);
        self.secrets.scan(&held, true).0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(pairs: &[(&str, &str)]) -> Secrets {
        Secrets::new(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    #[test]
    fn whole_texts_lose_every_value() {
        let s = secrets(&[("TOKEN", "hunter22"), ("LONG", "hunter22-and-more")]);
        assert_eq!(s.redact("a hunter22 b"), "a [secret:TOKEN] b");
        assert_eq!(s.redact("hunter22-and-more!"), "[secret:LONG]!");
        assert_eq!(s.redact("hunter2"), "hunter2");
        assert_eq!(secrets(&[]).redact("x"), "x");
    }

    #[test]
    fn values_split_across_chunks_are_caught() {
        let s = secrets(&[("TOKEN", "s3cr3t-value")]);
        let text = b"xs3cr3t-valuey\ns3cr3t-value";
        for size in 1..text.len() {
            let mut r = s.stream();
            let mut out = Vec::new();
            for chunk in text.chunks(size) {
                out.extend(r.push(chunk));
            }
            out.extend(r.finish());
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "x[secret:TOKEN]y\n[secret:TOKEN]",
                "chunks of {size}"
            );
        }
    }

    #[test]
    fn a_longer_value_wins_however_the_chunks_fall() {
        let s = secrets(&[
            ("SHORT", "sk-live-abcd"),
            ("LONG", "sk-live-abcd-1234567890"),
        ]);
        let mut r = s.stream();
        let mut out = r.push(b"sk-live-abcd");
        out.extend(r.push(b"-1234567890 sk-live-abcd "));
        out.extend(r.finish());
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "[secret:LONG] [secret:SHORT] "
        );
    }

    #[test]
    fn overlapping_values_are_covered_whole() {
        let s = secrets(&[("A", "abcd"), ("B", "cdefgh")]);
        assert_eq!(s.redact("xabcdefghy"), "x[secret:A][secret:B]y");
        let mut r = s.stream();
        let mut out = r.push(b"xabcde");
        out.extend(r.push(b"fghy"));
        out.extend(r.finish());
        assert_eq!(String::from_utf8(out).unwrap(), "x[secret:A][secret:B]y");
    }

    #[test]
    fn only_a_possible_start_is_held_back() {
        let s = secrets(&[("TOKEN", "abcdef")]);
        let mut r = s.stream();
        assert_eq!(r.push(b"hello "), b"hello ");
        // "abc" may become the value: held, and never more than 5 bytes.
        assert_eq!(r.push(b"xyzabc"), b"xyz");
        assert_eq!(r.push(b"dX"), b"abcdX");
        assert_eq!(r.push(b"abcde"), b"");
        assert_eq!(r.finish(), b"abcde");
    }
}
