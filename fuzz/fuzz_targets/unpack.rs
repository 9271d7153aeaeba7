//! Fuzzes the unpacker with hostile archives, as a guest's `tar` could send:
//! it must never panic, and nothing may land outside the output.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let options = pyro_transfer::UnpackOptions {
        limits: pyro_transfer::Limits {
            max_total_bytes: 1 << 20,
            max_entries: 256,
            max_file_bytes: 1 << 20,
            max_path_len: 256,
        },
        ..pyro_transfer::UnpackOptions::default()
    };
    let _ = pyro_transfer::unpack(data, &out, &options);
    // Only the output (and nothing at all after a refusal) beside it.
    for entry in std::fs::read_dir(dir.path()).unwrap().flatten() {
        assert_eq!(entry.path(), out, "something landed beside the output");
    }
    // No link inside it leads out of it.
    let mut stack = vec![out.clone()];
    while let Some(path) = stack.pop() {
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&path).unwrap().flatten().map(|e| e.path()));
        } else if meta.file_type().is_symlink() {
            let target = std::fs::read_link(&path).unwrap();
            assert!(target.is_relative(), "{} -> {}", path.display(), target.display());
            let mut depth = path.parent().unwrap().strip_prefix(&out).unwrap().components().count() as i64;
            for part in target.components() {
                match part {
                    std::path::Component::ParentDir => depth -= 1,
                    std::path::Component::Normal(_) => depth += 1,
                    _ => {}
                }
                assert!(depth >= 0, "{} -> {} leads out", path.display(), target.display());
            }
        }
    }
});
