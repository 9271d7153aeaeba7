//! A minimal synchronous QMP (QEMU Machine Protocol) client.
//!
//! QMP is JSON objects, one per line, over the monitor socket: a greeting,
//! then `qmp_capabilities`, then commands each answered by `return` or
//! `error`, with asynchronous `event` objects interleaved (skipped here).
//! The socket is one end of a socket pair QEMU inherited, so no monitor
//! socket file exists.

use std::io::{BufRead, BufReader, Write};
use std::os::fd::{AsRawFd, RawFd};
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
        let request = Self::request(command, arguments)?;
        self.writer.write_all(&request)?;
        self.answer(command)
    }

    /// Runs one command that takes a descriptor (`getfd`): `fd` goes with
    /// the command's bytes as `SCM_RIGHTS`, and QEMU keeps its own copy.
    pub(crate) fn execute_with_fd(
        &mut self,
        command: &str,
        arguments: Value,
        fd: RawFd,
    ) -> Result<Value, QmpError> {
        let request = Self::request(command, arguments)?;
        send_with_fd(&self.writer, &request, fd)?;
        self.answer(command)
    }

    fn request(command: &str, arguments: Value) -> Result<Vec<u8>, QmpError> {
        let mut request =
            serde_json::to_vec(&json!({ "execute": command, "arguments": arguments }))?;
        request.push(b'\n');
        Ok(request)
    }

    /// Reads up to the answer to `command`, skipping events.
    fn answer(&mut self, command: &str) -> Result<Value, QmpError> {
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

/// Writes all of `bytes` to `stream`, the first write carrying `fd`.
fn send_with_fd(stream: &UnixStream, bytes: &[u8], fd: RawFd) -> std::io::Result<()> {
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: CMSG_SPACE only computes a size.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) } as usize;
    // u64s: a control buffer must be aligned for `cmsghdr`.
    let mut control = vec![0u64; space.div_ceil(8)];
    // SAFETY: an all-zero msghdr is valid; the pointers set below point at
    // `iov` and `control`, which outlive the sendmsg call.
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = &mut iov;
    message.msg_iovlen = 1;
    message.msg_control = control.as_mut_ptr() as *mut libc::c_void;
    message.msg_controllen = space as _;
    // SAFETY: `control` is CMSG_SPACE(size of an fd) bytes, room for one
    // header and one descriptor, so the first header and its data are in
    // bounds; the data pointer is written unaligned.
    unsafe {
        let header = libc::CMSG_FIRSTHDR(&message);
        (*header).cmsg_level = libc::SOL_SOCKET;
        (*header).cmsg_type = libc::SCM_RIGHTS;
        (*header).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(header) as *mut RawFd, fd);
    }
    let sent = loop {
        // SAFETY: `message` is fully initialised above and its buffers
        // live across the call.
        let sent = unsafe { libc::sendmsg(stream.as_raw_fd(), &message, libc::MSG_NOSIGNAL) };
        if sent >= 0 {
            break sent;
        }
        let error = std::io::Error::last_os_error();
        if error.kind() != std::io::ErrorKind::Interrupted {
            return Err(error);
        }
    };
    let sent = sent as usize;
    if sent < bytes.len() {
        use std::io::Write as _;
        (&*stream).write_all(&bytes[sent..])?;
    }
    Ok(())
}
