//! `pyro demo [NAME]`: one workflow end to end on a built-in fixture. Each
//! step is a real `pyro` command, run as a child of this process and shown
//! as the line to type, with its real output; a step that does not end as
//! the workflow expects stops the demo. What the demo made (its
//! workspaces, its scratch directory) is removed on every path, Ctrl-C
//! included.

mod scripts;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

use pyro_util::shell_quote;

use super::{ERROR_EXIT, INTERRUPTED_EXIT};
pub use scripts::DEMOS;

/// One workflow's demo.
pub struct Demo {
    /// Its name, a mode's name.
    pub name: &'static str,
    /// What it shows, one line.
    pub about: &'static str,
    /// Writes the fixture under the scratch directory and returns the steps.
    steps: fn(&Scratch) -> anyhow::Result<Vec<Step>>,
}

/// The demo's scratch directory and the names it gives workspaces.
pub(super) struct Scratch {
    dir: tempfile::TempDir,
    tag: String,
}

impl Scratch {
    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    /// `relative` as an argument.
    fn arg(&self, relative: &str) -> String {
        self.path(relative).to_string_lossy().into_owned()
    }

    /// A workspace name of this run: `demo-<tag>-<what>`.
    fn workspace(&self, what: &str) -> String {
        format!("demo-{}-{what}", self.tag)
    }

    /// Writes `files` (relative path, content) under the scratch dir.
    fn write(&self, files: &[(&str, &str)]) -> anyhow::Result<()> {
        for (relative, content) in files {
            let path = self.path(relative);
            std::fs::create_dir_all(path.parent().expect("a file under the dir"))?;
            std::fs::write(&path, content)?;
        }
        Ok(())
    }
}

/// One step: what it shows, the `pyro` arguments, how it must end.
pub(super) struct Step {
    say: String,
    args: Vec<String>,
    fails: bool,
}

impl Step {
    fn new(say: &str, args: &[&str]) -> Step {
        Step {
            say: say.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            fails: false,
        }
    }

    /// A step whose command must fail (the failure is the point).
    fn failing(say: &str, args: &[&str]) -> Step {
        Step {
            fails: true,
            ..Step::new(say, args)
        }
    }
}

/// Set by SIGINT: the running step ends (the child got the signal too),
/// then the demo cleans up.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_interrupt(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// `pyro demo [NAME]`.
pub fn demo(name: Option<&str>) -> anyhow::Result<i32> {
    let Some(name) = name else {
        println!("The five workflows, each end to end on a built-in fixture:\n");
        for demo in DEMOS {
            println!("  {:<11} {}", demo.name, demo.about);
        }
        println!("\nRun one: pyro demo repro-fix   (see docs/modes.md)");
        return Ok(0);
    };
    let demo = DEMOS
        .iter()
        .find(|demo| demo.name == name)
        .expect("clap checked the name");
    let scratch = Scratch {
        dir: tempfile::Builder::new().prefix("pyro-demo-").tempdir()?,
        tag: format!("{:04x}", std::process::id() & 0xffff),
    };
    let steps = (demo.steps)(&scratch)?;
    // SAFETY: the handler only stores to an atomic.
    unsafe {
        libc::signal(
            libc::SIGINT,
            on_interrupt as *const () as libc::sighandler_t,
        )
    };
    println!("pyro demo {}: {}", demo.name, demo.about);
    let outcome = run_steps(&steps);
    cleanup(&scratch);
    match outcome {
        Ok(()) => {
            println!("\nDone: the demo's workspaces are deleted. The same steps over MCP: docs/modes.md.");
            Ok(0)
        }
        Err(_) if INTERRUPTED.load(Ordering::SeqCst) => {
            eprintln!("pyro demo: interrupted; its workspaces are deleted");
            Ok(INTERRUPTED_EXIT)
        }
        Err(message) => {
            eprintln!("pyro demo: {message}");
            Ok(ERROR_EXIT)
        }
    }
}

fn run_steps(steps: &[Step]) -> Result<(), String> {
    for (number, step) in steps.iter().enumerate() {
        println!("\n{}. {}", number + 1, step.say);
        let shown: Vec<String> = step.args.iter().map(|a| shell_quote(a)).collect();
        println!("$ pyro {}", shown.join(" "));
        let status = pyro(&step.args)
            .status()
            .map_err(|e| format!("could not run pyro: {e}"))?;
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Err("interrupted".into());
        }
        if status.success() == step.fails {
            let wanted = if step.fails { "to fail" } else { "to succeed" };
            return Err(format!(
                "step {} stopped the demo: `pyro {}` was expected {wanted}, and exited {}",
                number + 1,
                shown.join(" "),
                status
                    .code()
                    .map_or("on a signal".into(), |c| c.to_string())
            ));
        }
    }
    Ok(())
}

/// This same `pyro`, with the caller's environment (`PYRO_HOME` included).
fn pyro(args: &[String]) -> Command {
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("pyro"));
    let mut command = Command::new(exe);
    command.args(args);
    command
}

/// Deletes every workspace this run named.
fn cleanup(scratch: &Scratch) {
    let prefix = format!("demo-{}-", scratch.tag);
    let Ok(listed) = pyro(&["workspace".into(), "list".into(), "--json".into()]).output() else {
        return;
    };
    let records: Vec<serde_json::Value> =
        serde_json::from_slice(&listed.stdout).unwrap_or_default();
    for record in records {
        let Some(name) = record["name"].as_str().filter(|n| n.starts_with(&prefix)) else {
            continue;
        };
        let _ = pyro(&["workspace".into(), "delete".into(), name.into()])
            .stdout(std::process::Stdio::null())
            .status();
    }
}

/// Runs host `git` in `dir` for a fixture repository, with an identity
/// of its own.
fn git(dir: &Path, args: &[&str]) -> anyhow::Result<()> {
    let status = Command::new("git")
        .args([
            "-c",
            "user.name=pyro demo",
            "-c",
            "user.email=demo@pyro.invalid",
        ])
        .args([
            "-c",
            "init.defaultBranch=main",
            "-c",
            "commit.gpgsign=false",
        ])
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .status()?;
    anyhow::ensure!(
        status.success(),
        "git {} failed in the fixture",
        args.join(" ")
    );
    Ok(())
}
