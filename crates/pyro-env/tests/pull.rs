//! A real `pull` of `debian:12-base` into a temporary store: downloads the
//! kernel package and builds the root filesystem (needs root and network,
//! about a minute). It is ignored by default because CI already pulls both environments through
//! the CLI (`scripts/test`), and the CLI tests use them; run it by hand with:
//!
//! ```text
//! cargo test -p pyro-env --test pull -- --ignored --nocapture
//! ```

use std::sync::Mutex;

use pyro_env::{BlobState, EnvStore, Progress};

#[derive(Default)]
struct Recorder {
    phases: Mutex<Vec<String>>,
    details: Mutex<usize>,
}

impl Progress for Recorder {
    fn phase(&self, name: &str) {
        eprintln!("phase: {name}");
        self.phases.lock().unwrap().push(name.to_owned());
    }
    fn detail(&self, _line: &str) {
        *self.details.lock().unwrap() += 1;
    }
    fn finish(&self) {}
}

#[test]
#[ignore = "builds a whole environment (about a minute, needs root); CI pulls through the CLI instead"]
fn real_pull_of_debian_12_base() {
    let dir = tempfile::tempdir().unwrap();
    let store = EnvStore::open(dir.path()).unwrap();
    let recorder = Recorder::default();
    let outcome = store.pull("debian:12-base", false, &recorder).unwrap();
    assert!(!outcome.already_present);
    let phases = recorder.phases.lock().unwrap().clone();
    for expected in [
        "resolving kernel package",
        "extracting vmlinux",
        "making ext4 image",
        "hashing",
    ] {
        assert!(
            phases.iter().any(|p| p == expected),
            "{expected} missing from {phases:?}"
        );
    }
    assert!(
        *recorder.details.lock().unwrap() > 0,
        "child output was not forwarded"
    );

    let details = store.inspect("debian:12-base").unwrap();
    assert!(details.verified);
    assert!(details
        .artifacts
        .iter()
        .all(|a| a.state == BlobState::Verified));
    assert!(details.manifest.modules.iter().any(|m| m == "ext4"));

    let boot = store.boot_artifacts("debian:12-base", b"agent").unwrap();
    let kernel = std::fs::read(&boot.kernel).unwrap();
    assert!(kernel.starts_with(b"\x7fELF"));
    let info = std::process::Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&boot.rootfs)
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["format"], "qcow2");
    assert_eq!(info["virtual-size"], 8u64 << 30);

    // A second pull finds it present.
    let again = store
        .pull("debian:12-base", false, &pyro_env::NoProgress)
        .unwrap();
    assert!(again.already_present);
    assert!(store.prune().unwrap().removed_blobs.is_empty());
}
