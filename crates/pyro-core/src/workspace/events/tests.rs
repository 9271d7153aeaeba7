use super::*;

fn line(argv: &[&str]) -> String {
    command_line(&argv.iter().map(|s| s.to_string()).collect::<Vec<_>>())
}

#[test]
fn plain_commands_are_shell_quoted() {
    assert_eq!(line(&["make", "test"]), "make test");
    assert_eq!(
        line(&["sh", "-c", "echo 'hi' && ls"]),
        r#"sh -c 'echo '\''hi'\'' && ls'"#
    );
    assert_eq!(line(&["printf", ""]), "printf ''");
    assert_eq!(
        line(&["git", "commit", "-m", "fix author list"]),
        "git commit -m 'fix author list'"
    );
}

#[test]
fn secret_values_are_redacted() {
    let cases: &[(&[&str], &str)] = &[
        (&["deploy", "--token=abc123"], "deploy '--token=***'"),
        (&["deploy", "--token", "abc123"], "deploy --token '***'"),
        (
            &["env", "PASSWORD=hunter2", "make"],
            "env 'PASSWORD=***' make",
        ),
        (&["env", "db_passwd=x"], "env 'db_passwd=***'"),
        (&["run", "--Api-Key", "k1"], "run --Api-Key '***'"),
        (&["run", "--apikey=k1"], "run '--apikey=***'"),
        (&["run", "API_KEY=k1"], "run 'API_KEY=***'"),
        (&["run", "GITHUB_TOKEN=ghp_x"], "run 'GITHUB_TOKEN=***'"),
        (
            &["run", "--client-secret", "s"],
            "run --client-secret '***'",
        ),
        (&["run", "AWS_CREDENTIALS=c"], "run 'AWS_CREDENTIALS=***'"),
        (&["run", "--private-key=/k"], "run '--private-key=***'"),
        (&["run", "PRIVATE_KEY=k"], "run 'PRIVATE_KEY=***'"),
        (&["run", "--auth", "u:p"], "run --auth '***'"),
        (
            &["curl", "--header=X-Token=t"],
            "curl '--header=X-Token=***'",
        ),
        (
            &["curl", "https://h/x?api_key=k&a=1"],
            "curl 'https://h/x?api_key=***'",
        ),
        // Not secret-looking: kept.
        (&["run", "--name=web", "PORT=80"], "run --name=web PORT=80"),
        (&["run", "--verbose", "x"], "run --verbose x"),
    ];
    for (argv, expected) in cases {
        assert_eq!(line(argv), *expected, "{argv:?}");
    }
}

#[test]
fn secrets_inside_scripts_and_headers_are_redacted() {
    let script = line(&[
        "sh",
        "-c",
        "export TOKEN=abc123; mysql --password hunter2 -e 'select 1'",
    ]);
    assert!(
        !script.contains("abc123") && !script.contains("hunter2"),
        "{script}"
    );
    assert!(
        script.contains("TOKEN=***; mysql --password ***"),
        "{script}"
    );
    assert_eq!(
        line(&["sh", "-c", "SECRET=\"x y\" && (AUTH=z)"]),
        r#"sh -c 'SECRET=***" && (AUTH=***)'"#
    );
    assert!(script.contains("select 1"), "{script}");
    assert_eq!(
        line(&["sh", "-c", "login --password 'a b c' --user me"]),
        r#"sh -c 'login --password ***'\'' --user me'"#
    );

    let curl = line(&["curl", "-H", "Authorization: Bearer abc123", "https://x"]);
    assert_eq!(curl, "curl -H 'Authorization: ***' https://x");
    let curl = line(&["curl", "-H", "X-Api-Key: k", "-H", "Accept: */*"]);
    assert_eq!(curl, "curl -H 'X-Api-Key: ***' -H 'Accept: */*'");
}

#[test]
fn url_passwords_are_redacted_and_users_kept() {
    assert_eq!(
        line(&["git", "clone", "https://bob:hunter2@git.example/r.git"]),
        "git clone 'https://bob:***@git.example/r.git'"
    );
    assert_eq!(
        redact_urls("a postgres://u:p%40ss@db:5432/x and http://h/p@q b"),
        "a postgres://u:***@db:5432/x and http://h/p@q b"
    );
    // A user without a password, and an `@` in the path: unchanged.
    assert_eq!(
        redact_urls("ssh://git@host/x https://host/a@b"),
        "ssh://git@host/x https://host/a@b"
    );
    assert_eq!(redact_urls("https://t0k@n:pw@h"), "https://t0k@n:***@h");
    assert_eq!(redact_urls("no url here"), "no url here");
}

#[test]
fn long_command_lines_are_capped() {
    let long = line(&["echo", &"x".repeat(1000)]);
    assert_eq!(long.chars().count(), COMMAND_CAP);
    assert!(long.ends_with('…'));
    // Capping never splits a character.
    let wide = line(&["echo", &"é".repeat(1000)]);
    assert_eq!(wide.chars().count(), COMMAND_CAP);
}

#[test]
fn events_round_trip_and_unknown_ones_are_kept_as_unknown() {
    let event = Event {
        at: "2026-11-21T08:00:00Z".into(),
        kind: EventKind::ServiceExited {
            name: "web".into(),
            exit_code: Some(1),
            signal: None,
        },
    };
    let json = serde_json::to_string(&event).unwrap();
    assert_eq!(
        json,
        r#"{"at":"2026-11-21T08:00:00Z","event":"service_exited","name":"web","exit_code":1,"signal":null}"#
    );
    assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), event);
    let future: Event =
        serde_json::from_str(r#"{"at":"t","event":"teleported","to":"mars"}"#).unwrap();
    assert_eq!(future.kind, EventKind::Unknown);
    let stopped: Event = serde_json::from_str(r#"{"at":"t","event":"stopped"}"#).unwrap();
    assert_eq!(stopped.kind, EventKind::Stopped);
}

#[test]
fn reading_starts_at_the_last_boundary() {
    let dir = tempfile::tempdir().unwrap();
    assert!(read_since_reset(dir.path()).is_empty());
    record(
        dir.path(),
        EventKind::Created {
            env: "debian:12".into(),
            seed: None,
        },
    );
    record(dir.path(), EventKind::Snapshot { name: "a".into() });
    record(dir.path(), EventKind::Reset { snapshot: None });
    record(dir.path(), EventKind::Started);
    // A torn line (a writer that ran out of disk) is skipped.
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join(EVENTS))
        .unwrap();
    file.write_all(b"{\"at\":\"t\",\"ev").unwrap();
    file.write_all(b"\n").unwrap();
    record(dir.path(), EventKind::Stopped);
    let kinds: Vec<EventKind> = read_since_reset(dir.path())
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        [
            EventKind::Reset { snapshot: None },
            EventKind::Started,
            EventKind::Stopped
        ]
    );
}

#[test]
fn recording_into_a_deleted_workspace_does_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("gone");
    record(&gone, EventKind::Started);
    assert!(!gone.exists());
}

#[test]
fn concurrent_writers_never_interleave_lines() {
    let dir = tempfile::tempdir().unwrap();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let dir = dir.path().to_path_buf();
            std::thread::spawn(move || {
                for i in 0..200 {
                    record(
                        &dir,
                        EventKind::FileWrite {
                            path: format!("{t}/{i}/{}", "p".repeat(500)),
                            bytes: i,
                        },
                    );
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let text = std::fs::read_to_string(dir.path().join(EVENTS)).unwrap();
    assert_eq!(text.lines().count(), 1600);
    assert!(text.lines().all(|l| parse(l.as_bytes()).is_some()));
}

#[test]
fn a_full_log_keeps_what_came_since_the_last_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let path = "p".repeat(1000);
    let write = |n: u64| EventKind::FileWrite {
        path: path.clone(),
        bytes: n,
    };
    record(
        dir.path(),
        EventKind::Created {
            env: "e".into(),
            seed: None,
        },
    );
    for n in 0..3000 {
        record(dir.path(), write(n));
    }
    record(dir.path(), EventKind::Reset { snapshot: None });
    // Past 4 MB: the next append compacts to the reset onwards.
    for n in 0..1200 {
        record(dir.path(), write(n));
    }
    let size = std::fs::metadata(dir.path().join(EVENTS)).unwrap().len();
    assert!(size < MAX_BYTES, "{size}");
    let events = read_since_reset(dir.path());
    assert_eq!(events[0].kind, EventKind::Reset { snapshot: None });
    assert_eq!(events.len(), 1201);
    let text = std::fs::read_to_string(dir.path().join(EVENTS)).unwrap();
    assert!(!text.contains("created"), "compaction kept the old events");
}

#[test]
fn a_log_without_a_recent_boundary_keeps_the_boundary_and_the_newest() {
    let mut text = Vec::new();
    let mut push = |kind: EventKind| {
        text.extend(
            serde_json::to_vec(&Event {
                at: "t".into(),
                kind,
            })
            .unwrap(),
        );
        text.push(b'\n');
    };
    push(EventKind::Created {
        env: "e".into(),
        seed: None,
    });
    for n in 0..(KEEP_NEWEST as u64 + 3000) {
        push(EventKind::FileWrite {
            path: "p".repeat(400),
            bytes: n,
        });
    }
    let kept = compacted(&text);
    let events: Vec<Event> = kept.split(|b| *b == b'\n').filter_map(parse).collect();
    assert_eq!(events.len(), KEEP_NEWEST + 1);
    assert!(events[0].kind.is_boundary());
    assert!(matches!(
        events[1].kind,
        EventKind::FileWrite { bytes: 3000, .. }
    ));
}

#[test]
fn exec_events_record_how_the_command_ended() {
    let argv = vec!["false".to_string()];
    let exited = RunEnd::Exited {
        status: crate::ExitStatus {
            code: Some(1),
            signal: None,
            timed_out: false,
            duration_ms: 7,
        },
    };
    assert!(matches!(
        EventKind::exec(&argv, &exited, 99),
        EventKind::Exec { exit_code: Some(1), duration_ms: 7, ref command, .. } if command == "false"
    ));
    let failed = RunEnd::Failed {
        kind: crate::ErrorKind::NotFound,
        message: "nope".into(),
    };
    assert!(matches!(
        EventKind::exec(&argv, &failed, 99),
        EventKind::Exec { exit_code: None, duration_ms: 99, start_error: Some(ref e), .. } if e == "not_found"
    ));
}
