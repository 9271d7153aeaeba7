//! Inputs the fuzzer (`fuzz/`, target `patch`) found to crash the parser,
//! kept so they never do again: each must parse or be refused, never panic.

#[test]
fn inputs_the_fuzzer_found_parse_or_are_refused() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_found");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let data = std::fs::read(entry.path()).unwrap();
        if let Ok(patch) = pyro_patch::parse(&data) {
            let tree = pyro_patch::MemoryTree::new();
            let _ = pyro_patch::apply(&patch, &tree);
        }
        seen += 1;
    }
    assert!(seen > 0, "no inputs in {}", dir.display());
}
