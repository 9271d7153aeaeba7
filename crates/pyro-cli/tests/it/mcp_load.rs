//! `pyro mcp serve` under load through rmcp's client: progress
//! notifications, a 50 MiB write, two clients on one workspace at once,
//! and a client that disconnects mid-call.

use std::path::Path;

use crate::support::mcp::*;
use crate::support::*;
use rmcp::model::{
    CallToolRequestParams, CallToolResult, NumberOrString, ProgressNotificationParam,
    ProgressToken, RequestMetaObject,
};
use rmcp::service::RunningService;
use rmcp::transport::TokioChildProcess;
use rmcp::{RoleClient, ServiceExt};
use serde_json::{json, Value};

/// A client that records the progress notifications it receives.
#[derive(Clone, Default)]
struct Recorder {
    progress: std::sync::Arc<std::sync::Mutex<Vec<ProgressNotificationParam>>>,
}

impl rmcp::ClientHandler for Recorder {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: rmcp::service::NotificationContext<RoleClient>,
    ) {
        self.progress.lock().unwrap().push(params);
    }
}

type RecordingClient = RunningService<RoleClient, Recorder>;

async fn serve_recording(home: &Path, recorder: Recorder) -> RecordingClient {
    let mut command = tokio::process::Command::new(pyro_bin());
    command
        .args(["mcp", "serve"])
        .current_dir(home)
        .env("PYRO_HOME", home);
    let transport = TokioChildProcess::new(command).expect("spawn pyro mcp serve");
    recorder.serve(transport).await.expect("initialize")
}

/// Calls `tool` with `_meta.progressToken = token`.
async fn call_with_progress<S: rmcp::service::Service<RoleClient>>(
    client: &RunningService<RoleClient, S>,
    tool: &str,
    arguments: Value,
    token: &str,
) -> CallToolResult {
    let Value::Object(arguments) = arguments else {
        panic!("arguments must be an object")
    };
    let params = CallToolRequestParams::new(tool.to_string()).with_arguments(arguments);
    let mut extensions = rmcp::model::Extensions::new();
    extensions.insert(RequestMetaObject::with_progress_token(ProgressToken(
        NumberOrString::String(token.to_string().into()),
    )));
    let response = client
        .send_request(rmcp::model::ClientRequest::CallToolRequest({
            let mut request = rmcp::model::CallToolRequest::new(params);
            request.extensions = extensions;
            request
        }))
        .await
        .unwrap_or_else(|e| panic!("{tool}: protocol error {e}"));
    match response {
        rmcp::model::ServerResult::CallToolResult(result) => result,
        other => panic!("{tool}: unexpected response {other:?}"),
    }
}

/// The messages of the progress notifications received so far, drained.
/// (rmcp's client numbers progress tokens itself, so they are not matched.)
/// The progress messages of the last call, through its final "done": the
/// server sends "done" before the result, but the client may handle that
/// notification after the call returned, so wait for it (with a deadline).
async fn messages(recorder: &Recorder, _token: &str) -> Vec<String> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        {
            let mut progress = recorder.progress.lock().unwrap();
            let done = progress
                .iter()
                .any(|p| p.message.as_deref() == Some("done"));
            if done || std::time::Instant::now() > deadline {
                return progress
                    .drain(..)
                    .map(|p| p.message.unwrap_or_default())
                    .collect();
            }
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

/// One workspace through progress, a large write, two clients at once and a
/// client that disconnects mid-call.
#[tokio::test(flavor = "multi_thread")]
async fn progress_large_input_two_clients_and_a_disconnect() {
    let home = TestHome::new();
    let recorder = Recorder::default();
    let a = serve_recording(home.path(), recorder.clone()).await;

    // Progress: create reports its stages, exec heartbeats.
    let created = call_with_progress(&a, "workspace_create", json!({}), "create").await;
    assert_ne!(created.is_error, Some(true), "{}", text(&created));
    let id = created.structured_content.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let stages = messages(&recorder, "create").await;
    // A warm create records no baseline: its template's is frozen.
    for stage in ["restoring VM", "done"] {
        assert!(stages.iter().any(|m| m == stage), "{stages:?}");
    }
    let ran = call_with_progress(
        &a,
        "workspace_exec",
        json!({"workspace": id, "command": "echo start; sleep 3; echo done"}),
        "exec",
    )
    .await;
    assert!(text(&ran).contains("start"), "{}", text(&ran));
    let beats = messages(&recorder, "exec").await;
    assert!(
        beats.first().map(String::as_str) == Some("running"),
        "{beats:?}"
    );
    assert!(
        beats.iter().any(|m| m.contains("bytes of output so far")),
        "{beats:?}"
    );
    assert_eq!(beats.last().map(String::as_str), Some("done"), "{beats:?}");
    // (a) A 50 MiB write completes in seconds and the server keeps
    // answering. It used to get no answer at all: rmcp's stdio reader
    // dropped any message over 16 MiB without a word (see src/transport.rs
    // in pyro-mcp). The deadline turns a regression into a failure, not a
    // hang.
    let size = 50 * 1024 * 1024;
    let started = std::time::Instant::now();
    let arguments = json!({"workspace": id, "path": "big.txt", "content": "x".repeat(size)});
    let built = started.elapsed();
    let wrote = tokio::time::timeout(
        std::time::Duration::from_secs(120),
        call(&a, "workspace_file_write", arguments),
    )
    .await
    .expect("a 50 MiB workspace_file_write got no answer within 120 s");
    eprintln!(
        "50 MiB workspace_file_write: arguments built in {built:?}, answered after {:?}",
        started.elapsed()
    );
    assert_ne!(wrote.is_error, Some(true), "{}", text(&wrote));
    assert_eq!(wrote.structured_content.as_ref().unwrap()["bytes"], size);
    let listed = tool_ok(&a, "workspace_file_list", json!({"workspace": id})).await;
    let entry = listed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["path"] == "big.txt")
        .cloned();
    assert_eq!(
        entry.map(|e| e["size"].clone()),
        Some(json!(size)),
        "{listed}"
    );
    let counted = tool_ok(
        &a,
        "workspace_exec",
        json!({"workspace": id, "command": "wc -c < big.txt; tr -d x < big.txt | wc -c; rm big.txt"}),
    )
    .await;
    assert_eq!(
        counted["stdout"]["text"],
        format!("{size}\n0\n"),
        "{counted}"
    );
    tool_ok(&a, "workspace_status", json!({"workspace": id})).await;

    // (b) Two clients (two servers, one PYRO_HOME) exec at once.
    let b = serve(home.path(), home.path(), &[]).await;
    let (from_a, from_b) = tokio::join!(
        call(
            &a,
            "workspace_exec",
            json!({"workspace": id, "command": "sleep 2; echo from-a"})
        ),
        call(
            &b,
            "workspace_exec",
            json!({"workspace": id, "command": "sleep 2; echo from-b"})
        ),
    );
    assert_ne!(from_a.is_error, Some(true), "{}", text(&from_a));
    assert_ne!(from_b.is_error, Some(true), "{}", text(&from_b));
    assert_eq!(
        from_a.structured_content.unwrap()["stdout"]["text"],
        "from-a\n"
    );
    assert_eq!(
        from_b.structured_content.unwrap()["stdout"]["text"],
        "from-b\n"
    );

    // (c) A client that disconnects mid-call: its guest command ends.
    let c = serve(home.path(), home.path(), &[]).await;
    let workspace = id.clone();
    let pending = tokio::spawn(async move {
        call(
            &c,
            "workspace_exec",
            json!({"workspace": workspace, "command": "sleep 300"}),
        )
        .await
    });
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let probe = tool_ok(
            &b,
            "workspace_exec",
            json!({"workspace": id, "command": SLEEP_PROBE}),
        )
        .await;
        if probe["stdout"]["text"] != "gone\n" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sleep 300 never started"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    // Dropping the task drops the client: its transport closes and its
    // server process is killed.
    pending.abort();
    let _ = pending.await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let probe = tool_ok(
            &b,
            "workspace_exec",
            json!({"workspace": id, "command": SLEEP_PROBE}),
        )
        .await;
        if probe["stdout"]["text"] == "gone\n" {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the disconnected client's command still runs: {probe}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
    // No QEMU orphaned: still exactly one VM, the workspace still works, and
    // deleting it leaves none.
    let supervisor = home.supervisor_pid(&id).expect("supervisor pid");
    assert_eq!(home.vm_pids(&id).len(), 1);
    tool_ok(
        &a,
        "workspace_exec",
        json!({"workspace": id, "command": "true"}),
    )
    .await;
    tool_ok(&b, "workspace_delete", json!({"workspace": id})).await;
    let leftover = wait_for(std::time::Duration::from_secs(10), || {
        let qemu: Vec<u32> = children_of(supervisor)
            .into_iter()
            .filter(|&child| process_name(child).starts_with("qemu-system"))
            .collect();
        qemu.is_empty().then_some(())
    });
    assert!(leftover.is_some(), "a QEMU outlived workspace_delete");
    assert!(
        wait_for(std::time::Duration::from_secs(10), || (!is_alive(
            supervisor
        ))
        .then_some(()))
        .is_some(),
        "the supervisor outlived workspace_delete"
    );
}
