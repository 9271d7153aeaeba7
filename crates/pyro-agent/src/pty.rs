//! Who receives a signal sent to a command on a pseudo-terminal.
//!
//! A shell on a terminal puts each job it starts in a process group of its
//! own and makes that group the terminal's foreground group, so the
//! command's own group (the shell's) is the wrong target for an interrupt:
//! Ctrl-C must reach `sleep 100`, not the shell that waits for it. A signal
//! therefore goes to the terminal's foreground group, or to the command's
//! group when the terminal has none. `SIGKILL` and `SIGHUP` end the whole
//! session's work, so they go to both groups.
//!
//! Opening the terminal and making it the command's controlling terminal is
//! in `spawn.rs`; streaming and feeding it in `exec.rs`.

use std::os::fd::OwnedFd;

use crate::sys::{self, log};

/// Delivers `signal` on a terminal whose command leads process group
/// `command_pgid`. Groups that are already gone are skipped silently.
pub fn signal(master: &OwnedFd, command_pgid: libc::pid_t, signal: i32) {
    for pgid in targets(sys::foreground_group(master).ok(), command_pgid, signal) {
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
        Some(master) => signal(master, command_pgid, libc::SIGKILL),
        None => {
            let _ = sys::kill_group(command_pgid, libc::SIGKILL);
        }
    }
}

/// The process groups that receive `signal`, given the terminal's
/// foreground group (if it has one).
fn targets(
    foreground: Option<libc::pid_t>,
    command_pgid: libc::pid_t,
    signal: i32,
) -> Vec<libc::pid_t> {
    let first = foreground.filter(|pgid| *pgid > 0).unwrap_or(command_pgid);
    let mut targets = vec![first];
    if matches!(signal, libc::SIGKILL | libc::SIGHUP) && first != command_pgid {
        targets.push(command_pgid);
    }
    targets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interrupts_go_to_the_foreground_job_and_kills_to_both() {
        assert_eq!(targets(Some(20), 10, libc::SIGINT), [20]);
        assert_eq!(targets(None, 10, libc::SIGINT), [10]);
        assert_eq!(targets(Some(0), 10, libc::SIGTERM), [10]);
        assert_eq!(targets(Some(20), 10, libc::SIGKILL), [20, 10]);
        assert_eq!(targets(Some(20), 10, libc::SIGHUP), [20, 10]);
        assert_eq!(targets(Some(10), 10, libc::SIGHUP), [10]);
    }
}
