//! `pyro workspace service ...` end to end through the `pyro` binary against
//! real VMs: an HTTP server ready by `--ready-http` and reachable with curl,
//! every readiness kind, failing and missing commands with their logs, a
//! probe that never passes, a service ignoring SIGTERM, a log flood that
//! stays bounded, restarting a name, and a reset that ends services.
//!
//! Run with: `cargo test -p pyro-cli --test it workspace_services::`.

use std::process::Output;

use crate::support::*;

fn start(home: &TestHome, ws: &str, name: &str, args: &[&str]) -> Output {
    let mut argv = vec!["workspace", "service", "start", ws, name];
    argv.extend_from_slice(args);
    home.run(&argv)
}

fn status(home: &TestHome, ws: &str, name: &str) -> serde_json::Value {
    json(&home.run(&["workspace", "service", "status", ws, name, "--json"]))
}

#[test]
fn http_service_is_ready_reachable_logged_stopped_and_restarted() {
    let home = TestHome::new();
    let ws = home.create(&[]);
    let web = [
        "--ready-http",
        "http://127.0.0.1:8000/",
        "--json",
        "--",
        "python3",
        "-m",
        "http.server",
        "8000",
    ];
    let info = json(&ok(start(&home, &ws, "web", &web), "start web"));
    assert_eq!(info["state"], "running", "{info}");
    assert!(info["ready_after_ms"].as_u64().is_some(), "{info}");

    let curl = ok(
        home.sh(
            &ws,
            "curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:8000/",
        ),
        "curl",
    );
    assert_eq!(stdout(&curl), "200");
    // The request shows in the service's log.
    let logs = ok(
        home.run(&["workspace", "service", "logs", &ws, "web", "--tail", "5"]),
        "logs",
    );
    assert!(
        stdout(&logs).contains("\"GET / HTTP/1.1\" 200"),
        "{}",
        stdout(&logs)
    );

    // A name that runs cannot start twice.
    let twice = start(&home, &ws, "web", &web);
    assert_eq!(twice.status.code(), Some(125));
    assert!(
        stderr(&twice).contains("already running"),
        "{}",
        stderr(&twice)
    );
    // ... and the refused start left the running one's log alone.
    let logs = ok(
        home.run(&["workspace", "service", "logs", &ws, "web", "--tail", "5"]),
        "logs after a refused start",
    );
    assert!(
        stdout(&logs).contains("\"GET / HTTP/1.1\" 200"),
        "{:?}",
        stdout(&logs)
    );
    assert!(!stdout(&logs).contains('\0'), "{:?}", stdout(&logs));

    // A URL the guest cannot probe is refused before anything starts.
    let https = start(
        &home,
        &ws,
        "tls",
        &[
            "--ready-http",
            "https://127.0.0.1:8443/",
            "--",
            "sleep",
            "1000",
        ],
    );
    assert!(stderr(&https).contains("http:// URL"), "{}", stderr(&https));

    // TCP and command readiness.
    ok(
        start(
            &home,
            &ws,
            "tcp",
            &[
                "--ready-tcp",
                "8001",
                "--",
                "python3",
                "-m",
                "http.server",
                "8001",
            ],
        ),
        "start tcp",
    );
    ok(
        start(
            &home,
            &ws,
            "flagged",
            &[
                "--ready-command",
                "test -f /tmp/flag",
                "--",
                "sh",
                "-c",
                "sleep 1; touch /tmp/flag; exec sleep 1000",
            ],
        ),
        "start flagged",
    );
    let list = json(&ok(
        home.run(&["workspace", "service", "list", &ws, "--json"]),
        "list",
    ));
    let running = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] == "running")
        .count();
    assert_eq!(running, 3, "{list}");

    let stopped = json(&ok(
        home.run(&["workspace", "service", "stop", &ws, "web", "--json"]),
        "stop",
    ));
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert_eq!(stopped["killed"], false, "{stopped}");
    let curl = home.sh(&ws, "curl -s http://127.0.0.1:8000/");
    assert!(!curl.status.success(), "the server still answers");

    // Restarting the name works.
    let again = json(&ok(start(&home, &ws, "web", &web), "restart web"));
    assert_eq!(again["state"], "running", "{again}");

    // Reset ends every service, and says so.
    ok(home.run(&["workspace", "reset", &ws]), "reset");
    let after = status(&home, &ws, "web");
    assert_eq!(after["state"], "ended", "{after}");
    assert!(
        after["reason"]
            .as_str()
            .unwrap()
            .contains("the workspace was reset"),
        "{after}"
    );
}

#[test]
fn failing_services_say_why_with_their_logs() {
    let home = TestHome::new();
    let ws = home.create(&[]);

    // Exits before it is ready: its last lines and exit status.
    let crashed = start(
        &home,
        &ws,
        "crash",
        &[
            "--ready-tcp",
            "9",
            "--",
            "sh",
            "-c",
            "echo booting; echo 'fatal: no config' >&2; exit 3",
        ],
    );
    assert_eq!(crashed.status.code(), Some(125));
    let message = stderr(&crashed);
    assert!(message.contains("exited with code 3"), "{message}");
    assert!(message.contains("fatal: no config"), "{message}");
    let info = status(&home, &ws, "crash");
    assert_eq!(info["state"], "failed", "{info}");
    assert_eq!(info["exit_code"], 3, "{info}");

    // A command that does not exist.
    let missing = start(&home, &ws, "ghost", &["--", "no-such-daemon", "--flag"]);
    assert_eq!(missing.status.code(), Some(125));
    assert!(
        stderr(&missing).contains("command not found"),
        "{}",
        stderr(&missing)
    );

    // A probe that never passes: a timeout, with the logs; the service is stopped.
    let slow = start(
        &home,
        &ws,
        "slow",
        &[
            "--ready-file",
            "/tmp/never",
            "--ready-timeout",
            "3",
            "--",
            "sh",
            "-c",
            "echo waiting-forever; exec sleep 1000",
        ],
    );
    assert_eq!(slow.status.code(), Some(125));
    let message = stderr(&slow);
    assert!(message.contains("not ready within 3 s"), "{message}");
    assert!(message.contains("waiting-forever"), "{message}");
    let procs = ok(home.sh(&ws, "ps -eo args"), "ps");
    assert!(!stdout(&procs).contains("sleep 1000"), "{}", stdout(&procs));

    // Ignoring SIGTERM: stop escalates to SIGKILL.
    ok(
        start(
            &home,
            &ws,
            "stubborn",
            &[
                "--ready-file",
                "/tmp/stubborn",
                "--",
                "sh",
                "-c",
                "trap '' TERM; touch /tmp/stubborn; while :; do sleep 0.2; done",
            ],
        ),
        "start stubborn",
    );
    let stopped = json(&ok(
        home.run(&[
            "workspace",
            "service",
            "stop",
            &ws,
            "stubborn",
            "--grace",
            "1",
            "--json",
        ]),
        "stop stubborn",
    ));
    assert_eq!(stopped["state"], "stopped", "{stopped}");
    assert_eq!(stopped["killed"], true, "{stopped}");

    // A flood stays bounded, and the newest lines are still there.
    ok(
        start(
            &home,
            &ws,
            "flood",
            &[
                "--ready-file",
                "/tmp/flooded",
                "--",
                "sh",
                "-c",
                "seq 1 400000; touch /tmp/flooded; exec sleep 1000",
            ],
        ),
        "start flood",
    );
    let info = status(&home, &ws, "flood");
    assert!(info["log_bytes"].as_u64().unwrap() > 2_000_000, "{info}");
    assert!(info["log_dropped"].as_u64().unwrap() > 0, "{info}");
    let tail = ok(
        home.run(&["workspace", "service", "logs", &ws, "flood", "--tail", "2"]),
        "tail",
    );
    assert_eq!(stdout(&tail), "399999\n400000\n");
    let log = home
        .path()
        .join("workspaces")
        .join(&ws)
        .join("services/flood.log");
    assert!(std::fs::metadata(&log).unwrap().len() <= 1024 * 1024);
    let old = json(&ok(
        home.run(&[
            "workspace",
            "service",
            "logs",
            &ws,
            "flood",
            "--since",
            "0",
            "--max-bytes",
            "10",
            "--json",
        ]),
        "since 0",
    ));
    assert!(old["skipped"].as_u64().unwrap() > 0, "{old}");

    // Unknown names and bad names are refused clearly.
    let unknown = home.run(&["workspace", "service", "status", &ws, "nope"]);
    assert!(
        stderr(&unknown).contains("no service 'nope'"),
        "{}",
        stderr(&unknown)
    );
    let bad = start(&home, &ws, "bad/name", &["--", "true"]);
    assert!(
        stderr(&bad).contains("invalid service name"),
        "{}",
        stderr(&bad)
    );

    // Stopping the workspace ends its services; the record stays readable.
    ok(
        home.run(&["workspace", "stop", &ws, "--power-off"]),
        "stop workspace",
    );
    let info = status(&home, &ws, "flood");
    assert_eq!(info["state"], "ended", "{info}");
    let tail = ok(
        home.run(&["workspace", "service", "logs", &ws, "flood", "--tail", "1"]),
        "tail offline",
    );
    assert_eq!(stdout(&tail), "400000\n");
}
