//! `pyro mcp serve` driven by a hand-written JSON-RPC client: newline-
//! delimited messages over the child's stdin/stdout, nothing else. rmcp's
//! client cannot send what these tests need: it always attaches a progress
//! token, it cannot send `notifications/cancelled` for a call of ours, and
//! it serialises a message before it writes it.
//!
//! - progress notifications come only for calls that carry a token;
//! - `notifications/cancelled` kills the cancelled call's guest command and
//!   the server keeps serving; a cancelled create leaves no workspace;
//! - a message over the server's size limit is answered (an `is_error` tool
//!   result) instead of being dropped; rmcp's stdio reader used to drop any
//!   line over 16 MiB without a word, so a 50 MB `workspace_file_write`
//!   never got an answer. Reproduce with:
//!   `cargo test -p pyro-cli --test it mcp_raw::oversized`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::*;
use serde_json::{json, Value};

/// How long any one answer may take (debug build, TCG).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(180);

/// A raw MCP client over a `pyro mcp serve` child.
struct RawClient {
    child: Child,
    stdin: Option<ChildStdin>,
    incoming: mpsc::Receiver<Value>,
    /// Every message received so far, in order.
    log: Vec<Value>,
    next_id: u64,
}

impl RawClient {
    /// Starts `pyro mcp serve` with `PYRO_HOME=home` and initializes.
    fn start(home: &std::path::Path) -> Self {
        Self::start_with(home, &[])
    }

    fn start_with(home: &std::path::Path, envs: &[(&str, &str)]) -> Self {
        let mut child = pyro()
            .args(["mcp", "serve"])
            .current_dir(home)
            .env("PYRO_HOME", home)
            .envs(envs.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn pyro mcp serve");
        let stdout = child.stdout.take().unwrap();
        let (sender, incoming) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let message: Value = serde_json::from_str(&line).unwrap_or_else(|e| {
                    panic!("server sent a line that is not JSON ({e}): {line}")
                });
                if sender.send(message).is_err() {
                    return;
                }
            }
        });
        let mut client = RawClient {
            stdin: child.stdin.take(),
            child,
            incoming,
            log: Vec::new(),
            next_id: 0,
        };
        let id = client.request(
            "initialize",
            json!({
                "protocolVersion": "2025-06-18",
                "capabilities": {},
                "clientInfo": {"name": "pyro-raw-test", "version": "0"},
            }),
        );
        let initialized = client.response(id);
        assert!(initialized.get("result").is_some(), "{initialized}");
        client.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}));
        client
    }

    fn write(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write to the server");
    }

    fn send(&mut self, message: &Value) {
        let mut line = serde_json::to_vec(message).unwrap();
        line.push(b'\n');
        self.write(&line);
        self.stdin.as_mut().unwrap().flush().unwrap();
    }

    /// Sends a request; returns its id.
    fn request(&mut self, method: &str, params: Value) -> u64 {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        id
    }

    /// Sends `tools/call`, with `_meta.progressToken` when given.
    fn call_tool(&mut self, tool: &str, arguments: Value, token: Option<&str>) -> u64 {
        let mut params = json!({"name": tool, "arguments": arguments});
        if let Some(token) = token {
            params["_meta"] = json!({"progressToken": token});
        }
        self.request("tools/call", params)
    }

    /// Waits for the answer to request `id`; every message read on the way
    /// goes to the log.
    fn response(&mut self, id: u64) -> Value {
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        if let Some(found) = self.log.iter().find(|m| is_answer(m, id)) {
            return found.clone();
        }
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self
                .incoming
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no answer to request {id} ({e})"));
            self.log.push(message.clone());
            if is_answer(&message, id) {
                return message;
            }
        }
    }

    /// Waits for a message for which `matches` holds (logged ones too).
    fn wait_message(&mut self, what: &str, matches: impl Fn(&Value) -> bool) -> Value {
        if let Some(found) = self.log.iter().find(|m| matches(m)) {
            return found.clone();
        }
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = self
                .incoming
                .recv_timeout(left)
                .unwrap_or_else(|e| panic!("no {what} ({e})"));
            self.log.push(message.clone());
            if matches(&message) {
                return message;
            }
        }
    }

    /// Calls `tool` without a progress token and returns the result of a
    /// successful call.
    fn ok(&mut self, tool: &str, arguments: Value) -> Value {
        let id = self.call_tool(tool, arguments, None);
        let answer = self.response(id);
        let result = &answer["result"];
        assert_ne!(result["isError"], true, "{tool} failed: {answer}");
        result["structuredContent"].clone()
    }

    /// The progress notifications in the log carrying `token` (any token
    /// when `None`).
    fn progress(&self, token: Option<&str>) -> Vec<Value> {
        self.log
            .iter()
            .filter(|m| m["method"] == "notifications/progress")
            .filter(|m| token.is_none_or(|t| m["params"]["progressToken"] == t))
            .cloned()
            .collect()
    }

    /// Closes stdin and waits for the server to exit.
    fn finish(mut self) {
        drop(self.stdin.take());
        let exited = wait_for(Duration::from_secs(30), || {
            self.child.try_wait().ok().flatten()
        });
        assert!(
            exited.is_some(),
            "the server did not exit after stdin closed"
        );
    }
}

impl Drop for RawClient {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn is_answer(message: &Value, id: u64) -> bool {
    message["id"] == id && (message.get("result").is_some() || message.get("error").is_some())
}

/// The longest stage of a create, the boot, is no longer silent: the
/// facade waits for the supervisor on a blocking thread, so the server's
/// heartbeat ticks meanwhile (it used to block the runtime until boot).
#[test]
fn a_create_with_a_token_gets_heartbeats_during_the_boot() {
    let home = TestHome::new();
    // A kernel boot: a warm create's restore is over before a beat.
    let mut client = RawClient::start_with(home.path(), &[("PYRO_COLD_BOOT", "1")]);
    let create = client.call_tool("workspace_create", json!({}), Some("boot-1"));
    let stage = |message: &'static str| {
        move |m: &Value| {
            m["params"]["progressToken"] == "boot-1" && m["params"]["message"] == message
        }
    };
    client.wait_message("the boot stage", stage("booting VM"));
    let booting = Instant::now();
    client.wait_message("the baseline stage", stage("recording baseline"));
    let boot = booting.elapsed();
    let answer = client.response(create);
    let id = answer["result"]["structuredContent"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let messages: Vec<String> = client
        .progress(Some("boot-1"))
        .iter()
        .map(|p| p["params"]["message"].as_str().unwrap_or("").to_string())
        .collect();
    let from = messages.iter().position(|m| m == "booting VM").unwrap();
    let to = messages
        .iter()
        .position(|m| m == "recording baseline")
        .unwrap();
    let beats = messages[from..to]
        .iter()
        .filter(|m| m.starts_with("creating workspace ("))
        .count();
    // A heartbeat every 2 s: a boot that took 3 s or more must show one
    // (a fast KVM boot may end before the first is due).
    if boot >= Duration::from_secs(3) {
        assert!(
            beats >= 1,
            "a {boot:?} boot without a heartbeat: {messages:?}"
        );
    }
    eprintln!("boot took {boot:?}, {beats} heartbeats: {messages:?}");
    client.ok("workspace_delete", json!({"workspace": id}));
    client.finish();
}

/// One workspace: calls without a progress token get no notifications,
/// calls with one get them (before their result); a cancelled exec has its
/// guest command killed, gets no answer, and the server keeps serving with
/// no VM left behind; a cancelled create leaves no workspace.
#[test]
fn progress_only_with_a_token_and_cancel_kills_the_command() {
    let home = TestHome::new();
    let mut client = RawClient::start(home.path());

    let created = client.ok("workspace_create", json!({}));
    let id = created["id"].as_str().unwrap().to_string();
    let ran = client.ok(
        "workspace_exec",
        json!({"workspace": id, "command": "sleep 3; echo slept"}),
    );
    assert_eq!(ran["stdout"]["text"], "slept\n");
    assert_eq!(
        client.progress(None),
        Vec::<Value>::new(),
        "no token, yet progress"
    );

    let call = client.call_tool(
        "workspace_exec",
        json!({"workspace": id, "command": "sleep 3; echo slept"}),
        Some("tok-1"),
    );
    let answer = client.response(call);
    assert_eq!(
        answer["result"]["structuredContent"]["exit_code"], 0,
        "{answer}"
    );
    let progress = client.progress(Some("tok-1"));
    let messages: Vec<&str> = progress
        .iter()
        .map(|p| p["params"]["message"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(messages.first(), Some(&"running"), "{messages:?}");
    assert!(
        messages
            .iter()
            .any(|m| m.contains("bytes of output so far")),
        "no heartbeat: {messages:?}"
    );
    assert_eq!(messages.last(), Some(&"done"), "{messages:?}");
    assert_eq!(progress.len(), client.progress(None).len(), "a stray token");
    let answered_at = client.log.iter().position(|m| is_answer(m, call)).unwrap();
    assert!(
        client.log[..answered_at]
            .iter()
            .any(|m| m["params"]["message"] == "done"),
        "\"done\" came after the result"
    );

    // Cancellation: start a long command, see it run, cancel the call.
    let long = client.call_tool(
        "workspace_exec",
        json!({"workspace": id, "command": "touch /tmp/cancel-marker; sleep 300"}),
        None,
    );
    let started = wait_for(Duration::from_secs(60), || {
        let probe = client.ok(
            "workspace_exec",
            json!({"workspace": id, "command": SLEEP_PROBE}),
        );
        (probe["stdout"]["text"] == "running 1\n").then_some(())
    });
    assert!(started.is_some(), "sleep 300 never started");
    let marker = client.ok(
        "workspace_exec",
        json!({"workspace": id, "command": "test -e /tmp/cancel-marker && echo marked"}),
    );
    assert_eq!(marker["stdout"]["text"], "marked\n");
    client.send(&json!({
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": {"requestId": long, "reason": "the test changed its mind"},
    }));
    let killed = wait_for(Duration::from_secs(30), || {
        let probe = client.ok(
            "workspace_exec",
            json!({"workspace": id, "command": SLEEP_PROBE}),
        );
        (probe["stdout"]["text"] == "gone\n").then_some(())
    });
    assert!(killed.is_some(), "the cancelled call's command still runs");

    // The server keeps serving, the cancelled call gets no answer, and the
    // workspace still has exactly its one VM (none under the server).
    let alive = client.ok(
        "workspace_exec",
        json!({"workspace": id, "command": "echo alive"}),
    );
    assert_eq!(alive["stdout"]["text"], "alive\n");
    assert!(
        !client.log.iter().any(|m| is_answer(m, long)),
        "the cancelled call was answered"
    );
    assert_eq!(home.vm_pids(&id).len(), 1);
    let server_qemu: Vec<u32> = children_of(client.child.id())
        .into_iter()
        .filter(|&pid| process_name(pid).starts_with("qemu-system"))
        .collect();
    assert_eq!(server_qemu, Vec::<u32>::new(), "a QEMU under the server");
    let supervisor = home.supervisor_pid(&id).expect("supervisor pid");
    client.ok("workspace_delete", json!({"workspace": id}));
    assert_gone(supervisor, "the workspace supervisor");
    assert_eq!(home.vm_pids(&id), Vec::<u32>::new());

    // A cancelled create runs to the end, then deletes the workspace nobody
    // will learn the id of.
    let create = client.call_tool("workspace_create", json!({}), Some("create-1"));
    client.wait_message("create progress", |m| {
        m["params"]["progressToken"] == "create-1"
    });
    client.send(&json!({
        "jsonrpc": "2.0",
        "method": "notifications/cancelled",
        "params": {"requestId": create},
    }));
    client.wait_message("create's \"done\"", |m| {
        m["params"]["progressToken"] == "create-1" && m["params"]["message"] == "done"
    });
    let emptied = wait_for(Duration::from_secs(30), || {
        let listed = client.ok("workspace_list", json!({}));
        (listed["workspaces"] == json!([])).then_some(())
    });
    assert!(emptied.is_some(), "the cancelled create left its workspace");
    assert!(!client.log.iter().any(|m| is_answer(m, create)));
    let leftover = wait_for(Duration::from_secs(10), || {
        let workspaces = std::fs::read_dir(home.path().join("workspaces")).ok()?;
        let live: Vec<String> = workspaces
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .filter(|id| home.supervisor_pid(id).is_some_and(is_alive))
            .collect();
        live.is_empty().then_some(())
    });
    assert!(
        leftover.is_some(),
        "a supervisor outlived the cancelled create"
    );
    client.finish();
}

/// A message over the server's limit (128 MiB), with its id first or last:
/// the call gets an `is_error` result naming the limit and the way out, and
/// the server answers the next call. Needs no VM.
#[test]
fn an_oversized_message_is_answered_and_the_server_keeps_serving() {
    let home = tempfile::tempdir().unwrap();
    let mut client = RawClient::start(home.path());
    let limit = 128 * 1024 * 1024;
    let filler = vec![b'x'; 1024 * 1024];
    for (id, head, tail) in [
        (
            "first",
            r#"{"jsonrpc":"2.0","id":"first","method":"tools/call","params":{"name":"workspace_file_write","arguments":{"workspace":"w","path":"big","content":""#,
            r#""}}}"#,
        ),
        (
            "last",
            r#"{"method":"tools/call","params":{"name":"workspace_file_write","arguments":{"workspace":"w","path":"big","content":""#,
            r#""}},"jsonrpc":"2.0","id":"last"}"#,
        ),
    ] {
        client.write(head.as_bytes());
        for _ in 0..(limit / filler.len() + 1) {
            client.write(&filler);
        }
        client.write(tail.as_bytes());
        client.write(b"\n");
        let deadline = Instant::now() + ANSWER_TIMEOUT;
        let answer = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let message = client.incoming.recv_timeout(left).expect("no answer");
            if message["id"] == id {
                break message;
            }
        };
        let result = &answer["result"];
        assert_eq!(result["isError"], true, "{answer}");
        let text = result["content"][0]["text"].as_str().unwrap();
        assert!(
            text.contains(&format!("limit of {limit} bytes"))
                && text.contains("workspace_sync_push"),
            "{text}"
        );
        let listed = client.ok("workspace_list", json!({}));
        assert_eq!(listed["workspaces"], json!([]));
    }
    client.finish();
}
