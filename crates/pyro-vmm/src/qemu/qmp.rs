//! A minimal synchronous QMP (QEMU Machine Protocol) client.
//!
//! QMP is JSON objects, one per line, over the monitor socket: a greeting,
//! then `qmp_capabilities`, then commands each answered by `return` or
//! `error`, with asynchronous `event` objects interleaved (skipped here).
//! The socket is one end of a socket pair QEMU inherited, so no monitor
//! socket file exists.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

use serde_json::{json, Value};

/// Why a QMP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    #[error("QEMU monitor i/o failed")]
    Io(#[from] std::io::Error),
    #[error("QEMU monitor closed the connection (the VM stopped)")]
    Closed,
    #[error("QEMU sent malformed monitor output")]
    Json(#[from] serde_json::Error),
    #[error("QEMU refused `{command}`: {message}")]
    Refused { command: String, message: String },
}

pub(crate) struct Qmp {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Qmp {
    /// Reads the greeting and enters command mode.
    pub(crate) fn connect(stream: UnixStream, timeout: Duration) -> Result<Self, QmpError> {
        stream.set_read_timeout(Some(timeout))?;
        let writer = stream.try_clone()?;
        let mut qmp = Qmp {
            reader: BufReader::new(stream),
            writer,
        };
        qmp.read_object()?; // {"QMP": {...}}
        qmp.execute("qmp_capabilities", json!({}))?;
        Ok(qmp)
    }

    /// Runs one command and returns its `return` value.
    pub(crate) fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, QmpError> {
        let mut request =
            serde_json::to_vec(&json!({ "execute": command, "arguments": arguments }))?;
        request.push(b'\n');
        self.writer.write_all(&request)?;
        loop {
            let reply = self.read_object()?;
            if reply.get("event").is_some() {
                continue;
            }
            if let Some(value) = reply.get("return") {
                return Ok(value.clone());
            }
            if let Some(error) = reply.get("error") {
                return Err(QmpError::Refused {
                    command: command.to_string(),
                    message: error["desc"]
                        .as_str()
                        .unwrap_or("unknown error")
                        .to_string(),
                });
            }
        }
    }

    fn read_object(&mut self) -> Result<Value, QmpError> {
        let mut line = String::new();
        if self.reader.read_line(&mut line)? == 0 {
            return Err(QmpError::Closed);
        }
        Ok(serde_json::from_str(&line)?)
    }
}
