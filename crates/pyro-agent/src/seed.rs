//! `/workspace` over a seed disk.
//!
//! A seeded workspace's VM has a second, read-only disk: an ext4 image of
//! the seed, built on the host (`pyro-transfer`'s image module). The agent
//! mounts it at [`LOWER`] and an overlay at `/workspace` whose upper layer
//! lives on the root disk ([`UPPER`]), so the seed is there at once, no
//! file is copied until it is written, and everything the guest changes is
//! on the root disk, which snapshots, resets and forks already handle.
//!
//! The disk holds the tree under `tree/` and, under `extra/`, the seed's
//! diff baseline (`pyro_protocol::seed`). The first time a root disk has
//! the seed mounted (no [`COPIED`] marker yet), those files are copied into
//! `/var/lib/pyro`, replacing what is there, synced, and only then marked;
//! later mounts of the same lineage leave them, since a reset or a snapshot
//! may have moved the baseline on since.
//!
//! A VM without a seed has an empty slot there (zeros, no superblock): then
//! nothing is mounted. The agent mounts at boot when `pyro.seed=` names the
//! device, and on request (`pyro-agent --mount-seed DEVICE`, run by the host
//! in a guest restored from a warm template, whose boot saw the empty slot).

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, FileExt};
use std::path::Path;

use crate::sys::{mount, Context};

/// Where the seed disk is mounted (read-only).
const DISK: &str = "/var/lib/pyro/seed";
/// Where the agent's files from the disk go.
const STATE: &str = "/var/lib/pyro";
/// The overlay's upper layer and work directory, on the root disk.
const UPPER: &str = "/var/lib/pyro/overlay/upper";
const WORK: &str = "/var/lib/pyro/overlay/work";
/// Written once `extra/` is copied and on disk.
const COPIED: &str = "/var/lib/pyro/overlay/extra-copied";
const WORKSPACE: &str = "/workspace";
/// ext4's magic number, at byte 1080 of the device.
const EXT4_MAGIC: [u8; 2] = [0x53, 0xEF];
/// `BLKFLSBUF`: drop the device's cached blocks.
const BLKFLSBUF: libc::c_ulong = 0x1261;

/// What [`mount`] found.
#[derive(Debug, PartialEq, Eq)]
pub enum Mounted {
    /// The overlay is on `/workspace` now.
    Now,
    /// It was there already.
    Already,
    /// The slot is empty: no seed.
    NoSeed,
}

/// Mounts the seed on `device` under `/workspace`, if it holds one.
pub fn mount_seed(device: &str) -> io::Result<Mounted> {
    if is_mounted(WORKSPACE)? {
        return Ok(Mounted::Already);
    }
    let disk = fs::File::open(device).context(|| format!("open {device}"))?;
    // A guest restored from a template read this slot when it was empty:
    // forget those blocks before reading the seed's.
    // SAFETY: an ioctl without arguments on a descriptor we own.
    unsafe { libc::ioctl(disk.as_raw_fd(), BLKFLSBUF as _, 0) };
    let mut magic = [0u8; 2];
    disk.read_exact_at(&mut magic, 1080)
        .context(|| format!("read {device}"))?;
    if magic != EXT4_MAGIC {
        return Ok(Mounted::NoSeed);
    }
    let first = !Path::new(COPIED).exists();
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(DISK)
        .context(|| format!("mkdir {DISK}"))?;
    if !is_mounted(DISK)? {
        mount(
            device,
            DISK,
            Some("ext4"),
            libc::MS_RDONLY | libc::MS_NOATIME,
            None,
        )?;
    }
    let lower = format!("{DISK}/{}", pyro_protocol::seed::TREE);
    for dir in [UPPER, WORK, WORKSPACE] {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(dir)
            .context(|| format!("mkdir {dir}"))?;
    }
    if first {
        copy_extras(&Path::new(DISK).join(pyro_protocol::seed::EXTRA))?;
        // The copies reach the disk before the marker says they did: a
        // crash in between copies again at the next mount.
        // SAFETY: sync takes no arguments and cannot fail.
        unsafe { libc::sync() };
        fs::write(COPIED, b"").context(|| format!("write {COPIED}"))?;
    }
    let options = format!("lowerdir={lower},upperdir={UPPER},workdir={WORK},redirect_dir=on");
    mount("overlay", WORKSPACE, Some("overlay"), 0, Some(&options))?;
    Ok(Mounted::Now)
}

/// Copies every entry of `extra` (if there is one) into [`STATE`], each
/// replacing what has its name there.
fn copy_extras(extra: &Path) -> io::Result<()> {
    let Ok(entries) = fs::read_dir(extra) else {
        return Ok(());
    };
    for entry in entries {
        let entry = entry?;
        let target = Path::new(STATE).join(entry.file_name());
        match fs::symlink_metadata(&target) {
            Ok(meta) if meta.is_dir() => fs::remove_dir_all(&target)?,
            Ok(_) => fs::remove_file(&target)?,
            Err(_) => {}
        }
        copy_tree(&entry.path(), &target).context(|| format!("copy {}", target.display()))?;
    }
    Ok(())
}

/// Copies a file, or a directory of files, keeping permission bits and a
/// file's mtime (a git index's tells git which entries to recheck).
fn copy_tree(from: &Path, to: &Path) -> io::Result<()> {
    let meta = fs::symlink_metadata(from)?;
    if meta.is_dir() {
        fs::create_dir_all(to)?;
        fs::set_permissions(to, meta.permissions())?;
        for entry in fs::read_dir(from)? {
            let entry = entry?;
            copy_tree(&entry.path(), &to.join(entry.file_name()))?;
        }
        Ok(())
    } else {
        fs::copy(from, to)?;
        let times = fs::FileTimes::new().set_modified(meta.modified()?);
        fs::File::options().write(true).open(to)?.set_times(times)
    }
}

/// Whether something is mounted at `path` (per /proc/self/mountinfo).
fn is_mounted(path: &str) -> io::Result<bool> {
    let info = fs::read_to_string("/proc/self/mountinfo").context(|| "read mountinfo".into())?;
    Ok(info
        .lines()
        .any(|line| line.split(' ').nth(4) == Some(path)))
}

/// `pyro-agent --mount-seed DEVICE`: prints what happened, exits non-zero
/// on failure.
pub fn run_cli(device: Option<&str>) -> ! {
    let Some(device) = device.filter(|d| Path::new(d).is_absolute()) else {
        eprintln!("usage: pyro-agent --mount-seed /dev/DEVICE");
        std::process::exit(2);
    };
    match mount_seed(device) {
        Ok(mounted) => {
            println!("{mounted:?}");
            std::process::exit(0)
        }
        Err(error) => {
            eprintln!("pyro-agent: mounting the seed: {error}");
            std::process::exit(1)
        }
    }
}
