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
    fn scan(&self, input: &[u8], end: bool) -> (Vec<u8>, usize) {
        let mut out = Vec::with_capacity(input.len());
        let mut i = 0;
        'bytes: while i < input.len() {
            let rest = &input[i..];
            if self.first[usize::from(rest[0])] {
                for (name, value) in self.values.iter() {
                    if rest.starts_with(value) {
                        out.extend_from_slice(format!("[secret:{name}]").as_bytes());
                        i += value.len();
                        continue 'bytes;
                    }
                }
                if !end
                    && self
                        .values
                        .iter()
                        .any(|(_, value)| value.len() > rest.len() && value.starts_with(rest))
                {
                    break;
                }
            }
            out.push(rest[0]);
            i += 1;
        }
        (out, i)
    }
}

/// Redacts one stream chunk by chunk.
#[derive(Debug)]
pub(crate) struct Redactor {
    secrets: Secrets,
    held: Vec<u8>,
}

impl Redactor {
    /// What may be shown of the stream so far, given its next chunk.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.secrets.is_empty() {
            return chunk.to_vec();
        }
        self.held.extend_from_slice(chunk);
        let (out, used) = self.secrets.scan(&self.held, false);
        self.held.drain(..used);
        out
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
