//! `pyro run ENV -- CMD`.

use std::io::Write;
use std::time::Duration;

use pyro_core::{OutputSink, Pyro, RunEnd, RunRequest};

use crate::cli::RunArgs;

pub(super) struct StdStreams;

impl OutputSink for StdStreams {
    fn stdout(&mut self, bytes: &[u8]) {
        let mut out = std::io::stdout().lock();
        // A closed stdout (`| head`) must not stop the run: drop the bytes.
        let _ = out.write_all(bytes).and_then(|()| out.flush());
    }

    fn stderr(&mut self, bytes: &[u8]) {
        let _ = std::io::stderr().lock().write_all(bytes);
    }
}

pub fn run(pyro: &Pyro, args: RunArgs) -> anyhow::Result<i32> {
    let request = RunRequest {
        env: args.env,
        argv: args.command,
        timeout: args.timeout.map(Duration::from_secs),
        cpus: args.cpus,
        memory_mib: args.memory,
        env_vars: args.env_vars,
        stdin: super::stdin_input(args.stdin),
        network: args.network.request(),
    };
    let runtime = super::runtime();
    let report = runtime.block_on(async {
        let cancel = interrupted();
        pyro.run(&request, &mut StdStreams, cancel).await
    })?;
    match &report.end {
        RunEnd::Exited { status } if status.timed_out => eprintln!(
            "pyro: command timed out after {}s and was killed; the VM was stopped",
            request.timeout.map(|t| t.as_secs()).unwrap_or_default()
        ),
        RunEnd::Failed { message, .. } => {
            eprintln!("pyro: {}", pyro_util::text::visible_lines(message))
        }
        RunEnd::Cancelled => eprintln!("pyro: interrupted; the VM was stopped"),
        RunEnd::Exited { .. } => {}
    }
    super::workspace_network::note_denials(
        &report.network_denied,
        super::workspace_network::Opened::Run,
    );
    // A hint for a person at a terminal; scripts reading stderr get only
    // the command's own.
    let at_terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    if at_terminal && report.network == pyro_core::NetworkMode::Off && report.exit_code() != 0 {
        eprintln!(
            "pyro: note: the VM had no network (the default); if the command needed it, \
             run it again with --network egress"
        );
    }
    if args.json {
        eprintln!("{}", serde_json::to_string(&report)?);
    }
    Ok(report.exit_code())
}

/// Resolves on Ctrl-C, SIGTERM or SIGHUP. The handlers are in place when
/// this returns (not at the first poll), so a signal that comes while the
/// call it guards still runs its first synchronous steps is not lost.
/// Call it inside the runtime.
pub(super) fn interrupted() -> impl std::future::Future<Output = ()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut streams = Vec::new();
    for kind in [
        SignalKind::interrupt(),
        SignalKind::terminate(),
        SignalKind::hangup(),
    ] {
        if let Ok(stream) = signal(kind) {
            streams.push(stream);
        }
    }
    async move {
        let waits = streams.iter_mut().map(|s| Box::pin(s.recv()));
        futures_select_all(waits).await;
    }
}

/// Waits for the first of several futures (no extra crate for one use).
async fn futures_select_all<F: std::future::Future + Unpin>(futures: impl Iterator<Item = F>) {
    let mut futures: Vec<F> = futures.collect();
    if futures.is_empty() {
        return std::future::pending().await;
    }
    std::future::poll_fn(|cx| {
        for future in futures.iter_mut() {
            if std::pin::Pin::new(future).poll(cx).is_ready() {
                return std::task::Poll::Ready(());
            }
        }
        std::task::Poll::Pending
    })
    .await
}
