//! The guest root filesystem: a Debian tree from `mmdebstrap` (or
//! `debootstrap`), turned into an ext4 image with `mkfs.ext4 -d` (no mount, no
//! loop device) and compacted to qcow2 with `qemu-img convert`.
//!
//! The ext4 image has an 8 GiB virtual size so workspaces have room to
//! install things; it is sparse, and the qcow2 stores only written clusters,
//! so the blob is about the size of the tree. Workspaces put a qcow2 overlay
//! on top of it and never write to it.
//!
//! Building needs root: `mkfs.ext4 -d` copies ownership from the tree, and a
//! tree built without root does not have the right owners.

use std::fs::Permissions;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::catalog::CatalogEntry;
use crate::command::{self, CommandError};
use crate::Progress;

/// Virtual size of the root disk.
pub const VIRTUAL_SIZE: u64 = 8 << 30;
/// Filesystem label the agent can mount by.
pub const LABEL: &str = "pyro-root";
/// QEMU user-mode networking's DNS forwarder, for when egress is on.
const GUEST_RESOLV_CONF: &str = "nameserver 10.0.2.3\n";

/// dpkg path filters (mmdebstrap only): no manual pages, translations or
/// documentation besides copyright files. They cost about a quarter of a
/// minimal tree and nothing in the guest reads them. The rules stay in the
/// guest's dpkg configuration, so packages installed later skip them too.
const DPKG_EXCLUDES: &[&str] = &[
    "path-exclude=/usr/share/man/*",
    "path-exclude=/usr/share/info/*",
    "path-exclude=/usr/share/locale/*",
    "path-include=/usr/share/locale/locale.alias",
    "path-exclude=/usr/share/doc/*",
    "path-include=/usr/share/doc/*/copyright",
];

/// Why the root filesystem could not be built.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("neither mmdebstrap nor debootstrap is installed; install one with: apt-get install mmdebstrap")]
    NoBootstrapTool,
    #[error("PYRO_DEBIAN_MIRROR '{mirror}' starts with '-'; set it to a mirror URL such as http://deb.debian.org/debian")]
    BadMirror { mirror: String },
    #[error("could not build the Debian tree")]
    Bootstrap(#[source] CommandError),
    #[error("could not make the ext4 image")]
    Mkfs(#[source] CommandError),
    #[error("could not convert the image to qcow2")]
    Convert(#[source] CommandError),
    #[error("could not prepare the root filesystem tree")]
    Io(#[from] std::io::Error),
}

/// The tool that builds the tree, for the progress phase and the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bootstrapper {
    Mmdebstrap,
    Debootstrap,
}

impl Bootstrapper {
    /// mmdebstrap when installed (faster, parallel downloads), else debootstrap.
    pub fn detect() -> Result<Self, RootfsError> {
        if command::exists("mmdebstrap") {
            Ok(Self::Mmdebstrap)
        } else if command::exists("debootstrap") {
            Ok(Self::Debootstrap)
        } else {
            Err(RootfsError::NoBootstrapTool)
        }
    }

    pub fn program(self) -> &'static str {
        match self {
            Self::Mmdebstrap => "mmdebstrap",
            Self::Debootstrap => "debootstrap",
        }
    }
}

/// Where packages come from. `PYRO_DEBIAN_MIRROR` overrides the default
/// (`http://deb.debian.org/debian`); with no override mmdebstrap also adds
/// the `-updates` and `-security` suites of a stable release by itself.
pub fn mirror_override() -> Option<String> {
    std::env::var("PYRO_DEBIAN_MIRROR")
        .ok()
        .filter(|m| !m.trim().is_empty())
}

/// Builds the Debian tree for `entry` into `tree` (which must not exist).
pub fn bootstrap(
    tool: Bootstrapper,
    entry: &CatalogEntry,
    tree: &Path,
    progress: &dyn Progress,
) -> Result<(), RootfsError> {
    let mut cmd = bootstrap_command(tool, entry, tree, mirror_override().as_deref())?;
    command::run(
        &mut cmd,
        progress,
        "check the network and the Debian mirror",
    )
    .map_err(RootfsError::Bootstrap)?;
    Ok(())
}

/// The bootstrap command line. mmdebstrap takes its operands after `--`;
/// debootstrap knows no `--`, so its tree is made absolute and a mirror
/// that could read as an option is refused.
fn bootstrap_command(
    tool: Bootstrapper,
    entry: &CatalogEntry,
    tree: &Path,
    mirror: Option<&str>,
) -> Result<Command, RootfsError> {
    if let Some(mirror) = mirror.filter(|m| m.starts_with('-')) {
        return Err(RootfsError::BadMirror {
            mirror: mirror.to_owned(),
        });
    }
    let include = format!("--include={}", entry.packages.join(","));
    let tree = std::path::absolute(tree)?;
    let mut cmd = Command::new(tool.program());
    match tool {
        Bootstrapper::Mmdebstrap => {
            cmd.args(["--variant=minbase", "--mode=root", "--format=directory"])
                .args(DPKG_EXCLUDES.iter().map(|rule| format!("--dpkgopt={rule}")))
                .arg(&include)
                .arg("--")
                .arg(entry.suite)
                .arg(&tree);
            if let Some(mirror) = mirror {
                cmd.arg(mirror);
            }
        }
        Bootstrapper::Debootstrap => {
            cmd.args(["--variant=minbase"])
                .arg(&include)
                .arg(entry.suite)
                .arg(&tree)
                .arg(mirror.unwrap_or("http://deb.debian.org/debian"));
        }
    }
    Ok(cmd)
}

/// Trims and configures the tree for pyro guests.
pub fn prepare_tree(tree: &Path) -> Result<(), RootfsError> {
    // Package lists and downloaded .debs are most of the waste; the guest
    // runs `apt-get update` itself when it installs something.
    for dir in [
        "var/lib/apt/lists",
        "var/cache/apt/archives",
        "var/cache/apt",
    ] {
        empty_dir(&tree.join(dir))?;
    }
    fs_err::create_dir_all(tree.join("var/lib/apt/lists/partial"))?;
    fs_err::create_dir_all(tree.join("var/cache/apt/archives/partial"))?;
    for file in ["var/log/bootstrap.log", "debootstrap"] {
        let path = tree.join(file);
        if path.is_dir() {
            fs_err::remove_dir_all(&path)?;
        } else if path.exists() {
            fs_err::remove_file(&path)?;
        }
    }
    // The bootstrapper copies these from the host, mode and all; and a
    // symlinked resolv.conf (systemd-resolved) would dangle in the guest.
    let hosts =
        "127.0.0.1\tlocalhost\n127.0.1.1\tpyro\n::1\tlocalhost ip6-localhost ip6-loopback\n";
    for (file, content) in [
        ("etc/hostname", "pyro\n"),
        ("etc/hosts", hosts),
        ("etc/resolv.conf", GUEST_RESOLV_CONF),
    ] {
        let path = tree.join(file);
        if fs_err::symlink_metadata(&path).is_ok() {
            fs_err::remove_file(&path)?;
        }
        fs_err::write(&path, content)?;
        fs_err::set_permissions(&path, Permissions::from_mode(0o644))?;
    }
    let workspace = tree.join("workspace");
    fs_err::create_dir_all(&workspace)?;
    fs_err::set_permissions(&workspace, Permissions::from_mode(0o755))?;
    Ok(())
}

/// Removes everything inside `dir`, keeping `dir`.
fn empty_dir(dir: &Path) -> std::io::Result<()> {
    let Ok(entries) = fs_err::read_dir(dir) else {
        return Ok(());
    };
    for entry in entries {
        let path = entry?.path();
        if fs_err::symlink_metadata(&path)?.is_dir() {
            fs_err::remove_dir_all(&path)?;
        } else {
            fs_err::remove_file(&path)?;
        }
    }
    Ok(())
}

/// `mkfs.ext4 -d tree` into a sparse file of [`VIRTUAL_SIZE`].
pub fn make_ext4(tree: &Path, image: &Path, progress: &dyn Progress) -> Result<(), RootfsError> {
    let file = fs_err::File::create(image)?;
    file.set_len(VIRTUAL_SIZE)?;
    drop(file);
    command::run(&mut mkfs_command(tree, image), progress, "").map_err(RootfsError::Mkfs)?;
    Ok(())
}

/// `mkfs.ext4 -d tree image`, the image after `--`.
fn mkfs_command(tree: &Path, image: &Path) -> Command {
    let mut cmd = Command::new("mkfs.ext4");
    cmd.args(["-q", "-F", "-L", LABEL, "-m", "0"])
        // Lazy init keeps the unused inode tables and journal as holes,
        // so they cost nothing in the qcow2.
        .args([
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0",
        ])
        .arg("-d")
        .arg(tree)
        .arg("--")
        .arg(image);
    cmd
}

/// `qemu-img convert` of the raw image to a compact qcow2.
pub fn convert_to_qcow2(
    raw: &Path,
    qcow2: &Path,
    progress: &dyn Progress,
) -> Result<(), RootfsError> {
    command::run(&mut convert_command(raw, qcow2), progress, "").map_err(RootfsError::Convert)?;
    Ok(())
}

/// `qemu-img convert`, both images after `--`.
fn convert_command(raw: &Path, qcow2: &Path) -> Command {
    let mut cmd = Command::new("qemu-img");
    cmd.args(["convert", "-f", "raw", "-O", "qcow2", "--"])
        .arg(raw)
        .arg(qcow2);
    cmd
}

/// The standard paths inside a build directory.
#[derive(Debug)]
pub struct BuildPaths {
    pub tree: PathBuf,
    pub ext4: PathBuf,
    pub qcow2: PathBuf,
}

impl BuildPaths {
    pub fn new(dir: &Path) -> Self {
        Self {
            tree: dir.join("rootfs"),
            ext4: dir.join("rootfs.ext4"),
            qcow2: dir.join("rootfs.qcow2"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_tree_sets_hostname_and_plain_resolv_conf() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path();
        std::fs::create_dir_all(tree.join("etc")).unwrap();
        std::fs::create_dir_all(tree.join("var/lib/apt/lists")).unwrap();
        std::fs::write(tree.join("var/lib/apt/lists/deb.debian.org_Packages"), "x").unwrap();
        std::os::unix::fs::symlink(
            "/run/systemd/resolve/stub-resolv.conf",
            tree.join("etc/resolv.conf"),
        )
        .unwrap();
        prepare_tree(tree).unwrap();
        assert_eq!(
            std::fs::read_to_string(tree.join("etc/hostname")).unwrap(),
            "pyro\n"
        );
        let resolv = std::fs::symlink_metadata(tree.join("etc/resolv.conf")).unwrap();
        assert!(resolv.file_type().is_file());
        assert_eq!(resolv.permissions().mode() & 0o777, 0o644);
        assert!(tree.join("workspace").is_dir());
        assert!(!tree
            .join("var/lib/apt/lists/deb.debian.org_Packages")
            .exists());
        assert!(tree.join("var/lib/apt/lists/partial").is_dir());
    }

    fn args(cmd: &Command) -> Vec<String> {
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn bootstrap_operands_cannot_read_as_options() {
        let entry = crate::catalog::find("debian:12-base").unwrap();
        let mm = bootstrap_command(
            Bootstrapper::Mmdebstrap,
            entry,
            Path::new("-tree"),
            Some("-m"),
        );
        assert!(matches!(mm, Err(RootfsError::BadMirror { .. })));
        let mm =
            bootstrap_command(Bootstrapper::Mmdebstrap, entry, Path::new("-tree"), None).unwrap();
        let mm = args(&mm);
        let dashes = mm.iter().position(|a| a == "--").unwrap();
        assert_eq!(mm[dashes + 1], entry.suite);
        assert!(mm[dashes + 2].starts_with('/') && mm[dashes + 2].ends_with("/-tree"));
        let deb =
            bootstrap_command(Bootstrapper::Debootstrap, entry, Path::new("-tree"), None).unwrap();
        let deb = args(&deb);
        assert!(
            deb.iter()
                .all(|a| a.starts_with("--") || !a.starts_with('-')),
            "{deb:?}"
        );
    }

    #[test]
    fn image_paths_come_after_the_end_of_options() {
        let mkfs = args(&mkfs_command(Path::new("-tree"), Path::new("-image")));
        assert_eq!(mkfs[mkfs.len() - 4..], ["-d", "-tree", "--", "-image"]);
        let convert = args(&convert_command(Path::new("-raw"), Path::new("-out")));
        assert_eq!(convert[convert.len() - 3..], ["--", "-raw", "-out"]);
    }
}
