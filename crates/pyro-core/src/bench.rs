//! Measurements behind `pyro bench`: samples and their summary, the bare
//! QEMU boot floor, and wall time of whole commands.

use std::ffi::OsStr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use pyro_vmm::{Engine, VmSpec};
use serde::Serialize;

use crate::{Error, Pyro};

/// Wall times of repeated runs of one thing, in milliseconds.
#[derive(Debug, Clone, Serialize)]
pub struct Samples {
    pub label: String,
    pub millis: Vec<f64>,
}

impl Samples {
    pub fn new(label: impl Into<String>) -> Self {
        Samples {
            label: label.into(),
            millis: Vec::new(),
        }
    }

    pub fn push(&mut self, elapsed: Duration) {
        self.millis.push(elapsed.as_secs_f64() * 1000.0);
    }

    fn sorted(&self) -> Vec<f64> {
        let mut sorted = self.millis.clone();
        sorted.sort_by(f64::total_cmp);
        sorted
    }

    pub fn median(&self) -> f64 {
        let sorted = self.sorted();
        match sorted.len() {
            0 => f64::NAN,
            n if n % 2 == 1 => sorted[n / 2],
            n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
        }
    }

    pub fn min(&self) -> f64 {
        self.sorted().first().copied().unwrap_or(f64::NAN)
    }

    pub fn max(&self) -> f64 {
        self.sorted().last().copied().unwrap_or(f64::NAN)
    }
}

impl Pyro {
    /// The floor for a cold run: QEMU boots the environment's kernel with an
    /// initramfs holding only the agent, which powers off at once (no
    /// modules, no disk, no exec). Measured from spawning QEMU to its exit.
    pub fn bench_floor(&self, env: &str, memory_mib: u32, runs: usize) -> Result<Samples, Error> {
        let store = self.env_store()?;
        let artifacts = store.boot_artifacts(env, crate::agent_image::AGENT)?;
        let initramfs = store.agent_only_initramfs(crate::agent_image::AGENT)?;
        let engine = self.engine()?;
        let accel = self.accel_for(&engine, &store, &artifacts.kernel);
        let spec = VmSpec {
            kernel: artifacts.kernel,
            initramfs,
            root_disk: None,
            cpus: 1,
            memory_mib,
            extra_cmdline: vec!["pyro.mode=poweroff".into()],
            accel: accel.chosen,
            restore_from: None,
            console_log: None,
        };
        let mut samples = Samples::new(format!(
            "bare QEMU boot + power-off ({})",
            accel.chosen.as_str()
        ));
        for _ in 0..runs {
            let started = Instant::now();
            let mut vm = engine.start(&spec)?;
            let exit = vm.wait_timeout(crate::boot::boot_deadline(accel.chosen));
            let elapsed = started.elapsed();
            if exit.is_none() {
                vm.kill();
                return Err(Error::Benchmark(format!(
                    "the floor VM did not power off; console: {}",
                    vm.console().tail(5).join(" | ")
                )));
            }
            samples.push(elapsed);
        }
        Ok(samples)
    }
}

/// Times `runs` runs of a whole command, which must succeed each time.
pub fn time_command<S: AsRef<OsStr>>(
    label: &str,
    program: impl AsRef<OsStr>,
    args: &[S],
    runs: usize,
) -> Result<Samples, Error> {
    let mut samples = Samples::new(label);
    for _ in 0..runs {
        let started = Instant::now();
        let output = Command::new(program.as_ref())
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| Error::Benchmark(format!("could not start {label}: {e}")))?;
        let elapsed = started.elapsed();
        if !output.status.success() {
            return Err(Error::Benchmark(format!(
                "{label} failed ({}): {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )));
        }
        samples.push(elapsed);
    }
    Ok(samples)
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
    }
}
