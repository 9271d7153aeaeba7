//! The supervisor's control socket: one JSON request line, one JSON reply
//! line, per connection.
//!
//! Disk snapshots need the VM itself, so the supervisor's main loop answers
//! them; shells and services are answered by a task per connection, so a
//! shell read that waits for its program to go idle, or a service start that
//! waits for readiness, never holds anyone else up. Replies are
//! `{"ok": VALUE}` or `{"error": SessionError}`, so the caller gets the very
//! error the supervisor raised.

use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

use super::services::ServiceSpec;
use super::sessions::SessionError;
use super::CONTROL;

/// A request on the control socket.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub(crate) enum ControlRequest {
    /// Flush the guest, freeze the disk as it is and continue on `new_top`
    /// (relative to the workspace dir).
    Snapshot {
        new_top: String,
    },
    ShellOpen {
        cwd: Option<String>,
        rows: u16,
        cols: u16,
    },
    ShellRead {
        shell: String,
        wait_idle_ms: u64,
        timeout_ms: u64,
        raw: bool,
    },
    ShellWrite {
        shell: String,
        data: String,
        /// Named keys after `data`, encoded for the terminal's mode.
        #[serde(default)]
        keys: Vec<String>,
    },
    ShellSignal {
        shell: String,
        signal: i32,
    },
    ShellResize {
        shell: String,
        rows: u16,
        cols: u16,
    },
    ShellClose {
        shell: String,
    },
    ShellList,
    ServiceStart(ServiceSpec),
    ServiceList,
    ServiceStatus {
        name: String,
    },
    ServiceLogs {
        name: String,
        tail_lines: Option<usize>,
        since_offset: Option<u64>,
        max_bytes: u64,
    },
    ServiceStop {
        name: String,
        grace_ms: u64,
    },
}

/// A reply on the control socket.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ControlReply {
    Ok(serde_json::Value),
    Error(SessionError),
}

impl ControlReply {
    pub(crate) fn from_result<T: Serialize>(result: Result<T, SessionError>) -> Self {
        match result.map(|value| serde_json::to_value(value)) {
            Ok(Ok(value)) => ControlReply::Ok(value),
            Ok(Err(e)) => ControlReply::Error(SessionError::Internal(e.to_string())),
            Err(error) => ControlReply::Error(error),
        }
    }
}

/// Sends one request to a workspace's supervisor and decodes its answer.
/// `timeout` bounds the whole exchange.
pub(crate) async fn call<T: DeserializeOwned>(
    dir: &Path,
    request: &ControlRequest,
    timeout: Duration,
) -> Result<T, SessionError> {
    let exchange = async {
        let stream = UnixStream::connect(dir.join(CONTROL))
            .await
            .map_err(|e| SessionError::Supervisor(e.to_string()))?;
        let (reader, mut writer) = stream.into_split();
        let mut line = serde_json::to_vec(request).expect("serialise a control request");
        line.push(b'\n');
        writer
            .write_all(&line)
            .await
            .map_err(|e| SessionError::Supervisor(e.to_string()))?;
        let mut reply = String::new();
        BufReader::new(reader)
            .read_line(&mut reply)
            .await
            .map_err(|e| SessionError::Supervisor(e.to_string()))?;
        if reply.is_empty() {
            return Err(SessionError::Supervisor(
                "it closed the connection without a reply (did the VM stop?)".into(),
            ));
        }
        match serde_json::from_str::<ControlReply>(&reply) {
            Ok(ControlReply::Ok(value)) => serde_json::from_value(value)
                .map_err(|e| SessionError::Supervisor(format!("unexpected reply: {e}"))),
            Ok(ControlReply::Error(error)) => Err(error),
            Err(e) => Err(SessionError::Supervisor(format!("unexpected reply: {e}"))),
        }
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .unwrap_or_else(|_| {
            Err(SessionError::Supervisor(format!(
                "no reply within {} s",
                timeout.as_secs()
            )))
        })
}

/// Reads one request line from a control connection (the caller has
/// `limit` to send it).
pub(crate) async fn read_request(
    reader: &mut BufReader<tokio::net::unix::OwnedReadHalf>,
    limit: Duration,
) -> Result<ControlRequest, SessionError> {
    let mut line = String::new();
    let mut bounded = reader.take(MAX_REQUEST_BYTES);
    match tokio::time::timeout(limit, bounded.read_line(&mut line)).await {
        Ok(Ok(_)) if !line.ends_with('\n') && line.len() as u64 >= MAX_REQUEST_BYTES => Err(
            SessionError::Invalid(format!("control request over {MAX_REQUEST_BYTES} bytes")),
        ),
        Ok(Ok(n)) if n > 0 => serde_json::from_str(&line)
            .map_err(|e| SessionError::Invalid(format!("bad control request: {e}"))),
        _ => Err(SessionError::Invalid("no control request".into())),
    }
}

/// Largest request line: a shell write (64 KiB) with every byte escaped
/// fits.
const MAX_REQUEST_BYTES: u64 = 1024 * 1024;

/// Writes one reply line.
pub(crate) async fn write_reply(
    writer: &mut tokio::net::unix::OwnedWriteHalf,
    reply: ControlReply,
) {
    let mut bytes = serde_json::to_vec(&reply).unwrap_or_else(|e| {
        let error = SessionError::Internal(format!("cannot encode the reply: {e}"));
        serde_json::to_vec(&ControlReply::Error(error)).unwrap_or_default()
    });
    bytes.push(b'\n');
    let _ = writer.write_all(&bytes).await;
}
