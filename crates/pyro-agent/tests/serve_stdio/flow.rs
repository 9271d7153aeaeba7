//! Flow control of host → guest data: the agent acks what it delivered, a
//! host that keeps within `STDIN_WINDOW` gets everything through, and one
//! that floods past it gets an error while the agent's memory stays bounded.

use std::time::{Duration, Instant};

use pyro_protocol::{encode_data, ErrorKind, ExecRequest, FrameKind, Message, STDIN_WINDOW};

use crate::agent::Agent;

fn with_stdin(argv: &[&str]) -> ExecRequest {
    ExecRequest {
        argv: argv.iter().map(|a| (*a).to_owned()).collect(),
        cwd: Some("/".into()),
        stdin: true,
        ..ExecRequest::default()
    }
}

#[test]
fn stdin_within_the_window_is_all_delivered_and_acked() {
    const TOTAL: usize = 5_000_000;
    let mut agent = Agent::start();
    agent.exec(1, with_stdin(&["wc", "-c"]));
    let data: Vec<u8> = (0..TOTAL).map(|i| (i % 251) as u8).collect();
    let (mut outcome, peak) = agent.send_windowed(1, FrameKind::Stdin, &data);
    assert!(outcome.exited.is_none(), "{outcome:?}");
    let rest = agent.wait(1);
    outcome.acked += rest.acked;
    outcome.acks += rest.acks;
    assert_eq!(
        String::from_utf8_lossy(&rest.stdout).trim(),
        TOTAL.to_string()
    );
    assert_eq!(rest.exited.unwrap().code, Some(0));
    assert_eq!(outcome.acked, TOTAL as u64, "every byte is acked");
    assert!(peak <= STDIN_WINDOW);
    // At least one ack per window's worth (else the host would stall), and
    // batched rather than one per small piece.
    assert!(
        outcome.acks >= TOTAL / STDIN_WINDOW as usize,
        "{}",
        outcome.acks
    );
    assert!(outcome.acks <= TOTAL / 1024, "{}", outcome.acks);
}

#[test]
fn stdin_the_command_never_reads_is_still_acked_after_it_closes_it() {
    let mut agent = Agent::start();
    agent.exec(
        2,
        with_stdin(&["sh", "-c", "exec 0<&-; sleep 0.2; echo done"]),
    );
    std::thread::sleep(Duration::from_millis(50));
    let (mut outcome, _) = agent.send_windowed(2, FrameKind::Stdin, &vec![7u8; 3 * 1024 * 1024]);
    if outcome.exited.is_none() {
        let rest = agent.wait(2);
        outcome.acked += rest.acked;
        outcome.stdout = rest.stdout;
        outcome.exited = rest.exited;
    }
    assert_eq!(outcome.stdout, b"done\n");
    assert_eq!(outcome.exited.unwrap().code, Some(0));
}

#[test]
fn a_host_flooding_past_the_window_fails_the_request_with_bounded_memory() {
    let mut agent = Agent::start();
    agent.exec(3, with_stdin(&["sleep", "30"]));
    let begun = Instant::now();
    let chunk = vec![1u8; 256 * 1024];
    let mut wire = Vec::new();
    for _ in 0..64 {
        encode_data(3, FrameKind::Stdin, &chunk, &mut wire);
    }
    // 16 MiB without waiting for a single ack.
    agent.send_raw(&wire);
    let outcome = agent.wait(3);
    let (kind, message) = outcome.error.clone().expect("an error, not an exit");
    assert_eq!(kind, ErrorKind::InvalidRequest);
    assert!(message.contains("without waiting for acks"), "{message}");
    assert!(begun.elapsed() < Duration::from_secs(10));
    let peak_kib = agent.peak_rss_kib();
    assert!(peak_kib < 32 * 1024, "agent peaked at {peak_kib} KiB");
    // The agent goes on serving.
    agent.exec(4, crate::sh("echo still here"));
    assert_eq!(agent.wait(4).stdout, b"still here\n");
    agent.send(
        3,
        &Message::Signal {
            signal: 9,
            foreground: false,
        },
    );
}
