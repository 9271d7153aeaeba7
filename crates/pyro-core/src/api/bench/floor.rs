//! The floor (a bare QEMU boot that powers off at once) and the MCP
//! server's start and `tools/list` times.

use std::ffi::OsStr;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

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
    for _ in 0..runs {
        let started = Instant::now();
        let mut server = McpServer::start(program.as_os_str(), None).await?;
        start.push(started.elapsed());
        let listing = Instant::now();
        server.request("tools/list", serde_json::json!({})).await?;
        list.push(listing.elapsed());
        server.stop().await;
    }
    Ok(vec![start, list])
}

/// A `pyro mcp serve` spoken to as a client, newline-delimited JSON-RPC on
/// its stdio, initialized.
pub(super) struct McpServer {
    process: tokio::process::Child,
    stdin: tokio::process::ChildStdin,
    stdout: BufReader<tokio::process::ChildStdout>,
    next_id: u64,
}

impl McpServer {
    /// Starts it (with `PYRO_HOME=home` when given) and returns once it
    /// has answered `initialize`.
    pub(super) async fn start(program: &OsStr, home: Option<&Path>) -> Result<Self, Error> {
        let mut command = tokio::process::Command::new(program);
        command
            .args(["mcp", "serve"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true);
        if let Some(home) = home {
            command.env("PYRO_HOME", home);
        }
        let mut process = command.spawn().map_err(|e| failed(e.to_string()))?;
        let stdin = process.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(process.stdout.take().expect("piped stdout"));
        let mut server = McpServer {
            process,
            stdin,
            stdout,
            next_id: 1,
        };
        let initialize = serde_json::json!({
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": { "name": "pyro-bench", "version": env!("CARGO_PKG_VERSION") }
        });
        server.request("initialize", initialize).await?;
        let initialized =
            serde_json::json!({ "jsonrpc": "2.0", "method": "notifications/initialized" });
        send(&mut server.stdin, &initialized)
            .await
            .map_err(failed)?;
        Ok(server)
    }

    /// One request and its answer's `result`; an `error` answer fails.
    pub(super) async fn request(
        &mut self,
        method: &str,
        params: serde_json::Value,
    ) -> Result<serde_json::Value, Error> {
        let id = self.next_id;
        self.next_id += 1;
        let request = serde_json::json!({
            "jsonrpc": "2.0", "id": id, "method": method, "params": params
        });
        send(&mut self.stdin, &request).await.map_err(failed)?;
        let mut answer = answer(&mut self.stdout, id).await.map_err(failed)?;
        match answer.get("error") {
            Some(error) => Err(failed(format!("{method}: error {error}"))),
            None => Ok(answer["result"].take()),
        }
    }

    pub(super) async fn stop(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(5), self.process.kill()).await;
    }
}

fn failed(what: String) -> Error {
    Error::Benchmark(format!("MCP server: {what}"))
}

async fn send(
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

/// Reads lines until the answer to request `id`; returns it whole.
async fn answer(
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
