//! Ending the VM (as PID 1) or the process (when serving on stdio).
//!
//! The host runs QEMU with `-no-reboot` and the kernel with `reboot=t`, so a
//! restart request ends the VM at once; it is also the one path that works
//! without ACPI power-off support.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::sys::log;

static IS_INIT: AtomicBool = AtomicBool::new(false);

/// Marks this process as the VM's init: powering off then ends the VM.
pub fn set_init(is_init: bool) {
    IS_INIT.store(is_init, Ordering::SeqCst);
}

pub fn is_init() -> bool {
    IS_INIT.load(Ordering::SeqCst)
}

/// Ends the VM without any cleanup (nothing is mounted yet).
pub fn reboot_now() -> ! {
    // SAFETY: reboot takes no pointers; as init it does not return on success.
    unsafe { libc::reboot(libc::RB_AUTOBOOT) };
    halt_forever()
}

/// Stops every other process, flushes disks and ends the VM. Outside a VM,
/// exits the process with `code`.
pub fn power_off(code: i32) -> ! {
    if !is_init() {
        std::process::exit(code);
    }
    // SAFETY: kill(-1) as init signals every process but init itself; sync
    // and mount take no pointers beyond the static strings given.
    unsafe {
        libc::kill(-1, libc::SIGKILL);
        libc::sync();
        libc::mount(
            std::ptr::null(),
            c"/".as_ptr(),
            std::ptr::null(),
            libc::MS_REMOUNT | libc::MS_RDONLY,
            std::ptr::null(),
        );
    }
    reboot_now()
}

/// Logs why the agent cannot go on, then powers off.
pub fn fatal(reason: impl std::fmt::Display) -> ! {
    log!("fatal: {reason}; powering off");
    power_off(1)
}

fn halt_forever() -> ! {
    log!("reboot failed: {}", std::io::Error::last_os_error());
    // PID 1 must not exit (the kernel would panic): park forever.
    loop {
        std::thread::park();
    }
}
