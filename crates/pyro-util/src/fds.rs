//! Descriptors a process hands to the programs it runs.
//!
//! Rust opens every file close-on-exec, but a caller may start pyro with
//! descriptors of its own left open (`(exec 7>file; pyro ...)`); without
//! care they would pass on to every child, QEMU included. `pyro` marks them
//! close-on-exec as it starts, and each child gets only what it is handed.

use std::os::fd::RawFd;

/// Marks every descriptor from `first` up close-on-exec: `close_range`
/// where the kernel has it (5.11), else one `fcntl` per possible number.
/// Async-signal-safe: usable between fork and exec.
pub fn close_on_exec_from(first: RawFd) {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: close_range with CLOEXEC only sets descriptor flags.
    let done = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first as libc::c_uint,
            libc::c_uint::MAX,
            CLOSE_RANGE_CLOEXEC,
        )
    } == 0;
    if done {
        return;
    }
    // Older kernels: every number below the descriptor limit (getrlimit is
    // a plain system call, unlike sysconf).
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the local struct.
    let max = match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } {
        0 => limit.rlim_cur.min(RawFd::MAX as u64) as RawFd,
        _ => 1 << 16,
    };
    for fd in first..max {
        // SAFETY: F_SETFD on a closed number fails harmlessly (EBADF).
        unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
}
