//! The stdio transport: rmcp's newline-delimited JSON-RPC reader behind a
//! guard that caps one message at [`MAX_MESSAGE_BYTES`] and answers the
//! messages it drops.
//!
//! Why: rmcp's stdio reader silently drops any line longer than its own
//! 16 MiB default (`DEFAULT_MAX_LINE_LENGTH`), logs it, and sends nothing
//! back, so a client that sent a 17 MB `workspace_file_write` waited for an
//! answer forever. The guard lifts that limit to [`MAX_MESSAGE_BYTES`] and,
//! for a line over it, never leaves the client hanging:
//!
//! - the bytes of the line already passed on are ended with a byte that
//!   makes them invalid JSON, which rmcp ignores (no id to answer);
//! - the rest of the line is read and thrown away (never buffered), while a
//!   small streaming scanner picks out its top-level `"id"` and `"method"`
//!   wherever they appear in the object;
//! - a request (it has an id) is replaced by a [`OVERSIZED_METHOD`] request
//!   with the same id, which the server answers (see
//!   [`oversized_response`]): an `is_error` tool result for `tools/call`,
//!   a JSON-RPC error otherwise. A notification is simply dropped.
//!
//! The guard also reads stdin in large chunks, so rmcp's small line reader
//! is served from memory instead of one blocking-pool hand-off per 8 KiB.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use rmcp::model::{CallToolResult, ContentBlock, CustomResult};
use serde_json::Value;
use tokio::io::{AsyncRead, ReadBuf};

/// The largest JSON-RPC message (one line) the server reads: room for a
/// 100 MB file in `workspace_file_write` even with some JSON escaping.
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024 * 1024;

/// The method of the request that stands in for a dropped oversized one.
pub const OVERSIZED_METHOD: &str = "pyro/oversizedMessage";

/// The most of an `id` or `method` value the scanner keeps; a longer one
/// is cut, so it no longer parses and counts as absent.
const MAX_CAPTURE: usize = 1024;

/// Keeps `b` in a captured value, up to [`MAX_CAPTURE`] bytes.
fn capture_byte(capture: &mut Vec<u8>, b: u8) {
    if capture.len() <= MAX_CAPTURE {
        capture.push(b);
    }
}

/// How much of stdin the guard reads at once.
const CHUNK: usize = 1024 * 1024;

/// An [`AsyncRead`] over the client's byte stream that passes lines of up to
/// `limit` bytes through unchanged and replaces longer ones; see the module
/// doc.
pub struct MessageGuard<R> {
    inner: R,
    limit: usize,
    chunk: Box<[u8]>,
    /// `chunk[start..end]` has been read from `inner` and not yet handled.
    start: usize,
    end: usize,
    /// Bytes of the current line seen so far (passed on or discarded).
    line_len: usize,
    /// True once the current line went over `limit`.
    discarding: bool,
    scanner: Scanner,
    /// Bytes to hand out before anything else (terminators, replacements).
    pending: Vec<u8>,
    pending_at: usize,
    eof: bool,
}

impl<R> MessageGuard<R> {
    pub fn new(inner: R, limit: usize) -> Self {
        Self::with_chunk(inner, limit, CHUNK)
    }

    fn with_chunk(inner: R, limit: usize, chunk: usize) -> Self {
        MessageGuard {
            inner,
            limit,
            chunk: vec![0; chunk].into_boxed_slice(),
            start: 0,
            end: 0,
            line_len: 0,
            discarding: false,
            scanner: Scanner::default(),
            pending: Vec::new(),
            pending_at: 0,
            eof: false,
        }
    }

    /// Handles buffered input into `out`; returns whether it produced bytes.
    fn process(&mut self, out: &mut ReadBuf<'_>) -> bool {
        let before = out.filled().len();
        while out.remaining() > 0 {
            if self.pending_at < self.pending.len() {
                let take = (self.pending.len() - self.pending_at).min(out.remaining());
                out.put_slice(&self.pending[self.pending_at..self.pending_at + take]);
                self.pending_at += take;
                continue;
            }
            self.pending.clear();
            self.pending_at = 0;
            if self.start == self.end {
                break;
            }
            let available = &self.chunk[self.start..self.end];
            let newline = available.iter().position(|&b| b == b'\n');
            let span = newline.map_or(available.len(), |i| i + 1);
            if self.discarding {
                self.scanner.feed(&available[..span]);
                self.line_len += span;
                self.start += span;
                if newline.is_some() {
                    self.end_oversized_line();
                }
                continue;
            }
            if self.line_len + span > self.limit {
                // The line is too long: end what was passed on with a byte
                // that makes it invalid JSON, and drop the rest.
                self.discarding = true;
                if self.line_len > 0 {
                    self.pending.extend_from_slice(b"\x00\n");
                }
                continue;
            }
            let take = span.min(out.remaining());
            self.scanner.feed(&available[..take]);
            out.put_slice(&available[..take]);
            self.line_len += take;
            self.start += take;
            if take == span && newline.is_some() {
                self.line_len = 0;
                self.scanner = Scanner::default();
            }
        }
        out.filled().len() > before
    }

    /// The oversized line ended: queue its replacement.
    fn end_oversized_line(&mut self) {
        let scanner = std::mem::take(&mut self.scanner);
        let bytes = self.line_len.saturating_sub(1);
        self.discarding = false;
        self.line_len = 0;
        if let Some(id) = scanner.id() {
            let replacement = serde_json::json!({
                "jsonrpc": "2.0",
                "id": id,
                "method": OVERSIZED_METHOD,
                "params": {
                    "method": scanner.method(),
                    "bytes": bytes,
                    "limit": self.limit,
                },
            });
            self.pending
                .extend_from_slice(replacement.to_string().as_bytes());
            self.pending.push(b'\n');
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for MessageGuard<R> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        loop {
            if this.process(out) {
                return Poll::Ready(Ok(()));
            }
            if this.eof || out.remaining() == 0 {
                return Poll::Ready(Ok(()));
            }
            let mut read = ReadBuf::new(&mut this.chunk);
            match Pin::new(&mut this.inner).poll_read(cx, &mut read) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Ready(Ok(())) => {
                    let n = read.filled().len();
                    this.start = 0;
                    this.end = n;
                    if n == 0 {
                        this.eof = true;
                    }
                }
            }
        }
    }
}

/// The fuzzing harness of the guard (`fuzz/`): any client input, read in
/// odd pieces through a small limit, must come out as lines within the
/// limit, lines cut short (ending in a NUL), or oversized-message notes.
#[doc(hidden)]
pub fn fuzz_guard(data: &[u8]) {
    use tokio::io::AsyncReadExt as _;
    const LIMIT: usize = 64;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let out = runtime.block_on(async {
        let mut guard = MessageGuard::with_chunk(data, LIMIT, 13);
        let mut out = Vec::new();
        guard.read_to_end(&mut out).await.expect("reading a slice");
        out
    });
    // A line over the limit is only ever the guard's own note.
    for line in out.split(|&b| b == b'\n') {
        if line.len() <= LIMIT + 1 {
            continue;
        }
        let note: Value = serde_json::from_slice(line).expect("a long line is a note");
        assert_eq!(note["method"], OVERSIZED_METHOD, "{note}");
        assert_eq!(note["params"]["limit"], LIMIT, "{note}");
    }
    // A complete line within the limit passes as it came.
    if let Some(first) = data.split_inclusive(|&b| b == b'\n').next() {
        if first.ends_with(b"\n") && first.len() <= LIMIT {
            assert!(out.starts_with(first), "the first line did not pass whole");
        }
    }
}

/// The answer to a [`OVERSIZED_METHOD`] request (its `params`): for a tool
/// call an `is_error` result the model can act on, otherwise an error.
pub fn oversized_response(params: Option<&Value>) -> Result<CustomResult, rmcp::ErrorData> {
    let field = |name: &str| params.and_then(|p| p.get(name));
    let bytes = field("bytes").and_then(Value::as_u64).unwrap_or(0);
    let limit = field("limit")
        .and_then(Value::as_u64)
        .unwrap_or(MAX_MESSAGE_BYTES as u64);
    let method = field("method").and_then(Value::as_str).unwrap_or("");
    let message = format!(
        "the request was {bytes} bytes, over the pyro MCP server's limit of {limit} bytes per \
         message, so it was not run; send less at once: copy big files or trees in with \
         workspace_sync_push (profile workspace-full, a host path), or write the file in \
         parts (e.g. workspace_file_write smaller pieces and join them with workspace_exec)"
    );
    if method == "tools/call" {
        let result = CallToolResult::error(vec![ContentBlock::text(message)]);
        let value = serde_json::to_value(result)
            .map_err(|e| rmcp::ErrorData::internal_error(e.to_string(), None))?;
        Ok(CustomResult(value))
    } else {
        Err(rmcp::ErrorData::invalid_request(message, None))
    }
}

/// Which top-level member's value is being read.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
enum Member {
    #[default]
    Other,
    Id,
    Method,
}

/// A streaming scanner over one JSON object that keeps the raw values of its
/// top-level `"id"` and `"method"` members, in whatever order they come. It
/// needs no memory beyond them, so it can run over a line of any size.
#[derive(Debug, Default)]
struct Scanner {
    /// Nesting depth: 1 inside the top-level object.
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// At depth 1, a string now would be a member name.
    expect_key: bool,
    /// The member name being read (only short ones matter).
    key: Vec<u8>,
    /// Whose value comes (or is being read) at depth 1.
    member: Member,
    /// The raw value being captured, when `member` is id or method.
    capture: Option<Vec<u8>>,
    id: Option<Vec<u8>>,
    method: Option<Vec<u8>>,
    /// Both found: the rest of the line needs no look.
    done: bool,
}

impl Scanner {
    fn feed(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() && !self.done {
            if self.in_string && self.capture.is_none() && !self.reading_key() {
                // Skip the body of a string nobody needs, fast.
                match bytes[i..].iter().position(|&b| b == b'"' || b == b'\\') {
                    Some(at) if !self.escaped => i += at,
                    None if !self.escaped => return,
                    _ => {}
                }
            }
            self.byte(bytes[i]);
            i += 1;
        }
    }

    fn reading_key(&self) -> bool {
        self.depth == 1 && self.expect_key
    }

    fn byte(&mut self, b: u8) {
        if self.in_string {
            if let Some(capture) = &mut self.capture {
                capture_byte(capture, b);
            }
            if self.escaped {
                self.escaped = false;
                self.push_key(b);
            } else if b == b'\\' {
                self.escaped = true;
                self.push_key(b);
            } else if b == b'"' {
                self.in_string = false;
                if self.reading_key() {
                    self.member = match self.key.as_slice() {
                        b"id" => Member::Id,
                        b"method" => Member::Method,
                        _ => Member::Other,
                    };
                    self.key.clear();
                } else {
                    self.finish_capture();
                }
            } else {
                self.push_key(b);
            }
            return;
        }
        match b {
            b'"' => {
                self.in_string = true;
                if self.depth == 1 && !self.expect_key {
                    self.start_capture(b);
                }
            }
            b'{' | b'[' => {
                self.depth += 1;
                if self.depth == 1 {
                    self.expect_key = b == b'{';
                }
            }
            b'}' | b']' => {
                self.finish_capture();
                self.depth = self.depth.saturating_sub(1);
            }
            b':' if self.depth == 1 => self.expect_key = false,
            b',' if self.depth == 1 => {
                self.finish_capture();
                self.expect_key = true;
                self.member = Member::Other;
            }
            b' ' | b'\t' | b'\r' | b'\n' => {
                if self.capture.is_some() && !self.in_string {
                    self.finish_capture();
                }
            }
            _ => {
                if self.depth == 1 && !self.expect_key {
                    match &mut self.capture {
                        Some(capture) => capture_byte(capture, b),
                        None => self.start_capture(b),
                    }
                }
            }
        }
    }

    fn push_key(&mut self, b: u8) {
        if self.reading_key() && self.key.len() < 16 {
            self.key.push(b);
        }
    }

    fn start_capture(&mut self, first: u8) {
        if matches!(self.member, Member::Id | Member::Method) {
            self.capture = Some(vec![first]);
        }
    }

    fn finish_capture(&mut self) {
        let Some(raw) = self.capture.take() else {
            return;
        };
        match std::mem::take(&mut self.member) {
            Member::Id => self.id = Some(raw),
            Member::Method => self.method = Some(raw),
            Member::Other => {}
        }
        self.done = self.id.is_some() && self.method.is_some();
    }

    /// The request id, when the object had a usable one.
    fn id(&self) -> Option<Value> {
        let value: Value = serde_json::from_slice(self.id.as_deref()?).ok()?;
        (value.is_string() || value.is_number()).then_some(value)
    }

    fn method(&self) -> Option<String> {
        serde_json::from_slice(self.method.as_deref()?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    fn scan(text: &str) -> (Option<Value>, Option<String>) {
        let mut scanner = Scanner::default();
        // Byte by byte and in one go must agree.
        for b in text.as_bytes() {
            scanner.feed(std::slice::from_ref(b));
        }
        let mut whole = Scanner::default();
        whole.feed(text.as_bytes());
        assert_eq!(scanner.id(), whole.id(), "{text}");
        (whole.id(), whole.method())
    }

    #[test]
    fn scanner_finds_top_level_id_and_method_in_any_order() {
        let (id, method) = scan(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{}}"#);
        assert_eq!(id, Some(serde_json::json!(7)));
        assert_eq!(method.as_deref(), Some("tools/call"));
        let (id, method) = scan(
            r#"{ "method" : "tools/call", "params": {"id": 1, "arguments": {"content": "a\"b\\", "method": "x"}}, "jsonrpc": "2.0", "id" : "r-\"9" }"#,
        );
        assert_eq!(id, Some(serde_json::json!("r-\"9")));
        assert_eq!(method.as_deref(), Some("tools/call"));
        let (id, _) =
            scan(r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"id":3}}"#);
        assert_eq!(id, None);
        let (id, _) = scan(r#"{"id":null,"method":"x"}"#);
        assert_eq!(id, None);
    }

    #[test]
    fn a_huge_id_is_not_buffered_and_counts_as_absent() {
        let line = format!(
            r#"{{"id":"{}","method":"tools/call"}}"#,
            "9".repeat(100_000)
        );
        let mut scanner = Scanner::default();
        scanner.feed(line.as_bytes());
        assert_eq!(scanner.id(), None);
        assert!(scanner
            .id
            .as_ref()
            .is_none_or(|raw| raw.len() <= MAX_CAPTURE + 1));
    }

    async fn guarded(input: &[u8], limit: usize, chunk: usize) -> Vec<u8> {
        let mut guard = MessageGuard::with_chunk(input, limit, chunk);
        let mut out = Vec::new();
        // Small reads, like rmcp's 8 KiB BufReader.
        let mut buf = [0u8; 7];
        loop {
            let n = guard.read(&mut buf).await.unwrap();
            if n == 0 {
                return out;
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[tokio::test]
    async fn short_lines_pass_and_long_ones_are_replaced() {
        let small = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
        let big = format!(
            r#"{{"jsonrpc":"2.0","method":"tools/call","params":{{"arguments":{{"content":"{}"}}}},"id":2}}"#,
            "x".repeat(300)
        );
        let note = format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/x","params":{{"a":"{}"}}}}"#,
            "y".repeat(300)
        );
        let input = format!("{small}\n{big}\n{note}\n{small}\n");
        // Read whole, and in pieces so that the head of a long line has
        // already been passed on when it goes over the limit.
        for chunk in [CHUNK, 16] {
            let out = guarded(input.as_bytes(), 200, chunk).await;
            let out = String::from_utf8(out).unwrap();
            let lines: Vec<&str> = out.lines().collect();
            let cut = lines.iter().filter(|l| l.ends_with('\0')).count();
            assert_eq!(cut, if chunk == 16 { 2 } else { 0 }, "{lines:?}");
            let lines: Vec<&str> = lines.into_iter().filter(|l| !l.ends_with('\0')).collect();
            assert_eq!(lines.len(), 3, "{lines:?}");
            assert_eq!(lines[0], small);
            let replacement: Value = serde_json::from_str(lines[1]).unwrap();
            assert_eq!(replacement["id"], 2);
            assert_eq!(replacement["method"], OVERSIZED_METHOD);
            assert_eq!(replacement["params"]["method"], "tools/call");
            assert_eq!(replacement["params"]["bytes"], big.len());
            // The notification is dropped without a trace.
            assert_eq!(lines[2], small);
        }
    }

    #[test]
    fn oversized_tool_calls_get_an_error_result() {
        let params = serde_json::json!({"method": "tools/call", "bytes": 10, "limit": 5});
        let result = oversized_response(Some(&params)).unwrap();
        assert_eq!(result.0["isError"], true);
        let text = result.0["content"][0]["text"].as_str().unwrap();
        assert!(text.contains("limit of 5 bytes") && text.contains("workspace_sync_push"));
        let params = serde_json::json!({"method": "tools/list", "bytes": 10, "limit": 5});
        assert!(oversized_response(Some(&params)).is_err());
    }
}
