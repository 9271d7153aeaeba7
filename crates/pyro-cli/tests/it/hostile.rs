//! A hostile guest against the host: what it names, prints and sends
//! reaches the user's terminal as visible text, never as escape sequences.

use crate::support::*;

/// Bytes a terminal would act on rather than show.
fn acts_on_terminal(text: &str) -> bool {
    text.chars()
        .any(|c| (c.is_control() && c != '\n' && c != '\t') || c == '\u{202e}')
}

#[test]
fn names_the_guest_chose_reach_the_terminal_escaped() {
    let home = TestHome::new();
    home.create(&["--name", "names"]);
    // Window title (OSC), colour (CSI), a carriage return that would hide
    // the line's start, a newline that would forge a second entry, and a
    // right-to-left override.
    let made = home.sh(
        "names",
        "cd /workspace && touch \"$(printf 'title\\033]0;owned\\007')\" \
         \"$(printf 'red\\033[31m')\" \"$(printf 'hidden\\rshown')\" \
         \"$(printf 'two\\nlines')\" \"$(printf 'evil\\342\\200\\256txt.sh')\" \
         && printf '\\033[2J' > plain.txt",
    );
    assert!(made.status.success(), "{}", stderr(&made));

    let list = stdout(&ok(
        home.run(&["workspace", "file", "list", "names"]),
        "file list",
    ));
    let summary = stdout(&ok(home.run(&["workspace", "summary", "names"]), "summary"));
    let stat = stdout(&ok(
        home.run(&["workspace", "diff", "names", "--stat"]),
        "diff --stat",
    ));
    for (what, text) in [
        ("file list", &list),
        ("summary", &summary),
        ("diff --stat", &stat),
    ] {
        assert!(
            !acts_on_terminal(text),
            "{what} printed raw escapes: {text:?}"
        );
        for escaped in [
            "title\\u{1b}]0;owned\\u{7}",
            "red\\u{1b}[31m",
            "hidden\\rshown",
            "two\\nlines",
            "evil\\u{202e}txt.sh",
        ] {
            assert!(text.contains(escaped), "{what} lacks {escaped}: {text}");
        }
    }
    // JSON keeps the names as they are (its own escaping is exact).
    let listing = json(&home.run(&["workspace", "file", "list", "names", "--json"]));
    assert!(
        listing.to_string().contains("title\\u001b]0;owned\\u0007"),
        "{listing}"
    );
    // What the user asked to read stays byte-exact.
    let read = home.run(&["workspace", "file", "read", "names", "plain.txt"]);
    assert_eq!(read.stdout, b"\x1b[2J");
    let exec = home.sh("names", "printf '\\033[31mred'");
    assert_eq!(exec.stdout, b"\x1b[31mred");
    ok(home.run(&["workspace", "delete", "names"]), "delete");
}

#[test]
fn an_invalid_name_is_not_echoed_raw() {
    let home = TestHome::new();
    let create = home.run(&["workspace", "create", ENV, "--name", "x\u{1b}]0;owned\u{7}"]);
    assert_eq!(create.status.code(), Some(125), "{}", stderr(&create));
    let said = stderr(&create);
    assert!(!acts_on_terminal(&said), "{said:?}");
    assert!(said.contains("x\\u{1b}]0;owned\\u{7}"), "{said}");
}

/// As `nobody`: `flock -s -n LOCK true`, the hold that once made every
/// `workspace create` wait forever.
fn nobody_can_hold(lock: &std::path::Path) -> bool {
    std::process::Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .args(["flock", "-s", "-n"])
        .arg(lock)
        .arg("true")
        .output()
        .expect("setpriv")
        .status
        .success()
}

#[test]
fn another_user_can_neither_read_the_state_nor_hold_its_locks() {
    use std::os::unix::fs::PermissionsExt as _;
    let home = TestHome::new();
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    let set = |path: &std::path::Path, mode: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap()
    };
    // The state as an older pyro left it: readable, a lock anyone opens.
    let workspaces = home.path().join("workspaces");
    let names = workspaces.join("names.lock");
    std::fs::create_dir(&workspaces).unwrap();
    std::fs::write(&names, b"").unwrap();
    set(home.path(), 0o755);
    set(&workspaces, 0o755);
    set(&names, 0o644);
    assert!(
        nobody_can_hold(&names),
        "the check itself must be able to fail"
    );

    home.create(&["--name", "private"]);
    assert_eq!(mode(home.path()), 0o700);
    assert_eq!(mode(&workspaces), 0o700);
    assert_eq!(mode(&names), 0o600);
    assert!(!nobody_can_hold(&names));
    // Every lock file pyro made is owner-only.
    let dir = std::fs::read_dir(&workspaces)
        .unwrap()
        .flatten()
        .find(|e| e.path().is_dir())
        .unwrap()
        .path();
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        if entry.path().extension().is_some_and(|e| e == "lock") {
            assert_eq!(mode(&entry.path()), 0o600, "{}", entry.path().display());
        }
    }
    ok(home.run(&["workspace", "delete", "private"]), "delete");
}
