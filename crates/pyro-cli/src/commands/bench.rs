//! `pyro bench`: a table of medians, the cold run against its floor.

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
    let report = BenchReport {
        env: args.env.clone(),
        runs: args.runs,
        rows: vec![Row::from(floor), Row::from(cold)],
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
            "| {:<width$} | {:>10.0} | {:>10.0} | {:>10.0} | {:>4} |\n",
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
