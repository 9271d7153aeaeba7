//! Readiness probes against a listener, a tiny HTTP server and files.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::thread;

use pyro_protocol::{ErrorKind, Message, Probe};

use crate::agent::{Agent, Outcome};

fn probe(agent: &mut Agent, id: u32, probe: Probe) -> Outcome {
    agent.send(id, &Message::Probe(probe));
    agent.wait(id)
}

fn not_ready(outcome: &Outcome) -> &str {
    match &outcome.error {
        Some((ErrorKind::NotReady, message)) => message,
        other => panic!("expected not_ready, got {other:?}"),
    }
}

/// A port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn tcp_probe_passes_on_a_listener_and_not_on_a_closed_port() {
    let mut agent = Agent::start();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let open = probe(&mut agent, 1, Probe::Tcp { port, host: None });
    assert_eq!(open.done, Some(None), "{open:?}");
    let localhost = probe(
        &mut agent,
        2,
        Probe::Tcp {
            port,
            host: Some("localhost".into()),
        },
    );
    assert_eq!(localhost.done, Some(None), "{localhost:?}");

    let port = closed_port();
    let closed = probe(&mut agent, 3, Probe::Tcp { port, host: None });
    assert_eq!(
        not_ready(&closed),
        format!("tcp 127.0.0.1:{port}: connection refused")
    );
    let named = probe(
        &mut agent,
        4,
        Probe::Tcp {
            port,
            host: Some("example.com".into()),
        },
    );
    assert_eq!(named.error.unwrap().0, ErrorKind::InvalidRequest);
}

/// Serves `/ok` with 200 and anything else with 503; sends each request's
/// head (request line and headers) down the returned channel.
fn http_server() -> (u16, mpsc::Receiver<Vec<String>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let (heads, received) = mpsc::channel();
    thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = Vec::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push(line.trim_end().to_owned());
            }
            let response: &[u8] = if head.first().is_some_and(|l| l.starts_with("GET /ok ")) {
                b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok"
            } else {
                b"HTTP/1.0 503 Service Unavailable\r\n\r\nbusy"
            };
            let _ = stream.write_all(response);
            let _ = heads.send(head);
        }
    });
    (port, received)
}

#[test]
fn http_probe_passes_on_200_and_not_on_503() {
    let mut agent = Agent::start();
    let (port, heads) = http_server();
    let ok = probe(
        &mut agent,
        1,
        Probe::Http {
            url: format!("http://127.0.0.1:{port}/ok"),
        },
    );
    assert_eq!(ok.done, Some(None), "{ok:?}");
    let head = heads.recv().unwrap();
    assert_eq!(head[0], "GET /ok HTTP/1.0");
    assert!(
        head.contains(&format!("Host: 127.0.0.1:{port}")),
        "{head:?}"
    );

    let url = format!("http://localhost:{port}/busy");
    let busy = probe(&mut agent, 2, Probe::Http { url: url.clone() });
    assert_eq!(
        not_ready(&busy),
        format!("{url}: HTTP 503 Service Unavailable")
    );

    let port = closed_port();
    let url = format!("http://127.0.0.1:{port}/");
    let refused = probe(&mut agent, 3, Probe::Http { url: url.clone() });
    assert_eq!(not_ready(&refused), format!("{url}: connection refused"));
}

#[test]
fn http_probe_refuses_urls_it_cannot_handle() {
    let mut agent = Agent::start();
    for (id, url) in [
        (1, "https://127.0.0.1/"),
        (2, "http://example.com/"),
        (3, "127.0.0.1:80"),
    ] {
        let outcome = probe(&mut agent, id, Probe::Http { url: url.into() });
        let (kind, message) = outcome.error.unwrap();
        assert_eq!(kind, ErrorKind::InvalidRequest, "{url}: {message}");
        assert!(message.contains(url), "{message}");
    }
}

#[test]
fn file_probe_passes_when_the_path_exists() {
    let mut agent = Agent::start();
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let missing = probe(
        &mut agent,
        1,
        Probe::File {
            path: ready.to_str().unwrap().into(),
        },
    );
    assert_eq!(
        not_ready(&missing),
        format!("no such file: {}", ready.display())
    );
    std::fs::write(&ready, "").unwrap();
    let present = probe(
        &mut agent,
        2,
        Probe::File {
            path: ready.to_str().unwrap().into(),
        },
    );
    assert_eq!(present.done, Some(None), "{present:?}");
}

#[test]
fn probes_need_a_request_id_and_a_known_kind() {
    let mut agent = Agent::start();
    agent.send(0, &Message::Probe(Probe::File { path: "/".into() }));
    assert_eq!(agent.wait(0).error.unwrap().0, ErrorKind::InvalidRequest);
    let mut wire = Vec::new();
    pyro_protocol::encode_frame(
        5,
        pyro_protocol::FrameKind::Message,
        br#"{"type":"probe","kind":"dns","name":"db"}"#,
        &mut wire,
    );
    agent.send_raw(&wire);
    assert_eq!(agent.wait(5).error.unwrap().0, ErrorKind::Unsupported);
}
