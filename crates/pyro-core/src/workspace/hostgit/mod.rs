//! Git on the host, hardened: cloning a seed repository and building the
//! diff baseline run the host's `git` on values a model may have chosen
//! (a URL, a ref, a directory).
//!
//! Every run here:
//! - reads no system or user configuration (`GIT_CONFIG_NOSYSTEM`,
//!   `GIT_CONFIG_GLOBAL=/dev/null`), and inherits no `GIT_*` variable of
//!   the caller (no `GIT_DIR`, `GIT_CONFIG_PARAMETERS` or `GIT_ASKPASS`
//!   redirecting it);
//! - speaks only `https`, `ssh` and `git`, plus `file` when the caller
//!   allowed a local repository (`GIT_ALLOW_PROTOCOL`, which overrides any
//!   `protocol.*` configuration), so `ext::` helpers and submodule tricks
//!   cannot run commands;
//! - never prompts (`GIT_TERMINAL_PROMPT=0`, ssh in batch mode), never runs
//!   hooks or fsmonitor, and runs under a deadline in a process group of
//!   its own, which is killed whole when the deadline passes.
//!
//! Values reach git only after [`RepoUrl::parse`] and [`check_ref`], and
//! behind `--` or `--end-of-options`, so none can be read as an option
//! (the `--upload-pack=` and `--pathspec-from-file=` injections).
//!
//! A clone a model asked for ([`Trust::Confined`]) also gets none of the
//! user's credentials (no ssh agent or keys, no `~/.netrc`), may not reach
//! the host itself, and reads a local repository only as a real git
//! directory inside the allowed roots ([`confined`]).

mod confined;
mod url;

pub use url::{check_ref, RepoUrl};

use std::io::Read as _;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long a clone may take before it is killed; `PYRO_GIT_TIMEOUT`
/// (seconds) overrides it.
const CLONE_TIMEOUT: Duration = Duration::from_secs(600);
/// Bytes of git's stderr kept for a message.
const STDERR_KEPT: usize = 16 * 1024;

/// Why a repository could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[allow(missing_docs)] // Each variant says what it is in its message.
pub enum GitError {
    #[error("repository URL '{url}' is not usable: {reason}")]
    BadUrl { url: String, reason: &'static str },
    #[error("ref '{reference}' is not usable: {reason}")]
    BadRef {
        reference: String,
        reason: &'static str,
    },
    #[error("'{reference}' is not a branch, tag or commit of {url}")]
    UnknownRef { url: String, reference: String },
    #[error("git clone of {url} failed: {message}")]
    Failed { url: String, message: String },
    #[error("git clone of {url} took longer than {seconds} s and was stopped; set PYRO_GIT_TIMEOUT to allow longer")]
    TimedOut { url: String, seconds: u64 },
    #[error("{} is not a git repository; copy a plain directory with a seed path instead", .path.display())]
    NotARepository { path: PathBuf },
    #[error("{} cannot be cloned here: {reason}", .path.display())]
    UnsafeRepository { path: PathBuf, reason: &'static str },
    #[error("repository host '{host}' is this machine itself (loopback, link-local or one of its own addresses); clone from elsewhere")]
    HostItself { host: String },
}

/// Whose clone this is, which decides what git may use of the host.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Trust<'a> {
    /// The user's own (at the CLI, or the repository the operator gave the
    /// MCP server): their ssh agent and keys, `~/.netrc`, any directory.
    User,
    /// A model's, confined to these roots: see the module doc.
    Confined(&'a [PathBuf]),
}

impl super::Seed {
    /// Refuses a repository URL or ref that [`RepoUrl::parse`] or
    /// [`check_ref`] would refuse at create time, so a server started with
    /// a bad `--repo-url` says so at start.
    pub fn check(&self) -> Result<(), GitError> {
        if let super::Seed::Repo { url, reference } = self {
            RepoUrl::parse(url)?;
            if let Some(reference) = reference {
                check_ref(reference)?;
            }
        }
        Ok(())
    }
}

/// A `git` command with the hardening of the module doc. `allow_file`
/// lets it read local repositories; `credentials_home`, when given, is an
/// empty directory that stands in for `HOME`, and ssh offers no key.
pub(crate) fn command(allow_file: bool, credentials_home: Option<&Path>) -> Command {
    let mut command = Command::new("git");
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("GIT_") {
            command.env_remove(key);
        }
    }
    let mut ssh = String::from("ssh -o BatchMode=yes");
    if let Some(home) = credentials_home {
        // ~/.netrc and anything else under HOME; ssh finds keys and its
        // config through the password database, so it is told directly.
        command
            .env("HOME", home)
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("SSH_AUTH_SOCK")
            .env_remove("SSH_ASKPASS");
        ssh.push_str(
            " -F /dev/null -o IdentityAgent=none -o PubkeyAuthentication=no \
             -o GSSAPIAuthentication=no -o HostbasedAuthentication=no",
        );
    }
    command
        .args([
            "-c",
            "core.hooksPath=/dev/null",
            "-c",
            "core.fsmonitor=false",
            // GIT_CONFIG_GLOBAL does not cover these XDG defaults.
            "-c",
            "core.excludesFile=/dev/null",
            "-c",
            "core.attributesFile=/dev/null",
        ])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env(
            "GIT_ALLOW_PROTOCOL",
            if allow_file {
                "https:ssh:git:file"
            } else {
                "https:ssh:git"
            },
        )
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_SSH_COMMAND", ssh)
        .env("LC_ALL", "C")
        .stdin(Stdio::null());
    command
}

/// The argv (after `git` and the hardening options) of each step of a
/// clone, apart so tests can check what reaches git.
pub(crate) mod argv {
    use std::ffi::OsString;

    /// `source` is a URL or a local git directory.
    pub fn clone(source: &std::ffi::OsStr) -> Vec<OsString> {
        let source = source.to_os_string();
        let mut argv: Vec<OsString> = ["clone", "--quiet", "--no-checkout", "--template=", "--"]
            .map(OsString::from)
            .to_vec();
        argv.extend([source, ".".into()]);
        argv
    }

    /// Resolves `candidate` (the ref, or its remote-tracking branch) to a
    /// commit.
    pub fn resolve(candidate: &str) -> Vec<OsString> {
        ["rev-parse", "--verify", "--quiet", "--end-of-options"]
            .map(OsString::from)
            .into_iter()
            .chain([format!("{candidate}^{{commit}}").into()])
            .collect()
    }

    /// Whether `reference` is a local branch (checked out attached).
    pub fn is_branch(reference: &str) -> Vec<OsString> {
        vec![
            "show-ref".into(),
            "--verify".into(),
            "--quiet".into(),
            format!("refs/heads/{reference}").into(),
        ]
    }

    pub fn checkout_branch(reference: &str) -> Vec<OsString> {
        vec![
            "checkout".into(),
            "--quiet".into(),
            reference.into(),
            "--".into(),
        ]
    }

    /// A remote-tracking branch, as the local branch of the same name.
    pub fn checkout_tracking(reference: &str) -> Vec<OsString> {
        vec![
            "checkout".into(),
            "--quiet".into(),
            "--track".into(),
            "-b".into(),
            reference.into(),
            format!("refs/remotes/origin/{reference}").into(),
            "--".into(),
        ]
    }

    pub fn checkout_commit(commit: &str) -> Vec<OsString> {
        vec![
            "checkout".into(),
            "--quiet".into(),
            "--detach".into(),
            commit.into(),
            "--".into(),
        ]
    }
}

/// What one git run printed.
pub(crate) struct Ran {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `command` (from [`command`]) in its own process group with
/// `deadline` left; kills the group when it passes (`Ok(None)`).
pub(crate) fn run(mut command: Command, deadline: Instant) -> std::io::Result<Option<Ran>> {
    command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = command.spawn()?;
    let mut stdout = child.stdout.take().expect("piped stdout");
    let mut stderr = child.stderr.take().expect("piped stderr");
    let out_reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        let _ = stdout.read_to_end(&mut text);
        text
    });
    let err_reader = std::thread::spawn(move || {
        let mut kept = Vec::new();
        let mut buf = [0u8; 8192];
        while let Ok(n @ 1..) = stderr.read(&mut buf) {
            kept.extend_from_slice(&buf[..n]);
            if kept.len() > STDERR_KEPT {
                kept.drain(..kept.len() - STDERR_KEPT);
            }
        }
        kept
    });
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            // SAFETY: kill has no memory preconditions; the negative pid
            // names the process group this child leads.
            unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = out_reader.join().unwrap_or_default();
    let stderr = err_reader.join().unwrap_or_default();
    Ok(status.map(|status| Ran {
        success: status.success(),
        stdout: String::from_utf8_lossy(&stdout).trim().to_string(),
        stderr: String::from_utf8_lossy(&stderr).trim().to_string(),
    }))
}

/// The clone deadline from now.
fn clone_timeout() -> Duration {
    std::env::var("PYRO_GIT_TIMEOUT")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .filter(|&s| s > 0)
        .map_or(CLONE_TIMEOUT, Duration::from_secs)
}

/// [`clone`] into a new temporary directory on the host, which the
/// caller keeps as long as it needs the checkout.
pub(crate) fn clone_to_temp(
    given: &str,
    url: &RepoUrl,
    reference: Option<&str>,
    trust: Trust<'_>,
) -> Result<tempfile::TempDir, GitError> {
    let dir = tempfile::tempdir().map_err(|e| GitError::Failed {
        url: given.to_string(),
        message: format!("cannot make a scratch directory: {e}"),
    })?;
    clone(given, url, reference, trust, dir.path())?;
    Ok(dir)
}

/// Clones `url` into `dir` (empty) and checks out `reference` (a branch,
/// tag or commit; default the remote's HEAD). The checkout keeps `.git`.
/// A confined clone must have had its local path checked against the
/// roots already; here it must also be a safe git directory.
pub(crate) fn clone(
    given: &str,
    url: &RepoUrl,
    reference: Option<&str>,
    trust: Trust<'_>,
    dir: &Path,
) -> Result<(), GitError> {
    if let Some(reference) = reference {
        check_ref(reference)?;
    }
    let (source, shown): (std::ffi::OsString, String) = match (url, trust) {
        (RepoUrl::Remote { url, host }, trust) => {
            if let Trust::Confined(_) = trust {
                confined::check_remote_host(host)?;
            }
            (url.into(), super::events::redact_urls(url))
        }
        (RepoUrl::Local(path), Trust::User) => {
            let local = confined::resolve_local(path, given)?;
            (local.into(), given.to_string())
        }
        (RepoUrl::Local(path), Trust::Confined(roots)) => {
            let local = confined::resolve_local(path, given)?;
            let git_dir = confined::git_dir(&local, roots)?;
            (git_dir.into(), given.to_string())
        }
    };
    // Stands in for HOME in a confined clone: no ~/.netrc, no keys.
    let empty_home = match trust {
        Trust::Confined(_) => Some(tempfile::tempdir().map_err(|e| GitError::Failed {
            url: shown.clone(),
            message: format!("cannot make a scratch directory: {e}"),
        })?),
        Trust::User => None,
    };
    let timeout = clone_timeout();
    let deadline = Instant::now() + timeout;
    let allow_file = matches!(url, RepoUrl::Local(_));
    let git = |args: Vec<std::ffi::OsString>| -> Result<Ran, GitError> {
        let mut command = command(allow_file, empty_home.as_ref().map(|h| h.path()));
        command.args(args).current_dir(dir);
        match run(command, deadline) {
            Ok(Some(ran)) => Ok(ran),
            Ok(None) => Err(GitError::TimedOut {
                url: shown.clone(),
                seconds: timeout.as_secs(),
            }),
            Err(e) => Err(GitError::Failed {
                url: shown.clone(),
                message: format!("cannot run git ({e}); install it with: sudo apt-get install git"),
            }),
        }
    };
    let must = |ran: Ran| -> Result<Ran, GitError> {
        if ran.success {
            Ok(ran)
        } else {
            Err(GitError::Failed {
                url: shown.clone(),
                message: ran.stderr,
            })
        }
    };
    must(git(argv::clone(&source))?)?;
    let Some(reference) = reference else {
        must(git(vec![
            "checkout".into(),
            "--quiet".into(),
            "HEAD".into(),
        ])?)?;
        return Ok(());
    };
    let resolved = git(argv::resolve(reference))?;
    if resolved.success {
        if git(argv::is_branch(reference))?.success {
            must(git(argv::checkout_branch(reference))?)?;
        } else {
            must(git(argv::checkout_commit(&resolved.stdout))?)?;
        }
        return Ok(());
    }
    // A branch of the remote other than its HEAD: as `git checkout NAME`
    // would, make the local branch that tracks it.
    let remote = format!("refs/remotes/origin/{reference}");
    if git(argv::resolve(&remote))?.success {
        must(git(argv::checkout_tracking(reference))?)?;
        return Ok(());
    }
    Err(GitError::UnknownRef {
        url: shown,
        reference: reference.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(argv: Vec<std::ffi::OsString>) -> Vec<String> {
        argv.into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn values_reach_git_after_the_end_of_options() {
        // Even a value that slipped past the checks is an operand.
        let clone = strings(argv::clone(std::ffi::OsStr::new("-x")));
        let dashes = clone.iter().position(|a| a == "--").unwrap();
        assert_eq!(clone[dashes + 1], "-x");
        let resolve = strings(argv::resolve("-x"));
        assert_eq!(resolve[resolve.len() - 2], "--end-of-options");
        assert_eq!(resolve.last().unwrap(), "-x^{commit}");
        assert_eq!(
            strings(argv::is_branch("-x")).last().unwrap(),
            "refs/heads/-x"
        );
        for checkout in [
            argv::checkout_branch("-x"),
            argv::checkout_commit("-x"),
            argv::checkout_tracking("-x"),
        ] {
            let checkout = strings(checkout);
            assert_eq!(checkout.last().unwrap(), "--", "{checkout:?}");
        }
    }

    #[test]
    fn the_command_reads_no_caller_git_settings() {
        let command = command(false, None);
        let envs: Vec<_> = command.get_envs().collect();
        let value = |name: &str| {
            envs.iter()
                .find(|(k, _)| *k == name)
                .and_then(|(_, v)| *v)
                .map(|v| v.to_string_lossy().into_owned())
        };
        assert_eq!(value("GIT_CONFIG_NOSYSTEM").as_deref(), Some("1"));
        assert_eq!(value("GIT_CONFIG_GLOBAL").as_deref(), Some("/dev/null"));
        assert_eq!(
            value("GIT_ALLOW_PROTOCOL").as_deref(),
            Some("https:ssh:git")
        );
        assert_eq!(value("GIT_TERMINAL_PROMPT").as_deref(), Some("0"));
        let allowed = command_allowing_file();
        assert!(allowed.ends_with(":file"), "{allowed}");
    }

    #[test]
    fn a_confined_command_offers_none_of_the_users_credentials() {
        let home = tempfile::tempdir().unwrap();
        let confined = command(false, Some(home.path()));
        let envs: Vec<_> = confined.get_envs().collect();
        let value = |name: &str| {
            envs.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.map(|v| v.to_string_lossy().into_owned()))
        };
        assert_eq!(value("HOME"), Some(Some(home.path().display().to_string())));
        assert_eq!(value("SSH_AUTH_SOCK"), Some(None), "the agent is removed");
        let ssh = value("GIT_SSH_COMMAND").flatten().unwrap();
        for option in [
            "-F /dev/null",
            "IdentityAgent=none",
            "PubkeyAuthentication=no",
        ] {
            assert!(ssh.contains(option), "{ssh}");
        }
        let user = command(false, None);
        assert!(!user.get_envs().any(|(k, _)| k == "HOME"));
    }

    fn command_allowing_file() -> String {
        command(true, None)
            .get_envs()
            .find(|(k, _)| *k == "GIT_ALLOW_PROTOCOL")
            .and_then(|(_, v)| v)
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    #[test]
    fn a_clone_past_its_deadline_is_killed_with_its_group() {
        let mut command = Command::new("sh");
        command.args(["-c", "sleep 30 & sleep 30"]);
        let started = Instant::now();
        let ran = run(command, Instant::now() + Duration::from_millis(200)).unwrap();
        assert!(ran.is_none());
        // The background sleep held stdout open: returning proves the
        // whole group died.
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[test]
    fn a_local_clone_checks_out_branches_tags_and_commits() {
        let source = tempfile::tempdir().unwrap();
        let sh = |script: &str| {
            let ok = Command::new("sh")
                .args(["-c", script])
                .current_dir(source.path())
                .env("GIT_CONFIG_GLOBAL", "/dev/null")
                .env("GIT_CONFIG_NOSYSTEM", "1")
                .status()
                .unwrap()
                .success();
            assert!(ok, "{script}");
        };
        sh("git init -q -b main . && git -c user.name=t -c user.email=t@t commit -q --allow-empty -m one \
            && git tag v1 && git checkout -q -b side && echo x > f && git add f \
            && git -c user.name=t -c user.email=t@t commit -q -m two && git checkout -q main");
        let url = RepoUrl::parse(source.path().to_str().unwrap()).unwrap();
        for (reference, expect_file) in [(None, false), (Some("side"), true), (Some("v1"), false)] {
            let dir = tempfile::tempdir().unwrap();
            clone("source", &url, reference, Trust::User, dir.path()).unwrap();
            assert_eq!(dir.path().join("f").exists(), expect_file, "{reference:?}");
        }
        let dir = tempfile::tempdir().unwrap();
        let error = clone("source", &url, Some("nope"), Trust::User, dir.path()).unwrap_err();
        assert!(matches!(error, GitError::UnknownRef { .. }), "{error}");
    }
}
