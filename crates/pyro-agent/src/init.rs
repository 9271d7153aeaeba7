//! The boot sequence the agent runs as PID 1 of the initramfs: early mounts,
//! kernel modules, the root disk, `switch_root`, then the mounts and settings
//! a Debian userland expects.
//!
//! This is on the critical path of every boot under slow TCG emulation, so it
//! does the minimum, never sleeps, and polls (briefly) only for devices that
//! appear asynchronously. `pyro.debug` on the kernel command line logs the
//! time of each phase.

use std::fs;
use std::io;
use std::os::unix::fs::{symlink, DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use crate::cmdline::BootConfig;
use crate::modules;
use crate::power;
use crate::sys::{self, log, mount, Context};

const NEW_ROOT: &str = "/newroot";
const ROOT_DEVICE_TIMEOUT: Duration = Duration::from_secs(10);
const DEVICE_POLL_INTERVAL: Duration = Duration::from_millis(2);

/// Logs boot phase times when `pyro.debug` is set.
pub struct PhaseLog {
    enabled: bool,
}

impl PhaseLog {
    pub fn mark(&self, phase: &str) {
        if self.enabled {
            log!("{phase} at {} ms since kernel start", sys::boottime_ms());
        }
    }
}

/// Mounts /proc, reads the boot parameters and, for `pyro.mode=poweroff`,
/// ends the VM right there. Then mounts /dev and /sys.
pub fn early() -> (BootConfig, PhaseLog) {
    mkdir("/proc");
    if let Err(err) = mount("proc", "/proc", Some("proc"), MS_NODEV_NOEXEC_NOSUID, None) {
        // Without /proc there is no command line; carry on with defaults.
        log!("{err}");
    }
    let cmdline = fs::read_to_string("/proc/cmdline").unwrap_or_default();
    let config = BootConfig::parse(&cmdline);
    if config.power_off_only {
        power::reboot_now();
    }
    mkdir("/dev");
    mount_ignoring_busy(
        "devtmpfs",
        "/dev",
        "devtmpfs",
        libc::MS_NOSUID,
        Some("mode=0755"),
    );
    sys::ensure_std_fds();
    mkdir("/sys");
    mount_ignoring_busy("sysfs", "/sys", "sysfs", MS_NODEV_NOEXEC_NOSUID, None);
    let phases = PhaseLog {
        enabled: config.debug,
    };
    phases.mark("early mounts done");
    (config, phases)
}

/// Loads the kernel modules, mounts the root disk and makes it `/`.
pub fn switch_to_root(config: &BootConfig, phases: &PhaseLog) -> io::Result<()> {
    modules::load_all(
        Path::new("/pyro/modules.order"),
        Path::new("/pyro/modules"),
        config.debug,
    );
    if config.network {
        modules::load_all(
            Path::new("/pyro/modules.on-demand.order"),
            Path::new("/pyro/modules"),
            config.debug,
        );
    }
    phases.mark("modules loaded");
    wait_for_device(&config.root, ROOT_DEVICE_TIMEOUT)?;
    phases.mark("root device present");
    mkdir(NEW_ROOT);
    mount(
        &config.root,
        NEW_ROOT,
        Some(&config.rootfstype),
        libc::MS_NOATIME,
        None,
    )?;
    phases.mark("root mounted");
    for dir in ["/dev", "/proc", "/sys"] {
        let target = format!("{NEW_ROOT}{dir}");
        mkdir(&target);
        mount(dir, &target, None, libc::MS_MOVE, None)?;
    }
    std::env::set_current_dir(NEW_ROOT).context(|| format!("chdir {NEW_ROOT}"))?;
    mount(".", "/", None, libc::MS_MOVE, None)?;
    sys::chroot(".").context(|| "chroot into the root disk".to_owned())?;
    std::env::set_current_dir("/").context(|| "chdir /".to_owned())?;
    phases.mark("switched root");
    Ok(())
}

/// The mounts, links and settings of a running system. Failures are logged,
/// not fatal: commands can run without any one of them.
pub fn finish_userland(phases: &PhaseLog) {
    mkdir("/dev/pts");
    mount_logged(
        "devpts",
        "/dev/pts",
        "devpts",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620,gid=5",
    );
    mkdir("/dev/shm");
    mount_logged(
        "tmpfs",
        "/dev/shm",
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        "mode=1777",
    );
    mkdir("/run");
    mount_logged(
        "tmpfs",
        "/run",
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        "mode=0755",
    );
    for (link, target) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        let _ = symlink(target, link);
    }
    // /tmp stays on the disk; make sure it exists and is world-writable.
    mkdir("/tmp");
    let _ = fs::set_permissions("/tmp", fs::Permissions::from_mode(0o1777));
    mkdir("/workspace");
    if let Err(err) = crate::identity::set_hostname("pyro") {
        log!("set hostname: {err}");
    }
    if let Err(err) = loopback_up() {
        log!("bring up lo: {err}");
    }
    phases.mark("userland ready");
}

const MS_NODEV_NOEXEC_NOSUID: libc::c_ulong = libc::MS_NODEV | libc::MS_NOEXEC | libc::MS_NOSUID;

fn mkdir(path: &str) {
    let _ = fs::DirBuilder::new().mode(0o755).create(path);
}

fn mount_ignoring_busy(
    source: &str,
    target: &str,
    fstype: &str,
    flags: libc::c_ulong,
    data: Option<&str>,
) {
    if let Err(err) = mount(source, target, Some(fstype), flags, data) {
        // EBUSY: the kernel mounted it already (CONFIG_DEVTMPFS_MOUNT).
        if err.raw_os_error() != Some(libc::EBUSY) {
            log!("{err}");
        }
    }
}

fn mount_logged(source: &str, target: &str, fstype: &str, flags: libc::c_ulong, data: &str) {
    if let Err(err) = mount(source, target, Some(fstype), flags, Some(data)) {
        log!("{err}");
    }
}

/// Waits for a device node that devtmpfs creates once its driver probes.
fn wait_for_device(path: &str, timeout: Duration) -> io::Result<()> {
    let deadline = Instant::now() + timeout;
    while !Path::new(path).exists() {
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "root device {path} did not appear within {}s (is virtio_blk loaded and \
                     the disk attached?)",
                    timeout.as_secs()
                ),
            ));
        }
        thread::sleep(DEVICE_POLL_INTERVAL);
    }
    Ok(())
}

/// `ip link set lo up`; the kernel then assigns 127.0.0.1 and ::1 itself.
fn loopback_up() -> io::Result<()> {
    // SAFETY: socket takes no pointers.
    let sock = sys::check(unsafe {
        libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
    })?;
    // SAFETY: an all-zero ifreq is a valid value of this plain C struct.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we own; the
    // flags member of the union is the one these requests use.
    let result = unsafe {
        sys::check(libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut request)).and_then(|_| {
            request.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short;
            sys::check(libc::ioctl(sock, libc::SIOCSIFFLAGS, &request))
        })
    };
    // SAFETY: `sock` is a descriptor we opened and no longer use.
    unsafe { libc::close(sock) };
    result.map(drop)
}
