//! Running the host tools a build needs (apt, dpkg-deb, mmdebstrap,
//! mkfs.ext4, qemu-img) with their output captured.
//!
//! A child never writes to the terminal directly: its stdout and stderr are
//! read line by line and handed to [`Progress::detail`], and the last
//! [`TAIL_LINES`] lines are kept so a failure can show them. A missing tool is
//! reported with the package that provides it.

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;

use crate::Progress;

/// How many trailing output lines a failure carries.
pub const TAIL_LINES: usize = 40;

/// Why a host tool could not be run or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("`{program}` was not found on this host; install it with: {install}")]
    NotFound { program: String, install: String },
    #[error("could not start `{command}`")]
    Spawn {
        command: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{command}` failed ({status}){hint}; its last output:\n{tail}")]
    Failed {
        command: String,
        status: ExitStatus,
        tail: String,
        hint: String,
    },
}

/// A host command an environment build runs, and the Debian/Ubuntu package
/// that provides it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostTool {
    pub program: &'static str,
    pub package: &'static str,
}

/// Every command `pyro env pull` runs. The root filesystem needs only one of
/// [`BOOTSTRAPPERS`]; `scripts/install-deps` installs the same set.
pub const BUILD_TOOLS: &[HostTool] = &[
    HostTool {
        program: "apt-cache",
        package: "apt",
    },
    HostTool {
        program: "apt-get",
        package: "apt",
    },
    HostTool {
        program: "dpkg-deb",
        package: "dpkg",
    },
    HostTool {
        program: "mkfs.ext4",
        package: "e2fsprogs",
    },
    HostTool {
        program: "qemu-img",
        package: "qemu-utils",
    },
];

/// The tools that build a Debian tree, preferred first.
pub const BOOTSTRAPPERS: &[HostTool] = &[
    HostTool {
        program: "mmdebstrap",
        package: "mmdebstrap",
    },
    HostTool {
        program: "debootstrap",
        package: "debootstrap",
    },
];

/// Files a build reads (as `program`): the keyring mmdebstrap and
/// debootstrap check Debian's signatures with (not on Ubuntu by default).
pub const BUILD_FILES: &[HostTool] = &[HostTool {
    program: "/usr/share/keyrings/debian-archive-keyring.gpg",
    package: "debian-archive-keyring",
}];

/// The tools a build needs that this host lacks: [`BUILD_TOOLS`] not found,
/// mmdebstrap when no bootstrapper is, and [`BUILD_FILES`] missing. Looks
/// at files only, so it answers in microseconds, before a build that takes
/// minutes.
pub fn missing_build_tools() -> Vec<HostTool> {
    let mut missing: Vec<HostTool> = BUILD_TOOLS
        .iter()
        .filter(|tool| locate(tool.program).is_none())
        .copied()
        .collect();
    if BOOTSTRAPPERS
        .iter()
        .all(|tool| locate(tool.program).is_none())
    {
        missing.push(BOOTSTRAPPERS[0]);
    }
    missing.extend(
        BUILD_FILES
            .iter()
            .filter(|file| !Path::new(file.program).is_file()),
    );
    missing
}

/// What to install when `program` is missing, Debian package names.
pub fn install_hint(program: &str) -> String {
    BUILD_TOOLS
        .iter()
        .chain(BOOTSTRAPPERS)
        .find(|tool| tool.program == program)
        .map(|tool| format!("sudo apt-get install {}", tool.package))
        .unwrap_or_else(|| "your distribution's package manager".into())
}

/// Directories searched after `PATH`: a normal user's `PATH` often lacks
/// sbin, where `mkfs.ext4` lives.
const SBIN: &[&str] = &["/usr/sbin", "/sbin"];

/// Where `program` is: itself when it holds a `/`, else the first
/// executable file of that name on `PATH` or in sbin.
pub fn locate(program: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |path: &Path| {
        path.metadata()
            .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let path = Path::new(program);
        return executable(path).then(|| path.to_path_buf());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(SBIN.iter().map(PathBuf::from))
        .map(|dir| dir.join(program))
        .find(|candidate| executable(candidate))
}

/// Whether `program` is on `PATH` or in sbin (or is a path that exists).
pub fn exists(program: &str) -> bool {
    locate(program).is_some()
}

/// The output of a successful run.
#[derive(Debug)]
pub struct Output {
    /// Lines from stdout only (stderr is forwarded but not kept here).
    pub stdout: Vec<String>,
}

/// Runs `cmd` to completion, forwarding every output line to `progress`.
/// `hint` is appended to a failure message (for example "run apt-get update").
pub fn run(cmd: &mut Command, progress: &dyn Progress, hint: &str) -> Result<Output, CommandError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let command = render(cmd);
    if !exists(&program) {
        return Err(CommandError::NotFound {
            install: install_hint(&program),
            program,
        });
    }
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("LC_ALL", "C.UTF-8");
    let mut child = cmd.spawn().map_err(|source| CommandError::Spawn {
        command: command.clone(),
        source,
    })?;

    let (sender, receiver) = mpsc::channel::<(bool, String)>();
    let readers = [
        child
            .stdout
            .take()
            .map(|s| spawn_reader(Box::new(s), true, sender.clone())),
        child
            .stderr
            .take()
            .map(|s| spawn_reader(Box::new(s), false, sender.clone())),
    ];
    drop(sender);

    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    let mut stdout = Vec::new();
    for (is_stdout, line) in receiver {
        progress.detail(&line);
        if tail.len() == TAIL_LINES {
            tail.pop_front();
        }
        tail.push_back(line.clone());
        if is_stdout {
            stdout.push(line);
        }
    }
    for reader in readers.into_iter().flatten() {
        let _ = reader.join();
    }
    let status = child.wait().map_err(|source| CommandError::Spawn {
        command: command.clone(),
        source,
    })?;
    if !status.success() {
        let tail = if tail.is_empty() {
            "  (no output)".to_owned()
        } else {
            tail.iter()
                .map(|l| format!("  {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        };
        return Err(CommandError::Failed {
            command,
            status,
            tail,
            hint: if hint.is_empty() {
                String::new()
            } else {
                format!("; {hint}")
            },
        });
    }
    Ok(Output { stdout })
}

fn spawn_reader(
    stream: Box<dyn Read + Send>,
    is_stdout: bool,
    sender: mpsc::Sender<(bool, String)>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(stream);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match reader.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => break,
                Ok(_) => {
                    // Progress bars redraw with '\r'; keep the last frame.
                    let text = String::from_utf8_lossy(&buf);
                    let line = text.trim_end_matches(['\n', '\r']);
                    let line = line.rsplit('\r').next().unwrap_or(line).trim_end();
                    if !line.is_empty() && sender.send((is_stdout, line.to_owned())).is_err() {
                        break;
                    }
                }
            }
        }
    })
}

/// A shell-like rendering of a command for messages.
pub fn render(cmd: &Command) -> String {
    let mut out = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        let arg = arg.to_string_lossy();
        out.push(' ');
        if arg.is_empty() || arg.contains([' ', '"', '\'', '$', '`', '\\']) {
            out.push('\'');
            out.push_str(&arg.replace('\'', "'\\''"));
            out.push('\'');
        } else {
            out.push_str(&arg);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Lines(Mutex<Vec<String>>);
    impl Progress for Lines {
        fn phase(&self, _: &str) {}
        fn detail(&self, line: &str) {
            self.0.lock().unwrap().push(line.to_owned());
        }
        fn finish(&self) {}
    }

    #[test]
    fn forwards_output_and_reports_failures_with_the_tail() {
        let lines = Lines::default();
        let out = run(
            Command::new("sh").args(["-c", "echo one; echo two >&2"]),
            &lines,
            "",
        )
        .unwrap();
        assert_eq!(out.stdout, ["one"]);
        assert_eq!(lines.0.lock().unwrap().len(), 2);

        let script = "for i in $(seq 1 50); do echo line$i; done; exit 3";
        let err = run(
            Command::new("sh").args(["-c", script]),
            &lines,
            "run apt-get update",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("`sh -c 'for i in"), "{text}");
        assert!(text.contains("exit status: 3"), "{text}");
        assert!(text.contains("run apt-get update"), "{text}");
        assert!(
            text.contains("line50") && !text.contains("line10\n"),
            "{text}"
        );
    }

    #[test]
    fn missing_tool_names_the_package() {
        let err = run(
            &mut Command::new("pyro-no-such-tool"),
            &crate::NoProgress,
            "",
        )
        .unwrap_err();
        assert!(matches!(err, CommandError::NotFound { .. }));
        assert_eq!(install_hint("qemu-img"), "sudo apt-get install qemu-utils");
        assert_eq!(install_hint("mkfs.ext4"), "sudo apt-get install e2fsprogs");
    }

    #[test]
    fn install_deps_installs_every_build_tool() {
        // scripts/install-deps lists "command package version-flag" lines;
        // it must cover every tool a build runs, with the same package.
        let script = include_str!("../../../scripts/install-deps");
        for tool in BUILD_TOOLS.iter().chain(BOOTSTRAPPERS) {
            let entry = format!("\"{} {} ", tool.program, tool.package);
            assert!(script.contains(&entry), "install-deps lacks {entry}");
        }
        for file in BUILD_FILES {
            assert!(
                script.contains(file.program),
                "install-deps lacks {}",
                file.program
            );
        }
    }

    #[test]
    fn locate_finds_executables_only() {
        assert!(locate("sh").is_some());
        assert!(locate("/bin/sh").is_some());
        assert!(locate("/etc/passwd").is_none(), "not executable");
        assert!(locate("pyro-no-such-tool").is_none());
    }
}
