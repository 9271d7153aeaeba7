//! `pyro bench`: a table of medians, the cold run against its floor.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pyro_core::bench::{time_command, Samples};
use pyro_core::{Pyro, RunRequest};
use serde::Serialize;

use crate::cli::BenchArgs;

#[derive(Serialize)]
struct BenchReport {
    env: String,
    runs: usize,
    rows: Vec<Row>,
    /// Cold `pyro run ENV -- true` median over the bare-boot floor median.
    cold_run_over_floor: f64,
}

#[derive(Serialize)]
struct Row {
    #[serde(flatten)]
    samples: Samples,
    median_ms: f64,
    min_ms: f64,
    max_ms: f64,
}

impl From<Samples> for Row {
    fn from(samples: Samples) -> Self {
        Row {
            median_ms: samples.median(),
            min_ms: samples.min(),
            max_ms: samples.max(),
            samples,
        }
    }
}

pub fn bench(pyro: &Pyro, args: &BenchArgs) -> anyhow::Result<i32> {
    anyhow::ensure!(args.runs > 0, "--runs must be at least 1");
    // A known, pulled environment before its name reaches any command line.
    pyro.env_store()?.inspect(&args.env)?;
    let exe = std::env::current_exe()?;
    let run_args = ["run", args.env.as_str(), "--", "true"];
    eprintln!("pyro bench: warming up (environment check, initramfs cache, KVM probe)");
    time_command("warm-up", &exe, &run_args, 1)?;

    eprintln!("pyro bench: bare QEMU boot floor, {} runs", args.runs);
    let floor = pyro.bench_floor(&args.env, RunRequest::DEFAULT_MEMORY_MIB, args.runs)?;
    eprintln!(
        "pyro bench: cold `pyro run {} -- true`, {} runs",
        args.env, args.runs
    );
    let cold = time_command(
        &format!("cold `pyro run {} -- true`", args.env),
        &exe,
        &run_args,
        args.runs,
    )?;

    let ratio = cold.median() / floor.median();
    let mut rows = vec![Row::from(floor), Row::from(cold)];
    eprintln!(
        "pyro bench: MCP server start and tools/list, {} runs",
        args.runs
    );
    rows.extend(mcp_rows(&exe, args.runs)?.into_iter().map(Row::from));
    if !args.skip_workspaces {
        rows.extend(workspace_rows(pyro, &exe, args)?.into_iter().map(Row::from));
    }
    let report = BenchReport {
        env: args.env.clone(),
        runs: args.runs,
        rows,
        cold_run_over_floor: ratio,
    };
    let table = render(&report);
    if args.json {
        super::print_json(&report)?;
    } else {
        print!("{table}");
    }
    if let Some(path) = &args.output {
        std::fs::write(path, &table)?;
    }
    Ok(0)
}

/// `pyro mcp serve` from spawn to the `initialize` answer, then a
/// `tools/list` round trip, speaking newline-delimited JSON-RPC on stdio.
fn mcp_rows(exe: &Path, runs: usize) -> anyhow::Result<Vec<Samples>> {
    use std::io::{BufRead, BufReader, Write};
    let mut start = Samples::new("`pyro mcp serve` start to `initialize` answered");
    let mut list = Samples::new("MCP `tools/list` round trip (workspace-core)");
    for _ in 0..runs {
        let started = Instant::now();
        let mut server = Command::new(exe)
            .args(["mcp", "serve"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let mut stdin = server.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(server.stdout.take().expect("piped stdout"));
        let mut answer = |id: u64| -> anyhow::Result<()> {
            let mut line = String::new();
            loop {
                line.clear();
                anyhow::ensure!(
                    stdout.read_line(&mut line)? > 0,
                    "the MCP server closed its output"
                );
                let message: serde_json::Value = serde_json::from_str(&line)?;
                if message["id"] == id {
                    anyhow::ensure!(message.get("error").is_none(), "MCP error: {message}");
                    return Ok(());
                }
            }
        };
        let initialize = serde_json::json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": { "name": "pyro-bench", "version": env!("CARGO_PKG_VERSION") }
            }
        });
        writeln!(stdin, "{initialize}")?;
        answer(1)?;
        start.push(started.elapsed());
        writeln!(
            stdin,
            "{}",
            serde_json::json!({ "jsonrpc": "2.0", "method": "notifications/initialized" })
        )?;
        let listing = Instant::now();
        writeln!(
            stdin,
            "{}",
            serde_json::json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" })
        )?;
        answer(2)?;
        list.push(listing.elapsed());
        drop(stdin);
        let _ = server.kill();
        let _ = server.wait();
    }
    Ok(vec![start, list])
}

/// Workspace measurements, in a throw-away `PYRO_HOME`.
fn workspace_rows(facade: &Pyro, exe: &Path, args: &BenchArgs) -> anyhow::Result<Vec<Samples>> {
    let home = tempfile::tempdir()?;
    let pyro = |cmd_args: &[&str]| -> anyhow::Result<Duration> {
        let started = Instant::now();
        let output = Command::new(exe)
            .args(cmd_args)
            .env("PYRO_HOME", home.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()?;
        anyhow::ensure!(
            output.status.success(),
            "pyro {} failed: {}",
            cmd_args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(started.elapsed())
    };
    let env = args.env.as_str();

    eprintln!(
        "pyro bench: workspace create to first exec, {} runs",
        args.runs
    );
    let mut tti = Samples::new("workspace create + first `exec -- true`");
    for i in 0..args.runs {
        let name = format!("tti-{i}");
        let create = pyro(&["workspace", "create", env, "--name", &name])?;
        let exec = pyro(&["workspace", "exec", &name, "--", "true"])?;
        tti.push(create + exec);
        pyro(&["workspace", "delete", &name])?;
    }

    eprintln!("pyro bench: exec round trip and reset, {} runs", args.runs);
    pyro(&["workspace", "create", env, "--name", "hot"])?;
    let mut exec = Samples::new("`workspace exec -- true` (running workspace)");
    for _ in 0..args.runs {
        exec.push(pyro(&["workspace", "exec", "hot", "--", "true"])?);
    }
    let mut reset = Samples::new("`workspace reset` to baseline (until usable)");
    for _ in 0..args.runs {
        reset.push(pyro(&["workspace", "reset", "hot"])?);
    }
    let sessions = super::bench_sessions::session_rows(facade, home.path(), "hot", args.runs)?;
    pyro(&["workspace", "delete", "hot"])?;

    let seed_runs = args.runs.min(3);
    eprintln!(
        "pyro bench: seeding {} MB in 10k files, {seed_runs} runs",
        args.seed_mb
    );
    let tree = tempfile::tempdir()?;
    let bytes = generate_tree(tree.path(), args.seed_mb)?;
    let mut seed_create = Samples::new("create with --seed-path (tree)");
    let mut bare_create = Samples::new("create without a seed");
    for i in 0..seed_runs {
        let name = format!("seed-{i}");
        seed_create.push(pyro(&[
            "workspace",
            "create",
            env,
            "--name",
            &name,
            "--seed-path",
            tree.path().to_str().unwrap_or_default(),
        ])?);
        pyro(&["workspace", "delete", &name])?;
        bare_create.push(pyro(&["workspace", "create", env, "--name", &name])?);
        pyro(&["workspace", "delete", &name])?;
    }
    let seconds = (seed_create.median() - bare_create.median()) / 1000.0;
    let mut throughput = Samples::new(format!(
        "seeding throughput, MB/s ({} MB, 10k files; value, not ms)",
        args.seed_mb
    ));
    throughput
        .millis
        .push(bytes as f64 / 1e6 / seconds.max(0.001));
    let mut rows = vec![tti, exec, reset];
    rows.extend(sessions);
    rows.extend([bare_create, seed_create, throughput]);
    Ok(rows)
}

/// Writes `mb` megabytes of incompressible data as 100 x 100 files.
fn generate_tree(root: &Path, mb: u64) -> anyhow::Result<u64> {
    let per_file = (mb * 1_000_000 / 10_000).max(1) as usize;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut total = 0u64;
    for d in 0..100 {
        let dir = root.join(format!("d{d}"));
        std::fs::create_dir(&dir)?;
        for f in 0..100 {
            let mut data = vec![0u8; per_file];
            for byte in data.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *byte = state as u8;
            }
            std::fs::write(dir.join(format!("f{f}.txt")), &data)?;
            total += per_file as u64;
        }
    }
    Ok(total)
}

fn render(report: &BenchReport) -> String {
    let width = report
        .rows
        .iter()
        .map(|r| r.samples.label.len())
        .max()
        .unwrap_or(10)
        .max("measurement".len());
    let mut out = format!(
        "| {:<width$} | {:>10} | {:>10} | {:>10} | {:>4} |\n|{}|{}|{}|{}|{}|\n",
        "measurement",
        "median ms",
        "min ms",
        "max ms",
        "runs",
        "-".repeat(width + 2),
        "-".repeat(12),
        "-".repeat(12),
        "-".repeat(12),
        "-".repeat(6),
    );
    for row in &report.rows {
        out.push_str(&format!(
            "| {:<width$} | {:>10.1} | {:>10.1} | {:>10.1} | {:>4} |\n",
            row.samples.label,
            row.median_ms,
            row.min_ms,
            row.max_ms,
            row.samples.millis.len()
        ));
    }
    out.push_str(&format!(
        "\ncold run / floor (medians): {:.2}x\n",
        report.cold_run_over_floor
    ));
    out
}
