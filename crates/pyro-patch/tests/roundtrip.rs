//! Property test: for many generated old/new pairs, `apply(parse(diff))` on
//! the old tree gives exactly the new tree. Cases come from a fixed-seed
//! generator (no extra crates), covering empty files, missing final newlines,
//! CRLF and mixed endings, repeated lines, creations, deletions, renames,
//! mode changes and several files in one patch. A failing case prints its
//! number; rerun with `cargo test -p pyro-patch --test roundtrip`.

mod common;

use std::time::Instant;

use common::{case, Files, Rng};
use pyro_patch::{apply, diff_files, parse, MemoryTree, MODE_FILE};

fn check(number: usize, old: Files, new: Files, text: &str) {
    if text.is_empty() {
        assert_eq!(old, new, "case {number}: no diff for different trees");
        return;
    }
    let patch =
        parse(text.as_bytes()).unwrap_or_else(|e| panic!("case {number}: {e}\n{text:?}\n{old:?}"));
    let mut tree = MemoryTree { files: old };
    let report = apply(&patch, &tree).unwrap_or_else(|e| panic!("case {number}: {e}\n{text}"));
    tree.commit(&report);
    assert_eq!(tree.files, new, "case {number}:\n{text}");
}

#[test]
fn diff_then_apply_gives_the_new_tree() {
    let mut rng = Rng::new(0x5eed);
    for number in 0..3000 {
        let (old, new, text) = case(&mut rng);
        check(number, old, new, &text);
    }
}

#[test]
fn large_file_round_trips_quickly() {
    let mut rng = Rng::new(42);
    let old: Vec<u8> = (0..10_000)
        .flat_map(|i| format!("line {i}: {}\n", rng.below(1_000_000)).into_bytes())
        .collect();
    let mut new = old.clone();
    for _ in 0..5 {
        let at = rng.below(new.len());
        new.splice(at..at, b"inserted line\n".iter().copied());
    }
    let start = Instant::now();
    let text = diff_files("big", Some(&old), "big", Some(&new), None, None, 3);
    let diff_took = start.elapsed();
    let mut files = Files::new();
    files.insert("big".into(), (old, MODE_FILE));
    let mut expected = Files::new();
    expected.insert("big".into(), (new, MODE_FILE));
    check(0, files, expected, &text);
    let total = start.elapsed();
    eprintln!("10k lines: diff {diff_took:?}, diff+parse+apply {total:?}");
}
