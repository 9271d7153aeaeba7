//! Shell and service rows, on a running workspace, through the facade.

use std::time::{Duration, Instant};

use super::Samples;
use crate::api::error::Error;
use crate::api::params::{ShellInput, ShellReadOptions};
use crate::api::Pyro;
use crate::supervisor::protocol::{Readiness, ServiceSpec};

/// How long the benchmark service takes to get ready by itself.
const OWN_START: Duration = Duration::from_secs(1);

/// Shell write-to-read round trip, and service start-to-ready overhead
/// beyond the service's own start, on workspace `name`.
pub(super) async fn rows(
    pyro: &Pyro,
    name: &str,
    runs: usize,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Vec<Samples>, Error> {
    progress(&format!("shell write-to-read round trip, {runs} runs"));
    let shell = pyro
        .workspace_shell_open(name, None, None, None, &[])
        .await?
        .id;
    let settle = ShellReadOptions::new(Some(Duration::from_millis(300)), None, false);
    pyro.workspace_shell_read(name, &shell, settle).await?;
    let poll = ShellReadOptions::new(Some(Duration::ZERO), Some(Duration::from_secs(1)), false);
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
            if started.elapsed() > Duration::from_secs(30) {
                return Err(Error::Benchmark(format!(
                    "the shell never printed {wanted}"
                )));
            }
            seen.push_str(&pyro.workspace_shell_read(name, &shell, poll).await?.text);
            seen.push('\n');
        }
        round_trip.push(started.elapsed());
        pyro.workspace_shell_read(name, &shell, settle).await?;
    }
    pyro.workspace_shell_close(name, &shell).await?;

    progress(&format!("service start-to-ready overhead, {runs} runs"));
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
            secret_env: Vec::new(),
        };
        let started = Instant::now();
        pyro.workspace_service_start(name, spec).await?;
        overhead.push(started.elapsed().saturating_sub(OWN_START));
        pyro.workspace_service_stop(name, &format!("bench-{n}"), Duration::from_secs(1))
            .await?;
    }
    Ok(vec![round_trip, overhead])
}
