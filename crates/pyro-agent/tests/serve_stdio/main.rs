//! Drives the agent's request handling on the host, without a VM: the agent
//! binary serves the protocol on stdin/stdout with `--serve-stdio`.
//!
//! Run with `cargo test -p pyro-agent --test serve_stdio`. Exec requests are
//! tested here; file requests in `files.rs`, flow control in `flow.rs`,
//! commands on pseudo-terminals in `pty.rs`, readiness probes in `probe.rs`,
//! and the harness is `agent.rs`.

mod agent;
mod files;
mod flow;
mod probe;
mod pty;

use std::time::{Duration, Instant};

use pyro_protocol::{
    encode_data, encode_frame, ErrorKind, ExecRequest, FrameKind, Message, GENERATION,
};

use crate::agent::Agent;

pub fn sh(script: &str) -> ExecRequest {
    ExecRequest {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        cwd: Some("/".into()),
        ..ExecRequest::default()
    }
}

#[test]
fn exec_streams_both_outputs_then_the_exit_code() {
    let mut agent = Agent::start();
    agent.exec(1, sh("echo out; echo err >&2; exit 7"));
    let outcome = agent.wait(1);
    assert!(outcome.started);
    assert_eq!(outcome.stdout, b"out\n");
    assert_eq!(outcome.stderr, b"err\n");
    let status = outcome.exited.unwrap();
    assert_eq!(status.code, Some(7));
    assert!(!status.timed_out);
}

#[test]
fn env_and_cwd_apply() {
    let mut agent = Agent::start();
    let mut request = sh("echo \"$FOO $HOME $(pwd)\"");
    request.env = vec![("FOO".into(), "bar".into())];
    request.cwd = Some("/tmp".into());
    agent.exec(1, request);
    assert_eq!(agent.wait(1).stdout, b"bar /root /tmp\n");
}

#[test]
fn missing_program_is_not_found() {
    let mut agent = Agent::start();
    agent.exec(
        3,
        ExecRequest {
            argv: vec!["pyro-no-such-command".into()],
            ..ExecRequest::default()
        },
    );
    let (kind, message) = agent.wait(3).error.unwrap();
    assert_eq!(kind, ErrorKind::NotFound);
    assert_eq!(message, "pyro-no-such-command: command not found");
}

#[test]
fn bad_requests_are_rejected() {
    let mut agent = Agent::start();
    agent.exec(1, ExecRequest::default());
    assert_eq!(agent.wait(1).error.unwrap().0, ErrorKind::InvalidRequest);

    let mut request = sh("true");
    request.cwd = Some("/no/such/dir".into());
    agent.exec(2, request);
    let (kind, message) = agent.wait(2).error.unwrap();
    assert_eq!(kind, ErrorKind::InvalidRequest);
    assert!(message.contains("/no/such/dir"), "{message}");

    let mut wire = Vec::new();
    encode_frame(4, FrameKind::Message, b"{not json", &mut wire);
    agent.send_raw(&wire);
    assert_eq!(agent.wait(4).error.unwrap().0, ErrorKind::InvalidRequest);

    let mut wire = Vec::new();
    encode_frame(5, FrameKind::Message, br#"{"type":"teleport"}"#, &mut wire);
    agent.send_raw(&wire);
    assert_eq!(agent.wait(5).error.unwrap().0, ErrorKind::Unsupported);
}

#[test]
fn duplicate_live_id_is_rejected_and_signal_reaches_the_group() {
    let mut agent = Agent::start();
    agent.exec(6, sh("sleep 30"));
    agent.exec(6, sh("true"));
    // The duplicate's error arrives after the first command's Started.
    let first = agent.next_frame();
    assert!(matches!(first.message().unwrap(), Message::Started { .. }));
    let (kind, _) = agent.wait(6).error.unwrap();
    assert_eq!(kind, ErrorKind::InvalidRequest);
    agent.send(
        6,
        &Message::Signal {
            signal: 15,
            foreground: false,
        },
    );
    let status = agent.wait(6).exited.unwrap();
    assert_eq!(status.signal, Some(15));
}

#[test]
fn timeout_kills_the_process_group() {
    let mut agent = Agent::start();
    let mut request = sh("trap '' TERM; sleep 30 & sleep 30");
    request.timeout_ms = Some(300);
    let begun = Instant::now();
    agent.exec(8, request);
    let status = agent.wait(8).exited.unwrap();
    assert!(status.timed_out);
    assert_eq!(status.signal, Some(9));
    assert!(begun.elapsed() < Duration::from_secs(5));
}

#[test]
fn background_children_do_not_hold_the_request_open() {
    let mut agent = Agent::start();
    let begun = Instant::now();
    agent.exec(9, sh("sleep 5 & echo hi"));
    let outcome = agent.wait(9);
    assert_eq!(outcome.stdout, b"hi\n");
    assert_eq!(outcome.exited.unwrap().code, Some(0));
    assert!(begun.elapsed() < Duration::from_secs(2));
}

#[test]
fn stdin_frames_feed_the_command() {
    let mut agent = Agent::start();
    let request = ExecRequest {
        argv: vec!["cat".into()],
        cwd: Some("/".into()),
        stdin: true,
        ..ExecRequest::default()
    };
    agent.exec(10, request);
    let mut wire = Vec::new();
    encode_data(10, FrameKind::Stdin, b"hello ", &mut wire);
    encode_data(10, FrameKind::Stdin, b"world", &mut wire);
    encode_data(10, FrameKind::Stdin, b"", &mut wire);
    agent.send_raw(&wire);
    let outcome = agent.wait(10);
    assert_eq!(outcome.stdout, b"hello world");
    assert_eq!(outcome.exited.unwrap().code, Some(0));
}

#[test]
fn flood_is_delivered_whole_with_bounded_memory() {
    const TOTAL: usize = 50_000_000;
    let mut agent = Agent::start();
    agent.exec(11, sh(&format!("head -c {TOTAL} /dev/zero")));
    // Stop reading for a while: the agent must apply back-pressure, not buffer.
    std::thread::sleep(Duration::from_millis(500));
    let stalled_kib = agent.peak_rss_kib();
    let outcome = agent.wait(11);
    assert_eq!(outcome.stdout.len(), TOTAL);
    assert!(outcome.stdout.iter().all(|&b| b == 0));
    assert_eq!(outcome.exited.unwrap().code, Some(0));
    let peak_kib = agent.peak_rss_kib();
    assert!(
        stalled_kib < 32 * 1024,
        "agent grew to {stalled_kib} KiB while stalled"
    );
    assert!(peak_kib < 32 * 1024, "agent peaked at {peak_kib} KiB");
}

#[test]
fn host_hello_is_answered() {
    let mut agent = Agent::start();
    agent.send(
        0,
        &Message::Hello {
            generation: GENERATION,
            agent_version: None,
            uptime_ms: None,
            time_unix_ms: Some(1),
        },
    );
    let frame = agent.next_frame();
    assert_eq!(frame.id, 0);
    assert!(matches!(frame.message().unwrap(), Message::Hello { .. }));
}
