//! The name a connection opens with: the TLS server name (SNI) of a
//! ClientHello, or the `Host` header of an HTTP/1 request. Reads only the
//! first bytes the guest sent; nothing here trusts them beyond their length
//! fields, each of which is checked before use.

use crate::policy::{is_host_name, normalize_name};

/// How much of a connection's start is read before deciding without a name.
pub const SNIFF_LIMIT: usize = 16 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sniffed {
    Name(String),
    /// The start is complete and names no host (or is another protocol).
    NoName,
    /// More bytes may still bring a name.
    Incomplete,
}

/// Looks for a host name at the start of a connection.
pub fn sniff(start: &[u8]) -> Sniffed {
    let start = skip_blank_lines(start);
    match start.first() {
        None => Sniffed::Incomplete,
        Some(0x16) => tls_server_name(start),
        Some(_) if looks_like_http(start) => http_host(start),
        Some(_) => Sniffed::NoName,
    }
}

/// Whether a start may carry a name this code could not read (TLS, or
/// something shaped like an HTTP request): such a start is not let
/// through on an address alone.
pub fn may_carry_name(start: &[u8]) -> bool {
    let start = skip_blank_lines(start);
    start.first() == Some(&0x16) || looks_like_http(start)
}

/// HTTP servers skip empty lines before a request; so does this.
fn skip_blank_lines(start: &[u8]) -> &[u8] {
    let blank = start
        .iter()
        .position(|b| *b != b'\r' && *b != b'\n')
        .unwrap_or(start.len());
    &start[blank..]
}

/// A name the guest sent, when it is a plain host name; anything else
/// (an address, control characters, shell words) names nothing.
fn named(host: &str) -> Sniffed {
    let name = normalize_name(host);
    match is_host_name(&name) {
        true => Sniffed::Name(name),
        false => Sniffed::NoName,
    }
}

/// A request line: a method token (any, in any case) and a space, and,
/// once the line is complete, ` HTTP/` in it (so `EHLO x` or `USER x` of
/// other line protocols is not taken for one).
fn looks_like_http(start: &[u8]) -> bool {
    let token = start
        .iter()
        .take_while(|b| b.is_ascii_alphabetic() || **b == b'-' || **b == b'_')
        .count();
    let method = match start.get(token) {
        None => token == start.len() && token > 0,
        Some(b' ') => token > 0,
        Some(_) => false,
    };
    match start.iter().position(|b| *b == b'\n') {
        Some(end) if method => start[..end].windows(6).any(|w| w == b" HTTP/"),
        _ => method,
    }
}

/// `name:port` or `name`, without the port.
fn without_port(value: &str) -> &str {
    match value.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => value,
    }
}

/// The host of an absolute-form target (`http://name/...`) or of a
/// `CONNECT name:port`: it beats the `Host` header at the server.
fn target_host(request_line: &[u8]) -> Option<Sniffed> {
    let line = String::from_utf8_lossy(request_line);
    let mut words = line.split(' ');
    let method = words.next()?;
    let target = words.next()?;
    if method.eq_ignore_ascii_case("CONNECT") {
        return Some(named(without_port(target)));
    }
    let lower = target.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("http://")
        .or_else(|| lower.strip_prefix("https://"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit('@').next().unwrap_or_default();
    Some(named(without_port(host)))
}

fn http_host(start: &[u8]) -> Sniffed {
    let mut rest = start;
    let mut first = true;
    // Lines end in LF, with or without CR, as servers take them.
    while let Some(end) = rest.iter().position(|b| *b == b'\n') {
        let line = rest[..end].strip_suffix(b"\r").unwrap_or(&rest[..end]);
        rest = &rest[end + 1..];
        if line.is_empty() {
            return Sniffed::NoName;
        }
        if first {
            first = false;
            if let Some(sniffed) = target_host(line) {
                return sniffed;
            }
            continue;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if line[..colon].eq_ignore_ascii_case(b"host") {
            let value = String::from_utf8_lossy(&line[colon + 1..]);
            return named(without_port(value.trim()));
        }
    }
    Sniffed::Incomplete
}

/// A cursor over untrusted bytes: every read is bounds-checked.
struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.bytes.len() < n {
            return None;
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| b[0] as usize)
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]) as usize)
    }
    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| (b[0] as usize) << 16 | (b[1] as usize) << 8 | b[2] as usize)
    }
}

fn tls_server_name(start: &[u8]) -> Sniffed {
    if start.len() < 5 {
        return Sniffed::Incomplete;
    }
    let record_len = u16::from_be_bytes([start[3], start[4]]) as usize;
    if start.len() < 5 + record_len {
        return match start.len() >= SNIFF_LIMIT {
            true => Sniffed::NoName,
            false => Sniffed::Incomplete,
        };
    }
    client_hello_name(&start[5..5 + record_len]).map_or(Sniffed::NoName, |name| named(&name))
}

fn client_hello_name(record: &[u8]) -> Option<String> {
    let mut r = Reader { bytes: record };
    if r.u8()? != 1 {
        return None; // not a ClientHello
    }
    let _length = r.u24()?;
    r.take(2 + 32)?; // version, random
    let session = r.u8()?;
    r.take(session)?;
    let suites = r.u16()?;
    r.take(suites)?;
    let compression = r.u8()?;
    r.take(compression)?;
    let extensions = r.u16()?;
    let mut ext = Reader {
        bytes: r.take(extensions.min(r.bytes.len()))?,
    };
    while let Some(kind) = ext.u16() {
        let len = ext.u16()?;
        let data = ext.take(len)?;
        if kind != 0 {
            continue;
        }
        let mut names = Reader { bytes: data };
        let _list = names.u16()?;
        while let Some(name_type) = names.u8() {
            let len = names.u16()?;
            let name = names.take(len)?;
            if name_type == 0 {
                return std::str::from_utf8(name).ok().map(normalize_name);
            }
        }
        return None;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ClientHello record carrying `name` as its server name.
    fn client_hello(name: &str) -> Vec<u8> {
        let mut sni = Vec::new();
        let n = name.len() as u16;
        sni.extend((n + 3).to_be_bytes());
        sni.push(0);
        sni.extend(n.to_be_bytes());
        sni.extend(name.as_bytes());
        let mut exts = Vec::new();
        exts.extend([0x00, 0x0b, 0x00, 0x02, 0x01, 0x00]); // ec_point_formats
        exts.extend([0x00, 0x00]);
        exts.extend((sni.len() as u16).to_be_bytes());
        exts.extend(sni);
        let mut body = vec![0x03, 0x03];
        body.extend([7u8; 32]);
        body.push(0); // session id
        body.extend([0x00, 0x02, 0x13, 0x01]); // one suite
        body.extend([0x01, 0x00]); // null compression
        body.extend((exts.len() as u16).to_be_bytes());
        body.extend(exts);
        let mut hs = vec![0x01];
        hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
        hs.extend(body);
        let mut record = vec![0x16, 0x03, 0x01];
        record.extend((hs.len() as u16).to_be_bytes());
        record.extend(hs);
        record
    }

    #[test]
    fn reads_the_tls_server_name() {
        let hello = client_hello("Files.Example.org");
        assert_eq!(sniff(&hello), Sniffed::Name("files.example.org".into()));
        for cut in [1, 4, 10, hello.len() - 1] {
            assert_eq!(sniff(&hello[..cut]), Sniffed::Incomplete, "cut at {cut}");
        }
    }

    #[test]
    fn corrupt_hellos_name_nothing_and_never_panic() {
        let hello = client_hello("pypi.org");
        for i in 5..hello.len() {
            for value in [0x00, 0xff] {
                let mut bad = hello.clone();
                bad[i] = value;
                let _ = sniff(&bad);
            }
        }
        let mut no_sni = hello.clone();
        no_sni[5] = 2; // a ServerHello
        assert_eq!(sniff(&no_sni), Sniffed::NoName);
    }

    #[test]
    fn reads_the_http_host() {
        let request = b"GET /simple/six/ HTTP/1.1\r\nUser-Agent: x\r\nhost: PyPI.org:8080\r\n\r\n";
        assert_eq!(sniff(request), Sniffed::Name("pypi.org".into()));
        assert_eq!(
            sniff(b"GET / HTTP/1.1\r\nUser-Agent: x\r\n"),
            Sniffed::Incomplete
        );
        assert_eq!(sniff(b"GE"), Sniffed::Incomplete);
        assert_eq!(sniff(b"GET / HTTP/1.0\r\n\r\n"), Sniffed::NoName);
        assert_eq!(sniff(b"SSH-2.0-OpenSSH_9.2\r\n"), Sniffed::NoName);
    }

    #[test]
    fn requests_name_what_the_server_would_use() {
        let absolute = b"GET http://evil.example/x HTTP/1.1\r\nHost: pypi.org\r\n\r\n";
        assert_eq!(sniff(absolute), Sniffed::Name("evil.example".into()));
        let connect = b"CONNECT evil.example:443 HTTP/1.1\r\nHost: pypi.org\r\n\r\n";
        assert_eq!(sniff(connect), Sniffed::Name("evil.example".into()));
        let blank = b"\r\npropfind / HTTP/1.1\nHost: evil.example\n\n";
        assert_eq!(sniff(blank), Sniffed::Name("evil.example".into()));
        assert!(may_carry_name(b"PRI * HTTP/2.0\r\n"));
        assert!(may_carry_name(&[0x16, 0x03]));
        assert!(!may_carry_name(b"SSH-2.0-OpenSSH_9.2\r\n"));
        assert!(!may_carry_name(b"EHLO mail.example\r\n"));
    }

    #[test]
    fn names_that_are_not_host_names_name_nothing() {
        let request = b"GET / HTTP/1.1\r\nHost: x.org;$(reboot)\r\n\r\n";
        assert_eq!(sniff(request), Sniffed::NoName);
        assert_eq!(sniff(&client_hello("10.0.0.1")), Sniffed::NoName);
        assert_eq!(sniff(&client_hello("a\u{1b}[2J.org")), Sniffed::NoName);
    }
}
