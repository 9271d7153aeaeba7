//! `pyro run` end to end: every test boots real VMs from the real
//! `debian:12` environment through the `pyro` binary.
//!
//! Run with `cargo test -p pyro-cli --test it run::`; the first run pulls the
//! environment (needs root and mmdebstrap), later runs reuse the cache.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn git_version_runs_in_the_guest() {
    let output = run(&[], &["git", "--version"]);
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    assert!(
        stdout(&output).starts_with("git version "),
        "stdout: {}",
        stdout(&output)
    );
}

#[test]
fn streams_go_to_the_right_place_and_the_exit_code_passes_through() {
    let output = run(&[], &["sh", "-c", "echo out; echo err >&2; exit 7"]);
    assert_eq!(output.status.code(), Some(7), "stderr: {}", stderr(&output));
    assert_eq!(stdout(&output), "out\n");
    assert_eq!(stderr(&output), "err\n");
}

#[test]
fn commands_run_in_workspace_with_env_vars() {
    let output = run(
        &["--env", "GREETING=hi there"],
        &["sh", "-c", "pwd; echo \"$GREETING\"; id -u"],
    );
    assert!(output.status.success(), "stderr: {}", stderr(&output));
    assert_eq!(stdout(&output), "/workspace\nhi there\n0\n");
}

#[test]
fn timeout_stops_the_command_with_a_distinct_exit_code() {
    let started = Instant::now();
    let output = run(&["--timeout", "5"], &["sleep", "60"]);
    let elapsed = started.elapsed();
    assert_eq!(
        output.status.code(),
        Some(124),
        "stderr: {}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains("timed out after 5s"),
        "stderr: {}",
        stderr(&output)
    );
    // 5 s of command plus one boot under TCG.
    assert!(elapsed < Duration::from_secs(30), "took {elapsed:?}");
    assert!(elapsed >= Duration::from_secs(5), "took {elapsed:?}");
}

#[test]
fn a_missing_command_exits_127_with_the_guest_message() {
    let output = run(&[], &["no-such-command", "--flag"]);
    assert_eq!(output.status.code(), Some(127));
    assert!(
        stderr(&output).contains("no-such-command: command not found"),
        "stderr: {}",
        stderr(&output)
    );
}

#[test]
fn flooding_output_streams_everything_with_bounded_memory() {
    ensure_env();
    const BYTES: u64 = 200 * 1024 * 1024;
    let mut child = pyro()
        .args([
            "run",
            ENV,
            "--",
            "sh",
            "-c",
            &format!("head -c {BYTES} /dev/zero"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let mut stdout = child.stdout.take().unwrap();
    let mut total = 0u64;
    let mut peak_rss_kib = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = stdout.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        total += n as u64;
        if let Some(rss) = rss_kib(pid) {
            peak_rss_kib = peak_rss_kib.max(rss);
        }
    }
    let status = child.wait().unwrap();
    assert!(status.success());
    assert_eq!(total, BYTES);
    assert!(
        peak_rss_kib < 64 * 1024,
        "pyro used {peak_rss_kib} KiB streaming {BYTES} bytes"
    );
}

fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Starts a run whose command prints `ready` and sleeps; returns once the
/// command runs in the guest, with the QEMU pid.
fn spawn_ready_run(scratch: &std::path::Path) -> (std::process::Child, u32) {
    let mut child = spawn_run(scratch, &["sh", "-c", "echo ready; sleep 300"]);
    let vm = wait_for_vm(&child);
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line, "ready\n");
    (child, vm)
}

#[test]
fn kill_9_of_pyro_leaves_no_vm_and_no_files() {
    let scratch = scratch_dir();
    let (mut child, vm) = spawn_ready_run(scratch.path());
    child.kill().unwrap();
    child.wait().unwrap();
    assert_gone(vm, "QEMU after kill -9 of pyro");
    assert!(dir_is_empty(scratch.path()), "files left in TMPDIR");
}

#[test]
fn ctrl_c_stops_the_vm_and_exits_130() {
    let scratch = scratch_dir();
    let (mut child, vm) = spawn_ready_run(scratch.path());
    // SAFETY: plain kill(2) on a child we own.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    assert_gone(vm, "QEMU after Ctrl-C");
    assert!(dir_is_empty(scratch.path()), "files left in TMPDIR");
}

#[test]
fn normal_runs_leave_no_vm_behind() {
    let scratch = scratch_dir();
    let mut child = spawn_run(scratch.path(), &["sh", "-c", "sleep 1; exit 3"]);
    let vm = wait_for_vm(&child);
    assert_eq!(child.wait().unwrap().code(), Some(3));
    assert!(!is_alive(vm), "QEMU outlived pyro");
    assert!(dir_is_empty(scratch.path()), "files left in TMPDIR");
}

#[test]
fn two_runs_at_once_both_work() {
    ensure_env();
    let spawn = |word: &str| {
        pyro()
            .args(["run", ENV, "--", "echo", word])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let first = spawn("first");
    let second = spawn("second");
    let first = first.wait_with_output().unwrap();
    let second = second.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", stderr(&first));
    assert!(second.status.success(), "{}", stderr(&second));
    assert_eq!(stdout(&first), "first\n");
    assert_eq!(stdout(&second), "second\n");
}

#[test]
fn a_vm_that_dies_mid_command_is_reported_with_its_reason() {
    let scratch = scratch_dir();
    let mut child = spawn_run(
        scratch.path(),
        &["sh", "-c", "echo c > /proc/sysrq-trigger; sleep 60"],
    );
    let vm = wait_for_vm(&child);
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(125), "stderr: {err}");
    assert!(
        err.contains("the VM stopped while the command ran"),
        "stderr: {err}"
    );
    assert!(err.contains("sysrq triggered crash"), "stderr: {err}");
    assert!(!is_alive(vm), "QEMU outlived pyro");
    assert!(dir_is_empty(scratch.path()), "files left in TMPDIR");
}

#[test]
fn run_stdin_reaches_the_command() {
    let mut child = pyro()
        .args(["run", ENV, "--stdin", "--", "wc", "-l"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pyro run");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"a\nb\nc\n").unwrap();
    drop(child.stdin.take());
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(stdout(&output).trim(), "3");
}
