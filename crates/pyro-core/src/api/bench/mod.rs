//! `pyro bench`: speed measured as whole operations, reported as medians
//! and as ratios to the bare-boot floor of the same run (these machines
//! are noisy and differ in speed, so only ratios travel).
//!
//! The measurements run the `pyro` binary itself ([`BenchOptions::program`])
//! the way a user would, in a throw-away `PYRO_HOME`: a cold `pyro run`,
//! `pyro mcp serve` answering `initialize` and `tools/list`, workspace
//! create, exec, reset, seeding, memory states (reset to a snapshot, fork,
//! suspend and resume), MCP calls on a running workspace, and a download
//! and connects over the guest's network; shells, services and twenty
//! clients at once on one workspace go through the facade. The front end only prints the [`BenchReport`].

mod floor;
mod load;
mod network;
mod ports;
mod seeding;
mod sessions;
mod states;
mod workspaces;

use std::ffi::OsStr;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::error::Error;
use super::params;
use super::Pyro;

/// What `pyro bench` measures, and how often.
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// The `pyro` binary to time (the CLI passes itself).
    pub program: PathBuf,
    /// The environment to boot.
    pub env: String,
    /// Runs per measurement; medians are reported.
    pub runs: usize,
    /// Size of the generated tree for the seeding measurement, MB.
    pub seed_mb: u64,
    /// Only the run measurements, no workspaces.
    pub skip_workspaces: bool,
    /// A Git checkout to time seeding from, besides the generated tree.
    pub checkout: Option<PathBuf>,
}

impl BenchOptions {
    /// The defaults: `debian:12`, 5 runs, a 200 MB seed, workspaces too.
    pub fn new(program: impl Into<PathBuf>) -> Self {
        BenchOptions {
            program: program.into(),
            env: params::DEFAULT_ENV.to_string(),
            runs: 5,
            seed_mb: 200,
            skip_workspaces: false,
            checkout: None,
        }
    }
}

/// Wall times of repeated runs of one thing, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Samples {
    /// What was measured.
    pub label: String,
    /// One value per run.
    pub millis: Vec<f64>,
}

impl Samples {
    /// No samples yet.
    pub fn new(label: impl Into<String>) -> Self {
        Samples {
            label: label.into(),
            millis: Vec::new(),
        }
    }

    /// Adds one run.
    pub fn push(&mut self, elapsed: Duration) {
        self.millis.push(elapsed.as_secs_f64() * 1000.0);
    }

    fn sorted(&self) -> Vec<f64> {
        let mut sorted = self.millis.clone();
        sorted.sort_by(f64::total_cmp);
        sorted
    }

    /// The median run (NaN without runs).
    pub fn median(&self) -> f64 {
        let sorted = self.sorted();
        match sorted.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        }
    }

    /// The fastest run.
    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    /// The slowest run.
    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }

    /// The 99th percentile (nearest rank; NaN without runs).
    pub fn p99(&self) -> f64 {
        let sorted = self.sorted();
        let rank = (sorted.len() as f64 * 0.99).ceil() as usize;
        sorted
            .get(rank.saturating_sub(1))
            .copied()
            .unwrap_or(f64::NAN)
    }
}

/// One line of the table.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    /// The runs.
    #[serde(flatten)]
    pub samples: Samples,
    /// Their median, ms.
    pub median_ms: f64,
    /// The fastest, ms.
    pub min_ms: f64,
    /// The slowest, ms.
    pub max_ms: f64,
    /// The 99th percentile, ms.
    pub p99_ms: f64,
}

impl From<Samples> for BenchRow {
    fn from(samples: Samples) -> Self {
        BenchRow {
            median_ms: samples.median(),
            min_ms: samples.min(),
            max_ms: samples.max(),
            p99_ms: samples.p99(),
            samples,
        }
    }
}

/// The whole benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct BenchReport {
    /// The environment measured.
    pub env: String,
    /// Runs per measurement.
    pub runs: usize,
    /// The floor first, then each measurement.
    pub rows: Vec<BenchRow>,
    /// Cold `pyro run ENV -- true` median over the bare-boot floor median.
    pub cold_run_over_floor: f64,
}

impl Pyro {
    /// Runs the benchmark, telling `progress` what it measures as it goes.
    pub async fn bench(
        &self,
        options: &BenchOptions,
        progress: &mut (dyn FnMut(&str) + Send),
    ) -> Result<BenchReport, Error> {
        if options.runs == 0 {
            return Err(Error::Benchmark("runs must be at least 1".into()));
        }
        // A known, pulled environment before its name reaches a command line.
        self.env_inspect(&options.env)?;
        let runs = options.runs;
        let env = options.env.as_str();
        let run_args = ["run", env, "--", "true"];
        progress("warming up (environment check, initramfs cache, KVM probe)");
        time_command("warm-up", &options.program, &run_args, 1, &[]).await?;

        progress(&format!("bare QEMU boot floor, {runs} runs"));
        let floor = self
            .bench_floor(env, params::DEFAULT_MEMORY_MIB, runs)
            .await?;
        progress(&format!("cold `pyro run {env} -- true`, {runs} runs"));
        let label = format!("cold `pyro run {env} -- true`");
        let cold = time_command(&label, &options.program, &run_args, runs, &[]).await?;
        let ratio = cold.median() / floor.median();
        let mut rows = vec![BenchRow::from(floor), BenchRow::from(cold)];

        progress(&format!("MCP server start and tools/list, {runs} runs"));
        rows.extend(
            floor::mcp_rows(&options.program, runs)
                .await?
                .into_iter()
                .map(BenchRow::from),
        );
        if !options.skip_workspaces {
            let samples = workspaces::rows(self, options, progress).await?;
            rows.extend(samples.into_iter().map(BenchRow::from));
            let samples = states::rows(options, progress).await?;
            rows.extend(samples.into_iter().map(BenchRow::from));
            let samples = network::rows(options, progress).await?;
            rows.extend(samples.into_iter().map(BenchRow::from));
        }
        Ok(BenchReport {
            env: options.env.clone(),
            runs,
            rows,
            cold_run_over_floor: ratio,
        })
    }
}

/// Times `runs` runs of `program args` as a whole process (with `envs`
/// set), each of which must succeed.
pub(crate) async fn time_command<S: AsRef<OsStr>>(
    label: &str,
    program: impl AsRef<OsStr>,
    args: &[S],
    runs: usize,
    envs: &[(&str, &OsStr)],
) -> Result<Samples, Error> {
    let mut samples = Samples::new(label);
    for _ in 0..runs {
        samples.push(run_once(label, program.as_ref(), args, envs).await?);
    }
    Ok(samples)
}

/// One run of `program args`, which must succeed; its wall time.
pub(crate) async fn run_once<S: AsRef<OsStr>>(
    label: &str,
    program: &OsStr,
    args: &[S],
    envs: &[(&str, &OsStr)],
) -> Result<Duration, Error> {
    Ok(run_output(label, program, args, envs).await?.0)
}

/// One run of `program args`, which must succeed; its wall time and
/// what it printed on stdout.
pub(crate) async fn run_output<S: AsRef<OsStr>>(
    label: &str,
    program: &OsStr,
    args: &[S],
    envs: &[(&str, &OsStr)],
) -> Result<(Duration, Vec<u8>), Error> {
    let started = Instant::now();
    let mut command = tokio::process::Command::new(program);
    command
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (key, value) in envs {
        command.env(key, value);
    }
    let output = command
        .output()
        .await
        .map_err(|e| Error::Benchmark(format!("could not start {label}: {e}")))?;
    let elapsed = started.elapsed();
    if !output.status.success() {
        return Err(Error::Benchmark(format!(
            "{label} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )));
    }
    Ok((elapsed, output.stdout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_even_and_odd_counts() {
        let mut samples = Samples::new("x");
        for ms in [30, 10, 20] {
            samples.push(Duration::from_millis(ms));
        }
        assert_eq!(samples.median(), 20.0);
        samples.push(Duration::from_millis(40));
        assert_eq!(samples.median(), 25.0);
        assert_eq!(samples.min(), 10.0);
        assert_eq!(samples.max(), 40.0);
        assert_eq!(samples.p99(), 40.0);
        let mut many = Samples::new("y");
        for ms in 1..=200 {
            many.push(Duration::from_millis(ms));
        }
        assert_eq!(many.p99(), 198.0);
        assert!(Samples::new("z").p99().is_nan());
    }

    #[tokio::test]
    async fn a_failing_command_fails_the_benchmark_with_its_output() {
        let error = time_command("x", "sh", &["-c", "echo nope >&2; exit 3"], 1, &[])
            .await
            .unwrap_err();
        assert!(error.to_string().contains("nope"), "{error}");
        let ok = time_command("x", "true", &[] as &[&str], 2, &[])
            .await
            .unwrap();
        assert_eq!(ok.millis.len(), 2);
    }
}
