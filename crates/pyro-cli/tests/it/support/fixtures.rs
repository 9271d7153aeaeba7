//! Project fixtures shared by the smoke pack and the recipes: the files of
//! `pyro demo`'s fixtures, as Git checkouts.

use std::path::Path;

use super::git;

/// The demo's fixture files: one set for the CLI's demo, the smoke pack and
/// the recipes.
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/commands/demo/fixture/");

/// The demo fixture file `name`.
pub fn fixture(name: &str) -> String {
    std::fs::read_to_string(format!("{FIXTURE}{name}")).unwrap()
}

/// Writes `files` under `dir` and commits them: a Git checkout.
pub fn repo(dir: &Path, files: &[(&str, String)]) {
    for (relative, content) in files {
        let path = dir.join(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, content).unwrap();
    }
    git(dir, &["init", "-q", "-b", "main"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-qm", "first"]);
}

/// The calc package (`calc` names its buggy or fixed module), plus `extra`
/// files.
pub fn calc(dir: &Path, calc: &str, extra: &[(&str, String)]) {
    let mut files = vec![
        (".gitignore", "__pycache__/\n".to_string()),
        ("calc/__init__.py", fixture(calc)),
        ("tests/__init__.py", String::new()),
        ("tests/test_calc.py", fixture("test_calc.py")),
    ];
    files.extend(extra.iter().cloned());
    repo(dir, &files);
}

/// A project that says in its README how to set it up, whose test needs
/// `six` from PyPI.
pub fn cold_start(dir: &Path) {
    repo(
        dir,
        &[
            (".gitignore", ".venv/\n__pycache__/\n".into()),
            ("README.md", fixture("README_cold.md")),
            ("requirements.txt", fixture("requirements.txt")),
            ("test_app.py", fixture("test_app.py")),
        ],
    );
}

/// A repository with branches `main`, `fix-a` and `fix-b`, each with its
/// own `notes.txt` (`main`, `on fix-a`, `on fix-b`).
pub fn branches(dir: &Path) {
    repo(dir, &[("notes.txt", "main\n".into())]);
    for branch in ["fix-a", "fix-b"] {
        git(dir, &["checkout", "-qb", branch, "main"]);
        std::fs::write(dir.join("notes.txt"), format!("on {branch}\n")).unwrap();
        git(dir, &["commit", "-qam", branch]);
    }
    git(dir, &["checkout", "-q", "main"]);
}
