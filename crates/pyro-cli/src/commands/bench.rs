//! `pyro bench`: runs the facade's benchmark and prints its table of
//! medians, the cold run against its floor.

use pyro_core::{BenchOptions, BenchReport, Pyro};

use crate::cli::BenchArgs;

pub fn bench(pyro: &Pyro, args: &BenchArgs) -> anyhow::Result<i32> {
    let options = BenchOptions {
        env: args.env.clone(),
        runs: args.runs,
        seed_mb: args.seed_mb,
        skip_workspaces: args.skip_workspaces,
        checkout: args.checkout.clone(),
        ..BenchOptions::new(std::env::current_exe()?)
    };
    let report = super::runtime().block_on(pyro.bench(&options, &mut |step| {
        eprintln!("pyro bench: {step}");
    }))?;
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
        "| {:<width$} | {:>10} | {:>10} | {:>10} | {:>10} | {:>4} |\n|{}|{}|{}|{}|{}|{}|\n",
        "measurement",
        "median ms",
        "p99 ms",
        "min ms",
        "max ms",
        "runs",
        "-".repeat(width + 2),
        "-".repeat(12),
        "-".repeat(12),
        "-".repeat(12),
        "-".repeat(12),
        "-".repeat(6),
    );
    for row in &report.rows {
        out.push_str(&format!(
            "| {:<width$} | {:>10.1} | {:>10.1} | {:>10.1} | {:>10.1} | {:>4} |\n",
            row.samples.label,
            row.median_ms,
            row.p99_ms,
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
