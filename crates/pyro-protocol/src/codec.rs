//! Frame encoding and incremental decoding. See the crate docs for the layout.

use std::io::{self, Read, Write};

use crate::message::Message;

/// Bytes of `id` + `kind` that follow the length field.
const ID_KIND_LEN: usize = 5;
/// Length field + id + kind.
pub const HEADER_LEN: usize = 4 + ID_KIND_LEN;
/// Largest payload one frame may carry (256 KiB).
pub const MAX_PAYLOAD_LEN: usize = 256 * 1024;
/// Largest value of the length field.
pub const MAX_FRAME_LEN: u32 = (MAX_PAYLOAD_LEN + ID_KIND_LEN) as u32;

/// What a frame's payload holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// One JSON-encoded [`Message`].
    Message,
    /// Bytes a command wrote to its standard output.
    Stdout,
    /// Bytes a command wrote to its standard error.
    Stderr,
    /// Bytes for a command's standard input.
    Stdin,
    /// File content: `ReadFile` data (guest → host), `WriteFile` data
    /// (host → guest).
    File,
    /// A kind this build does not know; receivers ignore it.
    Other(u8),
}

impl FrameKind {
    fn to_byte(self) -> u8 {
        match self {
            FrameKind::Message => 0,
            FrameKind::Stdout => 1,
            FrameKind::Stderr => 2,
            FrameKind::Stdin => 3,
            FrameKind::File => 4,
            FrameKind::Other(byte) => byte,
        }
    }

    fn from_byte(byte: u8) -> Self {
        match byte {
            0 => FrameKind::Message,
            1 => FrameKind::Stdout,
            2 => FrameKind::Stderr,
            3 => FrameKind::Stdin,
            4 => FrameKind::File,
            other => FrameKind::Other(other),
        }
    }
}

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub id: u32,
    pub kind: FrameKind,
    pub payload: Vec<u8>,
}

impl Frame {
    /// Parses the payload of a `Message` frame.
    pub fn message(&self) -> Result<Message, DecodeError> {
        if self.kind != FrameKind::Message {
            return Err(DecodeError::NotAMessage(self.kind));
        }
        serde_json::from_slice(&self.payload).map_err(DecodeError::Json)
    }
}

/// Why bytes could not be decoded into frames or messages.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("frame length {0} exceeds the cap of {MAX_FRAME_LEN} bytes")]
    TooLarge(u32),
    #[error("frame length {0} is shorter than the frame header")]
    TooShort(u32),
    #[error("frame of kind {0:?} does not hold a message")]
    NotAMessage(FrameKind),
    #[error("malformed message")]
    Json(#[source] serde_json::Error),
}

/// Appends one frame to `out`.
///
/// # Panics
/// If `payload` is longer than [`MAX_PAYLOAD_LEN`]; callers chunk data first.
pub fn encode_frame(id: u32, kind: FrameKind, payload: &[u8], out: &mut Vec<u8>) {
    assert!(
        payload.len() <= MAX_PAYLOAD_LEN,
        "frame payload of {} bytes exceeds MAX_PAYLOAD_LEN",
        payload.len()
    );
    let len = (payload.len() + ID_KIND_LEN) as u32;
    out.reserve(HEADER_LEN + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.push(kind.to_byte());
    out.extend_from_slice(payload);
}

/// Encodes a message frame.
pub fn encode_message(id: u32, message: &Message) -> Vec<u8> {
    let json = serde_json::to_vec(message).expect("protocol messages always serialise");
    let mut out = Vec::with_capacity(HEADER_LEN + json.len());
    encode_frame(id, FrameKind::Message, &json, &mut out);
    out
}

/// Encodes `data` as one or more data frames of `kind`, chunked to the cap.
/// An empty `data` encodes the end-of-stream marker.
pub fn encode_data(id: u32, kind: FrameKind, data: &[u8], out: &mut Vec<u8>) {
    if data.is_empty() {
        encode_frame(id, kind, &[], out);
        return;
    }
    for chunk in data.chunks(MAX_PAYLOAD_LEN) {
        encode_frame(id, kind, chunk, out);
    }
}

/// Incremental decoder: feed it bytes as they arrive, take frames out.
///
/// Memory is bounded by one maximal frame plus what the caller feeds at once.
#[derive(Debug, Default)]
pub struct Decoder {
    buf: Vec<u8>,
    start: usize,
}

impl Decoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends received bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.start > 0 && self.start == self.buf.len() {
            self.buf.clear();
            self.start = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Takes the next complete frame, if one is buffered. After an error the
    /// stream cannot be resynchronised and the connection should be dropped.
    pub fn next_frame(&mut self) -> Result<Option<Frame>, DecodeError> {
        let pending = &self.buf[self.start..];
        if pending.len() < 4 {
            return Ok(None);
        }
        let len = u32::from_le_bytes(pending[..4].try_into().expect("4 bytes"));
        if len > MAX_FRAME_LEN {
            return Err(DecodeError::TooLarge(len));
        }
        if (len as usize) < ID_KIND_LEN {
            return Err(DecodeError::TooShort(len));
        }
        let total = 4 + len as usize;
        if pending.len() < total {
            return Ok(None);
        }
        let id = u32::from_le_bytes(pending[4..8].try_into().expect("4 bytes"));
        let kind = FrameKind::from_byte(pending[8]);
        let payload = pending[HEADER_LEN..total].to_vec();
        self.start += total;
        if self.start > MAX_PAYLOAD_LEN && self.start * 2 > self.buf.len() {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        Ok(Some(Frame { id, kind, payload }))
    }

    /// Bytes buffered but not yet returned as frames.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }
}

/// Reads exactly one frame from a blocking reader. `Ok(None)` on a clean EOF
/// at a frame boundary.
pub fn read_frame(reader: &mut impl Read) -> io::Result<Option<Frame>> {
    let mut header = [0u8; HEADER_LEN];
    let mut filled = 0;
    while filled < HEADER_LEN {
        let n = reader.read(&mut header[filled..])?;
        if n == 0 {
            if filled == 0 {
                return Ok(None);
            }
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        filled += n;
    }
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes"));
    if len > MAX_FRAME_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            DecodeError::TooLarge(len),
        ));
    }
    if (len as usize) < ID_KIND_LEN {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            DecodeError::TooShort(len),
        ));
    }
    let id = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
    let kind = FrameKind::from_byte(header[8]);
    let mut payload = vec![0u8; len as usize - ID_KIND_LEN];
    reader.read_exact(&mut payload)?;
    Ok(Some(Frame { id, kind, payload }))
}

/// Writes one frame to a blocking writer in a single `write_all`.
pub fn write_frame(
    writer: &mut impl Write,
    id: u32,
    kind: FrameKind,
    payload: &[u8],
) -> io::Result<()> {
    let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
    encode_frame(id, kind, payload, &mut out);
    writer.write_all(&out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::ExecRequest;

    #[test]
    fn round_trips_through_the_incremental_decoder_byte_by_byte() {
        let mut wire = encode_message(7, &Message::PowerOff);
        encode_data(7, FrameKind::Stdout, b"hello", &mut wire);
        encode_data(7, FrameKind::Stdout, b"", &mut wire);
        let mut decoder = Decoder::new();
        let mut frames = Vec::new();
        for byte in &wire {
            decoder.push(std::slice::from_ref(byte));
            while let Some(frame) = decoder.next_frame().unwrap() {
                frames.push(frame);
            }
        }
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].message().unwrap(), Message::PowerOff);
        assert_eq!(frames[1].payload, b"hello");
        assert!(frames[2].payload.is_empty());
        assert_eq!(decoder.buffered(), 0);
    }

    #[test]
    fn large_data_is_chunked_under_the_cap() {
        let data = vec![b'x'; MAX_PAYLOAD_LEN * 2 + 10];
        let mut wire = Vec::new();
        encode_data(3, FrameKind::Stderr, &data, &mut wire);
        let mut decoder = Decoder::new();
        decoder.push(&wire);
        let mut total = 0;
        while let Some(frame) = decoder.next_frame().unwrap() {
            assert!(frame.payload.len() <= MAX_PAYLOAD_LEN);
            total += frame.payload.len();
        }
        assert_eq!(total, data.len());
    }

    #[test]
    fn oversized_length_is_rejected_before_buffering() {
        let mut decoder = Decoder::new();
        decoder.push(&(MAX_FRAME_LEN + 1).to_le_bytes());
        assert!(matches!(
            decoder.next_frame(),
            Err(DecodeError::TooLarge(_))
        ));
        let mut short = Decoder::new();
        short.push(&[1, 0, 0, 0]);
        assert!(matches!(short.next_frame(), Err(DecodeError::TooShort(1))));
    }

    #[test]
    fn blocking_helpers_round_trip() {
        let mut wire = Vec::new();
        let request = Message::Exec(ExecRequest {
            argv: vec!["true".into()],
            ..ExecRequest::default()
        });
        write_frame(
            &mut wire,
            9,
            FrameKind::Message,
            &serde_json::to_vec(&request).unwrap(),
        )
        .unwrap();
        let mut reader = &wire[..];
        let frame = read_frame(&mut reader).unwrap().unwrap();
        assert_eq!(frame.id, 9);
        assert_eq!(frame.message().unwrap(), request);
        assert!(read_frame(&mut reader).unwrap().is_none());
    }

    #[test]
    fn unknown_frame_kinds_pass_through() {
        let mut wire = Vec::new();
        encode_frame(1, FrameKind::Other(42), b"x", &mut wire);
        let mut decoder = Decoder::new();
        decoder.push(&wire);
        assert_eq!(
            decoder.next_frame().unwrap().unwrap().kind,
            FrameKind::Other(42)
        );
    }
}
