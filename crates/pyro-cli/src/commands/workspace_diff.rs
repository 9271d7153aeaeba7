//! `pyro workspace diff`.

use std::io::Write;

use anyhow::Context;
use pyro_core::Pyro;
use pyro_core::{ChangeStatus, ChangedFile, DiffReport};
use pyro_util::text::visible;

use crate::cli::DiffArgs;

/// Prints the patch (default), a per-file summary (`--stat`) or the whole
/// report (`--json`). No changes print nothing (a note with `--stat`).
pub fn diff(pyro: &Pyro, args: &DiffArgs) -> anyhow::Result<i32> {
    let report = super::runtime().block_on(pyro.workspace_diff(&args.workspace))?;
    if args.json {
        super::print_json(&report)?;
    } else if args.stat {
        print!("{}", stat(&report));
    } else {
        let mut stdout = std::io::stdout().lock();
        stdout
            .write_all(report.patch.as_bytes())
            .and_then(|()| stdout.flush())
            .context("cannot write to stdout")?;
    }
    for warning in &report.warnings {
        eprintln!("pyro: {}", visible(warning));
    }
    if report.truncated && !args.stat {
        eprintln!(
            "pyro: the patch was cut at {} MiB of {} bytes; see pyro workspace diff {} --stat",
            pyro_core::params::PATCH_LIMIT / (1024 * 1024),
            report.patch_bytes,
            args.workspace
        );
    }
    Ok(0)
}

/// One line per file (`status  path  | counts`), then the totals.
fn stat(report: &DiffReport) -> String {
    if report.files.is_empty() {
        return "no changes since the baseline\n".into();
    }
    let names: Vec<String> = report.files.iter().map(display_path).collect();
    let width = names.iter().map(|n| n.chars().count()).max().unwrap_or(0);
    let mut text = String::new();
    for (file, name) in report.files.iter().zip(&names) {
        text.push_str(&format!(
            " {:<12} {name:<width$} | {}\n",
            file.status.label(),
            counts(file)
        ));
    }
    text.push_str(&format!(
        " {} file{} changed, {} insertion{}(+), {} deletion{}(-)\n",
        report.files_changed,
        plural(report.files_changed as u64),
        report.insertions,
        plural(report.insertions),
        report.deletions,
        plural(report.deletions)
    ));
    text
}

fn display_path(file: &ChangedFile) -> String {
    match &file.old_path {
        Some(old) => format!("{} => {}", visible(old), visible(&file.path)),
        None => visible(&file.path).into_owned(),
    }
}

fn counts(file: &ChangedFile) -> String {
    let mut text = if file.binary {
        "binary".to_string()
    } else {
        format!("+{} -{}", file.insertions, file.deletions)
    };
    if file.old_mode.is_some() && file.new_mode.is_some() && file.old_mode != file.new_mode {
        text.push_str(&format!(
            " (mode {} => {})",
            file.old_mode.as_deref().unwrap_or_default(),
            file.new_mode.as_deref().unwrap_or_default()
        ));
    } else if file.status == ChangeStatus::Added {
        if let Some(mode) = file.new_mode.as_deref().filter(|m| *m != "100644") {
            text.push_str(&format!(" (mode {mode})"));
        }
    }
    text
}

fn plural(n: u64) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
