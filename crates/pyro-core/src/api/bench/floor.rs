//! The floor (a bare QEMU boot that powers off at once) and the MCP
//! server's start and `tools/list` times.

use std::path::Path;
use std::process::Stdio;
use std::time::Instant;

use pyro_vmm::{Engine, VmSpec};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use super::Samples;
use crate::api::error::Error;
use crate::api::Pyro;
use crate::host::machine::Machine;
use crate::host::{agent_image, boot};

impl Pyro {
    /// The floor for a cold run: QEMU boots the environment's kernel with an
    /// initramfs holding only the agent, which powers off at once (no
    /// modules, no disk, no exec). Measured from spawning QEMU to its exit.
    pub async fn bench_floor(
        &self,
        env: &str,
        memory_mib: u32,
        runs: usize,
    ) -> Result<Samples, Error> {
        let machine = Machine::for_env(&self.cache_dir, env)?;
        let spec = VmSpec {
            initramfs: machine.store.agent_only_initramfs(agent_image::AGENT)?,
            extra_cmdline: vec!["pyro.mode=poweroff".into()],
            ..machine.spec(None, 1, memory_mib, None)
        };
        // Each VM is started and awaited on one blocking thread: a VM dies
        // with the thread that started it, and waiting blocks.
        tokio::task::spawn_blocking(move || {
            let accel = machine.accel.chosen;
            let mut samples =
                Samples::new(format!("bare QEMU boot + power-off ({})", accel.as_str()));
            for _ in 0..runs {
                let started = Instant::now();
                let mut vm = machine.engine.start(&spec)?;
                let exit = vm.wait_timeout(boot::boot_deadline(accel));
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
        })
        .await
        .map_err(|e| Error::Benchmark(format!("the floor measurement stopped: {e}")))?
    }
}

/// `pyro mcp serve` from spawn to the `initialize` answer, then a
/// `tools/list` round trip, speaking newline-delimited JSON-RPC on stdio.
pub(super) async fn mcp_rows(program: &Path, runs: usize) -> Result<Vec<Samples>, Error> {
    let mut start = Samples::new("`pyro mcp serve` start to `initialize` answered");
    let mut list = Samples::new("MCP `tools/list` round trip (workspace-core)");
    let failed = |what: String| Error::Benchmark(format!("MCP server: {what}"));
    for _ in 0..runs {
        let started = Instant::now();
        let mut server = tokio::process::Command::new(program)
            .args(["mcp", "serve"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| failed(e.to_string()))?;
        let mut stdin = server.stdin.take().expect("piped stdin");
        let mut stdout = BufReader::new(server.stdout.take().expect("piped stdout"));
        let initialize = serde_json::json!({
            "jsonrpc": "2.0", "id": 1, "method": "initialize",
            "params": {
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": { "name": "pyro-bench", "version": env!("CARGO_PKG_VERSION") }
            }
        });
        let initialized =
            serde_json::json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
        let tools = serde_json::json!({ "jsonrpc": "2.0", "id": 2, "method": "tools/list" });
        send(&mut stdin, &initialize).await.map_err(failed)?;
        answer(&mut stdout, 1).await.map_err(failed)?;
        start.push(started.elapsed());
        send(&mut stdin, &initialized).await.map_err(failed)?;
        let listing = Instant::now();
        send(&mut stdin, &tools).await.map_err(failed)?;
        answer(&mut stdout, 2).await.map_err(failed)?;
        list.push(listing.elapsed());
        drop(stdin);
        let _ = server.kill().await;
    }
    Ok(vec![start, list])
}

pub(super) async fn send(
    stdin: &mut tokio::process::ChildStdin,
    message: &serde_json::Value,
) -> Result<(), String> {
    let mut line = message.to_string();
    line.push('\n');
    stdin
        .write_all(line.as_bytes())
        .await
        .map_err(|e| e.to_string())
}

/// Reads lines until the answer to request `id`.
async fn answer(
    stdout: &mut BufReader<tokio::process::ChildStdout>,
    id: u64,
) -> Result<(), String> {
    match answer_value(stdout, id).await?.get("error") {
        Some(error) => Err(format!("error {error}")),
        None => Ok(()),
    }
}

/// Reads lines until the answer to request `id`; returns it whole.
pub(super) async fn answer_value(
    stdout: &mut BufReader<tokio::process::ChildStdout>,
    id: u64,
) -> Result<serde_json::Value, String> {
    let mut line = String::new();
    loop {
        line.clear();
        let read = stdout
            .read_line(&mut line)
            .await
            .map_err(|e| e.to_string())?;
        if read == 0 {
            return Err("it closed its output".into());
        }
        let message: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| format!("not JSON-RPC: {e}"))?;
        if message["id"] == id {
            return Ok(message);
        }
    }
}
