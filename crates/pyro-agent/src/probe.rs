//! Readiness probes: one check each, run on a request thread of its own
//! (they wait on the network for up to 2 s, and the reader thread must never
//! wait).
//!
//! - TCP: a connection to `host:port` succeeds within [`TCP_TIMEOUT`].
//! - HTTP: `GET` with HTTP/1.0 answers a status from 200 to 399 within
//!   [`HTTP_TIMEOUT`] in all. Only `http://HOST[:PORT][/PATH]` with `HOST` an
//!   IP literal or `localhost`: the agent has no resolver and no TLS, and a
//!   probe is about services inside the guest anyway.
//! - File: the path exists (following symlinks). Relative paths are under
//!   `/workspace`; nothing is confined, since a probe only stats.
//!
//! A probe that does not pass fails with `not_ready` and a message saying
//! why; a probe the agent cannot run at all (a bad URL) is `invalid_request`.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::{Duration, Instant};

use pyro_protocol::{ErrorKind, Probe};

use crate::confine::{FileError, DEFAULT_ROOT};

/// How long a TCP probe waits for its connection.
pub const TCP_TIMEOUT: Duration = Duration::from_secs(1);
/// How long an HTTP probe takes at most, connecting included.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(2);
/// Most bytes of an HTTP response read while looking for its status line.
const STATUS_LINE_LIMIT: usize = 8 * 1024;

/// Runs one probe: `Ok` when it passes.
pub fn check(probe: &Probe) -> Result<(), FileError> {
    match probe {
        Probe::Tcp { port, host } => tcp(host.as_deref().unwrap_or("127.0.0.1"), *port),
        Probe::Http { url } => http(url),
        Probe::File { path } => file(path),
        Probe::Unknown => Err(FileError::new(
            ErrorKind::Unsupported,
            "this agent does not know that kind of probe; it knows tcp, http and file",
        )),
    }
}

fn not_ready(message: String) -> FileError {
    FileError::new(ErrorKind::NotReady, message)
}

fn tcp(host: &str, port: u16) -> Result<(), FileError> {
    let ip = parse_host(host).map_err(|why| FileError::new(ErrorKind::InvalidRequest, why))?;
    let addr = SocketAddr::new(ip, port);
    TcpStream::connect_timeout(&addr, TCP_TIMEOUT)
        .map(drop)
        .map_err(|err| not_ready(format!("tcp {addr}: {}", describe(&err, TCP_TIMEOUT))))
}

fn file(path: &str) -> Result<(), FileError> {
    if path.is_empty() {
        return Err(FileError::new(
            ErrorKind::InvalidRequest,
            "empty path: name the file to wait for",
        ));
    }
    let full = Path::new(DEFAULT_ROOT).join(path);
    match fs::metadata(&full) {
        Ok(_) => Ok(()),
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            Err(not_ready(format!("no such file: {}", full.display())))
        }
        Err(err) => Err(not_ready(format!("{}: {err}", full.display()))),
    }
}

/// Where an HTTP probe connects and what it asks for.
#[derive(Debug, PartialEq, Eq)]
struct HttpTarget {
    addr: SocketAddr,
    /// The URL's `host[:port]`, as the `Host` header.
    authority: String,
    path: String,
}

fn http(url: &str) -> Result<(), FileError> {
    let target = parse_http_url(url).map_err(|why| {
        FileError::new(
            ErrorKind::InvalidRequest,
            format!("cannot probe {url:?}: {why}"),
        )
    })?;
    let deadline = Instant::now() + HTTP_TIMEOUT;
    let status = get_status(&target, deadline)
        .map_err(|err| not_ready(format!("{url}: {}", describe(&err, HTTP_TIMEOUT))))?;
    let (code, line) = status;
    if (200..400).contains(&code) {
        Ok(())
    } else {
        Err(not_ready(format!("{url}: {line}")))
    }
}

/// Sends the request and reads the status line: `(code, "HTTP 503 Reason")`.
fn get_status(target: &HttpTarget, deadline: Instant) -> io::Result<(u16, String)> {
    let remaining = || {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            Err(io::Error::from(io::ErrorKind::TimedOut))
        } else {
            Ok(left)
        }
    };
    let mut stream = TcpStream::connect_timeout(&target.addr, remaining()?)?;
    stream.set_write_timeout(Some(remaining()?))?;
    let request = format!(
        "GET {} HTTP/1.0\r\nHost: {}\r\nUser-Agent: pyro-agent\r\nAccept: */*\r\n\r\n",
        target.path, target.authority
    );
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    let mut buf = [0u8; 1024];
    while !response.contains(&b'\n') && response.len() < STATUS_LINE_LIMIT {
        stream.set_read_timeout(Some(remaining()?))?;
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => response.extend_from_slice(&buf[..n]),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err(err),
        }
    }
    let line_end = response
        .iter()
        .position(|b| *b == b'\n')
        .unwrap_or(response.len());
    let line = String::from_utf8_lossy(&response[..line_end]);
    parse_status_line(line.trim_end()).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            if response.is_empty() {
                "the server closed the connection without answering".to_owned()
            } else {
                format!("not an HTTP response: {:?}", truncate(&line, 80))
            },
        )
    })
}

/// `HTTP/1.1 503 Service Unavailable` → `(503, "HTTP 503 Service Unavailable")`.
fn parse_status_line(line: &str) -> Option<(u16, String)> {
    let mut parts = line.splitn(3, ' ');
    let version = parts.next()?;
    let code = parts.next()?;
    if !version.starts_with("HTTP/") || code.len() != 3 {
        return None;
    }
    let code: u16 = code.parse().ok()?;
    let reason = parts.next().unwrap_or("").trim();
    let summary = if reason.is_empty() {
        format!("HTTP {code}")
    } else {
        format!("HTTP {code} {reason}")
    };
    Some((code, summary))
}

fn parse_http_url(url: &str) -> Result<HttpTarget, String> {
    let rest = url
        .strip_prefix("http://")
        .ok_or("only http:// URLs can be probed")?;
    let rest = rest.split('#').next().unwrap_or_default();
    let split = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(split);
    let path = match path {
        "" => "/".to_owned(),
        p if p.starts_with('?') => format!("/{p}"),
        p => p.to_owned(),
    };
    if path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the path contains whitespace or control characters".into());
    }
    if authority.contains('@') {
        return Err("user names and passwords are not supported".into());
    }
    let (host, port) = if let Some(bracketed) = authority.strip_prefix('[') {
        let (host, after) = bracketed
            .split_once(']')
            .ok_or("an IPv6 address lacks its closing ]")?;
        match after {
            "" => (host, None),
            _ => (
                host,
                Some(
                    after
                        .strip_prefix(':')
                        .ok_or("junk after the IPv6 address")?,
                ),
            ),
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => 80,
        Some(port) => port
            .parse::<u16>()
            .map_err(|_| format!("bad port {port:?}"))?,
    };
    let ip = parse_host(host)?;
    Ok(HttpTarget {
        addr: SocketAddr::new(ip, port),
        authority: authority.to_owned(),
        path,
    })
}

/// An IP literal (IPv6 with or without brackets) or `localhost`.
fn parse_host(host: &str) -> Result<IpAddr, String> {
    if host.eq_ignore_ascii_case("localhost") {
        return Ok(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    bare.parse().map_err(|_| {
        if host.is_empty() {
            "no host given".to_owned()
        } else {
            format!("host {host:?} is not an IP address or localhost (the agent does not resolve names)")
        }
    })
}

/// A short reason for a failed connection or exchange.
fn describe(err: &io::Error, timeout: Duration) -> String {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
            format!("no answer within {} s", timeout.as_secs_f32())
        }
        // "No route to host (os error 113)" → "no route to host".
        _ if err.raw_os_error().is_some() => {
            let text = err.to_string();
            text.split(" (os error")
                .next()
                .unwrap_or(&text)
                .to_lowercase()
        }
        _ => err.to_string(),
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((at, _)) => &text[..at],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_urls_parse_to_an_address_host_and_path() {
        let target = parse_http_url("http://localhost:8000/healthz?x=1").unwrap();
        assert_eq!(target.addr, "127.0.0.1:8000".parse().unwrap());
        assert_eq!(target.authority, "localhost:8000");
        assert_eq!(target.path, "/healthz?x=1");
        let target = parse_http_url("http://10.0.0.1").unwrap();
        assert_eq!(target.addr, "10.0.0.1:80".parse().unwrap());
        assert_eq!(target.path, "/");
        let target = parse_http_url("http://[::1]:9/a#frag").unwrap();
        assert_eq!(target.addr, "[::1]:9".parse().unwrap());
        assert_eq!(target.path, "/a");
        for bad in [
            "https://127.0.0.1/",
            "http://example.com/",
            "http://127.0.0.1:99999/",
            "http://user@127.0.0.1/",
            "http:///x",
            "ftp://x",
            "http://127.0.0.1/a b",
        ] {
            assert!(parse_http_url(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn status_lines_parse() {
        assert_eq!(
            parse_status_line("HTTP/1.1 503 Service Unavailable"),
            Some((503, "HTTP 503 Service Unavailable".into()))
        );
        assert_eq!(
            parse_status_line("HTTP/1.0 200"),
            Some((200, "HTTP 200".into()))
        );
        assert_eq!(parse_status_line("SSH-2.0-OpenSSH"), None);
    }
}
