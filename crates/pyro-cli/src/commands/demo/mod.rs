//! `pyro demo [NAME]`: one workflow end to end on a built-in fixture. Each
//! step is a real `pyro` command, run as a child of this process and shown
//! as the line to type, with its real output; a step that does not end as
//! the workflow expects stops the demo. What the demo made (its
//! workspaces, its scratch directory) is removed when it ends, fails, or
//! is interrupted (SIGINT, SIGTERM, SIGHUP: passed on to the running step,
//! which ends, and no later step starts).

mod scripts;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};

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
    /// The exit code it must end with (0 unless the failure is the point).
    exits: i32,
    /// The workspace it creates, deleted at the end.
    creates: Option<String>,
}

impl Step {
    fn new(say: &str, args: &[&str]) -> Step {
        Step {
            say: say.to_string(),
            args: args.iter().map(|a| a.to_string()).collect(),
            exits: 0,
            creates: None,
        }
    }

    /// A step whose command must fail with `code` (the failure is the
    /// point: 1 for a failing test, 125 for what pyro refuses).
    fn failing(code: i32, say: &str, args: &[&str]) -> Step {
        Step {
            exits: code,
            ..Step::new(say, args)
        }
    }
}

/// Set by SIGINT, SIGTERM or SIGHUP: the running step is interrupted,
/// no further step starts, and the demo cleans up.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);
/// The running step's pid, which the handler passes the interrupt on to.
static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
    let child = CHILD.load(Ordering::SeqCst);
    if child > 0 {
        // SAFETY: kill(2) is async-signal-safe; the pid is our child's,
        // not yet reaped (it is cleared before the wait returns it).
        unsafe { libc::kill(child, libc::SIGINT) };
    }
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
        tag: tag(),
    };
    let steps = (demo.steps)(&scratch)?;
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: the handler only touches atomics and calls kill(2).
        unsafe { libc::signal(signal, on_signal as *const () as libc::sighandler_t) };
    }
    println!("pyro demo {}: {}", demo.name, demo.about);
    let mut created = Vec::new();
    let outcome = run_steps(&steps, &mut created);
    let left = cleanup(&created);
    let left = match left.is_empty() {
        true => String::new(),
        false => format!(
            "; delete what it left with: pyro workspace delete {}",
            left.join(" ")
        ),
    };
    match outcome {
        Ok(()) if left.is_empty() => {
            println!("\nDone: the demo's workspaces are deleted. The same steps over MCP: docs/modes.md.");
            Ok(0)
        }
        Ok(()) => {
            eprintln!("pyro demo: done{left}");
            Ok(ERROR_EXIT)
        }
        Err(_) if INTERRUPTED.load(Ordering::SeqCst) => {
            match left.is_empty() {
                true => eprintln!("pyro demo: interrupted; its workspaces are deleted"),
                false => eprintln!("pyro demo: interrupted{left}"),
            }
            Ok(INTERRUPTED_EXIT)
        }
        Err(message) => {
            eprintln!("pyro demo: {message}{left}");
            Ok(ERROR_EXIT)
        }
    }
}

/// Six hex digits of this run, for its workspaces' names.
fn tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!(
        "{:06x}",
        (nanos ^ std::process::id().rotate_left(16)) & 0xff_ffff
    )
}

/// Runs the steps in order, noting in `created` each workspace a step
/// made.
fn run_steps(steps: &[Step], created: &mut Vec<String>) -> Result<(), String> {
    for (number, step) in steps.iter().enumerate() {
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Err("interrupted".into());
        }
        println!("\n{}. {}", number + 1, step.say);
        let shown: Vec<String> = step.args.iter().map(|a| shell_quote(a)).collect();
        println!("$ pyro {}", shown.join(" "));
        let mut child = pyro(&step.args)
            .spawn()
            .map_err(|e| format!("could not run pyro: {e}"))?;
        CHILD.store(child.id() as i32, Ordering::SeqCst);
        let status = child.wait();
        CHILD.store(0, Ordering::SeqCst);
        let status = status.map_err(|e| format!("waiting for pyro: {e}"))?;
        let code = status.code();
        if let (Some(name), Some(0)) = (&step.creates, code) {
            created.push(name.clone());
        }
        // Deleted by the demo itself: nothing left to clean up.
        let args: Vec<&str> = step.args.iter().map(String::as_str).collect();
        if let (["workspace", "delete", name], Some(0)) = (&args[..], code) {
            created.retain(|made| made != name);
        }
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Err("interrupted".into());
        }
        if code != Some(step.exits) {
            return Err(format!(
                "step {} stopped the demo: `pyro {}` was expected to exit {}, and exited {}",
                number + 1,
                shown.join(" "),
                step.exits,
                code.map_or("on a signal".into(), |c| c.to_string())
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

/// Deletes the workspaces the demo made, each in a process group of its
/// own (a second Ctrl-C does not cut it short); returns those left.
fn cleanup(created: &[String]) -> Vec<String> {
    created
        .iter()
        .filter(|name| {
            let deleted = pyro(&["workspace".into(), "delete".into(), (*name).clone()])
                .stdout(std::process::Stdio::null())
                .process_group(0)
                .status();
            !deleted.is_ok_and(|status| status.success())
        })
        .cloned()
        .collect()
}

/// Runs host `git` in `dir` for a fixture repository, with an identity
/// of its own and none of the user's hooks.
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
            "commit.gpgsign=false",
            "-c",
            "core.hooksPath=/dev/null",
        ])
        .args(args)
        .current_dir(dir)
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| anyhow::anyhow!("running git for the demo's repository: {e}"))?;
    anyhow::ensure!(
        status.success(),
        "git {} failed in the demo's repository",
        args.join(" ")
    );
    Ok(())
}
