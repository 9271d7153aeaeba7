//! Who receives a signal sent to a command on a pseudo-terminal.
//!
//! A shell on a terminal puts each job it starts in a process group of its
//! own and makes that group the terminal's foreground group, so the
//! command's own group (the shell's) is the wrong target for an interrupt:
//! Ctrl-C must reach `sleep 100`, not the shell that waits for it. A signal
//! therefore goes to the terminal's foreground group, or to the command's
//! group when the terminal has none. `SIGKILL` and `SIGHUP` end the whole
//! session's work, so they go to both groups, unless the host asked for the
//! foreground job only (a user's "kill what runs", not "close the shell").
//!
//! When the command on a terminal ends, whatever it left running in its
//! session (background jobs, `nohup`) is killed: a shell takes its work
//! with it, and nothing outlives it unseen.
//!
//! Opening the terminal and making it the command's controlling terminal is
//! in `spawn.rs`; streaming and feeding it in `exec.rs`.

use std::os::fd::OwnedFd;

use crate::sys::{self, log};

/// Delivers `signal` on a terminal whose command leads process group
/// `command_pgid`. Groups that are already gone are skipped silently.
pub fn signal(master: &OwnedFd, command_pgid: libc::pid_t, signal: i32, foreground_only: bool) {
    let foreground = sys::foreground_group(master).ok();
    for pgid in targets(foreground, command_pgid, signal, foreground_only) {
        if let Err(err) = sys::kill_group(pgid, signal) {
            if err.raw_os_error() != Some(libc::ESRCH) {
                log!("signal {signal} to process group {pgid}: {err}");
            }
        }
    }
}

/// Kills a command: its process group, and on a terminal (`master`) the
/// terminal's foreground job too.
pub fn kill_command(command_pgid: libc::pid_t, master: Option<&OwnedFd>) {
    match master {
        Some(master) => signal(master, command_pgid, libc::SIGKILL, false),
        None => {
            let _ = sys::kill_group(command_pgid, libc::SIGKILL);
        }
    }
}

/// Kills every process left in session `sid` (the command on a terminal
/// leads its own session, so `sid` is its pid).
pub fn end_session(sid: libc::pid_t) {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<libc::pid_t>().ok())
        else {
            continue;
        };
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if session_of(&stat) == Some(sid) {
            // SAFETY: kill takes no pointers; a pid that is gone is harmless.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// The session id in a `/proc/PID/stat` line: the fourth field after the
/// command name (which may itself hold spaces and parentheses).
fn session_of(stat: &str) -> Option<libc::pid_t> {
    let rest = &stat[stat.rfind(')')? + 1..];
    rest.split_whitespace().nth(3)?.parse().ok()
}

/// The process groups that receive `signal`, given the terminal's
/// foreground group (if it has one).
fn targets(
    foreground: Option<libc::pid_t>,
    command_pgid: libc::pid_t,
    signal: i32,
    foreground_only: bool,
) -> Vec<libc::pid_t> {
    let first = foreground.filter(|pgid| *pgid > 0).unwrap_or(command_pgid);
    let mut targets = vec![first];
    let whole = matches!(signal, libc::SIGKILL | libc::SIGHUP) && !foreground_only;
    if whole && first != command_pgid {
        targets.push(command_pgid);
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_session_from_a_stat_line() {
        let stat = "1234 (odd) name)) S 1 1234 1200 34816 1234 4194304";
        assert_eq!(session_of(stat), Some(1200));
        assert_eq!(session_of("garbage"), None);
    }

    #[test]
    fn interrupts_go_to_the_foreground_job_and_kills_to_both() {
        assert_eq!(targets(Some(20), 10, libc::SIGINT, false), [20]);
        assert_eq!(targets(None, 10, libc::SIGINT, false), [10]);
        assert_eq!(targets(Some(0), 10, libc::SIGTERM, false), [10]);
        assert_eq!(targets(Some(20), 10, libc::SIGKILL, false), [20, 10]);
        assert_eq!(targets(Some(20), 10, libc::SIGHUP, false), [20, 10]);
        assert_eq!(targets(Some(10), 10, libc::SIGHUP, false), [10]);
        assert_eq!(targets(Some(20), 10, libc::SIGKILL, true), [20]);
    }
}
