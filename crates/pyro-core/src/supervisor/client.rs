//! The facade's end of the control socket: the only code that opens
//! `control.sock`. Every request is a typed [`ControlRequest`], answered
//! with a typed value or the supervisor's own [`SessionError`].

use std::path::Path;
use std::time::Duration;

use serde::de::DeserializeOwned;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;

pub(crate) use super::protocol::Frozen;
use super::protocol::{ControlReply, ControlRequest, SessionError};
use crate::workspace::CONTROL;

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

/// Asks the running supervisor of the workspace in `dir` to flush the
/// guest and switch the VM onto the new top layer `new_top` (relative to
/// `dir`), freezing the current one; with `memory`, to save the VM's
/// memory and sessions in that directory too (see [`Frozen`]).
pub(crate) async fn snapshot(
    dir: &Path,
    new_top: &str,
    memory: Option<&str>,
) -> Result<Frozen, SessionError> {
    let request = ControlRequest::Snapshot {
        new_top: new_top.to_string(),
        memory: memory.map(str::to_string),
    };
    call::<Frozen>(dir, &request, SNAPSHOT_LIMIT).await
}

/// Asks the running supervisor of the workspace in `dir` to save its VM
/// whole into `state` (relative to `dir`) and end.
pub(crate) async fn suspend(dir: &Path, state: &str) -> Result<(), SessionError> {
    let request = ControlRequest::Suspend {
        dir: state.to_string(),
    };
    call::<bool>(dir, &request, SNAPSHOT_LIMIT).await.map(drop)
}

/// Asks the running supervisor of the workspace in `dir` to point its VM's
/// transfer slot at `file` (relative to `dir`), or back at zeros.
pub(crate) async fn set_transfer_disk(dir: &Path, file: Option<&str>) -> Result<(), SessionError> {
    let request = ControlRequest::TransferDisk {
        file: file.map(str::to_string),
    };
    call::<bool>(dir, &request, Duration::from_secs(30))
        .await
        .map(drop)
}

/// Tells the running supervisor of the workspace in `dir` its idle
/// timeout (seconds; none: never suspend by itself).
pub(crate) async fn set_idle_timeout(dir: &Path, seconds: Option<u64>) -> Result<(), SessionError> {
    let request = ControlRequest::IdleTimeout { seconds };
    call::<bool>(dir, &request, Duration::from_secs(10))
        .await
        .map(drop)
}

/// Asks the running supervisor of the workspace in `dir` to enforce
/// `policy` from now on; `false` when its VM has no network device.
pub(crate) async fn set_network_policy(
    dir: &Path,
    policy: pyro_net::Policy,
) -> Result<bool, SessionError> {
    let request = ControlRequest::NetworkPolicy(policy);
    call::<bool>(dir, &request, Duration::from_secs(10)).await
}

/// Asks the running supervisor of the workspace in `dir` to bind a host
/// port and forward it into the guest; returns the port as bound.
pub(crate) async fn publish_port(
    dir: &Path,
    port: pyro_net::Publish,
) -> Result<crate::host::network::PublishedPort, SessionError> {
    call(
        dir,
        &ControlRequest::PortPublish { port },
        Duration::from_secs(10),
    )
    .await
}

/// Asks the running supervisor of the workspace in `dir` to close the
/// published port bound at `bound`.
pub(crate) async fn unpublish_port(
    dir: &Path,
    bound: std::net::SocketAddrV4,
) -> Result<bool, SessionError> {
    call(
        dir,
        &ControlRequest::PortUnpublish { bound },
        Duration::from_secs(10),
    )
    .await
}

/// How long a snapshot or suspend may take: longer than the worst a supervisor's save may take (a 60 s sync, a
/// 300 s migration): a caller does not give up on a save still running.
const SNAPSHOT_LIMIT: Duration = Duration::from_secs(420);
