//! `scripts/install-deps` on a fresh Debian 12 root, in a chroot, against
//! the real Debian archive: the two ways a new machine has lost `qemu-img`.
//!
//! 1. **No QEMU at all**, `qemu-utils` included: one run installs both.
//! 2. **`qemu-utils` held at another version than `qemu-system-x86`**, the
//!    shape of the machines we develop on (Debian 12 with `qemu-utils`
//!    1:10.0 from bookworm-backports, whose `Breaks: qemu-system-common
//!    (<< 1:8.0+dfsg-5~)` makes apt *remove* it when QEMU 7.2 is
//!    installed). A stand-in package with the same name, a higher version
//!    and the same kind of `Breaks` is installed first; the run must end
//!    with the archive's `qemu-img` and `qemu-system-x86_64` both working.
//!
//! Then a third run finds everything present and installs nothing, and a
//! normal user with sudo gets a missing command back through sudo.
//!
//! Needs root (chroot) and the Debian archive; `mmdebstrap` is what
//! `install-deps` installed on the host. Takes a minute or two. Run alone:
//!
//! ```text
//! cargo test -p pyro-env --test install_deps -- --nocapture
//! ```

use std::path::Path;
use std::process::{Command, Output};

fn script() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/install-deps")
}

fn run(command: &mut Command) -> Output {
    let output = command.output().expect("could not start the command");
    eprintln!(
        "$ {command:?} -> {}\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    output
}

fn in_root(root: &Path, shell: &str) -> Output {
    run(Command::new("chroot")
        .arg(root)
        .args(["/bin/sh", "-c", shell])
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("LC_ALL", "C.UTF-8"))
}

fn install_deps(root: &Path) -> String {
    let output = in_root(root, "/install-deps");
    assert!(output.status.success(), "install-deps failed");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Both QEMU commands run in the root, and `qemu-img` is the archive's.
fn assert_qemu_works(root: &Path) {
    let img = in_root(root, "qemu-img --version");
    assert!(img.status.success(), "qemu-img does not run");
    let text = String::from_utf8_lossy(&img.stdout);
    assert!(text.contains("qemu-img version"), "{text}");
    assert!(!text.contains("stand-in"), "the stand-in qemu-img survived");
    let system = in_root(root, "qemu-system-x86_64 --version");
    assert!(system.status.success(), "qemu-system-x86_64 does not run");
}

/// A `qemu-utils` of a version the archive does not have, which breaks
/// the archive's `qemu-system-common` the way bookworm-backports' does.
fn build_stand_in(dir: &Path) -> std::path::PathBuf {
    let tree = dir.join("stand-in");
    std::fs::create_dir_all(tree.join("DEBIAN")).unwrap();
    std::fs::create_dir_all(tree.join("usr/bin")).unwrap();
    std::fs::write(
        tree.join("DEBIAN/control"),
        "Package: qemu-utils\n\
         Version: 1:99.0+pyro-stand-in\n\
         Architecture: amd64\n\
         Maintainer: pyro tests <pyro@localhost>\n\
         Breaks: qemu-system-common (<< 1:99)\n\
         Replaces: qemu-system-common (<< 1:99)\n\
         Description: stand-in for a qemu-utils from another release\n",
    )
    .unwrap();
    let img = tree.join("usr/bin/qemu-img");
    std::fs::write(&img, "#!/bin/sh\necho 'qemu-img version 99.0 (stand-in)'\n").unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&img, std::fs::Permissions::from_mode(0o755)).unwrap();
    let deb = dir.join("stand-in.deb");
    let built = run(Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(&tree)
        .arg(&deb));
    assert!(built.status.success(), "dpkg-deb --build failed");
    deb
}

#[test]
fn install_deps_leaves_qemu_img_and_qemu_system_working() {
    assert!(
        pyro_util::fsutil::is_root(),
        "this test needs root (it builds a chroot); run the suite as root"
    );
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let built = run(Command::new("mmdebstrap")
        .args([
            "--variant=minbase",
            "--mode=root",
            "--format=directory",
            "--include=ca-certificates",
            "--dpkgopt=path-exclude=/usr/share/doc/*",
            "--dpkgopt=path-exclude=/usr/share/man/*",
            "--dpkgopt=path-exclude=/usr/share/locale/*",
            "bookworm",
        ])
        .arg(&root)
        .env("LC_ALL", "C.UTF-8"));
    assert!(built.status.success(), "mmdebstrap failed");
    std::fs::copy(script(), root.join("install-deps")).unwrap();
    // The root starts without QEMU, like a machine with qemu-utils removed.
    assert!(!in_root(&root, "command -v qemu-img").status.success());

    // 1. Nothing of QEMU: one run installs both.
    let out = install_deps(&root);
    assert!(
        out.contains("missing: qemu-img (package qemu-utils)"),
        "{out}"
    );
    assert!(out.contains("all host commands run"), "{out}");
    assert_qemu_works(&root);

    // 2. qemu-utils from another release, which breaks the archive's QEMU.
    let removed = in_root(
        &root,
        "apt-get purge -y -q qemu-system-x86 qemu-system-common qemu-utils",
    );
    assert!(removed.status.success());
    let deb = build_stand_in(dir.path());
    std::fs::copy(&deb, root.join("stand-in.deb")).unwrap();
    assert!(in_root(&root, "dpkg -i /stand-in.deb").status.success());
    let stand_in = in_root(&root, "qemu-img --version");
    assert!(String::from_utf8_lossy(&stand_in.stdout).contains("stand-in"));
    let out = install_deps(&root);
    assert!(
        out.contains("missing: qemu-system-x86_64 (package qemu-system-x86)"),
        "{out}"
    );
    assert!(
        out.contains("qemu-utils="),
        "qemu-utils was not pinned: {out}"
    );
    assert_qemu_works(&root);

    // 3. Everything present: nothing to install.
    let out = install_deps(&root);
    assert!(out.contains("all host commands run"), "{out}");
    assert!(!out.contains("installing"), "{out}");

    // 4. A normal user with sudo: git gone, put back through sudo.
    let setup = in_root(
        &root,
        "apt-get install -y -q --no-install-recommends sudo && apt-get purge -y -q git \
         && useradd -m tester && echo 'tester ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/tester",
    );
    assert!(setup.status.success(), "could not set up the sudo user");
    let as_user = in_root(&root, "runuser -u tester -- /install-deps");
    let out = String::from_utf8_lossy(&as_user.stdout).into_owned();
    assert!(
        as_user.status.success(),
        "install-deps as a sudo user failed: {out}"
    );
    assert!(out.contains("missing: git (package git)"), "{out}");
    assert!(out.contains("all host commands run"), "{out}");
    assert!(in_root(&root, "git --version").status.success());
}
