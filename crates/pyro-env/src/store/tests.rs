//! Store behaviour without building anything: installed environments are
//! faked by inserting small blobs and writing a manifest.

use std::os::unix::fs::PermissionsExt as _;

use super::*;
use crate::NoProgress;

const AGENT: &[u8] = b"\x7fELF fake agent";

/// Installs a fake `name` with tiny artifacts; returns its manifest.
fn fake_install(store: &EnvStore, name: &str, rootfs: &[u8]) -> Manifest {
    let insert = |file: &str, data: &[u8]| {
        let path = store
            .tmp_dir()
            .join(format!("{file}-{}", fsutil::unique_suffix()));
        fs_err::write(&path, data).unwrap();
        store.blobs.insert(&path).unwrap()
    };
    let mut modules = crate::cpio::CpioWriter::new();
    modules.dir("pyro", 0o755).unwrap();
    modules.file("pyro/modules.order", 0o644, b"").unwrap();
    let manifest = Manifest {
        schema: manifest::SCHEMA,
        name: name.to_owned(),
        catalog_revision: catalog::find(name).unwrap().revision,
        suite: "bookworm".into(),
        packages: vec![],
        kernel: KernelInfo {
            package: "linux-image-6.1.0-56-amd64".into(),
            version: "6.1.192-2".into(),
            release: "6.1.0-56-amd64".into(),
        },
        modules: crate::modules::BOOT_MODULES
            .iter()
            .map(|m| m.to_string())
            .collect(),
        bootstrapper: "mmdebstrap".into(),
        created_at: "2025-01-01T00:00:00Z".into(),
        artifacts: Artifacts {
            vmlinux: insert("vmlinux", b"\x7fELF kernel"),
            modules_cpio: insert("modules", &modules.finish()),
            rootfs: insert("rootfs", rootfs),
        },
    };
    let json = serde_json::to_vec_pretty(&manifest).unwrap();
    fsutil::write_atomic(&store.manifest_path(name), &json, 0o644, store.owner).unwrap();
    manifest
}

fn store() -> (tempfile::TempDir, EnvStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = EnvStore::open(dir.path().join("cache")).unwrap();
    (dir, store)
}

#[test]
fn unknown_env_lists_known_names() {
    let (_dir, store) = store();
    let err = store.inspect("ubuntu:24.04").unwrap_err();
    assert_eq!(
        err.to_string(),
        "unknown environment 'ubuntu:24.04'; known environments: debian:12, debian:12-base"
    );
    assert!(matches!(
        store.pull("nope", false, &NoProgress),
        Err(StoreError::UnknownEnv { .. })
    ));
}

#[test]
fn not_pulled_says_how_to_pull() {
    let (_dir, store) = store();
    let err = store.boot_artifacts("debian:12", AGENT).unwrap_err();
    assert_eq!(
        err.to_string(),
        // The fix is the front end's to word (pyro-core's hints).
        "environment debian:12 is not pulled"
    );
    let list = store.list().unwrap();
    assert_eq!(list.len(), 2);
    assert!(list.iter().all(|s| s.installed.is_none()));
}

#[test]
fn list_and_inspect_an_installed_env() {
    let (_dir, store) = store();
    let manifest = fake_install(&store, "debian:12-base", b"root image");
    let list = store.list().unwrap();
    let base = list.iter().find(|s| s.name == "debian:12-base").unwrap();
    let info = base.installed.as_ref().unwrap();
    assert_eq!(info.digest, &manifest.artifacts.rootfs.sha256[..12]);
    assert_eq!(info.size_bytes, manifest.artifacts.total_size());
    assert!(!info.outdated);
    let details = store.inspect("debian:12-base").unwrap();
    assert!(details.verified);
    assert_eq!(details.artifacts.len(), 3);
    // JSON output is what the CLI prints.
    let json = serde_json::to_value(&details).unwrap();
    assert_eq!(json["artifacts"][2]["state"]["state"], "verified");
}

#[test]
fn pull_of_an_intact_env_returns_at_once_without_root() {
    let (_dir, store) = store();
    fake_install(&store, "debian:12-base", b"root image");
    let outcome = store.pull("debian:12-base", false, &NoProgress).unwrap();
    assert!(outcome.already_present);
    assert!(outcome.env.installed.is_some());
}

#[test]
fn boot_artifacts_assembles_and_caches_the_initramfs() {
    let (_dir, store) = store();
    let manifest = fake_install(&store, "debian:12", b"root image");
    let boot = store.boot_artifacts("debian:12", AGENT).unwrap();
    assert_eq!(boot.rootfs_format, "qcow2");
    assert_eq!(
        boot.rootfs,
        store.blobs.path(&manifest.artifacts.rootfs.sha256)
    );
    let bytes = std::fs::read(&boot.initramfs).unwrap();
    let modules = std::fs::read(store.blobs.path(&manifest.artifacts.modules_cpio.sha256)).unwrap();
    assert!(bytes.ends_with(&modules));
    // Same agent: same file; different agent: different file.
    assert_eq!(
        store.boot_artifacts("debian:12", AGENT).unwrap().initramfs,
        boot.initramfs
    );
    assert_ne!(
        store
            .boot_artifacts("debian:12", b"other")
            .unwrap()
            .initramfs,
        boot.initramfs
    );

    if let Ok(out) = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("cpio -it --quiet < '{}'", boot.initramfs.display()))
        .output()
    {
        if out.status.success() {
            // GNU cpio stops at the first trailer; the agent archive comes first.
            assert_eq!(
                String::from_utf8_lossy(&out.stdout),
                "dev\ndev/console\ninit\n"
            );
        }
    }
}

#[test]
fn truncated_or_missing_blob_is_reported_as_corrupt() {
    let (_dir, store) = store();
    let manifest = fake_install(&store, "debian:12", b"a root image of some size");
    let rootfs = store.blobs.path(&manifest.artifacts.rootfs.sha256);
    std::fs::set_permissions(&rootfs, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(&rootfs, b"a root").unwrap();
    let err = store.boot_artifacts("debian:12", AGENT).unwrap_err();
    assert!(matches!(&err, StoreError::Corrupt { artifact, .. } if artifact == "rootfs.qcow2"));
    assert!(
        err.to_string()
            .contains("(rootfs.qcow2 truncated or resized"),
        "{err}"
    );

    // Same size, different content: only the re-hash can tell.
    std::fs::write(&rootfs, b"A ROOT IMAGE OF SOME SIZE").unwrap();
    let err = store.boot_artifacts("debian:12", AGENT).unwrap_err();
    assert_eq!(
        err.to_string(),
        "environment debian:12 is corrupt (rootfs.qcow2 checksum mismatch)"
    );
    assert!(!store.inspect("debian:12").unwrap().verified);

    std::fs::remove_file(store.blobs.path(&manifest.artifacts.vmlinux.sha256)).unwrap();
    let err = store.boot_artifacts("debian:12", AGENT).unwrap_err();
    assert!(err.to_string().contains("(vmlinux missing)"), "{err}");
    // An intact-looking check fails too, so pull would rebuild it.
    let entry = catalog::find("debian:12").unwrap();
    assert!(!store.is_intact(entry).unwrap());
}

#[test]
fn unreadable_manifest_is_reported_with_the_fix() {
    let (_dir, store) = store();
    fs_err::write(store.manifest_path("debian:12"), "{ half").unwrap();
    let err = store.boot_artifacts("debian:12", AGENT).unwrap_err();
    assert!(matches!(err, StoreError::BadManifest { .. }));
    assert!(err
        .to_string()
        .contains("manifest of environment debian:12"));
    let list = store.list().unwrap();
    assert!(list[0].problem.is_some());
}

#[test]
fn prune_keeps_referenced_and_pinned_blobs() {
    let (_dir, store) = store();
    let old = fake_install(&store, "debian:12", b"old root");
    store.pin("ws-1", "debian:12").unwrap();
    let new = fake_install(&store, "debian:12", b"new root");
    // An orphan from an interrupted pull.
    let orphan = store.tmp_dir().join("orphan");
    fs_err::write(&orphan, b"orphan").unwrap();
    let orphan = store.blobs.insert(&orphan).unwrap();
    // A dead scratch dir.
    let dead = store.tmp_dir().join("debian_12-dead");
    fs_err::create_dir(&dead).unwrap();
    fs_err::write(dead.join(".lock"), "").unwrap();

    let report = store.prune().unwrap();
    assert_eq!(report.removed_blobs, vec![orphan.sha256[..12].to_owned()]);
    assert_eq!(report.removed_tmp_dirs, 1);
    assert!(
        report.to_string().starts_with(
            "removed 1 unreferenced blob, 0 unused warm templates, 1 stale build directory, 0 idle initramfs files; freed "
        ),
        "{report}"
    );
    assert!(store.blobs.path(&old.artifacts.rootfs.sha256).exists());
    assert!(store.blobs.path(&new.artifacts.rootfs.sha256).exists());

    store.unpin("ws-1").unwrap();
    let report = store.prune().unwrap();
    assert_eq!(
        report.removed_blobs,
        vec![old.artifacts.rootfs.sha256[..12].to_owned()]
    );
    assert!(store.boot_artifacts("debian:12", AGENT).is_ok());
}

#[test]
fn open_reports_unwritable_root() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    fs_err::write(&file, "").unwrap();
    let err = EnvStore::open(file.join("cache")).unwrap_err();
    assert!(err.to_string().contains("set PYRO_CACHE_DIR"), "{err}");
}

#[test]
fn agent_only_initramfs_is_cached() {
    let (_dir, store) = store();
    let a = store.agent_only_initramfs(AGENT).unwrap();
    let b = store.agent_only_initramfs(AGENT).unwrap();
    assert_eq!(a, b);
    let bytes = std::fs::read(&a).unwrap();
    assert!(bytes.windows(AGENT.len()).any(|w| w == AGENT));
}

/// `sudo pyro env pull` into a user's cache leaves files the user owns.
#[test]
fn root_in_a_users_directory_hands_files_to_the_user() {
    use std::os::unix::fs::MetadataExt as _;
    if !fsutil::is_root() {
        eprintln!("skipping: needs root");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(dir.path(), Some(65534), Some(65534)).unwrap();
    let store = EnvStore::open(dir.path().join("home/.cache/pyro")).unwrap();
    let manifest = fake_install(&store, "debian:12", b"root image");
    store.boot_artifacts("debian:12", AGENT).unwrap();
    let uid = |p: &std::path::Path| std::fs::symlink_metadata(p).unwrap().uid();
    for path in [
        dir.path().join("home"),
        store.root().to_owned(),
        store.gc_lock_path(),
        store.pull_lock_path("debian:12"),
        store.manifest_path("debian:12"),
        store.blobs.path(&manifest.artifacts.rootfs.sha256),
    ] {
        assert_eq!(uid(&path), 65534, "{}", path.display());
    }
    for entry in std::fs::read_dir(store.initramfs_dir()).unwrap() {
        assert_eq!(uid(&entry.unwrap().path()), 65534);
    }
}

/// A second pull of the same environment waits for the first, then finds it
/// present.
#[test]
fn concurrent_pulls_serialize() {
    let (_dir, store) = store();
    let held = FileLock::acquire(&store.pull_lock_path("debian:12-base"), true).unwrap();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let waiter = {
        let store = store.clone();
        std::thread::spawn(move || {
            let outcome = store.pull("debian:12-base", false, &NoProgress);
            done_tx.send(()).unwrap();
            outcome
        })
    };
    assert!(
        done_rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "pull did not wait for the lock"
    );
    // The "first pull" finishes: it installs the environment and unlocks.
    fake_install(&store, "debian:12-base", b"root image");
    drop(held);
    let outcome = waiter.join().unwrap().unwrap();
    assert!(outcome.already_present);
    assert_eq!(
        outcome.phases[0].phase,
        "waiting for another pull of debian:12-base"
    );
}

/// A finished template build of `key` with a RAM image of `memory_mib`.
fn fake_template(store: &EnvStore, key: &str, memory_mib: u32) -> super::Template {
    let build = store.start_template().unwrap();
    fs_err::write(build.disk(), b"disk").unwrap();
    let ram = fs_err::File::create(build.memory()).unwrap();
    ram.set_len(u64::from(memory_mib) << 20).unwrap();
    fs_err::write(build.state(), b"device state").unwrap();
    let info = super::TemplateInfo {
        key: key.into(),
        build: fsutil::unique_suffix(),
        env: "debian:12".into(),
        cpus: 1,
        memory_mib,
        network: false,
        created_at: "2026-01-01T00:00:00Z".into(),
        build_ms: 1,
        memory_bytes_on_disk: 0,
        state_size: 0,
        state_sha256: String::new(),
    };
    store.publish_template(build, info).unwrap()
}

#[test]
fn templates_are_found_checked_and_pruned_unless_pinned() {
    let (_dir, store) = store();
    fake_install(&store, "debian:12", b"root");
    let (kept, loose) = ("a".repeat(64), "b".repeat(64));
    assert!(store.template(&kept).unwrap().is_none());
    let template = fake_template(&store, &kept, 1);
    fake_template(&store, &loose, 1);
    let found = store.template(&kept).unwrap().expect("published");
    assert_eq!(found.info.build, template.info.build);
    assert_eq!(found.info.state_size, 12, "the state is hashed on publish");
    assert_eq!(store.inspect("debian:12").unwrap().templates.len(), 2);

    // The cheap checks: a changed state, a RAM image cut short.
    std::fs::write(found.state(), b"other  state").unwrap();
    let why = store.template(&kept).unwrap_err().why;
    assert!(why.contains("saved state"), "{why}");
    std::fs::write(found.state(), b"device state").unwrap();
    std::fs::write(found.memory(), b"short").unwrap();
    let why = store.template(&kept).unwrap_err().why;
    assert!(why.contains("memory image"), "{why}");

    store
        .pin_with_template("ws1", "debian:12", Some(&kept))
        .unwrap();
    let report = store.prune().unwrap();
    assert_eq!(report.removed_templates, 1);
    assert!(found.dir.exists(), "a pinned template stays");
    assert!(
        store.template(&loose).unwrap().is_none(),
        "an unpinned one goes"
    );
}
