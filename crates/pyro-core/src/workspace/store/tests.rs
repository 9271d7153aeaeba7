//! Unit tests of the store module.

use super::*;

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
    store.create(&running).unwrap();
    {
        let _held = store.supervisor_lock("aaaa11112222").unwrap().unwrap();
        assert!(store.supervisor_alive("aaaa11112222").unwrap());
    }
    let observed = store.observe("aaaa11112222").unwrap();
    assert!(matches!(observed.state, WorkspaceState::Crashed { .. }));
    assert_eq!(store.read("aaaa11112222").unwrap().state, observed.state);
}
