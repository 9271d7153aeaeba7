//! Who a jailed QEMU runs as: a uid of its own per VM (from
//! [`VM_UID_BASE`], held by a lock for the VM's life, so no two QEMUs can
//! signal or trace each other), in the group of the system user
//! [`VM_USER`] that `scripts/install-deps` makes; and the files it must
//! write, handed to that uid.

use std::os::fd::AsRawFd as _;
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// The system user whose group jailed QEMUs run in.
pub const VM_USER: &str = "pyro-vm";

/// The user [`VM_USER`], from `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct VmUser {
    pub uid: u32,
    pub gid: u32,
}

impl VmUser {
    pub(crate) fn lookup() -> Option<VmUser> {
        let passwd = std::fs::read_to_string("/etc/passwd").ok()?;
        Self::parse(&passwd)
    }

    fn parse(passwd: &str) -> Option<VmUser> {
        passwd.lines().find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            match fields.as_slice() {
                [name, _, uid, gid, ..] if *name == VM_USER => Some(VmUser {
                    uid: uid.parse().ok().filter(|&uid| uid != 0)?,
                    gid: gid.parse().ok().filter(|&gid| gid != 0)?,
                }),
                _ => None,
            }
        })
    }
}

/// The first uid jailed QEMUs run as; each running VM holds one of
/// [`VM_UID_SLOTS`] from here.
pub const VM_UID_BASE: u32 = 0x7f00_0000;
/// How many VMs may run jailed at once, each with its own uid.
const VM_UID_SLOTS: u32 = 1 << 16;
/// Where the locks on the uids in use live (root's; gone at boot).
const SLOT_LOCKS: &str = "/run/pyro-vm";

/// A uid held for one VM: the lock on it lasts as long as this value.
#[derive(Debug)]
pub(crate) struct UidSlot {
    pub uid: u32,
    _lock: std::fs::File,
}

impl UidSlot {
    /// The first uid no running VM holds.
    pub(crate) fn acquire() -> std::io::Result<UidSlot> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(SLOT_LOCKS)?;
        for slot in 0..VM_UID_SLOTS {
            let lock = std::fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(Path::new(SLOT_LOCKS).join(slot.to_string()))?;
            // SAFETY: flock on a descriptor this function owns.
            if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
                return Ok(UidSlot {
                    uid: VM_UID_BASE + slot,
                    _lock: lock,
                });
            }
        }
        Err(std::io::Error::other(format!(
            "all {VM_UID_SLOTS} uids for VMs are in use"
        )))
    }
}

/// The owner of what no VM may write: a workspace's layer directory and
/// the layers frozen in it. No process runs as it, so neither a QEMU of
/// its own uid nor one kept at uid 0 without capabilities (which owns
/// whatever root owns) can write, rename or make a file there; root, with
/// its capabilities, still can.
pub const KEEPER_UID: u32 = VM_UID_BASE - 1;

/// Whether `uid` is one a jailed QEMU ran as (its files may be handed
/// back and forth).
pub(crate) fn is_vm_uid(uid: u32, user: Option<&VmUser>) -> bool {
    (VM_UID_BASE..VM_UID_BASE + VM_UID_SLOTS).contains(&uid) || user.is_some_and(|u| u.uid == uid)
}

/// The groups QEMU keeps with KVM: the one that may open `/dev/kvm`;
/// `None` when no group may (only root: QEMU keeps uid 0).
pub(crate) fn kvm_groups(kvm: bool) -> Option<Vec<libc::gid_t>> {
    if !kvm {
        return Some(Vec::new());
    }
    let device = std::fs::metadata("/dev/kvm").ok()?;
    match device.mode() {
        mode if mode & 0o006 == 0o006 => Some(Vec::new()),
        mode if mode & 0o060 == 0o060 && device.gid() != 0 => Some(vec![device.gid()]),
        _ => None,
    }
}

/// Hands each of `files` to `uid:gid`, or (with `None`, QEMU keeping
/// uid 0) to root. Only a regular file owned by root, a VM's uid or the
/// keeper, in directories no other user can swap under it
/// ([`in_roots_directories`]), not followed through a link, and with one
/// link when it is to be one VM's (a memory state shared by forks is its
/// group's), changes hands; `false` when one is not such a file (a file
/// of another user: `sudo pyro` with a user's store), and nothing changes
/// then. Its
/// owner may read and write it, and with `group_writes` its group (a
/// template's RAM file, shared by VMs at once); nobody else may write it.
pub(crate) fn hand_files(
    files: &[PathBuf],
    to: Option<(u32, u32)>,
    user: Option<&VmUser>,
    group_writes: bool,
) -> std::io::Result<bool> {
    let mut opened = Vec::new();
    for path in files {
        if !in_roots_directories(path) {
            return Ok(false);
        }
        let file = pyro_util::fsutil::open_unfollowed(path)?;
        let meta = file.metadata()?;
        let shared = meta.nlink() != 1 && !group_writes;
        if !meta.is_file() || shared || !is_ours(meta.uid(), user) {
            return Ok(false);
        }
        opened.push(file);
    }
    let (uid, gid) = to.unwrap_or((0, 0));
    for file in opened {
        set_owner(&file, uid, gid, group_writes)?;
    }
    Ok(true)
}

/// Gives the layer directory `dir` and every layer in it but `tops` to
/// the keeper, none writable by group or others: QEMU may read them (its
/// backing chain) and write only its top. A layer frozen while no VM ran
/// kept its last owner; this runs before every start.
pub(crate) fn settle_layers(
    dir: &Path,
    tops: &[PathBuf],
    user: Option<&VmUser>,
) -> std::io::Result<()> {
    if !in_roots_directories(dir) {
        return Ok(());
    }
    use std::os::unix::fs::OpenOptionsExt as _;
    let handle = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(dir)
        .map_err(pyro_util::fsutil::naming(dir))?;
    let meta = handle.metadata()?;
    if !is_ours(meta.uid(), user) {
        return Ok(());
    }
    if let Err(error) = std::os::unix::fs::fchown(&handle, Some(KEEPER_UID), Some(0)) {
        // A user namespace without that uid, a root without CAP_CHOWN:
        // the layers stay root's, as QEMU's own uid cannot write them.
        eprintln!("pyro: the layers in {} stay root's: {error}", dir.display());
        return Ok(());
    }
    use std::os::unix::fs::PermissionsExt as _;
    handle.set_permissions(std::fs::Permissions::from_mode(0o755))?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if !tops.iter().any(|top| top == &path) {
            freeze(&path, user)?;
        }
    }
    Ok(())
}

/// Gives the frozen layer `path` to the keeper, written by nobody (root
/// only: a layer is never written once frozen). Anything but a regular
/// file of root's, a VM's or the keeper's is left as it is.
pub fn freeze_layer(path: &Path) -> std::io::Result<()> {
    match pyro_util::fsutil::is_root() && in_roots_directories(path) {
        true => freeze(path, VmUser::lookup().as_ref()),
        false => Ok(()),
    }
}

fn freeze(path: &Path, user: Option<&VmUser>) -> std::io::Result<()> {
    let Ok(file) = pyro_util::fsutil::open_unfollowed(path) else {
        return Ok(());
    };
    let meta = file.metadata()?;
    if meta.is_file() && is_ours(meta.uid(), user) {
        let mode = meta.mode() & 0o7777;
        if meta.uid() != KEEPER_UID || meta.gid() != 0 || mode & 0o222 != 0 {
            std::os::unix::fs::fchown(&file, Some(KEEPER_UID), Some(0))?;
            use std::os::unix::fs::PermissionsExt as _;
            file.set_permissions(std::fs::Permissions::from_mode((mode | 0o444) & !0o222))?;
        }
    }
    Ok(())
}

/// Whether a file of this owner is pyro's to hand over: root's, a VM's
/// or the keeper's.
fn is_ours(uid: u32, user: Option<&VmUser>) -> bool {
    uid == 0 || uid == KEEPER_UID || is_vm_uid(uid, user)
}

/// Whether every directory above `path`, once its links are resolved, is
/// root's (or the keeper's, a layer directory), and writable by others
/// only with the sticky bit (`/tmp`): no other user can swap one under it.
fn in_roots_directories(path: &Path) -> bool {
    let Some(parent) = path.parent().and_then(|p| std::fs::canonicalize(p).ok()) else {
        return false;
    };
    parent.ancestors().all(|dir| {
        std::fs::metadata(dir).is_ok_and(|meta| {
            let sticky_or_closed = meta.mode() & 0o1000 != 0 || meta.mode() & 0o022 == 0;
            (meta.uid() == 0 || meta.uid() == KEEPER_UID) && sticky_or_closed
        })
    })
}

fn set_owner(file: &std::fs::File, uid: u32, gid: u32, group_writes: bool) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    std::os::unix::fs::fchown(file, Some(uid), Some(gid))?;
    let mode = file.metadata()?.permissions().mode() & 0o7777;
    let wanted = match group_writes {
        true => (mode | 0o660) & !0o002,
        false => (mode | 0o600) & !0o022,
    };
    if wanted != mode {
        file.set_permissions(std::fs::Permissions::from_mode(wanted))?;
    }
    Ok(())
}
