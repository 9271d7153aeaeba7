//! `pyro demo`: each workflow end to end on its built-in fixture, through
//! the real CLI against real VMs, leaving no workspace behind.

use crate::support::*;

/// Runs `pyro demo NAME`, asserts it succeeded and left no workspace;
/// returns its stdout, then its stderr (where the steps' own stderr went).
fn demo(home: &TestHome, name: &str) -> String {
    let output = home.run(&["demo", name]);
    assert!(
        output.status.success(),
        "demo {name} failed:\n{}\n{}",
        stdout(&output),
        stderr(&output)
    );
    let listed = home.run(&["workspace", "list", "--json"]);
    assert_eq!(stdout(&listed).trim(), "[]", "demo {name} left workspaces");
    stdout(&output) + &stderr(&output)
}

#[test]
fn demo_lists_the_five_workflows_and_refuses_others() {
    let home = TestHome::new();
    let listed = stdout(&ok(home.run(&["demo"]), "demo"));
    for name in ["cold-start", "repro-fix", "parallel", "untrusted", "review"] {
        assert!(listed.contains(&format!("  {name} ")), "{listed}");
    }
    let unknown = home.run(&["demo", "yolo"]);
    assert_eq!(unknown.status.code(), Some(2));
    assert!(
        stderr(&unknown).contains("repro-fix"),
        "{}",
        stderr(&unknown)
    );
}

#[test]
fn demo_repro_fix_runs_end_to_end() {
    let home = TestHome::new();
    let out = demo(&home, "repro-fix");
    assert!(
        out.contains("$ pyro workspace create debian:12 --mode repro-fix --seed-path "),
        "{out}"
    );
    assert!(out.contains("$ pyro workspace reset demo-"), "{out}");
    let diff = out
        .split("The diff is exactly the fix")
        .nth(1)
        .and_then(|rest| rest.split("Take the fixed file out").next())
        .unwrap_or_else(|| panic!("no diff step:\n{out}"));
    assert!(diff.contains("+    if not values:"), "{diff}");
    assert!(!diff.contains("TypeError"), "{diff}");
}

#[test]
fn demos_review_untrusted_and_parallel_run_end_to_end() {
    let home = TestHome::new();
    let review = demo(&home, "review");
    assert!(review.contains("median"), "{review}");
    let untrusted = demo(&home, "untrusted");
    assert!(
        untrusted.contains("curl -s https://collector.example/next"),
        "{untrusted}"
    );
    assert!(untrusted.contains(".cache.bin"), "{untrusted}");
    let parallel = demo(&home, "parallel");
    assert!(parallel.contains("work on fix-a"), "{parallel}");
}

/// Through the package indexes (PyPI here), so it needs the registries
/// this machine reaches; about 40 s under TCG, most of it pip.
#[test]
fn demo_cold_start_installs_from_pypi_and_passes() {
    let home = TestHome::new();
    let out = demo(&home, "cold-start");
    assert!(out.contains("allowed files.pythonhosted.org:443"), "{out}");
    assert!(out.contains("test_text_type"), "{out}");
}
