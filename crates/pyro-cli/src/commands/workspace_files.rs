//! `pyro workspace file ...` and `pyro workspace patch ...`.

use std::io::{Read, Write};
use std::path::Path;

use anyhow::Context;
use pyro_core::Pyro;
use pyro_core::{FileKind, FilesError, Listing, PatchReport};
use pyro_util::text::{visible, visible_lines};

use crate::cli_files::{DiskCommand, FileCommand, PatchCommand};

pub fn file(pyro: &Pyro, command: FileCommand) -> anyhow::Result<i32> {
    let runtime = super::runtime();
    match command {
        FileCommand::List(args) => {
            let listing = runtime.block_on(pyro.workspace_file_list(
                &args.workspace,
                &args.path,
                args.recursive,
            ))?;
            if args.json {
                super::print_json(&listing)?;
            } else {
                print_listing(&listing);
            }
            if listing.truncated {
                eprintln!(
                    "pyro: the listing stopped at {} entries; list a subdirectory for the rest",
                    listing.entries.len()
                );
            }
        }
        FileCommand::Read(args) => {
            let content = runtime.block_on(pyro.workspace_file_read(
                &args.workspace,
                &args.path,
                args.max_bytes,
            ))?;
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&content)
                .and_then(|()| stdout.flush())
                .context("cannot write to stdout")?;
        }
        FileCommand::Write(args) => {
            let mut source: Box<dyn Read + Send> = match (&args.text_file, &args.content) {
                (Some(path), _) if path == Path::new("-") => Box::new(std::io::stdin()),
                (Some(path), _) => Box::new(
                    std::fs::File::open(path)
                        .with_context(|| format!("cannot open {}", path.display()))?,
                ),
                (None, Some(content)) => Box::new(std::io::Cursor::new(content.clone())),
                (None, None) => anyhow::bail!("give the content with --text-file F or --content C"),
            };
            let report = runtime.block_on(pyro.workspace_file_write(
                &args.workspace,
                &args.path,
                &mut *source,
                args.mode,
            ))?;
            if args.json {
                super::print_json(&report)?;
            } else {
                println!(
                    "wrote {} bytes to {}",
                    report.bytes,
                    in_workspace(&report.path)
                );
            }
        }
    }
    Ok(0)
}

/// Exit status 1 for a patch that does not apply (every failing hunk on
/// stderr), 0 when it applied.
pub fn patch(pyro: &Pyro, command: PatchCommand) -> anyhow::Result<i32> {
    let PatchCommand::Apply(args) = command;
    // One byte past the facade's cap is enough for it to refuse.
    let cap = pyro_core::params::MAX_PATCH_BYTES + 1;
    let mut text = Vec::new();
    if args.patch_file == Path::new("-") {
        std::io::stdin()
            .take(cap)
            .read_to_end(&mut text)
            .context("cannot read the patch from stdin")?;
    } else {
        std::fs::File::open(&args.patch_file)
            .and_then(|file| file.take(cap).read_to_end(&mut text))
            .with_context(|| format!("cannot read patch file {}", args.patch_file.display()))?;
    }
    let result = super::runtime().block_on(pyro.workspace_patch_apply(&args.workspace, &text));
    match result {
        Ok(report) => {
            if args.json {
                super::print_json(&report)?;
            } else {
                print_patch_report(&report);
            }
            Ok(0)
        }
        Err(pyro_core::Error::Files(error @ FilesError::Rejected { .. })) => {
            // It quotes the workspace's lines where hunks failed.
            eprintln!("pyro: {}", visible_lines(&error.to_string()));
            if args.json {
                let FilesError::Rejected { failures } = &error else {
                    unreachable!("matched above");
                };
                let failures: Vec<_> = failures
                    .iter()
                    .map(|failure| {
                        serde_json::json!({
                            "path": failure.path,
                            "hunk": failure.hunk,
                            "header": failure.header,
                            "reason": failure.reason.to_string(),
                        })
                    })
                    .collect();
                super::print_json(&serde_json::json!({
                    "workspace": args.workspace,
                    "applied": false,
                    "failures": failures,
                }))?;
            }
            Ok(1)
        }
        Err(error) => Err(error.into()),
    }
}

/// `pyro workspace disk ...`.
pub fn disk(pyro: &Pyro, command: DiskCommand) -> anyhow::Result<i32> {
    let runtime = super::runtime();
    match command {
        DiskCommand::List(args) => {
            let listing =
                runtime.block_on(pyro.workspace_disk_list(&args.workspace, &args.path))?;
            if args.json {
                return super::print_json(&listing).map(|()| 0);
            }
            for entry in &listing.entries {
                let suffix = match entry.kind {
                    "dir" => "/",
                    "symlink" => "@",
                    _ => "",
                };
                let name = visible(&entry.name);
                println!("{:04o}  {:>10}  {name}{suffix}", entry.mode, entry.size);
            }
            if listing.truncated {
                eprintln!(
                    "pyro: the listing stopped at {} entries",
                    listing.entries.len()
                );
            }
        }
        DiskCommand::Read(args) => {
            let file = runtime.block_on(pyro.workspace_disk_read(&args.workspace, &args.path))?;
            if args.json {
                return super::print_json(&file).map(|()| 0);
            }
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(&file.content)
                .and_then(|()| stdout.flush())
                .context("cannot write to stdout")?;
        }
        DiskCommand::Export(args) => {
            let report = runtime.block_on(pyro.workspace_disk_export(
                &args.workspace,
                &args.path,
                &args.output,
            ))?;
            show_export(
                &report,
                &args.path,
                "off the disk to",
                &args.output,
                args.json,
            )?;
        }
    }
    Ok(0)
}

/// An export's result: JSON, or "exported PATH `to` OUTPUT (N files, B
/// bytes; K entries left out)" and on stderr what was left out and why.
pub(super) fn show_export(
    report: &pyro_core::TransferReport,
    path: &str,
    to: &str,
    output: &Path,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        return super::print_json(report);
    }
    println!(
        "exported {path} {to} {} ({})",
        output.display(),
        report.tally()
    );
    for line in &report.left_out {
        eprintln!("pyro: {line}");
    }
    Ok(())
}

fn print_listing(listing: &Listing) {
    for entry in &listing.entries {
        let shown = match entry.kind {
            FileKind::Dir => format!("{}/", visible(&entry.path)),
            FileKind::Symlink => format!(
                "{} -> {}",
                visible(&entry.path),
                visible(entry.symlink_target.as_deref().unwrap_or("?"))
            ),
            _ => visible(&entry.path).into_owned(),
        };
        println!("{:04o}  {:>10}  {shown}", entry.mode, entry.size);
    }
}

fn print_patch_report(report: &PatchReport) {
    for file in &report.files {
        let path = visible(&file.path);
        match (file.action, &file.from) {
            ("renamed", Some(from)) => println!("R {} -> {path}", visible(from)),
            ("copied", Some(from)) => println!("C {} -> {path}", visible(from)),
            ("created", _) => println!("A {path}"),
            ("deleted", _) => println!("D {path}"),
            _ => println!("M {path}"),
        }
    }
    println!("{}", report.stat);
    for offset in &report.offsets {
        let lines = if offset.offset.abs() == 1 {
            "line"
        } else {
            "lines"
        };
        println!(
            "{}: hunk {} applied at offset {:+} {lines}",
            visible(&offset.path),
            offset.hunk,
            offset.offset
        );
    }
}

/// A request path as the guest sees it.
fn in_workspace(path: &str) -> String {
    if path.starts_with('/') {
        path.to_string()
    } else {
        format!("/workspace/{path}")
    }
}
