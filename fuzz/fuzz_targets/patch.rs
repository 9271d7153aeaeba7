//! Fuzzes the patch parser and applier with arbitrary text from a model:
//! parsing and applying must never panic, and an applied patch's report
//! must name only the paths it checked.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(patch) = pyro_patch::parse(data) else {
        return;
    };
    let mut tree = pyro_patch::MemoryTree::new();
    tree.insert("a.txt", b"one\ntwo\nthree\n".to_vec(), 0o100644);
    tree.insert("dir/b.py", b"def f():\n    return 1\n".to_vec(), 0o100755);
    if let Ok(report) = pyro_patch::apply(&patch, &tree) {
        for change in &report.changes {
            let path = match change {
                pyro_patch::Change::Write { path, .. } | pyro_patch::Change::Delete { path } => path,
            };
            assert!(pyro_patch::check_path(path).is_ok(), "{path}");
        }
        tree.commit(&report);
    }
});
