//! Arguments of `pyro workspace file ...` and `pyro workspace patch ...`.

use std::path::PathBuf;

use clap::{ArgGroup, Args, Subcommand};

#[derive(Debug, Subcommand)]
pub enum FileCommand {
    /// List files under a path of /workspace (one level, or --recursive).
    ///
    /// Prints `MODE  SIZE  PATH` per entry, paths relative to /workspace,
    /// directories with a trailing `/`, symlinks as `PATH -> TARGET`.
    #[command(after_help = "Examples:
  pyro workspace file list api-fix
  pyro workspace file list api-fix src --recursive --json")]
    List(FileListArgs),
    /// Print one file's content to stdout, byte for byte.
    #[command(after_help = "Examples:
  pyro workspace file read api-fix src/main.rs
  pyro workspace file read api-fix build/app.bin --max-bytes 100000000 > app.bin")]
    Read(FileReadArgs),
    /// Replace or create one file, atomically.
    ///
    /// Missing parent directories are created. Readers see the old content
    /// or the new, never a mix; on failure the old content stays.
    #[command(after_help = "Examples:
  pyro workspace file write api-fix src/config.toml --text-file config.toml
  pyro workspace file write api-fix run.sh --content 'echo hi' --mode 755
  some-generator | pyro workspace file write api-fix out.txt --text-file -")]
    Write(FileWriteArgs),
}

#[derive(Debug, Args)]
pub struct FileListArgs {
    /// Workspace id or name.
    pub workspace: String,
    /// Directory relative to /workspace (or an absolute path under it).
    #[arg(default_value = ".")]
    pub path: String,
    /// Walk subdirectories too (never through symlinks).
    #[arg(long, short = 'r')]
    pub recursive: bool,
    /// Print the listing as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct FileReadArgs {
    /// Workspace id or name.
    pub workspace: String,
    /// File relative to /workspace (or an absolute path under it).
    pub path: String,
    /// Refuse files larger than this many bytes [default: 16 MiB].
    #[arg(long, value_name = "N")]
    pub max_bytes: Option<u64>,
}

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("source").required(true).args(["text_file", "content"])))]
pub struct FileWriteArgs {
    /// Workspace id or name.
    pub workspace: String,
    /// File relative to /workspace (or an absolute path under it).
    pub path: String,
    /// Take the content from this host file (any bytes; `-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub text_file: Option<PathBuf>,
    /// Take the content from this argument, as is (no newline added).
    #[arg(long, value_name = "TEXT")]
    pub content: Option<String>,
    /// Permission bits in octal, e.g. 755 [default: keep an existing
    /// file's, 644 for a new one].
    #[arg(long, value_name = "OCTAL", value_parser = parse_mode)]
    pub mode: Option<u32>,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum PatchCommand {
    /// Apply a unified diff (git diff or diff -u; several files, new,
    /// deleted and renamed files) to /workspace, all or nothing.
    ///
    /// Every hunk of every file must apply exactly (offsets are fine, no
    /// fuzz); otherwise nothing is changed, each failing hunk is listed on
    /// stderr with why, and the exit status is 1. Exit status 125 means the
    /// patch could not be read or parsed, or pyro failed.
    #[command(after_help = "Examples:
  git diff > fix.patch; pyro workspace patch apply api-fix --patch-file fix.patch
  pyro workspace patch apply api-fix --patch-file - < fix.patch")]
    Apply(PatchApplyArgs),
}

#[derive(Debug, Args)]
pub struct PatchApplyArgs {
    /// Workspace id or name.
    pub workspace: String,
    /// The patch to apply (`-` for stdin).
    #[arg(long, value_name = "FILE")]
    pub patch_file: PathBuf,
    /// Print the result as JSON (on stdout, for a rejected patch too).
    #[arg(long)]
    pub json: bool,
}

fn parse_mode(text: &str) -> Result<u32, String> {
    let digits = text.strip_prefix("0o").unwrap_or(text);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o7777 => Ok(mode),
        _ => Err(format!(
            "'{text}' is not an octal permission mode; use e.g. 644 or 755"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_octal_permission_bits() {
        assert_eq!(parse_mode("755"), Ok(0o755));
        assert_eq!(parse_mode("0644"), Ok(0o644));
        assert_eq!(parse_mode("0o600"), Ok(0o600));
        assert!(parse_mode("888").is_err());
        assert!(parse_mode("100644").is_err());
    }
}

/// `pyro workspace disk ...`: a stopped workspace's disk, read offline.
#[derive(Debug, Subcommand)]
pub enum DiskCommand {
    /// List a directory on the disk of a workspace that is not running.
    #[command(after_help = "Examples:
  pyro workspace disk list api-fix /etc
  pyro workspace disk list api-fix src --json")]
    List(DiskPathArgs),
    /// Print a file on the disk of a workspace that is not running, byte for byte.
    #[command(after_help = "Examples:
  pyro workspace disk read api-fix /etc/os-release
  pyro workspace disk read api-fix /var/log/app.log > app.log")]
    Read(DiskPathArgs),
    /// Copy a file or directory off the disk of a workspace that is not running.
    #[command(after_help = "Examples:
  pyro workspace disk export api-fix /root/.cache/pip --output ./pip-cache")]
    Export(DiskExportArgs),
}

#[derive(Debug, Args)]
pub struct DiskPathArgs {
    /// Workspace id or name (stopped, suspended or crashed).
    pub workspace: String,
    /// Any path on its disk: absolute, or relative to /workspace.
    pub path: String,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct DiskExportArgs {
    /// Workspace id or name (stopped, suspended or crashed).
    pub workspace: String,
    /// Any path on its disk: absolute, or relative to /workspace.
    pub path: String,
    /// Where to put it on the host (must not exist yet, or be an empty directory).
    #[arg(long, short)]
    pub output: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}
