//! `pyro workspace shell ...` end to end through the `pyro` binary against
//! real VMs: an interactive python3, a `\r` progress bar read as its final
//! line, colours interpreted, Ctrl-C and signals, raw reads, a shell whose
//! program exits, 20 shells at once across CLI processes, and a reset that
//! ends them and says so.
//!
//! Run with: `cargo test -p pyro-cli --test it workspace_shells::`.

use std::time::Duration;

use crate::support::*;

fn open(home: &TestHome, ws: &str) -> String {
    let output = ok(
        home.run(&["workspace", "shell", "open", ws, "--id-only"]),
        "shell open",
    );
    stdout(&output).trim().to_string()
}

fn write_line(home: &TestHome, ws: &str, shell: &str, line: &str) {
    ok(
        home.run(&["workspace", "shell", "write", ws, shell, "--line", line]),
        "shell write",
    );
}

fn read(home: &TestHome, ws: &str, shell: &str) -> serde_json::Value {
    json(&ok(
        home.run(&[
            "workspace",
            "shell",
            "read",
            ws,
            shell,
            "--json",
            "--wait-idle",
            "300",
        ]),
        "shell read",
    ))
}

/// Reads until the accumulated text contains `needle` (programs under TCG
/// may pause longer than the idle window); returns the accumulated text.
fn read_until(home: &TestHome, ws: &str, shell: &str, needle: &str) -> String {
    let mut seen = String::new();
    let found = wait_for(Duration::from_secs(60), || {
        let text = read(home, ws, shell)["text"].as_str().unwrap().to_string();
        seen.push_str(&text);
        seen.push('\n');
        seen.contains(needle).then_some(())
    });
    assert!(found.is_some(), "never saw {needle:?}; saw:\n{seen}");
    seen
}

#[test]
fn a_shell_reads_as_plain_text() {
    let home = TestHome::new();
    let ws = home.create(&[]);
    let shell = open(&home, &ws);
    read_until(&home, &ws, &shell, "#");

    // An interactive python3: write a line, read the result.
    write_line(&home, &ws, &shell, "python3 -q");
    read_until(&home, &ws, &shell, ">>>");
    write_line(&home, &ws, &shell, "print(6 * 7)");
    let text = read_until(&home, &ws, &shell, "42");
    assert!(text.lines().any(|line| line.trim() == "42"), "{text}");
    assert!(!text.contains('\x1b'), "escape sequences leaked: {text:?}");
    write_line(&home, &ws, &shell, "exit()");
    read_until(&home, &ws, &shell, "#");

    // A \r progress bar reads as its final line; colours are interpreted.
    write_line(
        &home,
        &ws,
        &shell,
        "for p in 0 25 50 75 100; do printf '\\rprogress %3d%%' $p; sleep 0.1; done; printf '\\n\\033[31mred\\033[0m done\\n'",
    );
    let text = read_until(&home, &ws, &shell, "red done");
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    assert!(lines.contains(&"progress 100%"), "{text}");
    assert!(!lines.iter().any(|l| l.contains("progress  50%")), "{text}");
    assert!(lines.contains(&"red done"), "{text}");
    assert!(!text.contains('\x1b'), "{text:?}");

    // Ctrl-C interrupts the foreground program; the shell lives on.
    write_line(&home, &ws, &shell, "sleep 300");
    std::thread::sleep(Duration::from_millis(500));
    ok(
        home.run(&[
            "workspace",
            "shell",
            "write",
            &ws,
            &shell,
            "--key",
            "ctrl-c",
        ]),
        "ctrl-c",
    );
    write_line(&home, &ws, &shell, "echo after-ctrl-$((1 + 1))");
    read_until(&home, &ws, &shell, "after-ctrl-2");

    // `shell signal` reaches the foreground job too.
    // (Interactive bash drops the rest of a line whose job died of SIGINT,
    // so the status is asked for on a line of its own.)
    write_line(&home, &ws, &shell, "sleep 300");
    std::thread::sleep(Duration::from_millis(500));
    ok(
        home.run(&["workspace", "shell", "signal", &ws, &shell, "INT"]),
        "signal",
    );
    write_line(&home, &ws, &shell, "echo sleep-status=$?");
    read_until(&home, &ws, &shell, "sleep-status=130");

    // KILL hits the foreground job only: the shell and its state survive.
    write_line(&home, &ws, &shell, "export KEPT=yes; sleep 301");
    std::thread::sleep(Duration::from_millis(500));
    ok(
        home.run(&["workspace", "shell", "signal", &ws, &shell, "KILL"]),
        "signal KILL",
    );
    write_line(&home, &ws, &shell, "echo kept=$KEPT-$((3 * 3))");
    read_until(&home, &ws, &shell, "kept=yes-9");

    // Raw mode keeps the bytes.
    write_line(&home, &ws, &shell, "printf '\\033[32mgreen\\033[0m\\n'");
    std::thread::sleep(Duration::from_millis(800));
    let raw = ok(
        home.run(&["workspace", "shell", "read", &ws, &shell, "--raw"]),
        "raw read",
    );
    assert!(stdout(&raw).contains("\x1b[32mgreen"), "{:?}", stdout(&raw));

    // A full-screen program reads as its screen, and leaves on a key.
    write_line(&home, &ws, &shell, "top -d 1");
    let screen = read_until(&home, &ws, &shell, "load average");
    assert!(screen.contains("PID USER"), "{screen}");
    assert!(!screen.contains('\x1b'), "{screen:?}");
    ok(
        home.run(&["workspace", "shell", "write", &ws, &shell, "--text", "q"]),
        "quit top",
    );
    write_line(&home, &ws, &shell, "echo top-gone-$((2 * 2))");
    read_until(&home, &ws, &shell, "top-gone-4");

    // The program exits: reads say so, writes are refused.
    write_line(&home, &ws, &shell, "exit 3");
    let ended = wait_for(Duration::from_secs(30), || {
        let value = read(&home, &ws, &shell);
        (value["state"] == "exited").then_some(value)
    })
    .expect("the shell never exited");
    assert_eq!(ended["exit_code"], 3);
    let refused = home.run(&["workspace", "shell", "write", &ws, &shell, "--line", "x"]);
    assert_eq!(refused.status.code(), Some(125));
    assert!(
        stderr(&refused).contains("exited (code 3)"),
        "{}",
        stderr(&refused)
    );

    // Impossible sizes, unknown shells and keys are refused clearly.
    let huge = home.run(&[
        "workspace",
        "shell",
        "open",
        &ws,
        "--rows",
        "5000",
        "--cols",
        "80",
    ]);
    assert!(stderr(&huge).contains("1-500 rows"), "{}", stderr(&huge));
    let nowhere = home.run(&["workspace", "shell", "open", &ws, "--cwd", "/no/such/dir"]);
    assert_eq!(nowhere.status.code(), Some(125));
    assert!(
        stderr(&nowhere).contains("does not exist"),
        "{}",
        stderr(&nowhere)
    );
    let unknown = home.run(&["workspace", "shell", "read", &ws, "s999"]);
    assert!(
        stderr(&unknown).contains("no shell 's999'"),
        "{}",
        stderr(&unknown)
    );
    let shell2 = open(&home, &ws);
    let bad_key = home.run(&[
        "workspace",
        "shell",
        "write",
        &ws,
        &shell2,
        "--key",
        "hyper-x",
    ]);
    assert!(
        stderr(&bad_key).contains("unknown key"),
        "{}",
        stderr(&bad_key)
    );
}

#[test]
fn twenty_shells_then_a_reset_ends_them() {
    let home = TestHome::new();
    let ws = home.create(&[]);
    let shells: Vec<String> = (0..20).map(|_| open(&home, &ws)).collect();
    for (n, shell) in shells.iter().enumerate() {
        write_line(&home, &ws, shell, &format!("echo shell-$((1000 + {n}))"));
    }
    for (n, shell) in shells.iter().enumerate() {
        read_until(&home, &ws, shell, &format!("shell-{}\n", 1000 + n));
    }
    let list = json(&ok(
        home.run(&["workspace", "shell", "list", &ws, "--json"]),
        "list",
    ));
    let open_count = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["state"] == "open")
        .count();
    assert_eq!(open_count, 20, "{list}");

    // Closing one ends what runs in it, background jobs too.
    write_line(
        &home,
        &ws,
        &shells[0],
        "sleep 1000 & nohup sleep 1001 >/dev/null 2>&1 &",
    );
    read_until(&home, &ws, &shells[0], "#");
    ok(
        home.run(&["workspace", "shell", "close", &ws, &shells[0]]),
        "close",
    );
    let procs = ok(home.sh(&ws, "ps -eo args"), "ps");
    assert!(!stdout(&procs).contains("sleep 100"), "{}", stdout(&procs));
    let closed = home.run(&["workspace", "shell", "read", &ws, &shells[0]]);
    assert!(
        stderr(&closed).contains("been closed"),
        "{}",
        stderr(&closed)
    );

    ok(home.run(&["workspace", "reset", &ws]), "reset");
    let after = home.run(&["workspace", "shell", "read", &ws, &shells[1]]);
    assert_eq!(after.status.code(), Some(125));
    assert!(
        stderr(&after).contains("ended: the workspace was reset"),
        "{}",
        stderr(&after)
    );
    let list = json(&ok(
        home.run(&["workspace", "shell", "list", &ws, "--json"]),
        "list",
    ));
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|s| s["state"] != "open"),
        "{list}"
    );
    // New shells get new ids.
    let fresh = open(&home, &ws);
    assert!(!shells.contains(&fresh), "{fresh}");
}
