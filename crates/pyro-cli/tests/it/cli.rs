//! The `pyro` command line: help, version, doctor, environments, and the
//! clear errors of bad input. The run-path errors boot real VMs where the
//! error comes from the VM.

use std::process::Stdio;

use crate::support::*;

#[test]
fn help_shows_the_zero_to_hero_path() {
    let output = pyro().arg("--help").output().unwrap();
    assert!(output.status.success());
    let text = stdout(&output);
    for needle in [
        "pyro doctor",
        "pyro env pull debian:12",
        "pyro run debian:12 -- git --version",
    ] {
        assert!(text.contains(needle), "help lacks {needle}:\n{text}");
    }
}

#[test]
fn version_prints_the_crate_version() {
    let output = pyro().arg("--version").output().unwrap();
    assert!(output.status.success());
    assert_eq!(
        stdout(&output),
        format!("pyro {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn doctor_reports_the_accelerator_and_json_parses() {
    ensure_env();
    let output = pyro().arg("doctor").output().unwrap();
    let text = stdout(&output);
    assert!(output.status.success(), "{text}{}", stderr(&output));
    assert!(text.contains("qemu"), "{text}");
    assert!(text.contains("accelerator"), "{text}");
    assert!(text.contains(ENV), "{text}");

    let output = pyro().args(["doctor", "--json"]).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["ready"], true);
    let names: Vec<_> = report["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect();
    for name in [
        "platform",
        "qemu",
        "kvm",
        "accelerator",
        "cache dir",
        "environments",
    ] {
        assert!(
            names.iter().any(|n| n == name),
            "no {name} check in {names:?}"
        );
    }
}

#[test]
fn doctor_without_qemu_fails_and_names_the_package() {
    let output = pyro()
        .arg("doctor")
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    let text = stdout(&output);
    assert!(text.contains("FAIL  qemu"), "{text}");
    assert!(text.contains("apt-get install qemu-system-x86"), "{text}");
}

#[test]
fn env_list_shows_the_catalog() {
    ensure_env();
    let output = pyro().args(["env", "list", "--json"]).output().unwrap();
    assert!(output.status.success());
    let envs: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let names: Vec<_> = envs
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap().to_string())
        .collect();
    assert!(names.contains(&"debian:12".to_string()), "{names:?}");
    assert!(names.contains(&"debian:12-base".to_string()), "{names:?}");
    let text = stdout(&pyro().args(["env", "list"]).output().unwrap());
    assert!(
        text.contains("debian:12 ") && text.contains("pulled"),
        "{text}"
    );
}

#[test]
fn pulling_a_present_environment_is_instant() {
    ensure_env();
    let started = std::time::Instant::now();
    let output = pyro()
        .args(["env", "pull", ENV, "--json"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let outcome: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(outcome["already_present"], true);
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[test]
fn a_pull_without_its_build_tools_fails_at_once_with_the_packages() {
    // An empty cache (so the build would start) and no tools on PATH: the
    // pull must refuse before it resolves, downloads or builds anything.
    let cache = tempfile::tempdir().unwrap();
    let empty = tempfile::tempdir().unwrap();
    let started = std::time::Instant::now();
    let output = pyro()
        .args(["env", "pull", "debian:12-base"])
        .env("PYRO_CACHE_DIR", cache.path())
        .env("PATH", empty.path())
        .output()
        .unwrap();
    assert!(started.elapsed() < std::time::Duration::from_secs(1));
    assert_eq!(output.status.code(), Some(125), "{}", stderr(&output));
    let text = stderr(&output);
    for expected in [
        "cannot build debian:12-base",
        "qemu-img (package qemu-utils)",
        "apt-get (package apt)",
        "dpkg-deb (package dpkg)",
        "sudo apt-get install",
        "scripts/install-deps",
    ] {
        assert!(text.contains(expected), "{expected}: {text}");
    }
    assert!(!text.contains("resolving kernel"), "{text}");
}

#[test]
fn inspect_shows_the_manifest() {
    ensure_env();
    let output = pyro().args(["env", "inspect", ENV]).output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("sha256") || text.contains("digest"), "{text}");
}

#[test]
fn unknown_environment_lists_the_known_ones() {
    let output = pyro()
        .args(["run", "ubuntu:99", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(125));
    let text = stderr(&output);
    assert!(text.contains("ubuntu:99"), "{text}");
    assert!(
        text.contains("debian:12") && text.contains("debian:12-base"),
        "{text}"
    );
}

#[test]
fn memory_below_the_floor_is_refused_before_booting() {
    let output = pyro()
        .args(["run", ENV, "--memory", "64", "--", "true"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(125));
    assert!(
        stderr(&output).contains("too small to boot"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn run_without_qemu_names_the_package() {
    ensure_env();
    let output = pyro()
        .args(["run", ENV, "--", "true"])
        .env("PATH", "/nonexistent")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(125));
    assert!(
        stderr(&output).contains("apt-get install qemu-system-x86"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn an_unwritable_cache_dir_is_reported_with_the_fix() {
    // A path under a regular file can never be created, even by root.
    let output = pyro()
        .args(["run", ENV, "--", "true"])
        .env("PYRO_CACHE_DIR", "/etc/hostname/pyro-cache")
        .stdout(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(125));
    let text = stderr(&output);
    assert!(text.contains("/etc/hostname/pyro-cache"), "{text}");
    assert!(text.contains("PYRO_CACHE_DIR"), "{text}");
}

#[test]
fn no_command_is_a_usage_error() {
    let output = pyro().args(["run", ENV]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
}

/// A private cache holding `debian:12-base` with one artifact replaced by
/// `damage(original bytes)`; the others are hard links to the real store.
fn damaged_cache(artifact: &str, damage: impl Fn(Vec<u8>) -> Vec<u8>) -> tempfile::TempDir {
    let output = pyro()
        .args(["env", "pull", "debian:12-base"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let inspect = pyro()
        .args(["env", "inspect", "debian:12-base", "--json"])
        .output()
        .unwrap();
    let details: serde_json::Value = serde_json::from_slice(&inspect.stdout).unwrap();
    let manifest_path = details["manifest_path"].as_str().unwrap();
    let store = std::path::Path::new(manifest_path)
        .parent()
        .unwrap()
        .parent()
        .unwrap();

    let cache = tempfile::tempdir().unwrap();
    let blobs = cache.path().join("blobs/sha256");
    std::fs::create_dir_all(&blobs).unwrap();
    std::fs::create_dir_all(cache.path().join("envs")).unwrap();
    std::fs::copy(
        manifest_path,
        cache
            .path()
            .join("envs")
            .join(std::path::Path::new(manifest_path).file_name().unwrap()),
    )
    .unwrap();
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(manifest_path).unwrap()).unwrap();
    for (name, entry) in manifest["artifacts"].as_object().unwrap() {
        let digest = entry["sha256"].as_str().unwrap();
        let source = store.join("blobs/sha256").join(digest);
        let target = blobs.join(digest);
        if name == artifact {
            std::fs::write(&target, damage(std::fs::read(&source).unwrap())).unwrap();
        } else {
            std::fs::hard_link(&source, &target).unwrap();
        }
    }
    cache
}

fn assert_refused_as_corrupt(cache: &tempfile::TempDir, artifact: &str) {
    let output = pyro()
        .args(["run", "debian:12-base", "--", "true"])
        .env("PYRO_CACHE_DIR", cache.path())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(125));
    let text = stderr(&output);
    assert!(
        text.contains("corrupt") && text.contains(artifact),
        "{text}"
    );
    assert!(
        text.contains("pyro env pull debian:12-base --force"),
        "{text}"
    );
}

#[test]
fn a_truncated_image_is_detected_and_not_booted() {
    let cache = damaged_cache("modules.cpio", |mut bytes| {
        bytes.truncate(bytes.len() / 2);
        bytes
    });
    assert_refused_as_corrupt(&cache, "modules.cpio");
}

#[test]
fn a_same_size_corruption_is_detected_and_not_booted() {
    let cache = damaged_cache("modules.cpio", |mut bytes| {
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0xff;
        bytes
    });
    assert_refused_as_corrupt(&cache, "modules.cpio");
}

#[test]
fn a_closed_stdout_ends_quietly_like_a_unix_tool() {
    // The reader is gone before pyro prints anything (`pyro ... | head -0`):
    // a pipe whose read end is closed before the spawn, so no scheduling
    // lets pyro's output land in a buffer first.
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors were just made and are owned here alone.
    let (read, write) = unsafe {
        use std::os::fd::FromRawFd as _;
        (
            std::os::fd::OwnedFd::from_raw_fd(fds[0]),
            std::os::fd::OwnedFd::from_raw_fd(fds[1]),
        )
    };
    drop(read);
    let output = pyro()
        .args(["env", "list"])
        .stdout(Stdio::from(write))
        .stderr(Stdio::piped())
        .output()
        .expect("run pyro");
    assert_eq!(output.status.code(), Some(141), "{}", stderr(&output));
    assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
}
