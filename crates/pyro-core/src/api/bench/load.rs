//! Many clients on one workspace at once, through the facade: twenty
//! tasks for [`LOAD_TIME`], each looping over an exec, a file write read
//! back, a shell read and (every fifth round) the summary. Every written
//! file must read back as written. One row per operation, whose median is
//! its p50 and whose `p99_ms` its 99th percentile.

use std::time::{Duration, Instant};

use super::Samples;
use crate::api::error::Error;
use crate::api::params::ShellReadOptions;
use crate::api::Pyro;
use crate::{CollectOutput, ExecOptions};

/// Clients at once.
pub(super) const CLIENTS: usize = 20;
/// How long they run.
pub(super) const LOAD_TIME: Duration = Duration::from_secs(20);

/// The operations, in row order.
const OPS: [&str; 5] = ["exec", "file write", "file read", "shell read", "summary"];

/// Per-operation latencies of [`CLIENTS`] clients on workspace `name`.
pub(super) async fn rows(
    pyro: &Pyro,
    name: &str,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Vec<Samples>, Error> {
    progress(&format!(
        "{CLIENTS} clients at once for {} s (exec, file write and read, shell read, summary)",
        LOAD_TIME.as_secs()
    ));
    let mut rows: Vec<Samples> = OPS
        .iter()
        .map(|op| {
            Samples::new(format!(
                "{op}, {CLIENTS} clients on one workspace (p50; p99)"
            ))
        })
        .collect();
    // Local tasks: an exec's output sink need not be `Send`.
    let local = tokio::task::LocalSet::new();
    let mut clients = Vec::new();
    for client in 0..CLIENTS {
        let (pyro, name) = (pyro.clone(), name.to_string());
        clients.push(local.spawn_local(async move { one_client(&pyro, &name, client).await }));
    }
    local
        .run_until(async {
            for client in clients {
                let timings = client
                    .await
                    .map_err(|e| Error::Benchmark(format!("a load client died: {e}")))??;
                for (row, samples) in rows.iter_mut().zip(timings) {
                    row.millis.extend(samples.millis);
                }
            }
            Ok::<_, Error>(())
        })
        .await?;
    Ok(rows)
}

/// One client's loop; its timings per operation, in [`OPS`] order.
async fn one_client(pyro: &Pyro, name: &str, client: usize) -> Result<Vec<Samples>, Error> {
    let mut timings: Vec<Samples> = OPS.iter().map(|op| Samples::new(*op)).collect();
    let shell = pyro
        .workspace_shell_open(name, None, None, None, &[])
        .await?
        .id;
    let read = ShellReadOptions::new(Some(Duration::ZERO), None, false);
    let started = Instant::now();
    let mut round = 0usize;
    while started.elapsed() < LOAD_TIME {
        let exec = ExecOptions {
            argv: vec!["echo".into(), format!("client-{client}")],
            ..ExecOptions::default()
        };
        let mut output = CollectOutput::default();
        let at = Instant::now();
        pyro.workspace_exec(name, &exec, &mut output, std::future::pending())
            .await?;
        timings[0].push(at.elapsed());
        if output.stdout_text() != format!("client-{client}\n") {
            return Err(Error::Benchmark(format!(
                "client {client}'s exec printed {:?}",
                output.stdout_text()
            )));
        }

        let path = format!("/workspace/load-{client}-{round}.txt");
        let content = format!("client {client} round {round}\n").repeat(64);
        let at = Instant::now();
        pyro.workspace_file_write(name, &path, &mut content.as_bytes(), None)
            .await?;
        timings[1].push(at.elapsed());
        let at = Instant::now();
        let back = pyro.workspace_file_read(name, &path, None).await?;
        timings[2].push(at.elapsed());
        if back != content.as_bytes() {
            return Err(Error::Benchmark(format!("{path} read back changed")));
        }

        let at = Instant::now();
        pyro.workspace_shell_read(name, &shell, read).await?;
        timings[3].push(at.elapsed());

        if round.is_multiple_of(5) {
            let at = Instant::now();
            pyro.workspace_summary(name).await?;
            timings[4].push(at.elapsed());
        }
        round += 1;
    }
    pyro.workspace_shell_close(name, &shell).await?;
    Ok(timings)
}
