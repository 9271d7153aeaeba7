//! `pyro bench` rows for shells and services, on a running workspace.

use std::path::Path;
use std::time::{Duration, Instant};

use pyro_core::bench::Samples;
use pyro_core::workspace::services::{Readiness, ServiceSpec};
use pyro_core::workspace::shells::{ShellInput, ShellReadOptions};
use pyro_core::Pyro;

/// How long the benchmark service takes to get ready by itself.
const OWN_START: Duration = Duration::from_secs(1);

/// Shell write-to-read round trip, and service start-to-ready overhead
/// beyond the service's own start, on workspace `name` under `home`.
pub fn session_rows(
    pyro: &Pyro,
    home: &Path,
    name: &str,
    runs: usize,
) -> anyhow::Result<Vec<Samples>> {
    let pyro = Pyro::with_dirs(pyro.cache_dir(), home);
    let runtime = super::runtime();
    runtime.block_on(async {
        eprintln!("pyro bench: shell write-to-read round trip, {runs} runs");
        let shell = pyro.workspace_shell_open(name, None, None).await?.id;
        let settle = ShellReadOptions {
            wait_idle: Duration::from_millis(300),
            ..ShellReadOptions::default()
        };
        pyro.workspace_shell_read(name, &shell, settle).await?;
        let poll = ShellReadOptions {
            wait_idle: Duration::ZERO,
            timeout: Duration::from_secs(1),
            raw: false,
        };
        let mut round_trip = Samples::new("shell write to output read back (echo)");
        for n in 0..runs {
            // The echoed input shows `$((N + 1))`; only the output shows N + 1.
            let line = format!("echo mark-$(({n} + 1))");
            let wanted = format!("mark-{}", n + 1);
            let input = ShellInput::new(None, Some(&line), &[])?;
            let started = Instant::now();
            pyro.workspace_shell_write(name, &shell, &input).await?;
            let mut seen = String::new();
            while !seen.lines().any(|l| l.trim_end() == wanted) {
                anyhow::ensure!(
                    started.elapsed() < Duration::from_secs(30),
                    "the shell never printed {wanted}"
                );
                seen.push_str(&pyro.workspace_shell_read(name, &shell, poll).await?.text);
                seen.push('\n');
            }
            round_trip.push(started.elapsed());
            pyro.workspace_shell_read(name, &shell, settle).await?;
        }
        pyro.workspace_shell_close(name, &shell).await?;

        eprintln!("pyro bench: service start-to-ready overhead, {runs} runs");
        let mut overhead = Samples::new(format!(
            "service start to ready, beyond its own {} ms (--ready-file)",
            OWN_START.as_millis()
        ));
        for n in 0..runs {
            let flag = format!("/tmp/bench-ready-{n}");
            let spec = ServiceSpec {
                name: format!("bench-{n}"),
                argv: vec![
                    "sh".into(),
                    "-c".into(),
                    format!(
                        "sleep {}; touch {flag}; exec sleep 1000",
                        OWN_START.as_secs_f64()
                    ),
                ],
                cwd: None,
                env: Vec::new(),
                readiness: Some(Readiness::File { path: flag }),
                ready_timeout_ms: 60_000,
            };
            let started = Instant::now();
            pyro.workspace_service_start(name, spec).await?;
            overhead.push(started.elapsed().saturating_sub(OWN_START));
            pyro.workspace_service_stop(name, &format!("bench-{n}"), Duration::from_secs(1))
                .await?;
        }
        Ok(vec![round_trip, overhead])
    })
}
