//! The five demos: each writes its fixture and returns its steps.

use pyro_core::params::DEFAULT_ENV;

use super::{git, Demo, Scratch, Step};

const CALC_BUGGY: &str = include_str!("fixture/calc_buggy.py");
const CALC_FIXED: &str = include_str!("fixture/calc_fixed.py");
const TEST_CALC: &str = include_str!("fixture/test_calc.py");
const ATTEMPT_WRONG: &str = include_str!("fixture/attempt_wrong.patch");
const ATTEMPT_RIGHT: &str = include_str!("fixture/attempt_right.patch");
const PROPOSED: &str = include_str!("fixture/proposed_median.patch");
const SETUP_SH: &str = include_str!("fixture/setup.sh");
const REQUIREMENTS: &str = include_str!("fixture/requirements.txt");
const TEST_APP: &str = include_str!("fixture/test_app.py");
const README_COLD: &str = include_str!("fixture/README_cold.md");

/// Every demo, in the modes' order.
pub const DEMOS: [Demo; 5] = [
    Demo {
        name: "cold-start",
        about: "set up a project nobody has set up: read it, install its dependency from PyPI, \
                run its tests",
        steps: cold_start,
    },
    Demo {
        name: "repro-fix",
        about: "reproduce a failing test, checkpoint, try a fix, reset, fix it, take the patch",
        steps: repro_fix,
    },
    Demo {
        name: "parallel",
        about: "three branches of one repository in three isolated workspaces at once",
        steps: parallel,
    },
    Demo {
        name: "untrusted",
        about: "run a script nobody trusts with no network and no secrets, and see what it did",
        steps: untrusted,
    },
    Demo {
        name: "review",
        about: "apply a proposed change, run the checks, and review from diff and summary",
        steps: review,
    },
];

/// The step that creates workspace `ws` in `mode` from `seed` (its
/// options).
fn create(say: &str, mode: &str, seed: &[&str], ws: &str) -> Step {
    let head = ["workspace", "create", DEFAULT_ENV, "--mode", mode];
    Step {
        creates: Some(ws.to_string()),
        ..Step::new(say, &[&head[..], seed, &["--name", ws]].concat())
    }
}

/// The calc project (buggy or fixed) under `project/`.
fn calc_project(scratch: &Scratch, calc: &str) -> anyhow::Result<String> {
    scratch.write(&[
        ("project/.gitignore", "__pycache__/\n"),
        ("project/calc/__init__.py", calc),
        ("project/tests/__init__.py", ""),
        ("project/tests/test_calc.py", TEST_CALC),
    ])?;
    Ok(scratch.arg("project"))
}

fn cold_start(scratch: &Scratch) -> anyhow::Result<Vec<Step>> {
    scratch.write(&[
        ("project/.gitignore", ".venv/\n__pycache__/\n"),
        ("project/README.md", README_COLD),
        ("project/requirements.txt", REQUIREMENTS),
        ("project/test_app.py", TEST_APP),
    ])?;
    let project = scratch.arg("project");
    let ws = scratch.workspace("app");
    let ws = ws.as_str();
    Ok(vec![
        create(
            "A workspace in cold-start mode: egress to the package indexes only, 2 vCPUs, 2 GiB.",
            "cold-start",
            &["--seed-path", &project],
            ws,
        ),
        Step::new(
            "How does it build? Read what it says.",
            &["workspace", "file", "read", ws, "README.md"],
        ),
        Step::new(
            "Its dependencies.",
            &["workspace", "file", "read", ws, "requirements.txt"],
        ),
        Step::new(
            "Install them (from PyPI, through the allowlist).",
            &[
                "workspace",
                "exec",
                ws,
                "--",
                "sh",
                "-c",
                "python3 -m venv .venv && .venv/bin/pip install -q -r requirements.txt",
            ],
        ),
        Step::new(
            "Run the tests.",
            &[
                "workspace",
                "exec",
                ws,
                "--",
                ".venv/bin/python",
                "-m",
                "unittest",
                "-v",
            ],
        ),
        Step::new(
            "Every connection it made, allowed or denied.",
            &["workspace", "network", "log", ws],
        ),
        Step::new(
            "What was run and changed: the report.",
            &["workspace", "summary", ws],
        ),
        Step::new("Throw it away.", &["workspace", "delete", ws]),
    ])
}

fn repro_fix(scratch: &Scratch) -> anyhow::Result<Vec<Step>> {
    let project = calc_project(scratch, CALC_BUGGY)?;
    scratch.write(&[
        ("wrong.patch", ATTEMPT_WRONG),
        ("right.patch", ATTEMPT_RIGHT),
    ])?;
    let (wrong, right) = (scratch.arg("wrong.patch"), scratch.arg("right.patch"));
    let fixed = scratch.arg("average-fixed.py");
    let ws = scratch.workspace("calc");
    let ws = ws.as_str();
    let test = [
        "workspace",
        "exec",
        ws,
        "--",
        "python3",
        "-m",
        "unittest",
        "-q",
    ];
    Ok(vec![
        create(
            "A workspace in repro-fix mode, seeded with a small project whose test fails.",
            "repro-fix",
            &["--seed-path", &project],
            ws,
        ),
        Step::failing(1, "Reproduce the failure.", &test),
        Step::new(
            "Checkpoint: disk and memory, with the failure reproduced.",
            &["workspace", "snapshot", "create", ws, "repro"],
        ),
        Step::new(
            "A first attempt at a fix.",
            &["workspace", "patch", "apply", ws, "--patch-file", &wrong],
        ),
        Step::failing(1, "It does not fix it.", &test),
        Step::new(
            "Back to the checkpoint: the attempt is gone.",
            &["workspace", "reset", ws, "--snapshot", "repro"],
        ),
        Step::new(
            "The real fix.",
            &["workspace", "patch", "apply", ws, "--patch-file", &right],
        ),
        Step::new("The tests pass.", &test),
        Step::new(
            "The diff is exactly the fix, nothing of the failed attempt.",
            &["workspace", "diff", ws],
        ),
        Step::new(
            "Take the fixed file out to the host.",
            &[
                "workspace",
                "export",
                ws,
                "calc/__init__.py",
                "--output",
                &fixed,
            ],
        ),
        Step::new(
            "What was run and changed since the checkpoint.",
            &["workspace", "summary", ws],
        ),
        Step::new("Throw it away.", &["workspace", "delete", ws]),
    ])
}

fn parallel(scratch: &Scratch) -> anyhow::Result<Vec<Step>> {
    let repo = scratch.path("repo");
    std::fs::create_dir_all(&repo)?;
    git(&repo, &["init", "-q", "-b", "main"])?;
    scratch.write(&[("repo/notes.txt", "main\n")])?;
    git(&repo, &["add", "-A"])?;
    git(&repo, &["commit", "-qm", "main"])?;
    for branch in ["fix-a", "fix-b"] {
        git(&repo, &["checkout", "-qb", branch, "main"])?;
        scratch.write(&[("repo/notes.txt", &format!("work on {branch}\n"))])?;
        git(&repo, &["commit", "-qam", branch])?;
    }
    git(&repo, &["checkout", "-q", "main"])?;
    let url = format!("file://{}", repo.display());
    let label = format!("demo={}", scratch.workspace("set"));
    let names: Vec<String> = ["main", "fix-a", "fix-b"]
        .iter()
        .map(|branch| scratch.workspace(branch))
        .collect();
    let mut steps = Vec::new();
    for (branch, ws) in ["main", "fix-a", "fix-b"].iter().zip(&names) {
        let say = format!("A workspace in parallel mode on branch {branch}.");
        let seed = ["--repo-url", &url, "--repo-ref", branch, "--label", &label];
        steps.push(create(&say, "parallel", &seed, ws));
    }
    steps.push(Step::new(
        "Each holds its own branch.",
        &["workspace", "exec", &names[1], "--", "cat", "notes.txt"],
    ));
    steps.push(Step::new(
        "Work in one of them...",
        &[
            "workspace",
            "exec",
            &names[1],
            "--",
            "sh",
            "-c",
            "echo fixed > result.txt && git status --short",
        ],
    ));
    steps.push(Step::failing(
        1,
        "...never shows in another.",
        &["workspace", "exec", &names[2], "--", "cat", "result.txt"],
    ));
    steps.push(Step::new(
        "All three, by label; idle ones suspend after 15 minutes.",
        &["workspace", "list", "--label", &label],
    ));
    for ws in &names {
        steps.push(Step::new("Throw it away.", &["workspace", "delete", ws]));
    }
    Ok(steps)
}

fn untrusted(scratch: &Scratch) -> anyhow::Result<Vec<Step>> {
    scratch.write(&[
        ("project/setup.sh", SETUP_SH),
        ("token", "not-a-real-token-123\n"),
    ])?;
    let project = scratch.arg("project");
    let token = scratch.arg("token");
    let ws = scratch.workspace("box");
    let ws = ws.as_str();
    Ok(vec![
        create(
            "A workspace in untrusted mode: no network device, no secrets, 1 vCPU, 512 MiB.",
            "untrusted",
            &["--seed-path", &project],
            ws,
        ),
        Step::new(
            "Read it before running it.",
            &["workspace", "file", "read", ws, "setup.sh"],
        ),
        Step::new(
            "Run it, with a time limit.",
            &[
                "workspace",
                "exec",
                ws,
                "--timeout",
                "60",
                "--",
                "sh",
                "setup.sh",
            ],
        ),
        Step::new("What it wrote in /workspace.", &["workspace", "diff", ws]),
        Step::new(
            "What it left outside it stays in the VM.",
            &[
                "workspace",
                "exec",
                ws,
                "--",
                "tail",
                "-n",
                "1",
                "/root/.bashrc",
            ],
        ),
        Step::new(
            "The VM has no network device to leave by.",
            &["workspace", "exec", ws, "--", "ls", "/sys/class/net"],
        ),
        Step::failing(
            125,
            "And it takes no secrets.",
            &["workspace", "secret", "set", ws, "TOKEN", "--file", &token],
        ),
        Step::new("The report.", &["workspace", "summary", ws]),
        Step::new(
            "Throw it away: nothing of it leaves unless exported.",
            &["workspace", "delete", ws],
        ),
    ])
}

fn review(scratch: &Scratch) -> anyhow::Result<Vec<Step>> {
    let project = calc_project(scratch, CALC_FIXED)?;
    scratch.write(&[("median.patch", PROPOSED)])?;
    let patch = scratch.arg("median.patch");
    let ws = scratch.workspace("review");
    let ws = ws.as_str();
    Ok(vec![
        create(
            "A workspace in review mode, at the change's base.",
            "review",
            &["--seed-path", &project],
            ws,
        ),
        Step::new(
            "Apply the proposed change (adds median()).",
            &["workspace", "patch", "apply", ws, "--patch-file", &patch],
        ),
        Step::new(
            "It compiles.",
            &[
                "workspace",
                "exec",
                ws,
                "--",
                "python3",
                "-m",
                "py_compile",
                "calc/__init__.py",
            ],
        ),
        Step::failing(
            1,
            "Its own test fails: the first finding.",
            &[
                "workspace",
                "exec",
                ws,
                "--",
                "python3",
                "-m",
                "unittest",
                "-q",
            ],
        ),
        Step::new("Exactly what it changes.", &["workspace", "diff", ws]),
        Step::new(
            "What ran and failed: the review's evidence.",
            &["workspace", "summary", ws],
        ),
        Step::new("Throw it away.", &["workspace", "delete", ws]),
    ])
}
