use super::*;
use crate::workspace::diff::ChangeStatus;

fn at(n: usize, kind: EventKind) -> Event {
    Event {
        at: format!("2026-11-21T08:00:{n:02}Z"),
        kind,
    }
}

fn exec(command: &str, exit_code: Option<i32>) -> EventKind {
    EventKind::Exec {
        command: command.into(),
        exit_code,
        signal: None,
        timed_out: false,
        duration_ms: 10,
        start_error: None,
        cancelled: false,
    }
}

fn session(kinds: Vec<EventKind>) -> Vec<Event> {
    kinds
        .into_iter()
        .enumerate()
        .map(|(n, kind)| at(n, kind))
        .collect()
}

fn changed(path: &str, status: ChangeStatus) -> ChangedFile {
    ChangedFile {
        path: path.into(),
        old_path: None,
        status,
        old_mode: None,
        new_mode: Some("100644".into()),
        binary: false,
        insertions: 2,
        deletions: 1,
    }
}

fn summary(events: Vec<Event>, files: FileSource) -> WorkspaceSummary {
    WorkspaceSummary {
        workspace: "0123456789ab".into(),
        name: Some("task".into()),
        env: "debian:12".into(),
        mode: None,
        state: "running".into(),
        since: since(&events),
        activity: synthesise(&events, files),
    }
}

#[test]
fn failures_come_first_and_repeats_fold() {
    let events = session(vec![
        EventKind::Created {
            env: "debian:12".into(),
            seed: None,
        },
        exec("make", Some(0)),
        exec("pytest", Some(1)),
        exec("pytest", Some(1)),
        exec("pytest", Some(0)),
        exec("ls", Some(0)),
    ]);
    let activity = synthesise(&events, FileSource::Diff(Vec::new()));
    let listed: Vec<(&str, &str, usize)> = activity
        .commands
        .iter()
        .map(|c| (c.command.as_str(), c.outcome.as_str(), c.runs))
        .collect();
    assert_eq!(
        listed,
        [
            ("pytest", "exit 1", 2),
            ("make", "exit 0", 1),
            ("pytest", "exit 0", 1),
            ("ls", "exit 0", 1)
        ]
    );
    assert_eq!((activity.commands_run, activity.commands_failed), (5, 2));
    assert_eq!(activity.commands[0].duration_ms, 20);
    assert_eq!(activity.commands[0].at, "2026-11-21T08:00:02Z");
}

#[test]
fn outcomes_say_how_a_command_ended() {
    let mut timed_out = exec("sleep 99", None);
    if let EventKind::Exec {
        timed_out: t,
        signal,
        ..
    } = &mut timed_out
    {
        *t = true;
        *signal = Some(9);
    }
    let not_found = EventKind::Exec {
        command: "nope".into(),
        exit_code: None,
        signal: None,
        timed_out: false,
        duration_ms: 1,
        start_error: Some("not_found".into()),
        cancelled: false,
    };
    let activity = synthesise(
        &session(vec![timed_out, not_found]),
        FileSource::Diff(Vec::new()),
    );
    let outcomes: Vec<&str> = activity
        .commands
        .iter()
        .map(|c| c.outcome.as_str())
        .collect();
    assert_eq!(outcomes, ["timed out", "not started: not found"]);
    assert!(activity.commands.iter().all(|c| c.failed));
}

#[test]
fn files_come_from_the_diff_when_there_is_one() {
    let events = session(vec![EventKind::FileWrite {
        path: "notes.md".into(),
        bytes: 4,
    }]);
    let activity = synthesise(
        &events,
        FileSource::Diff(vec![
            changed("notes.md", ChangeStatus::Added),
            changed("src/lib.py", ChangeStatus::Modified),
        ]),
    );
    assert_eq!(activity.files_source, "diff");
    assert_eq!(activity.files_note, None);
    let files: Vec<(&str, &str)> = activity
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.status.as_str()))
        .collect();
    assert_eq!(files, [("notes.md", "added"), ("src/lib.py", "modified")]);
}

#[test]
fn without_a_diff_the_logged_writes_and_patches_stand_in() {
    let events = session(vec![
        EventKind::FileWrite {
            path: "a.txt".into(),
            bytes: 1,
        },
        EventKind::patch(["b.txt", "a.txt"], true),
        EventKind::patch(["c.txt"], false),
    ]);
    let activity = synthesise(
        &events,
        FileSource::Unavailable("no diff: the workspace is stopped".into()),
    );
    assert_eq!(activity.files_source, "events");
    assert!(activity
        .files_note
        .as_deref()
        .unwrap()
        .starts_with("no diff: the workspace is stopped"));
    let files: Vec<(&str, &str)> = activity
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.status.as_str()))
        .collect();
    assert_eq!(files, [("a.txt", "patched"), ("b.txt", "patched")]);
    assert_eq!(activity.rejected_patches, [vec!["c.txt".to_string()]]);
}

#[test]
fn services_end_in_their_last_known_state() {
    let events = session(vec![
        EventKind::ServiceStarted {
            name: "web".into(),
            command: "python3 -m http.server".into(),
        },
        EventKind::ServiceReady {
            name: "web".into(),
            after_ms: 300,
        },
        EventKind::ServiceStarted {
            name: "db".into(),
            command: "pg".into(),
        },
        EventKind::ServiceFailed {
            name: "db".into(),
            reason: "not ready after 30 s".into(),
        },
        EventKind::ServiceExited {
            name: "db".into(),
            exit_code: Some(2),
            signal: None,
        },
        EventKind::ServiceStarted {
            name: "worker".into(),
            command: "w".into(),
        },
        EventKind::ServiceStopped {
            name: "worker".into(),
        },
        EventKind::ServiceStarted {
            name: "job".into(),
            command: "j".into(),
        },
        EventKind::ServiceExited {
            name: "job".into(),
            exit_code: None,
            signal: Some(9),
        },
    ]);
    let activity = synthesise(&events, FileSource::Diff(Vec::new()));
    let states: Vec<(&str, &str)> = activity
        .services
        .iter()
        .map(|s| (s.name.as_str(), s.state))
        .collect();
    assert_eq!(
        states,
        [
            ("db", "failed"),
            ("job", "exited"),
            ("web", "running"),
            ("worker", "stopped")
        ]
    );
    assert_eq!(activity.services[0].exit_code, Some(2));
    assert_eq!(
        activity.services[0].reason.as_deref(),
        Some("not ready after 30 s")
    );

    // Stopping the workspace ends the ones still up.
    let mut stopped = events.clone();
    stopped.push(at(50, EventKind::Stopped));
    stopped.push(at(51, EventKind::Started));
    let activity = synthesise(&stopped, FileSource::Diff(Vec::new()));
    let web = activity.services.iter().find(|s| s.name == "web").unwrap();
    assert_eq!(web.state, "ended");
    assert_eq!(web.reason.as_deref(), Some("the workspace was stopped"));
    assert_eq!(activity.stops, 1);
}

#[test]
fn since_names_the_boundary() {
    let created = session(vec![EventKind::Created {
        env: "e".into(),
        seed: None,
    }]);
    assert_eq!(since(&created).unwrap().event, "created");
    let reset = session(vec![EventKind::Reset {
        snapshot: Some("green".into()),
    }]);
    let reset = since(&reset).unwrap();
    assert_eq!(
        (reset.event, reset.snapshot.as_deref()),
        ("reset", Some("green"))
    );
    assert_eq!(since(&session(vec![EventKind::Started])), None);
    assert_eq!(since(&[]), None);
}

#[test]
fn text_lists_failures_first_and_leaves_out_empty_sections() {
    let events = session(vec![
        EventKind::Created {
            env: "debian:12".into(),
            seed: None,
        },
        exec("true", Some(0)),
        exec("false", Some(1)),
        EventKind::Snapshot {
            name: "green".into(),
        },
        EventKind::Export {
            path: "dist".into(),
            output: "/tmp/dist".into(),
        },
    ]);
    let text = summary(
        events,
        FileSource::Diff(vec![changed("notes.md", ChangeStatus::Added)]),
    )
    .render_text();
    assert_eq!(
        text,
        "Workspace task (0123456789ab), debian:12, running; since it was created at 2026-11-21T08:00:00Z.

Commands (2 run, 1 failed):
  FAILED (exit 1, 10 ms): false
  ok (exit 0, 10 ms): true

Files changed (1):
  added        notes.md (+2 -1)

Other activity:
  snapshots taken: green
  exported /workspace/dist -> /tmp/dist
"
    );
}

#[test]
fn an_empty_summary_says_so_in_two_lines() {
    let events = session(vec![EventKind::Reset { snapshot: None }]);
    let text = summary(events, FileSource::Diff(Vec::new())).render_text();
    assert_eq!(
        text,
        "Workspace task (0123456789ab), debian:12, running; since its reset to the baseline at 2026-11-21T08:00:00Z.

No commands run since the last reset.

No files changed since the baseline.
"
    );
}

#[test]
fn without_a_diff_the_text_says_where_the_files_come_from() {
    let events = session(vec![
        EventKind::Created {
            env: "debian:12".into(),
            seed: None,
        },
        EventKind::FileWrite {
            path: "a.txt".into(),
            bytes: 1,
        },
        EventKind::Stopped,
    ]);
    let why = || FileSource::Unavailable("no diff: the workspace is stopped".into());
    let text = summary(events.clone(), why()).render_text();
    assert!(
        text.contains(
            "\nFiles written or patched through pyro (no diff: the workspace is stopped; \
             what commands changed is not listed):\n  written      a.txt\n"
        ),
        "{text}"
    );
    assert!(
        text.ends_with("\nOther activity:\n  workspace stopped once\n"),
        "{text}"
    );
    let text = summary(events[..1].to_vec(), why()).render_text();
    assert!(
        text.contains("\nNo files written or patched through pyro (no diff: "),
        "{text}"
    );
}

#[test]
fn long_lists_are_cut_in_the_text_but_not_in_json() {
    let events = session(
        (0..30)
            .map(|n| exec(&format!("step {n}"), Some(0)))
            .collect(),
    );
    let summary = summary(events, FileSource::Diff(Vec::new()));
    assert_eq!(summary.activity.commands.len(), 30);
    assert!(summary
        .render_text()
        .contains("… and 10 more commands (the JSON form lists them all)"));
}

#[test]
fn durations_read_naturally() {
    assert_eq!(duration(850), "850 ms");
    assert_eq!(duration(12_340), "12.3 s");
    assert_eq!(duration(245_000), "4m05s");
}
