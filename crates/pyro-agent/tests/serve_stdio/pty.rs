//! Commands on pseudo-terminals: `Exec` with `pty`, keystrokes as stdin,
//! `Signal` to the foreground job, `Resize`.

use std::time::{Duration, Instant};

use pyro_protocol::{encode_data, ExecRequest, FrameKind, Message, Probe, PtySize};

use crate::agent::{Agent, Outcome};
use crate::sh;

const PATIENCE: Duration = Duration::from_secs(10);

fn on_pty(mut request: ExecRequest, rows: u16, cols: u16) -> ExecRequest {
    request.pty = Some(PtySize { rows, cols });
    request
}

fn interactive_shell() -> ExecRequest {
    let mut request = on_pty(
        ExecRequest {
            argv: vec!["sh".into(), "-i".into()],
            cwd: Some("/".into()),
            ..ExecRequest::default()
        },
        24,
        80,
    );
    request.env = vec![("PS1".into(), "pyro$ ".into()), ("ENV".into(), "".into())];
    request
}

fn type_keys(agent: &mut Agent, id: u32, keys: &[u8]) {
    let mut wire = Vec::new();
    encode_data(id, FrameKind::Stdin, keys, &mut wire);
    agent.send_raw(&wire);
}

/// Waits until a process with exactly this command line runs, so that a
/// signal is not sent before the shell has started its job.
fn wait_for_process(cmdline: &[&str]) {
    wait_for_process_state(cmdline, true);
}

fn wait_for_no_process(cmdline: &[&str]) {
    wait_for_process_state(cmdline, false);
}

fn wait_for_process_state(cmdline: &[&str], running: bool) {
    let wanted: Vec<u8> = cmdline
        .iter()
        .flat_map(|arg| [arg.as_bytes(), b"\0"].concat())
        .collect();
    let deadline = Instant::now() + PATIENCE;
    while Instant::now() < deadline {
        let found = std::fs::read_dir("/proc").unwrap().flatten().any(|entry| {
            std::fs::read(entry.path().join("cmdline")).is_ok_and(|line| line == wanted)
        });
        if found == running {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let what = if running { "start" } else { "end" };
    panic!("{cmdline:?} did not {what} within {PATIENCE:?}");
}

#[test]
fn pty_exec_runs_on_a_terminal_of_the_requested_size() {
    let mut agent = Agent::start();
    agent.exec(
        1,
        on_pty(sh("tty; stty size; echo \"$TERM\"; echo err >&2"), 33, 101),
    );
    let outcome = agent.wait(1);
    let text = String::from_utf8_lossy(&outcome.stdout);
    assert!(text.starts_with("/dev/pts/"), "{text:?}");
    assert!(text.contains("\r\n33 101\r\n"), "{text:?}");
    assert!(text.contains("xterm-256color\r\n"), "{text:?}");
    assert!(
        text.contains("err\r\n"),
        "stderr is the terminal too: {text:?}"
    );
    assert!(outcome.stderr.is_empty());
    assert_eq!(outcome.exited.unwrap().code, Some(0));

    let mut request = on_pty(sh("echo \"$TERM\""), 24, 80);
    request.env = vec![("TERM".into(), "vt100".into())];
    agent.exec(2, request);
    assert_eq!(agent.wait(2).stdout, b"vt100\r\n");
}

#[test]
fn escape_sequences_arrive_as_written() {
    let mut agent = Agent::start();
    agent.exec(1, on_pty(sh(r"printf '\033[31mred\033[0m'"), 24, 80));
    let outcome = agent.wait(1);
    assert_eq!(outcome.stdout, b"\x1b[31mred\x1b[0m");
}

#[test]
fn a_pty_exec_reports_its_exit_code() {
    let mut agent = Agent::start();
    agent.exec(1, on_pty(sh("exit 5"), 24, 80));
    assert_eq!(agent.wait(1).exited.unwrap().code, Some(5));
}

#[test]
fn keystrokes_reach_an_interactive_shell_which_echoes_them() {
    let mut agent = Agent::start();
    agent.exec(1, interactive_shell());
    let mut outcome = Outcome::default();
    let at = agent.stdout_until(1, &mut outcome, 0, "pyro$ ", PATIENCE);
    type_keys(&mut agent, 1, b"echo hi\r");
    let at = agent.stdout_until(1, &mut outcome, at, "echo hi\r\n", PATIENCE);
    let at = agent.stdout_until(1, &mut outcome, at, "hi\r\n", PATIENCE);
    agent.stdout_until(1, &mut outcome, at, "pyro$ ", PATIENCE);
    type_keys(&mut agent, 1, b"exit 3\r");
    agent.wait_within(1, &mut outcome, PATIENCE);
    assert_eq!(outcome.exited.unwrap().code, Some(3));
    assert!(
        outcome.acked >= b"echo hi\rexit 3\r".len() as u64,
        "{outcome:?}"
    );
}

#[test]
fn ctrl_c_interrupts_the_foreground_job_and_the_shell_survives() {
    let mut agent = Agent::start();
    agent.exec(1, interactive_shell());
    let mut outcome = Outcome::default();
    let at = agent.stdout_until(1, &mut outcome, 0, "pyro$ ", PATIENCE);
    type_keys(&mut agent, 1, b"sleep 101.25\r");
    wait_for_process(&["sleep", "101.25"]);
    type_keys(&mut agent, 1, b"\x03");
    type_keys(&mut agent, 1, b"echo alive-$?\r");
    agent.stdout_until(1, &mut outcome, at, "alive-130", PATIENCE);
    agent.send(
        1,
        &Message::Signal {
            signal: libc::SIGKILL,
            foreground: false,
        },
    );
    agent.wait_within(1, &mut outcome, PATIENCE);
    assert_eq!(outcome.exited.unwrap().signal, Some(libc::SIGKILL));
}

#[test]
fn signal_goes_to_the_foreground_job() {
    let mut agent = Agent::start();
    agent.exec(1, interactive_shell());
    let mut outcome = Outcome::default();
    let at = agent.stdout_until(1, &mut outcome, 0, "pyro$ ", PATIENCE);
    type_keys(&mut agent, 1, b"sleep 102.25\r");
    wait_for_process(&["sleep", "102.25"]);
    // The shell ignores SIGINT; only the job in the foreground dies of it.
    agent.send(
        1,
        &Message::Signal {
            signal: libc::SIGINT,
            foreground: false,
        },
    );
    type_keys(&mut agent, 1, b"echo alive-$?\r");
    agent.stdout_until(1, &mut outcome, at, "alive-130", PATIENCE);
    // A hangup closes the shell and what runs in it.
    type_keys(&mut agent, 1, b"sleep 103.25\r");
    wait_for_process(&["sleep", "103.25"]);
    agent.send(
        1,
        &Message::Signal {
            signal: libc::SIGHUP,
            foreground: false,
        },
    );
    agent.wait_within(1, &mut outcome, PATIENCE);
    assert_eq!(outcome.exited.unwrap().signal, Some(libc::SIGHUP));
    wait_for_no_process(&["sleep", "103.25"]);
}

#[test]
fn resize_changes_the_window_size() {
    let mut agent = Agent::start();
    agent.exec(1, interactive_shell());
    let mut outcome = Outcome::default();
    let at = agent.stdout_until(1, &mut outcome, 0, "pyro$ ", PATIENCE);
    agent.send(
        1,
        &Message::Resize {
            rows: 41,
            cols: 123,
        },
    );
    type_keys(&mut agent, 1, b"stty size\r");
    agent.stdout_until(1, &mut outcome, at, "41 123\r\n", PATIENCE);
    type_keys(&mut agent, 1, b"exit\r");
    agent.wait_within(1, &mut outcome, PATIENCE);
    assert_eq!(outcome.exited.unwrap().code, Some(0));
}

#[test]
fn resize_without_a_terminal_is_ignored() {
    let mut agent = Agent::start();
    // On a command without a terminal: it runs on and ends once.
    agent.exec(1, sh("read line; echo \"got $line\""));
    agent.send(1, &Message::Resize { rows: 10, cols: 10 });
    assert_eq!(agent.wait(1).stdout, b"got \n");
    let mut request = sh("read line; echo \"got $line\"");
    request.stdin = true;
    agent.exec(2, request);
    agent.send(2, &Message::Resize { rows: 10, cols: 10 });
    type_keys(&mut agent, 2, b"x\n");
    let outcome = agent.wait(2);
    assert_eq!(outcome.stdout, b"got x\n");
    // On an id nothing runs under: no answer at all; the next frame is the
    // answer to what follows.
    agent.send(9, &Message::Resize { rows: 10, cols: 10 });
    agent.send(10, &Message::Probe(Probe::File { path: "/".into() }));
    let next = agent.next_frame();
    assert_eq!(next.id, 10);
    assert_eq!(next.message().unwrap(), Message::Done { bytes: None });
}

#[test]
fn stdin_is_open_on_a_pty_whatever_the_request_says() {
    let mut agent = Agent::start();
    let mut request = on_pty(sh("stty -echo; read line; echo \"got $line\""), 24, 80);
    request.stdin = false;
    agent.exec(1, request);
    let mut outcome = Outcome::default();
    // Keys that arrive before `stty -echo` runs are echoed too.
    type_keys(&mut agent, 1, b"typed\r");
    agent.wait_within(1, &mut outcome, PATIENCE);
    let text = String::from_utf8_lossy(&outcome.stdout);
    assert!(text.ends_with("got typed\r\n"), "{text:?}");
}

#[test]
fn a_command_that_never_reads_its_terminal_does_not_wedge_the_agent() {
    let mut agent = Agent::start();
    agent.exec(1, on_pty(sh("sleep 0.3"), 24, 80));
    // Far more than the terminal's input buffer holds, within the window.
    let keys = vec![b'x'; 512 * 1024];
    type_keys(&mut agent, 1, &keys);
    let begun = Instant::now();
    let mut outcome = Outcome::default();
    agent.wait_within(1, &mut outcome, PATIENCE);
    assert_eq!(outcome.exited.unwrap().code, Some(0));
    assert!(begun.elapsed() < Duration::from_secs(3));
    // The agent still serves other requests.
    agent.exec(2, on_pty(sh("echo still here"), 24, 80));
    assert_eq!(agent.wait(2).stdout, b"still here\r\n");
}
