//! Twenty clients on one workspace at once, half through the CLI and half
//! through MCP servers: execs, file writes and reads, shell reads and
//! summaries for `PYRO_LOAD_SECONDS` (default 40; the full run is
//! 300). Nothing written is lost or corrupted, no command goes uncounted,
//! and the supervisor's memory stays bounded. Prints p50/p99 per operation.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::mcp::*;
use crate::support::*;

const CLI_CLIENTS: usize = 10;
const MCP_CLIENTS: usize = 10;
const OPS: [&str; 5] = ["exec", "write", "read", "shell read", "summary"];

/// What every client did, shared.
#[derive(Default)]
struct Tally {
    /// Latencies by operation.
    latencies: BTreeMap<&'static str, Vec<Duration>>,
    /// Every file written and its content.
    written: Vec<(String, String)>,
    /// Execs that returned.
    execs: usize,
}

impl Tally {
    fn record(&mut self, op: &'static str, took: Duration) {
        self.latencies.entry(op).or_default().push(took);
    }

    /// A file written and read back whole in `took`.
    fn read_back(&mut self, path: String, content: String, took: Duration) {
        self.record("read", took);
        self.written.push((path, content));
    }
}

/// Kilobytes of resident memory of `pid`.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn cli_client(home: &TestHome, client: usize, shell: &str, until: Instant, tally: &Mutex<Tally>) {
    let mut n = 0usize;
    while Instant::now() < until {
        let op = OPS[(client + n) % OPS.len()];
        let started = Instant::now();
        match op {
            "exec" => {
                let out = home.run(&["workspace", "exec", "load", "--", "echo", "cli"]);
                assert_eq!(stdout(&ok(out, "exec")), "cli\n");
                tally.lock().unwrap().execs += 1;
            }
            "write" | "read" => {
                // A write, then its read-back: both timed under their names.
                let path = format!("cli{client}-{n}.txt");
                let content = format!("client {client} write {n} {}", "x".repeat(n % 300));
                ok(
                    home.run(&[
                        "workspace",
                        "file",
                        "write",
                        "load",
                        &path,
                        "--content",
                        &content,
                    ]),
                    "write",
                );
                tally.lock().unwrap().record("write", started.elapsed());
                let read_started = Instant::now();
                let read = ok(
                    home.run(&["workspace", "file", "read", "load", &path]),
                    "read",
                );
                assert_eq!(stdout(&read), content, "{path} read back");
                let read_took = read_started.elapsed();
                tally.lock().unwrap().read_back(path, content, read_took);
                n += 1;
                continue;
            }
            "shell read" => {
                ok(
                    home.run(&["workspace", "shell", "read", "load", shell]),
                    "shell read",
                );
            }
            _ => {
                ok(
                    home.run(&["workspace", "summary", "load", "--json"]),
                    "summary",
                );
            }
        }
        tally.lock().unwrap().record(op, started.elapsed());
        n += 1;
    }
}

async fn mcp_client(
    client: Client,
    id: usize,
    shell: String,
    until: Instant,
    tally: Arc<Mutex<Tally>>,
) {
    let mut n = 0usize;
    while Instant::now() < until {
        let op = OPS[(id + n) % OPS.len()];
        let started = Instant::now();
        match op {
            "exec" => {
                let out = tool_ok(
                    &client,
                    "workspace_exec",
                    json!({"workspace": "load", "command": "echo mcp"}),
                )
                .await;
                assert_eq!(out["exit_code"], 0, "{out}");
                tally.lock().unwrap().execs += 1;
            }
            "write" | "read" => {
                let path = format!("mcp{id}-{n}.txt");
                let content = format!("mcp client {id} write {n} {}", "y".repeat(n % 300));
                tool_ok(
                    &client,
                    "workspace_file_write",
                    json!({"workspace": "load", "path": path, "content": content}),
                )
                .await;
                tally.lock().unwrap().record("write", started.elapsed());
                let read_started = Instant::now();
                let read = tool_ok(
                    &client,
                    "workspace_file_read",
                    json!({"workspace": "load", "path": path}),
                )
                .await;
                assert_eq!(read["content"], content.as_str(), "{path} read back");
                let read_took = read_started.elapsed();
                tally.lock().unwrap().read_back(path, content, read_took);
                n += 1;
                continue;
            }
            "shell read" => {
                tool_ok(
                    &client,
                    "workspace_shell_read",
                    json!({"workspace": "load", "shell": shell}),
                )
                .await;
            }
            _ => {
                tool_ok(&client, "workspace_summary", json!({"workspace": "load"})).await;
            }
        }
        tally.lock().unwrap().record(op, started.elapsed());
        n += 1;
    }
    let _ = client.cancel().await;
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let at = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[at.min(sorted.len() - 1)]
}

#[test]
fn twenty_clients_on_one_workspace_lose_nothing() {
    let seconds: u64 = std::env::var("PYRO_LOAD_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(40);
    let home = TestHome::new();
    let id = home.create(&["--name", "load"]);
    let shell = stdout(&ok(
        home.run(&["workspace", "shell", "open", "load", "--id-only"]),
        "shell",
    ))
    .trim()
    .to_string();
    let supervisor = home.supervisor_pid(&id).unwrap();
    let rss_before = rss_kib(supervisor);
    let until = Instant::now() + Duration::from_secs(seconds);
    let tally = Arc::new(Mutex::new(Tally::default()));

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cwd = tempfile::tempdir().unwrap();
    let mcp: Vec<_> = (0..MCP_CLIENTS)
        .map(|i| {
            let client = runtime.block_on(serve(
                home.path(),
                cwd.path(),
                &["--profile", "workspace-full"],
            ));
            runtime.spawn(mcp_client(client, i, shell.clone(), until, tally.clone()))
        })
        .collect();
    std::thread::scope(|scope| {
        for client in 0..CLI_CLIENTS {
            let (home, shell, tally) = (&home, &shell, &tally);
            scope.spawn(move || cli_client(home, client, shell, until, tally));
        }
    });
    for task in mcp {
        runtime.block_on(task).expect("an MCP client panicked");
    }

    let tally = tally.lock().unwrap();
    // Every file written is there, as written.
    for (path, content) in &tally.written {
        let read = ok(
            home.run(&["workspace", "file", "read", "load", path]),
            "final read",
        );
        assert_eq!(&stdout(&read), content, "{path}");
    }
    // Every exec is counted once in the summary.
    let summary = json(&ok(
        home.run(&["workspace", "summary", "load", "--json"]),
        "summary",
    ));
    assert_eq!(
        summary["commands_run"].as_u64().unwrap_or(u64::MAX) as usize,
        tally.execs,
        "{summary}"
    );
    let rss_after = rss_kib(supervisor);
    eprintln!(
        "load: {seconds} s, {} execs, {} files; supervisor RSS {rss_before} KiB -> {rss_after} KiB",
        tally.execs,
        tally.written.len()
    );
    assert!(
        rss_after < rss_before + 64 * 1024,
        "the supervisor grew from {rss_before} KiB to {rss_after} KiB"
    );
    for (op, latencies) in &tally.latencies {
        let mut sorted = latencies.clone();
        sorted.sort();
        eprintln!(
            "load: {op:<10} n={:<6} p50={:>7.1} ms p99={:>7.1} ms",
            sorted.len(),
            percentile(&sorted, 0.5).as_secs_f64() * 1e3,
            percentile(&sorted, 0.99).as_secs_f64() * 1e3
        );
    }
    ok(home.run(&["workspace", "delete", "load"]), "delete");
}
