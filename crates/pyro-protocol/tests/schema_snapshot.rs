//! Freezes the wire encoding of protocol generation 1.
//!
//! Every message shape is encoded into a frame and compared with
//! `snapshots/generation-1.txt`. A change here means old agents and new
//! hosts (or the reverse) stop understanding each other: either keep the old
//! encoding (new fields optional) or bump `GENERATION` and add a new
//! snapshot. Regenerate after an intended change with
//! `UPDATE_SNAPSHOTS=1 cargo test -p pyro-protocol --test schema_snapshot`.

use pyro_protocol::{
    encode_data, encode_message, Decoder, DirEntry, ErrorKind, ExecRequest, ExitStatus, FileInfo,
    FileKind, FrameKind, Message, Probe, PtySize, GENERATION,
};

fn samples() -> Vec<(u32, Message)> {
    vec![
        (
            0,
            Message::Hello {
                generation: 1,
                agent_version: Some("0.1.0".into()),
                uptime_ms: Some(812),
                time_unix_ms: None,
            },
        ),
        (
            0,
            Message::Hello {
                generation: 1,
                agent_version: None,
                uptime_ms: None,
                time_unix_ms: Some(1_790_000_000_000),
            },
        ),
        (
            0,
            Message::Identity {
                hostname: "pyro-0123456789ab".into(),
                machine_id: "0123456789abcdef0123456789abcdef".into(),
                entropy: "00ff".into(),
            },
        ),
        (
            7,
            Message::Exec(ExecRequest {
                argv: vec!["sh".into(), "-c".into(), "echo hi".into()],
                cwd: Some("/workspace".into()),
                env: vec![("K".into(), "V".into())],
                timeout_ms: Some(5000),
                stdin: false,
                pty: None,
            }),
        ),
        (
            7,
            Message::Exec(ExecRequest {
                argv: vec!["true".into()],
                ..Default::default()
            }),
        ),
        (7, Message::Started { pid: 42 }),
        (
            7,
            Message::Signal {
                signal: 15,
                foreground: false,
            },
        ),
        (
            7,
            Message::Signal {
                signal: 2,
                foreground: true,
            },
        ),
        (
            7,
            Message::Exited(ExitStatus {
                code: Some(7),
                signal: None,
                timed_out: false,
                duration_ms: 12,
            }),
        ),
        (
            8,
            Message::Exited(ExitStatus {
                code: None,
                signal: Some(9),
                timed_out: true,
                duration_ms: 5000,
            }),
        ),
        (
            9,
            Message::Error {
                kind: ErrorKind::NotFound,
                message: "foo: command not found".into(),
            },
        ),
        (0, Message::PowerOff),
        (0, Message::PoweringOff),
        // Added in generation 1 without breaking it: saving a VM's state.
        (0, Message::Quiesce),
        (0, Message::Quiesced),
        // Added in generation 1 without breaking it: flow control and files.
        (7, Message::Ack { bytes: 65536 }),
        (
            10,
            Message::ReadFile {
                path: "src/main.rs".into(),
                max_bytes: 1_048_576,
                root: None,
            },
        ),
        (
            11,
            Message::WriteFile {
                path: "out/data.bin".into(),
                mode: Some(0o755),
                create_parents: true,
                root: Some("/srv".into()),
            },
        ),
        (
            11,
            Message::WriteFile {
                path: "a.txt".into(),
                mode: None,
                create_parents: false,
                root: None,
            },
        ),
        (
            12,
            Message::ListDir {
                path: "".into(),
                recursive: true,
                max_entries: 1000,
                root: None,
            },
        ),
        (
            13,
            Message::Stat {
                path: "link".into(),
                root: None,
            },
        ),
        (
            10,
            Message::FileInfo(FileInfo {
                kind: FileKind::File,
                size: 12,
                mode: 0o644,
                symlink_target: None,
            }),
        ),
        (
            13,
            Message::FileInfo(FileInfo {
                kind: FileKind::Symlink,
                size: 6,
                mode: 0o777,
                symlink_target: Some("target".into()),
            }),
        ),
        (
            12,
            Message::DirEntries {
                entries: vec![
                    DirEntry {
                        path: "src".into(),
                        kind: FileKind::Dir,
                        size: 4096,
                        mode: 0o755,
                        symlink_target: None,
                    },
                    DirEntry {
                        path: "src/link".into(),
                        kind: FileKind::Symlink,
                        size: 2,
                        mode: 0o777,
                        symlink_target: Some("..".into()),
                    },
                ],
                truncated: true,
            },
        ),
        (10, Message::Done { bytes: Some(12) }),
        (12, Message::Done { bytes: None }),
        (
            11,
            Message::Error {
                kind: ErrorKind::Cancelled,
                message: "cancelled by the host".into(),
            },
        ),
        // Added in generation 1 without breaking it: terminals and probes.
        (
            14,
            Message::Exec(ExecRequest {
                argv: vec!["bash".into(), "-i".into()],
                pty: Some(PtySize { rows: 24, cols: 80 }),
                ..Default::default()
            }),
        ),
        (
            14,
            Message::Resize {
                rows: 50,
                cols: 132,
            },
        ),
        (
            15,
            Message::Probe(Probe::Tcp {
                port: 5432,
                host: None,
            }),
        ),
        (
            15,
            Message::Probe(Probe::Tcp {
                port: 80,
                host: Some("10.0.2.2".into()),
            }),
        ),
        (
            16,
            Message::Probe(Probe::Http {
                url: "http://localhost:8000/healthz".into(),
            }),
        ),
        (
            17,
            Message::Probe(Probe::File {
                path: "build/ready".into(),
            }),
        ),
        (
            16,
            Message::Error {
                kind: ErrorKind::NotReady,
                message: "http://localhost:8000/healthz: HTTP 503 Service Unavailable".into(),
            },
        ),
    ]
}

fn render() -> String {
    let mut out = format!("# pyro protocol generation {GENERATION}\n");
    for (id, message) in samples() {
        let frame = encode_message(id, &message);
        out.push_str(&format!("{}\n", hex(&frame[..9])));
        out.push_str(&format!("{}\n", String::from_utf8_lossy(&frame[9..])));
    }
    let mut data = Vec::new();
    encode_data(7, FrameKind::Stdout, b"out", &mut data);
    encode_data(7, FrameKind::Stderr, b"", &mut data);
    encode_data(7, FrameKind::Stdin, b"in", &mut data);
    out.push_str(&format!("{}\n", hex(&data)));
    let mut file = Vec::new();
    encode_data(10, FrameKind::File, b"f", &mut file);
    encode_data(11, FrameKind::File, b"", &mut file);
    out.push_str(&format!("{}\n", hex(&file)));
    out
}

fn hex(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn generation_1_encoding_is_frozen() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/snapshots/generation-1.txt"
    );
    let rendered = render();
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(path, &rendered).unwrap();
    }
    let frozen =
        std::fs::read_to_string(path).expect("snapshot file; run with UPDATE_SNAPSHOTS=1 once");
    assert_eq!(
        rendered, frozen,
        "wire encoding changed; see this file's doc"
    );
}

#[test]
fn every_sample_round_trips() {
    for (id, message) in samples() {
        let mut decoder = Decoder::new();
        decoder.push(&encode_message(id, &message));
        let frame = decoder.next_frame().unwrap().unwrap();
        assert_eq!(frame.id, id);
        assert_eq!(frame.message().unwrap(), message);
    }
}

#[test]
fn unknown_message_types_and_fields_are_tolerated() {
    let future = br#"{"type":"teleport","to":"mars"}"#;
    assert_eq!(
        serde_json::from_slice::<Message>(future).unwrap(),
        Message::Unknown
    );
    let extra = br#"{"type":"started","pid":3,"cgroup":"x"}"#;
    assert_eq!(
        serde_json::from_slice::<Message>(extra).unwrap(),
        Message::Started { pid: 3 }
    );
    let file_kind = br#"{"type":"file_info","kind":"door","size":0,"mode":0,"x":1}"#;
    assert!(matches!(
        serde_json::from_slice::<Message>(file_kind).unwrap(),
        Message::FileInfo(FileInfo {
            kind: FileKind::Other,
            ..
        })
    ));
    let probe = br#"{"type":"probe","kind":"dns","name":"x"}"#;
    assert_eq!(
        serde_json::from_slice::<Message>(probe).unwrap(),
        Message::Probe(Probe::Unknown)
    );
    let kind = br#"{"type":"error","kind":"quota_exceeded","message":"m"}"#;
    assert!(matches!(
        serde_json::from_slice::<Message>(kind).unwrap(),
        Message::Error {
            kind: ErrorKind::Other,
            ..
        }
    ));
}

/// The same property the fuzz target (`fuzz/fuzz_targets/decoder.rs`)
/// checks, on deterministic pseudo-random input so it runs in CI without a
/// nightly toolchain: the decoder never panics, never buffers a frame over
/// the cap, and whatever it returns re-encodes to the bytes it consumed.
#[test]
fn decoder_survives_random_input() {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..2000 {
        let len = (next() % 512) as usize;
        let mut bytes: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Often start with a plausible small length so frames complete.
        if len >= 4 && next() % 2 == 0 {
            let frame_len = 5 + (next() % 64) as u32;
            bytes[..4].copy_from_slice(&frame_len.to_le_bytes());
        }
        pyro_protocol::fuzz_decode(&bytes);
    }
}
