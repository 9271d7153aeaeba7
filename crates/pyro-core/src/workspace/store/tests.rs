//! Unit tests of the store module.

use std::collections::BTreeMap;

use super::record::default_disk;
use super::*;
use crate::host::network::NetworkConfig;

fn record(id: &str, name: Option<&str>) -> WorkspaceRecord {
    WorkspaceRecord {
        id: id.into(),
        name: name.map(str::to_string),
        env: "debian:12".into(),
        labels: BTreeMap::new(),
        mode: None,
        cpus: 1,
        memory_mib: 1024,
        created_at: now(),
        last_activity_at: now(),
        state: WorkspaceState::Starting,
        supervisor_pid: None,
        active_disk: default_disk(),
        baseline_layer: None,
        snapshots: Vec::new(),
        network: NetworkConfig::off(),
        idle_timeout_secs: None,
        max_host_bytes: None,
        disk_bytes: None,
        resume_from: None,
        baseline_template: None,
        last_boot: None,
        host_memory: None,
        host_bytes: None,
        creating: false,
        seed_slot: false,
        seed: None,
    }
}

#[test]
fn resolves_by_id_prefix_and_name_and_refuses_duplicates() {
    let home = tempfile::tempdir().unwrap();
    let store = WorkspaceStore::open(home.path()).unwrap();
    store
        .create(&record("aaaa11112222", Some("api-fix")))
        .unwrap();
    store.create(&record("bbbb11112222", None)).unwrap();
    assert_eq!(store.resolve("api-fix").unwrap().id, "aaaa11112222");
    assert_eq!(store.resolve("bbbb").unwrap().id, "bbbb11112222");
    assert!(matches!(
        store.resolve("zzz"),
        Err(WorkspaceError::Unknown { .. })
    ));
    let err = store
        .create(&record("cccc11112222", Some("api-fix")))
        .unwrap_err();
    assert!(matches!(err, WorkspaceError::NameTaken { .. }), "{err}");
    let err = store
        .rename("bbbb11112222", Some("api-fix".into()), &[])
        .unwrap_err();
    assert!(matches!(err, WorkspaceError::NameTaken { .. }));
}

#[test]
fn names_are_validated() {
    for good in ["api-fix", "a", "x.y_z-1", "A1"] {
        validate_name(good).unwrap();
    }
    for bad in [
        "",
        "-x",
        "has space",
        "a/b",
        "0123456789ab",
        &"n".repeat(64),
    ] {
        assert!(validate_name(bad).is_err(), "{bad}");
    }
    assert!(looks_like_id(&new_id()));
}

#[test]
fn labels_are_set_and_removed() {
    let home = tempfile::tempdir().unwrap();
    let store = WorkspaceStore::open(home.path()).unwrap();
    store.create(&record("aaaa11112222", None)).unwrap();
    let labels = [("team".to_string(), "core".to_string())];
    let updated = store.rename("aaaa11112222", None, &labels).unwrap();
    assert_eq!(updated.labels["team"], "core");
    let cleared = store
        .rename("aaaa11112222", None, &[("team".into(), String::new())])
        .unwrap();
    assert!(cleared.labels.is_empty());
}

#[test]
fn a_running_record_without_a_live_supervisor_reads_as_crashed() {
    let home = tempfile::tempdir().unwrap();
    let store = WorkspaceStore::open(home.path()).unwrap();
    let mut running = record("aaaa11112222", None);
    running.state = WorkspaceState::Running;
    let (_dir, creating) = store.create(&running).unwrap();
    store.created("aaaa11112222").unwrap();
    drop(creating);
    {
        let _held = store.supervisor_lock("aaaa11112222").unwrap().unwrap();
        assert!(store.supervisor_alive("aaaa11112222").unwrap());
        assert_eq!(
            store.observe("aaaa11112222").unwrap().state,
            WorkspaceState::Running
        );
    }
    let observed = store.observe("aaaa11112222").unwrap();
    let WorkspaceState::Crashed { reason } = &observed.state else {
        panic!("{observed:?}");
    };
    assert!(reason.contains("supervisor"), "{reason}");
    assert_eq!(store.read("aaaa11112222").unwrap().state, observed.state);
}

#[test]
fn a_create_reads_as_creating_while_its_creator_lives_and_crashed_after() {
    let home = tempfile::tempdir().unwrap();
    let store = WorkspaceStore::open(home.path()).unwrap();
    let (_dir, creating) = store.create(&record("aaaa11112222", None)).unwrap();
    let seen = store.observe("aaaa11112222").unwrap();
    assert!(seen.creating, "a live creator's workspace is left alone");
    assert_eq!(
        seen.state,
        WorkspaceState::Starting,
        "no supervisor yet, and no crash"
    );
    // Finished: no longer creating, whatever becomes of the lock.
    let (_dir, other) = store.create(&record("bbbb11112222", None)).unwrap();
    assert!(!store.created("bbbb11112222").unwrap().creating);
    drop(other);
    // (Done, with no supervisor: as any workspace whose supervisor died.)
    assert!(matches!(
        store.observe("bbbb11112222").unwrap().state,
        WorkspaceState::Crashed { .. }
    ));
    // Its creator killed: crashed, and said why.
    drop(creating);
    let cut = store.observe("aaaa11112222").unwrap();
    assert!(
        cut.cut_short(),
        "crashed, and still never finished: {cut:?}"
    );
    let WorkspaceState::Crashed { reason } = &cut.state else {
        panic!("{cut:?}");
    };
    assert!(reason.contains("create did not finish"), "{reason}");
    // A lock file a delete removed is not made again by a look.
    std::fs::remove_file(store.dir("aaaa11112222").join("create.lock")).unwrap();
    store
        .update("aaaa11112222", |r| {
            r.creating = true;
            Ok(())
        })
        .unwrap();
    let gone = store.observe("aaaa11112222").unwrap();
    assert!(!store.dir("aaaa11112222").join("create.lock").exists());
    assert!(
        gone.cut_short(),
        "a lock file gone is a creator gone: {gone:?}"
    );
}
