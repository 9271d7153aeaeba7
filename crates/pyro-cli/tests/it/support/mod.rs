//! Test support: run the real `pyro` binary, make sure the environment the
//! tests boot is pulled, find the VM processes a `pyro` process owns, and
//! wait with deadlines instead of bare sleeps.

#![allow(dead_code)]

pub mod fixtures;
pub mod mcp;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The environment every VM test boots.
pub const ENV: &str = "debian:12";

pub fn pyro_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_pyro"))
}

/// A `pyro` command with the shared cache (the user's cache dir, so a
/// pulled environment is reused across runs).
pub fn pyro() -> Command {
    let mut command = Command::new(pyro_bin());
    command.stdin(Stdio::null());
    command
}

/// Pulls the test environment once per test binary (instant when present).
pub fn ensure_env() {
    static PULLED: OnceLock<()> = OnceLock::new();
    PULLED.get_or_init(|| {
        let output = pyro()
            .args(["env", "pull", ENV])
            .output()
            .expect("run pyro env pull");
        assert!(
            output.status.success(),
            "pyro env pull {ENV} failed:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    });
}

/// Starts `pyro run ENV -- <command...>` with piped output and QEMU's
/// scratch files (`TMPDIR`) in `scratch`, so a test can check none is left.
pub fn spawn_run(scratch: &Path, command: &[&str]) -> Child {
    ensure_env();
    pyro()
        .args(["run", ENV, "--"])
        .args(command)
        .env("TMPDIR", scratch)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pyro run")
}

/// Runs `pyro run ENV <extra...> -- <command...>` to completion.
pub fn run(extra: &[&str], command: &[&str]) -> Output {
    ensure_env();
    pyro()
        .arg("run")
        .arg(ENV)
        .args(extra)
        .arg("--")
        .args(command)
        .output()
        .expect("run pyro")
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Polls `check` every 20 ms until it returns `Some` or `timeout` passes.
pub fn wait_for<T>(timeout: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Pids whose parent is `parent`.
pub fn children_of(parent: u32) -> Vec<u32> {
    let mut children = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return children;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if parent_of(pid) == Some(parent) {
            children.push(pid);
        }
    }
    children
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the parenthesised command name: state ppid ...
    let after = &stat[stat.rfind(')')? + 2..];
    after.split_whitespace().nth(1)?.parse().ok()
}

/// Processes whose command line names `path` (supervisors name their
/// home; QEMU its disks), this test binary aside.
pub fn processes_naming(path: &Path) -> Vec<u32> {
    let path = path.to_string_lossy().to_string();
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<u32>().ok())
        .filter(|&pid| {
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            String::from_utf8_lossy(&cmdline).contains(&path) && pid != std::process::id()
        })
        .collect()
}

pub fn is_alive(pid: u32) -> bool {
    // A zombie is dead for our purposes.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rfind(')')
            .and_then(|i| stat[i + 2..].chars().next())
            .is_some_and(|state| state != 'Z'),
        Err(_) => false,
    }
}

pub fn process_name(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_string()
}

/// The QEMU process a running `pyro` owns, once it has started.
pub fn wait_for_vm(pyro: &Child) -> u32 {
    wait_for(Duration::from_secs(60), || {
        children_of(pyro.id())
            .into_iter()
            .find(|&pid| process_name(pid).starts_with("qemu-system"))
    })
    .expect("pyro started no QEMU process within 60 s")
}

/// Asserts `pid` is gone within a few seconds.
pub fn assert_gone(pid: u32, what: &str) {
    assert!(
        wait_for(Duration::from_secs(10), || (!is_alive(pid)).then_some(())).is_some(),
        "{what} (pid {pid}) is still running"
    );
}

/// A fresh temporary directory for QEMU's scratch files (`TMPDIR`), so a
/// test can check nothing was left there.
pub fn scratch_dir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temp dir")
}

pub fn dir_is_empty(path: &Path) -> bool {
    std::fs::read_dir(path)
        .map(|mut d| d.next().is_none())
        .unwrap_or(true)
}

/// An isolated `PYRO_HOME` for workspace tests (environments still come
/// from the shared cache). Dropping it kills every supervisor under it, so a
/// failing test leaves no VM behind.
pub struct TestHome {
    dir: tempfile::TempDir,
}

impl TestHome {
    pub fn new() -> Self {
        ensure_env();
        TestHome {
            dir: tempfile::tempdir().expect("temp home"),
        }
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `pyro` with this home.
    pub fn pyro(&self) -> Command {
        let mut command = pyro();
        command.env("PYRO_HOME", self.dir.path());
        command
    }

    /// Runs `pyro <args>` to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.pyro().args(args).output().expect("run pyro")
    }

    /// Runs `pyro <args>` with `input` on its stdin, to completion. The
    /// input is written on a thread, so a command that stops reading
    /// leaves no writer stuck.
    pub fn run_with_stdin(&self, args: &[&str], input: &[u8]) -> Output {
        let mut child = self
            .pyro()
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pyro");
        let mut stdin = child.stdin.take().expect("piped stdin");
        let input = input.to_vec();
        let writer = std::thread::spawn(move || {
            let _ = std::io::Write::write_all(&mut stdin, &input);
        });
        let output = child.wait_with_output().expect("wait for pyro");
        let _ = writer.join();
        output
    }

    /// Creates a workspace of `ENV` with `extra` arguments; returns its id.
    pub fn create(&self, extra: &[&str]) -> String {
        let output = self.run(&[&["workspace", "create", ENV, "--id-only"], extra].concat());
        assert!(
            output.status.success(),
            "create failed: {}",
            stderr(&output)
        );
        stdout(&output).trim().to_string()
    }

    /// `pyro workspace exec ID -- sh -c SCRIPT`.
    pub fn sh(&self, workspace: &str, script: &str) -> Output {
        self.run(&["workspace", "exec", workspace, "--", "sh", "-c", script])
    }

    /// The recorded supervisor pid of a workspace.
    pub fn supervisor_pid(&self, id: &str) -> Option<u32> {
        let record = std::fs::read_to_string(
            self.path()
                .join("workspaces")
                .join(id)
                .join("workspace.json"),
        )
        .ok()?;
        let json: serde_json::Value = serde_json::from_str(&record).ok()?;
        json["supervisor_pid"].as_u64().map(|pid| pid as u32)
    }

    /// QEMU processes whose parent is the workspace's supervisor.
    pub fn vm_pids(&self, id: &str) -> Vec<u32> {
        self.supervisor_pid(id)
            .map(|pid| {
                children_of(pid)
                    .into_iter()
                    .filter(|&child| process_name(child).starts_with("qemu-system"))
                    .collect()
            })
            .unwrap_or_default()
    }
}

impl Drop for TestHome {
    fn drop(&mut self) {
        let Ok(entries) = std::fs::read_dir(self.path().join("workspaces")) else {
            return;
        };
        for entry in entries.flatten() {
            let id = entry.file_name().to_string_lossy().to_string();
            if let Some(pid) = self.supervisor_pid(&id) {
                let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                if String::from_utf8_lossy(&cmdline).contains(&id) {
                    // SAFETY: kill(2) on a supervisor this test started.
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                }
            }
        }
    }
}

/// Runs git in `dir` with a fixed identity; panics when it fails.
pub fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(["-c", "user.email=t@example.invalid", "-c", "user.name=test"])
        .args(args)
        .current_dir(dir)
        .status()
        .expect("run git");
    assert!(status.success(), "git {args:?} failed");
}

/// Counts guest processes running exactly `sleep 300` and prints `gone`
/// when there are none (no pgrep needed, and the probe never matches itself).
pub const SLEEP_PROBE: &str =
    "n=0; for p in /proc/[0-9]*; do c=$(tr '\\0' ' ' < $p/cmdline 2>/dev/null); \
    [ \"$c\" = 'sleep 300 ' ] && n=$((n+1)); done; [ $n = 0 ] && echo gone || echo \"running $n\"";

/// A command's stdout as JSON; panics with its output when it is not.
pub fn json(output: &Output) -> serde_json::Value {
    serde_json::from_slice(&output.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}{}", stdout(output), stderr(output)))
}

/// Asserts `output` is a success (else panics with its output); returns it.
pub fn ok(output: Output, what: &str) -> Output {
    assert!(
        output.status.success(),
        "{what} failed ({:?}): {}{}",
        output.status.code(),
        stdout(&output),
        stderr(&output)
    );
    output
}

/// Asserts `output` failed and its stderr says `words`; returns the stderr.
pub fn refused(output: Output, words: &str) -> String {
    let err = stderr(&output);
    assert!(
        !output.status.success(),
        "it did not fail: {}",
        stdout(&output)
    );
    assert!(err.contains(words), "stderr lacks {words:?}: {err}");
    err
}
