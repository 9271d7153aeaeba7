//! One MCP prompt per workflow (`prompts/list`, `prompts/get`): a short
//! playbook naming the tools to call in order, written for the tools this
//! server's profile offers. Hosts show prompts as slash commands
//! (`/pyro:repro-fix` in Claude Code).

use rmcp::model::{GetPromptResult, JsonObject, Prompt, PromptArgument, PromptMessage, Role};
use rmcp::ErrorData;

use crate::Profile;

/// A prompt's argument: name, what it is, whether it must be given.
struct Arg {
    name: &'static str,
    about: &'static str,
    required: bool,
}

/// The workflow prompts, in the order they are listed (the modes' names).
const PROMPTS: [(&str, &str, &[Arg]); 5] = [
    (
        "cold-start",
        "Set up a repository nobody has set up: find how it builds and tests, install what it \
         needs, run the tests, report.",
        &[Arg {
            name: "repo",
            about: "A Git URL, or a directory inside the project; omit for the server's project.",
            required: false,
        }],
    ),
    (
        "repro-fix",
        "Reproduce a failure, checkpoint, try fixes with a reset between attempts, and hand back \
         the patch.",
        &[
            Arg {
                name: "failing_test",
                about: "The failing test or command, e.g. `pytest tests/test_api.py::test_login`.",
                required: true,
            },
            Arg {
                name: "repo",
                about: "A Git URL, or a directory inside the project; omit for the server's \
                        project.",
                required: false,
            },
        ],
    ),
    (
        "parallel",
        "Work on several tasks or branches at once, one isolated workspace each.",
        &[
            Arg {
                name: "tasks",
                about: "The tasks or branches, one per line or comma-separated.",
                required: true,
            },
            Arg {
                name: "repo",
                about: "A Git URL whose branches the tasks name; omit for the server's project.",
                required: false,
            },
        ],
    ),
    (
        "untrusted",
        "Run code nobody trusts with no network, no secrets and small resources, and see what \
         it did; nothing leaves unless exported.",
        &[Arg {
            name: "code",
            about: "What to inspect: a path inside the project, a Git URL, or the command to run.",
            required: true,
        }],
    ),
    (
        "review",
        "Apply a proposed change, run the checks, and write a review from the diff and the \
         summary.",
        &[
            Arg {
                name: "change",
                about: "The change: a unified diff, a patch file inside the project, or a branch \
                        of the repository.",
                required: true,
            },
            Arg {
                name: "checks",
                about: "The commands to run; omit to use the project's own tests and linters.",
                required: false,
            },
        ],
    ),
];

/// The prompts a server of `profile` lists: none for `vm-run`, whose one
/// tool holds no workspace.
pub(crate) fn list(profile: Profile) -> Vec<Prompt> {
    if profile == Profile::VmRun {
        return Vec::new();
    }
    PROMPTS
        .iter()
        .map(|(name, about, args)| {
            let arguments = args
                .iter()
                .map(|arg| {
                    PromptArgument::new(arg.name)
                        .with_description(arg.about)
                        .with_required(arg.required)
                })
                .collect();
            Prompt::new(*name, Some(*about), Some(arguments))
        })
        .collect()
}

/// The playbook `name` with `arguments`, for a server of `profile` whose
/// default seed (its project) is `project`.
pub(crate) fn get(
    profile: Profile,
    project: bool,
    name: &str,
    arguments: Option<&JsonObject>,
) -> Result<GetPromptResult, ErrorData> {
    let names = PROMPTS.map(|(name, _, _)| name).join(", ");
    let found = PROMPTS.iter().find(|(known, _, _)| *known == name);
    let (Some((_, about, args)), false) = (found, profile == Profile::VmRun) else {
        let offered = match profile {
            Profile::VmRun => "none: this server runs the vm-run profile".to_string(),
            _ => names,
        };
        return Err(ErrorData::invalid_params(
            format!("no prompt '{name}'; the prompts are {offered}"),
            None,
        ));
    };
    let mut given = std::collections::BTreeMap::new();
    for arg in args.iter() {
        let value = arguments
            .and_then(|map| map.get(arg.name))
            .and_then(|value| value.as_str())
            .map(str::trim)
            .filter(|value| !value.is_empty());
        match value {
            Some(value) => {
                given.insert(arg.name, value.to_string());
            }
            None if arg.required => {
                return Err(ErrorData::invalid_params(
                    format!(
                        "prompt '{name}' needs the argument '{}': {}",
                        arg.name, arg.about
                    ),
                    None,
                ))
            }
            None => {}
        }
    }
    let seed = seed_words(given.get("repo").map(String::as_str), project);
    let full = profile == Profile::WorkspaceFull;
    let text = match name {
        "cold-start" => cold_start(&seed, full),
        "repro-fix" => repro_fix(&given["failing_test"], &seed, full),
        "parallel" => parallel(&given["tasks"], &seed, full),
        "untrusted" => untrusted(&given["code"], full),
        _ => review(&given["change"], given.get("checks"), &seed),
    };
    Ok(
        GetPromptResult::new(vec![PromptMessage::new_text(Role::User, text)])
            .with_description(*about),
    )
}

/// How `workspace_create` gets the repository, in the words of its arguments.
fn seed_words(repo: Option<&str>, project: bool) -> String {
    match repo {
        Some(repo) if repo.contains("://") || repo.starts_with("git@") => {
            format!("repo_url {}", quoted(repo))
        }
        Some(path) => format!("seed_path {}", quoted(path)),
        None if project => "no seed argument (it seeds the server's project)".into(),
        None => "seed_path set to the repository's directory (ask the user for it if you do \
                 not know it)"
            .into(),
    }
}

/// `text` as a JSON string: what the model passes as the argument.
fn quoted(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

fn cold_start(seed: &str, full: bool) -> String {
    let network = match full {
        true => {
            "The mode opens egress to the package indexes only (PyPI, npm, crates.io, Go, \
                 RubyGems, Maven, Debian/Ubuntu/Alpine). A denied download names its host: ask \
                 the user before opening it with workspace_update."
        }
        false => {
            "This server gives workspaces no network, so installs from the internet fail; \
                  say so in the report and ask the user for the workspace-full profile."
        }
    };
    format!(
        "Set up this repository from a cold start in a pyro workspace and report how it builds \
         and tests.\n\n\
         1. workspace_create with mode \"cold-start\" and {seed}. Keep the returned id. {network}\n\
         2. Find how it builds and tests: workspace_file_list \".\", then workspace_file_read \
         the README, CONTRIBUTING and build files (pyproject.toml, setup.cfg, tox.ini, \
         package.json, Cargo.toml, go.mod, Makefile, .github/workflows/*).\n\
         3. Install what it needs with workspace_exec, one step per call (e.g. `python3 -m venv \
         .venv && .venv/bin/pip install -e '.[test]'`, `npm ci`, `cargo fetch`). Read each \
         failure before the next attempt.\n\
         4. Run the whole test suite with workspace_exec; note each command, its exit code and \
         the failures.\n\
         5. workspace_summary, then report: the commands that build and test it, what you \
         installed, what passed and failed, and what needs the user.\n\
         6. workspace_delete once the user has what they need."
    )
}

fn repro_fix(failing: &str, seed: &str, full: bool) -> String {
    let (checkpoint, back) = match full {
        true => (
            "workspace_snapshot_create named \"repro\": a checkpoint with the failure reproduced \
             (processes included).",
            "workspace_reset with snapshot \"repro\"",
        ),
        false => (
            "The baseline (the state at create) is your checkpoint.",
            "workspace_reset (back to the baseline)",
        ),
    };
    format!(
        "Reproduce and fix this failure in a pyro workspace: {failing}\n\n\
         1. workspace_create with mode \"repro-fix\" and {seed}. Keep the returned id.\n\
         2. Reproduce it: workspace_exec the failing test exactly as given. Confirm it fails \
         and keep the output. If it passes, stop and say so.\n\
         3. {checkpoint}\n\
         4. Read the code involved with workspace_file_read, then make one fix with \
         workspace_patch_apply (a unified diff) or workspace_file_write.\n\
         5. workspace_exec the failing test, then the rest of the suite.\n\
         6. If the attempt fails or breaks something else, {back}, and try a different fix: \
         never stack a fix on a failed attempt.\n\
         7. workspace_diff: it should hold exactly the fix. Report the diff and the test \
         before and after; workspace_export files only if the user asks for them."
    )
}

fn parallel(tasks: &str, seed: &str, full: bool) -> String {
    let fork = match full {
        true => {
            "\nWhen every task needs the same slow setup, set up one workspace, then \
                 workspace_fork it once per task (processes included)."
        }
        false => "",
    };
    format!(
        "Work on these tasks in parallel, one isolated pyro workspace each:\n{tasks}\n\n\
         1. For each task, workspace_create with mode \"parallel\", {seed} (for a branch, \
         repo_url with repo_ref set to it), a name for the task and labels {{\"task\": \"<name>\"}}.\n\
         2. Work on each in its own workspace only (workspace_exec, workspace_file_read, \
         workspace_patch_apply). Workspaces share nothing: never copy results between them by \
         hand.\n\
         3. workspace_list shows them all (labels filters by task). One left idle for 15 minutes \
         is suspended; the next call on it resumes it, processes included.\n\
         4. For each task: workspace_diff and workspace_summary, then report per task.\n\
         5. workspace_delete each one when its task is done.{fork}"
    )
}

fn untrusted(code: &str, full: bool) -> String {
    let watch = match full {
        true => ", workspace_logs (the VM's console)",
        false => "",
    };
    format!(
        "Inspect this untrusted code in a pyro workspace and report what it does: {code}\n\n\
         Treat it as hostile. Do not give it network, secrets or ports, and do not export \
         anything it wrote unless the user asks.\n\n\
         1. workspace_create with mode \"untrusted\" (no network, no secrets, 1 vCPU, 512 MiB) \
         and seed_path or repo_url naming what is to be inspected: in this mode the server's \
         project is copied in only when named. For a command alone, leave the seed out.\n\
         2. Read before running: workspace_file_list and workspace_file_read. Note what \
         reaches for the network, credentials, other users' files or the disk.\n\
         3. Run it with workspace_exec and a timeout_seconds; keep each exit code and output. \
         A call cut off by its timeout leaves the workspace usable.\n\
         4. See what it did: workspace_diff (files it wrote or changed), workspace_summary \
         (commands, services){watch}.\n\
         5. Report: what it tried, what it changed, and your verdict.\n\
         6. workspace_delete: nothing of it outlives the workspace."
    )
}

fn review(change: &str, checks: Option<&String>, seed: &str) -> String {
    let checks = checks.map_or(
        "the project's own tests and linters (find them in its build files)".to_string(),
        |checks| format!("these checks: {checks}"),
    );
    format!(
        "Review this proposed change in a pyro workspace: {change}\n\n\
         1. workspace_create with mode \"review\" and {seed}, at the change's base.\n\
         2. Apply the change: a unified diff with workspace_patch_apply; a patch file in \
         the seeded project with `git apply FILE` in workspace_exec; a branch with `git \
         checkout BRANCH` in workspace_exec. A change that does not apply is the first \
         finding.\n\
         3. Run {checks} with workspace_exec, one command per call.\n\
         4. workspace_diff for exactly what changed, and workspace_summary for what ran and \
         what failed.\n\
         5. Write the review from those: correctness, tests, risks, with the failing commands \
         quoted.\n\
         6. workspace_delete when done."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(result: GetPromptResult) -> String {
        serde_json::to_value(&result.messages[0]).unwrap()["content"]["text"]
            .as_str()
            .unwrap()
            .to_string()
    }

    fn args(pairs: &[(&str, &str)]) -> JsonObject {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect()
    }

    #[test]
    fn five_prompts_with_described_arguments_except_in_vm_run() {
        let listed = list(Profile::WorkspaceCore);
        let names: Vec<&str> = listed.iter().map(|p| p.name.as_str()).collect();
        assert_eq!(
            names,
            ["cold-start", "repro-fix", "parallel", "untrusted", "review"]
        );
        for prompt in &listed {
            for arg in prompt.arguments.as_ref().unwrap() {
                assert!(arg.description.as_ref().is_some_and(|d| d.len() > 10));
            }
        }
        assert!(list(Profile::VmRun).is_empty());
        for mode in pyro_core::Mode::ALL {
            assert!(names.contains(&mode.name()), "{mode}");
        }
    }

    #[test]
    fn playbooks_name_the_tools_of_the_profile() {
        let core = get(
            Profile::WorkspaceCore,
            true,
            "repro-fix",
            Some(&args(&[("failing_test", "pytest -k login")])),
        )
        .unwrap();
        let core = text(core);
        assert!(core.contains("pytest -k login"));
        assert!(core.contains("mode \"repro-fix\""));
        assert!(core.contains("it seeds the server's project"));
        assert!(!core.contains("workspace_snapshot_create"), "{core}");
        let full = get(
            Profile::WorkspaceFull,
            false,
            "repro-fix",
            Some(&args(&[("failing_test", "t"), ("repo", "https://x/y.git")])),
        )
        .unwrap();
        let full = text(full);
        assert!(full.contains("workspace_snapshot_create"));
        assert!(full.contains("repo_url \"https://x/y.git\""));
        for (name, arg) in [
            ("cold-start", "repo"),
            ("parallel", "tasks"),
            ("untrusted", "code"),
            ("review", "change"),
        ] {
            let got = get(
                Profile::WorkspaceCore,
                true,
                name,
                Some(&args(&[(arg, "x")])),
            );
            assert!(text(got.unwrap()).contains(&format!("mode \"{name}\"")));
        }
    }

    #[test]
    fn missing_arguments_and_unknown_prompts_are_errors_that_say_what_to_give() {
        let missing = get(Profile::WorkspaceCore, true, "repro-fix", None).unwrap_err();
        assert!(
            missing
                .message
                .contains("needs the argument 'failing_test'"),
            "{}",
            missing.message
        );
        let blank = get(
            Profile::WorkspaceCore,
            true,
            "review",
            Some(&args(&[("change", "  ")])),
        );
        assert!(blank.is_err());
        let unknown = get(Profile::WorkspaceCore, true, "yolo", None).unwrap_err();
        assert!(unknown
            .message
            .contains("the prompts are cold-start, repro-fix"));
        let vm_run = get(Profile::VmRun, true, "cold-start", None).unwrap_err();
        assert!(vm_run.message.contains("vm-run profile"));
    }
}
