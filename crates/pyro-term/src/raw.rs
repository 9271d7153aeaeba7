//! A bounded ring of the raw bytes fed to the terminal, for callers that want
//! the program's output exactly as written (escape sequences and all).

use std::collections::VecDeque;

/// Most raw bytes kept between two raw reads.
pub const RAW_MAX_BYTES: usize = 1024 * 1024;

/// Bounded FIFO of bytes; the oldest fall off first and are counted.
#[derive(Debug)]
pub(crate) struct RawRing {
    bytes: VecDeque<u8>,
    capacity: usize,
    dropped: u64,
}

impl RawRing {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            bytes: VecDeque::new(),
            capacity,
            dropped: 0,
        }
    }

    pub(crate) fn push(&mut self, bytes: &[u8]) {
        let kept = if bytes.len() > self.capacity {
            let skipped = bytes.len() - self.capacity;
            self.dropped += (skipped + self.bytes.len()) as u64;
            self.bytes.clear();
            &bytes[skipped..]
        } else {
            let excess = (self.bytes.len() + bytes.len()).saturating_sub(self.capacity);
            self.bytes.drain(..excess);
            self.dropped += excess as u64;
            bytes
        };
        self.bytes.extend(kept);
    }

    /// Everything kept, and how much fell off, since the previous take.
    pub(crate) fn take(&mut self) -> (Vec<u8>, u64) {
        let bytes = Vec::from(std::mem::take(&mut self.bytes));
        (bytes, std::mem::take(&mut self.dropped))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_everything_under_the_bound() {
        let mut ring = RawRing::new(8);
        ring.push(b"abc");
        ring.push(b"def");
        assert_eq!(ring.take(), (b"abcdef".to_vec(), 0));
        assert_eq!(ring.take(), (Vec::new(), 0));
    }

    #[test]
    fn drops_oldest_and_counts_them() {
        let mut ring = RawRing::new(4);
        ring.push(b"abc");
        ring.push(b"def");
        assert_eq!(ring.take(), (b"cdef".to_vec(), 2));
        ring.push(b"0123456789");
        ring.push(b"x");
        assert_eq!(ring.take(), (b"789x".to_vec(), 7));
    }
}
