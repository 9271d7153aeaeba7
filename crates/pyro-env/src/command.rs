//! Running the host tools a build needs (apt, dpkg-deb, mmdebstrap,
//! mkfs.ext4, qemu-img) with their output captured.
//!
//! A child never writes to the terminal directly: its stdout and stderr are
//! read line by line and handed to [`Progress::detail`], and the last
//! [`TAIL_LINES`] lines are kept so a failure can show them. A missing tool is
//! reported with the package that provides it.

use std::collections::VecDeque;
use std::io::{BufRead as _, BufReader, Read};
use std::path::Path;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc;

use crate::Progress;

/// How many trailing output lines a failure carries.
pub const TAIL_LINES: usize = 40;

/// Why a host tool could not be run or did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("`{program}` was not found on this host; install it with: {install}")]
    NotFound {
        program: String,
        install: &'static str,
    },
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

/// What to install when `program` is missing, Debian package names.
pub fn install_hint(program: &str) -> &'static str {
    match program {
        "mmdebstrap" | "debootstrap" => "apt-get install mmdebstrap",
        "qemu-img" => "apt-get install qemu-utils",
        "mkfs.ext4" => "apt-get install e2fsprogs",
        "dpkg-deb" => "apt-get install dpkg",
        "apt-get" | "apt-cache" => "apt-get install apt",
        _ => "your distribution's package manager",
    }
}

/// Whether `program` is on `PATH` (or is a path that exists).
pub fn exists(program: &str) -> bool {
    if program.contains('/') {
        return Path::new(program).exists();
    }
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
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
        assert_eq!(install_hint("qemu-img"), "apt-get install qemu-utils");
    }
}
