//! `pyro workspace ...`.

use std::time::{Duration, SystemTime};

use pyro_core::params::call_seed;
use pyro_core::{CreateRequest, ExecOptions, Pyro, RunEnd, WorkspaceRecord};

use super::run::{interrupted, StdStreams};
use crate::cli::{SyncCommand, WorkspaceCommand, WorkspaceRef};
use crate::cli_states::SnapshotCommand;

pub fn workspace(pyro: &Pyro, command: WorkspaceCommand) -> anyhow::Result<i32> {
    match command {
        WorkspaceCommand::Create(args) => {
            let seed = call_seed(args.seed_path, args.repo_url, args.repo_ref, None)?;
            let request = CreateRequest {
                env: args.env,
                name: args.name,
                labels: args.labels,
                mode: args.mode,
                cpus: args.cpus,
                memory_mib: args.memory,
                seed,
                exclude: args.exclude,
                network: pyro_core::NetworkRequest {
                    publish: args.publish,
                    ..args.network.request()
                },
                network_permitted: true,
                secrets: secret_inputs(args.secrets, args.secret_files),
                warm: !args.cold,
                idle_timeout: args
                    .idle_timeout
                    .as_deref()
                    .map(pyro_core::params::idle_timeout)
                    .transpose()?,
                max_host_bytes: args
                    .max_host_disk
                    .as_deref()
                    .map(pyro_core::params::max_host_disk)
                    .transpose()?,
                disk_bytes: args
                    .disk_size
                    .as_deref()
                    .map(pyro_core::params::disk_size)
                    .transpose()?,
            };
            // Ctrl-C: the create runs to its end, then the workspace is
            // deleted rather than left running for nobody.
            let record = super::runtime().block_on(async {
                let signalled = interrupted();
                let interrupted = async {
                    signalled.await;
                    eprintln!(
                        "pyro: interrupted; the create finishes, then the workspace is deleted"
                    );
                };
                // The one slow step worth a word: a template made once.
                let mut stage = |stage: &str| {
                    if stage.starts_with("making the warm template") {
                        eprintln!("pyro: {stage}");
                    }
                };
                pyro.workspace_create_staged(&request, &mut stage, interrupted)
                    .await
            })?;
            if args.id_only {
                println!("{}", record.id);
            } else {
                show(&record, args.json)?;
            }
        }
        WorkspaceCommand::List(args) => {
            let records = pyro.workspace_list(&args.labels)?;
            if args.json {
                super::print_json(&records)?;
            } else {
                print_table(&records);
            }
        }
        WorkspaceCommand::Status(args) => {
            let record = pyro.workspace_status(&args.workspace)?;
            show(&record, args.json)?;
            if !args.json {
                show_activity(pyro, &record);
            }
        }
        WorkspaceCommand::Update(args) => {
            let network = args.network_update();
            let update = pyro_core::UpdateRequest {
                name: args.name,
                labels: args.labels,
                network: network.clone(),
                idle_timeout: args
                    .idle_timeout
                    .as_deref()
                    .map(pyro_core::params::idle_timeout)
                    .transpose()?,
            };
            let record =
                super::runtime().block_on(pyro.workspace_update(&args.workspace, &update))?;
            if !network.is_empty()
                && !args.json
                && record.state != pyro_core::WorkspaceState::Running
            {
                eprintln!("pyro: the new network applies when the workspace starts");
            }
            show(&record, args.json)?
        }
        WorkspaceCommand::Stop(args) => {
            let how = match args.power_off {
                true => pyro_core::StopMode::PowerOff,
                false => pyro_core::StopMode::Suspend,
            };
            let stopped = super::runtime().block_on(pyro.workspace_stop(&args.workspace, how))?;
            if args.json {
                super::print_json(&stopped)?;
            } else {
                println!("{} {}", stopped.display_name(), describe_state(&stopped));
            }
        }
        WorkspaceCommand::Start(args) => {
            let started = super::runtime().block_on(pyro.workspace_start(&args.workspace))?;
            acknowledge(&started, &args, "running")?
        }
        WorkspaceCommand::Delete(args) => {
            let deleted = super::runtime().block_on(pyro.workspace_delete(&args.workspace))?;
            acknowledge(&deleted, &args, "deleted")?
        }
        WorkspaceCommand::Logs(args) => {
            let logs = pyro.workspace_logs(&args.workspace)?;
            if args.json {
                super::print_json(&logs)?;
            } else {
                print!("{logs}");
            }
        }
        WorkspaceCommand::Snapshot(SnapshotCommand::Create(args)) => {
            let snapshot = super::runtime().block_on(pyro.workspace_snapshot_create(
                &args.workspace,
                &args.name,
                args.disk_only,
            ))?;
            if args.json {
                super::print_json(&snapshot)?;
            } else {
                let kept = match snapshot.memory {
                    Some(_) => "disk and memory",
                    None => "disk only",
                };
                println!("snapshot {} created ({kept})", snapshot.name);
            }
        }
        WorkspaceCommand::Snapshot(SnapshotCommand::List(args)) => {
            let snapshots = pyro.workspace_snapshot_list(&args.workspace)?;
            if args.json {
                super::print_json(&snapshots)?;
            } else if snapshots.is_empty() {
                println!(
                    "no snapshots; take one with: pyro workspace snapshot create {} NAME",
                    args.workspace
                );
            } else {
                for snapshot in &snapshots {
                    println!(
                        "{:<24} {} ({} ago)",
                        snapshot.name,
                        snapshot.created_at,
                        age(&snapshot.created_at)
                    );
                }
            }
        }
        WorkspaceCommand::Snapshot(SnapshotCommand::Delete(args)) => {
            super::runtime()
                .block_on(pyro.workspace_snapshot_delete(&args.workspace, &args.name))?;
            if args.json {
                super::print_json(&serde_json::json!({ "deleted": args.name }))?;
            } else {
                println!("snapshot {} deleted", args.name);
            }
        }
        WorkspaceCommand::Reset(args) => {
            let report = super::runtime()
                .block_on(pyro.workspace_reset(&args.workspace, args.snapshot.as_deref()))?;
            if args.json {
                super::print_json(&report)?;
            } else {
                println!(
                    "{} reset to {}",
                    report.workspace.display_name(),
                    args.snapshot
                        .as_deref()
                        .map_or("its baseline".to_string(), |s| format!("snapshot {s}"))
                );
                let lines = [
                    ("ended", &report.ended),
                    ("running again", &report.restored),
                ];
                for (what, sessions) in lines {
                    for (kind, names) in [
                        ("shells", &sessions.shells),
                        ("services", &sessions.services),
                    ] {
                        if !names.is_empty() {
                            println!("  {kind} {what}: {}", names.join(", "));
                        }
                    }
                }
            }
        }
        WorkspaceCommand::Fork(args) => {
            let request = pyro_core::ForkRequest {
                name: args.name,
                snapshot: args.snapshot,
            };
            // Ctrl-C: the fork runs to its end (its parent is mid-save),
            // then the fork is deleted rather than left for nobody.
            let forked = super::runtime().block_on(async {
                let fork = pyro.workspace_fork(&args.workspace, &request);
                tokio::pin!(fork);
                tokio::select! {
                    report = &mut fork => Ok(report),
                    () = interrupted() => {
                        eprintln!("pyro: interrupted; the fork finishes, then it is deleted");
                        if let Ok(report) = fork.await {
                            let _ = pyro.workspace_delete(&report.workspace.id).await;
                        }
                        Err(super::INTERRUPTED_EXIT)
                    }
                }
            });
            let report = match forked {
                Ok(report) => report?,
                Err(code) => return Ok(code),
            };
            if args.id_only {
                println!("{}", report.workspace.id);
            } else if args.json {
                super::print_json(&report)?;
            } else {
                show_fork(&report);
            }
        }
        WorkspaceCommand::Sync(SyncCommand::Push(args)) => {
            let report = super::runtime().block_on(pyro.workspace_sync_push(
                &args.workspace,
                &args.dir,
                args.dest.as_deref(),
            ))?;
            if args.json {
                super::print_json(&report)?;
            } else {
                println!(
                    "pushed {} files ({} bytes) in {} ms",
                    report.files, report.bytes, report.duration_ms
                );
            }
        }
        WorkspaceCommand::Export(args) => {
            let report = super::runtime().block_on(pyro.workspace_export(
                &args.workspace,
                &args.path,
                &args.output,
            ))?;
            super::workspace_files::show_export(
                &report,
                &args.path,
                "to",
                &args.output,
                args.json,
            )?;
        }
        WorkspaceCommand::File(command) => return super::workspace_files::file(pyro, command),
        WorkspaceCommand::Disk(command) => return super::workspace_files::disk(pyro, command),
        WorkspaceCommand::Patch(command) => return super::workspace_files::patch(pyro, command),
        WorkspaceCommand::Shell(command) => return super::workspace_sessions::shell(pyro, command),
        WorkspaceCommand::Service(command) => {
            return super::workspace_sessions::service(pyro, command)
        }
        WorkspaceCommand::Diff(args) => return super::workspace_diff::diff(pyro, &args),
        WorkspaceCommand::Summary(args) => return super::workspace_summary::summary(pyro, &args),
        WorkspaceCommand::Network(command) => {
            return super::workspace_network::network(pyro, command)
        }
        WorkspaceCommand::Port(command) => return super::workspace_network::port(pyro, command),
        WorkspaceCommand::Secret(command) => {
            return super::workspace_secrets::secret(pyro, command)
        }
        WorkspaceCommand::Exec(args) => {
            let options = ExecOptions {
                argv: args.command,
                cwd: args.cwd,
                env_vars: args.env_vars,
                secret_env: args.secret_env,
                timeout: args.timeout.map(Duration::from_secs),
                stdin: super::stdin_input(args.stdin),
            };
            let report = super::runtime().block_on(async {
                let cancel = interrupted();
                pyro.workspace_exec(&args.workspace, &options, &mut StdStreams, cancel)
                    .await
            })?;
            match &report.end {
                RunEnd::Exited { status } if status.timed_out => eprintln!(
                    "pyro: command timed out after {}s and was killed; the workspace keeps running",
                    args.timeout.unwrap_or_default()
                ),
                RunEnd::Failed { message, .. } => {
                    eprintln!("pyro: {}", pyro_util::text::visible_lines(message))
                }
                RunEnd::Cancelled => eprintln!("pyro: interrupted"),
                RunEnd::Exited { .. } => {}
            }
            if !report.network_denied.is_empty() {
                if let Ok(record) = pyro.workspace_status(&args.workspace) {
                    let opened = super::workspace_network::Opened::Workspace {
                        name: record.display_name(),
                        network: &record.network,
                    };
                    super::workspace_network::note_denials(&report.network_denied, opened);
                }
            }
            if args.json {
                eprintln!("{}", serde_json::to_string(&report)?);
            }
            return Ok(report.exit_code());
        }
    }
    Ok(0)
}

fn secret_inputs(
    values: Vec<(String, String)>,
    files: Vec<(String, String)>,
) -> Vec<pyro_core::SecretInput> {
    let values = values
        .into_iter()
        .map(|(name, value)| pyro_core::SecretInput::Value { name, value });
    let files = files
        .into_iter()
        .map(|(name, path)| pyro_core::SecretInput::File {
            name,
            path: path.into(),
        });
    values.chain(files).collect()
}

fn show(record: &WorkspaceRecord, json: bool) -> anyhow::Result<()> {
    if json {
        return super::print_json(record);
    }
    println!("id:            {}", record.id);
    println!("name:          {}", record.name.as_deref().unwrap_or("-"));
    println!("environment:   {}", record.env);
    if let Some(mode) = &record.mode {
        println!("mode:          {}", mode.line());
    }
    println!("state:         {}", describe_state(record));
    if let Some(seed) = &record.seed {
        println!("seed:          {}", seed.line());
    }
    if let Some(boot) = &record.last_boot {
        println!("last start:    {}", boot.line());
    }
    if let Some(memory) = &record.host_memory {
        println!("host memory:   {}", memory.line());
    }
    if let Some(bytes) = &record.host_bytes {
        println!("host disk:     {}", bytes.line());
    }
    let disk = record
        .disk_bytes
        .map(|disk| format!(", a {} disk", pyro_util::human_bytes(disk)))
        .unwrap_or_default();
    println!(
        "size:          {} vCPU, {} MiB{disk}",
        record.cpus, record.memory_mib
    );
    println!(
        "network:       {}",
        super::workspace_network::describe(&record.network)
    );
    for port in &record.network.ports {
        println!("port:          {}", port.line());
    }
    if let Some(secs) = record.idle_timeout_secs {
        let after = pyro_core::params::describe_duration(Duration::from_secs(secs));
        println!("idle timeout:  {after} (then suspended; any call resumes it)");
    }
    println!(
        "created:       {} ({} ago)",
        record.created_at,
        age(&record.created_at)
    );
    println!(
        "last activity: {} ({} ago)",
        record.last_activity_at,
        age(&record.last_activity_at)
    );
    if !record.labels.is_empty() {
        let labels: Vec<_> = record
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        println!("labels:        {}", labels.join(", "));
    }
    Ok(())
}

/// Snapshots, open shells and services, for `status` (best effort: a
/// workspace that cannot say shows nothing here).
fn show_activity(pyro: &Pyro, record: &WorkspaceRecord) {
    if !record.snapshots.is_empty() {
        let names: Vec<&str> = record.snapshots.iter().map(|s| s.name.as_str()).collect();
        println!("snapshots:     {}", names.join(", "));
    }
    let secrets = pyro.workspace_secret_list(&record.id).unwrap_or_default();
    if !secrets.is_empty() {
        println!("secrets:       {} (names only)", secrets.join(", "));
    }
    // Asking a suspended workspace for its shells and services would
    // resume it, and status only looks.
    if matches!(record.state, pyro_core::WorkspaceState::Suspended { .. }) {
        return;
    }
    let runtime = super::runtime();
    let shells = runtime
        .block_on(pyro.workspace_shell_list(&record.id))
        .unwrap_or_default();
    let open: Vec<&str> = shells
        .iter()
        .filter(|s| s.state.is_open())
        .map(|s| s.id.as_str())
        .collect();
    if !open.is_empty() {
        println!("open shells:   {}", open.join(", "));
    }
    let services = runtime
        .block_on(pyro.workspace_service_list(&record.id))
        .unwrap_or_default();
    if !services.is_empty() {
        let states: Vec<String> = services
            .iter()
            .map(|s| format!("{} ({})", s.name, s.state.label()))
            .collect();
        println!("services:      {}", states.join(", "));
    }
}

fn acknowledge(record: &WorkspaceRecord, args: &WorkspaceRef, verb: &str) -> anyhow::Result<()> {
    if args.json {
        return super::print_json(record);
    }
    println!("{} {verb}", record.display_name());
    Ok(())
}

fn describe_state(record: &WorkspaceRecord) -> String {
    match &record.state {
        // The reason may quote the guest (its agent, its console).
        pyro_core::WorkspaceState::Crashed { reason } => {
            format!("crashed: {}", pyro_util::text::visible(reason))
        }
        pyro_core::WorkspaceState::Suspended { since } => format!("suspended since {since}"),
        state => state.label().to_string(),
    }
}

fn print_table(records: &[WorkspaceRecord]) {
    if records.is_empty() {
        println!("no workspaces; create one with: pyro workspace create debian:12");
        return;
    }
    println!(
        "{:<12}  {:<16}  {:<14}  {:<14}  {:<12}  {:>6}  {:>8}",
        "ID", "NAME", "ENV", "STATE", "NETWORK", "AGE", "ACTIVE"
    );
    for record in records {
        // How long a suspended one has slept.
        let state = match &record.state {
            pyro_core::WorkspaceState::Suspended { since } => format!("suspended {}", age(since)),
            other => other.label().to_string(),
        };
        println!(
            "{:<12}  {:<16}  {:<14}  {:<14}  {:<12}  {:>6}  {:>8}",
            record.id,
            record.name.as_deref().unwrap_or("-"),
            record.env,
            state,
            record.network.mode.as_str(),
            age(&record.created_at),
            format!("{} ago", age(&record.last_activity_at)),
        );
    }
}

/// `3m`, `2h`, `5d` since an RFC 3339 UTC timestamp.
fn age(timestamp: &str) -> String {
    let Some(then) = parse_rfc3339(timestamp) else {
        return "?".into();
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    let secs = now.saturating_sub(then);
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m", secs / 60),
        3600..86400 => format!("{}h", secs / 3600),
        _ => format!("{}d", secs / 86400),
    }
}

/// Seconds since the epoch of `YYYY-MM-DDTHH:MM:SSZ`.
fn parse_rfc3339(text: &str) -> Option<u64> {
    let num = |range: std::ops::Range<usize>| text.get(range)?.parse::<i64>().ok();
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    // Howard Hinnant's days_from_civil.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    u64::try_from(days * 86_400 + hour * 3_600 + minute * 60 + second).ok()
}

/// A fork in a few lines: what it is, where it came from, what runs in it.
fn show_fork(report: &pyro_core::ForkReport) {
    let from = match &report.snapshot {
        Some(snapshot) => format!("snapshot {snapshot} of {}", report.forked_from),
        None => format!(
            "{}, paused {} ms",
            report.forked_from,
            report.parent_paused_ms.unwrap_or(0)
        ),
    };
    println!("{} forked from {from}", report.workspace.display_name());
    if let Some(boot) = &report.workspace.last_boot {
        println!("  last start: {}", boot.line());
    }
    for (kind, names) in [
        ("shells", &report.restored.shells),
        ("services", &report.restored.services),
    ] {
        if !names.is_empty() {
            println!("  {kind} running: {}", names.join(", "));
        }
    }
    for port in &report.ports_left {
        println!("  port left with the parent: {port}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_timestamps() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_rfc3339("2026-11-21T05:42:34Z"), Some(1_795_239_754));
        assert_eq!(parse_rfc3339("garbage"), None);
    }
}
