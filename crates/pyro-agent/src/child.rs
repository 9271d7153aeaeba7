//! The child side of starting a command: made with `clone(CLONE_VM |
//! CLONE_VFORK)`, it runs on a stack of its own in the agent's memory until
//! it execs, making only async-signal-safe calls on what the parent
//! prepared (see `spawn.rs`).

use std::ffi::CString;
use std::io;
use std::os::fd::RawFd;

use crate::sys;

/// Which step of the child failed, as reported over the error pipe.
pub(crate) const STAGE_CHDIR: u8 = 1;
pub(crate) const STAGE_EXEC: u8 = 2;
pub(crate) const STAGE_TTY: u8 = 3;

pub(crate) struct ChildFds {
    pub(crate) stdin: RawFd,
    pub(crate) stdout: RawFd,
    pub(crate) stderr: RawFd,
    /// Make `stdin` (a terminal) the new session's controlling terminal.
    pub(crate) controlling_tty: bool,
    pub(crate) status: RawFd,
}

/// What the child needs to exec, all prepared before it is made.
pub(crate) struct Child<'a> {
    pub(crate) fds: &'a ChildFds,
    pub(crate) cwd: &'a CString,
    pub(crate) program: &'a CString,
    pub(crate) argv: &'a [*const libc::c_char],
    pub(crate) envp: &'a [*const libc::c_char],
}

/// Bytes of stack the child runs on until it execs.
const CHILD_STACK: usize = 64 * 1024;

/// Makes the child with `clone(CLONE_VM | CLONE_VFORK)`: it shares the
/// agent's memory on a stack of its own until it execs (or exits), and
/// the agent waits until then. No page table is copied and no page of
/// the agent's becomes copy-on-write, which under emulation (TCG) is most
/// of what a `fork` costs.
pub(crate) fn spawn_child(child: &Child) -> io::Result<libc::pid_t> {
    let mut stack = vec![0u8; CHILD_STACK];
    // The stack grows down, from an aligned top.
    let top = (stack.as_mut_ptr() as usize + CHILD_STACK) & !15;
    // No signal handler of the agent's may run in the child (it shares
    // the agent's memory): every signal is blocked across the clone, and
    // the child sets handled ones back to their default before unblocking.
    // SAFETY: sigset_t is plain data, filled by sigfillset.
    let mut all: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above, for the mask saved and restored.
    let mut saved: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: valid sigset pointers; only this thread's mask changes.
    unsafe {
        libc::sigfillset(&mut all);
        libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut saved);
    }
    // SAFETY: `run_child` only reads `child`, which outlives the call (the
    // agent waits in clone until the child has exec'd or exited), and it
    // runs on `stack`, which outlives it for the same reason. It makes
    // only async-signal-safe calls and never returns into Rust frames.
    let pid = unsafe {
        libc::clone(
            run_child,
            top as *mut libc::c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            child as *const Child as *mut libc::c_void,
        )
    };
    // SAFETY: restores the mask saved above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &saved, std::ptr::null_mut()) };
    drop(stack);
    sys::check(pid)
}

/// The child's entry: execs, or reports why not and exits.
extern "C" fn run_child(child: *mut libc::c_void) -> libc::c_int {
    // SAFETY: `spawn_child` passes a `Child` that lives until this child
    // has exec'd or exited.
    let child = unsafe { &*(child as *const Child) };
    // SAFETY: sigaction on this process's own table (a copy of the
    // agent's: no CLONE_SIGHAND); then exec_child, in the new child, with
    // pointers prepared by the parent.
    unsafe {
        for signal in 1..=libc::SIGRTMAX() {
            let mut current: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut current) == 0
                && current.sa_sigaction != libc::SIG_DFL
                && current.sa_sigaction != libc::SIG_IGN
            {
                libc::signal(signal, libc::SIG_DFL);
            }
        }
        exec_child(child.fds, child.cwd, child.program, child.argv, child.envp)
    }
}

/// The child side of the spawn: never returns.
///
/// # Safety
/// Must only be called in a freshly made child; the pointers must be valid
/// NUL-terminated strings and NULL-terminated arrays of them.
unsafe fn exec_child(
    fds: &ChildFds,
    cwd: &CString,
    program: &CString,
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> ! {
    // SAFETY: only async-signal-safe calls, on descriptors and strings
    // prepared by the parent before fork.
    unsafe {
        // The agent ignores SIGPIPE (Rust's runtime does); commands expect
        // the default, and an empty signal mask.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigprocmask(libc::SIG_SETMASK, &empty, std::ptr::null_mut());
        libc::setsid();
        if fds.controlling_tty && libc::ioctl(fds.stdin, libc::TIOCSCTTY, 0) < 0 {
            report_and_exit(fds.status, STAGE_TTY);
        }
        for (fd, target) in [(fds.stdin, 0), (fds.stdout, 1), (fds.stderr, 2)] {
            if fd == target {
                libc::fcntl(fd, libc::F_SETFD, 0);
            } else {
                libc::dup2(fd, target);
            }
        }
        if libc::chdir(cwd.as_ptr()) < 0 {
            report_and_exit(fds.status, STAGE_CHDIR);
        }
        libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr());
        report_and_exit(fds.status, STAGE_EXEC)
    }
}

/// Sends the failed stage and errno to the parent, then exits.
///
/// # Safety
/// Async-signal-safe; for the forked child only.
unsafe fn report_and_exit(status_fd: RawFd, stage: u8) -> ! {
    // SAFETY: errno location is thread-local and valid; the buffer is live.
    unsafe {
        let errno = *libc::__errno_location();
        let mut report = [stage, 0, 0, 0, 0];
        report[1..5].copy_from_slice(&errno.to_ne_bytes());
        libc::write(status_fd, report.as_ptr().cast(), report.len());
        libc::_exit(127)
    }
}
