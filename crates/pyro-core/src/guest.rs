//! The host end of the guest channel: handshake, then multiplexed requests.
//!
//! One reader task decodes frames from the VM's byte stream and routes them
//! by request id to a bounded queue per request; a request's owner drains its
//! queue. Because the queues are bounded, a consumer that stops reading
//! (a slow terminal) stalls the reader and so, through the guest's blocking
//! writes, the command's own output pipe: memory stays bounded on both sides
//! and nothing is dropped. When the stream ends (the VM died), every queue
//! closes and its owner sees `GuestError::Disconnected`.

use std::collections::HashMap;
use std::os::unix::net::UnixStream as StdUnixStream;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use pyro_protocol::{
    encode_data, encode_message, Decoder, ErrorKind, ExecRequest, ExitStatus, Frame, FrameKind,
    Message, GENERATION,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::mpsc;

/// Frames buffered per request before the reader waits for its owner.
const QUEUE_FRAMES: usize = 64;

/// Why talking to the guest failed.
#[derive(Debug, thiserror::Error)]
pub enum GuestError {
    #[error("the guest channel closed (the VM stopped)")]
    Disconnected,
    #[error("the guest agent speaks protocol generation {guest}, this pyro speaks {host}; rebuild the environment's initramfs by upgrading pyro")]
    Generation { guest: u32, host: u32 },
    #[error("the guest sent a malformed frame")]
    Protocol(#[source] pyro_protocol::DecodeError),
    #[error("guest channel i/o failed")]
    Io(#[source] std::io::Error),
}

/// Who speaks first when the channel opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// The guest just booted: wait for the agent's hello, then answer.
    FreshBoot,
    /// The guest was restored from a saved state: say hello first.
    Restored,
}

/// What the agent said about itself in its hello.
#[derive(Debug, Clone)]
pub struct AgentHello {
    pub agent_version: Option<String>,
    pub uptime_ms: Option<u64>,
}

#[derive(Default)]
struct Routes {
    by_id: HashMap<u32, mpsc::Sender<Frame>>,
    /// Set by the reader when the stream ended; no new request may start.
    closed: bool,
}

/// A connected guest agent.
pub struct Guest {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    routes: Arc<Mutex<Routes>>,
    next_id: AtomicU32,
    hello: AgentHello,
    reader: tokio::task::JoinHandle<()>,
}

impl Guest {
    /// Takes over the VM's agent stream, exchanges hellos and sets the guest
    /// clock. Fails with `Disconnected` if the VM stops first.
    ///
    /// A freshly booted agent speaks first, when it opens its port (the host
    /// must not write before: the port may drop bytes until the guest opens
    /// it). A restored agent already has its port open and waits for the
    /// host's hello.
    pub async fn connect(stream: StdUnixStream, handshake: Handshake) -> Result<Guest, GuestError> {
        stream.set_nonblocking(true).map_err(GuestError::Io)?;
        let stream = UnixStream::from_std(stream).map_err(GuestError::Io)?;
        let (mut read_half, write_half) = stream.into_split();
        let routes = Arc::new(Mutex::new(Routes::default()));
        let (control_tx, mut control_rx) = mpsc::channel(QUEUE_FRAMES);
        routes.lock().expect("routes").by_id.insert(0, control_tx);

        let reader_routes = Arc::clone(&routes);
        let reader = tokio::spawn(async move {
            let mut decoder = Decoder::new();
            let mut buf = vec![0u8; 64 * 1024];
            'read: loop {
                let n = match read_half.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                decoder.push(&buf[..n]);
                loop {
                    match decoder.next_frame() {
                        Ok(Some(frame)) => {
                            let route = reader_routes
                                .lock()
                                .expect("routes")
                                .by_id
                                .get(&frame.id)
                                .cloned();
                            if let Some(tx) = route {
                                // A closed queue means its owner left; drop the frame.
                                let _ = tx.send(frame).await;
                            }
                        }
                        Ok(None) => break,
                        Err(_) => break 'read,
                    }
                }
            }
            let mut routes = reader_routes.lock().expect("routes");
            routes.closed = true;
            routes.by_id.clear();
        });

        let mut guest = Guest {
            writer: tokio::sync::Mutex::new(write_half),
            routes,
            next_id: AtomicU32::new(1),
            hello: AgentHello {
                agent_version: None,
                uptime_ms: None,
            },
            reader,
        };
        if handshake == Handshake::FreshBoot {
            wait_hello(&mut control_rx).await?;
        }
        // Ours carries the clock (a restored guest's is stale); the agent
        // answers with its hello.
        guest.send(0, &host_hello()).await?;
        guest.hello = wait_hello(&mut control_rx).await?;
        Ok(guest)
    }

    pub fn hello(&self) -> &AgentHello {
        &self.hello
    }

    async fn send(&self, id: u32, message: &Message) -> Result<(), GuestError> {
        let bytes = encode_message(id, message);
        let mut writer = self.writer.lock().await;
        writer
            .write_all(&bytes)
            .await
            .map_err(|_| GuestError::Disconnected)
    }

    /// Starts a command; its output and exit arrive on the returned stream.
    pub async fn exec(&self, request: ExecRequest) -> Result<ExecStream<'_>, GuestError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(QUEUE_FRAMES);
        {
            let mut routes = self.routes.lock().expect("routes");
            if routes.closed {
                return Err(GuestError::Disconnected);
            }
            routes.by_id.insert(id, tx);
        }
        self.send(id, &Message::Exec(request)).await?;
        Ok(ExecStream {
            guest: self,
            id,
            rx,
        })
    }

    /// Sends stdin bytes to a running command; empty `data` closes its stdin.
    pub async fn write_stdin(&self, id: u32, data: &[u8]) -> Result<(), GuestError> {
        let mut bytes = Vec::new();
        encode_data(id, FrameKind::Stdin, data, &mut bytes);
        let mut writer = self.writer.lock().await;
        writer
            .write_all(&bytes)
            .await
            .map_err(|_| GuestError::Disconnected)
    }
}

impl Drop for Guest {
    fn drop(&mut self) {
        self.reader.abort();
    }
}

fn host_hello() -> Message {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    Message::Hello {
        generation: GENERATION,
        agent_version: None,
        uptime_ms: None,
        time_unix_ms: Some(now.as_millis() as u64),
    }
}

async fn wait_hello(control: &mut mpsc::Receiver<Frame>) -> Result<AgentHello, GuestError> {
    loop {
        let frame = control.recv().await.ok_or(GuestError::Disconnected)?;
        if frame.kind != FrameKind::Message {
            continue;
        }
        match frame.message().map_err(GuestError::Protocol)? {
            Message::Hello {
                generation,
                agent_version,
                uptime_ms,
                ..
            } => {
                if generation != GENERATION {
                    return Err(GuestError::Generation {
                        guest: generation,
                        host: GENERATION,
                    });
                }
                return Ok(AgentHello {
                    agent_version,
                    uptime_ms,
                });
            }
            _ => continue,
        }
    }
}

/// One event of a running command.
#[derive(Debug)]
pub enum ExecEvent {
    Started {
        pid: u32,
    },
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The command ended; the stream is over.
    Exited(ExitStatus),
    /// The command could not run; the stream is over.
    Failed {
        kind: ErrorKind,
        message: String,
    },
}

/// The frames of one exec request.
pub struct ExecStream<'g> {
    guest: &'g Guest,
    id: u32,
    rx: mpsc::Receiver<Frame>,
}

impl ExecStream<'_> {
    pub fn id(&self) -> u32 {
        self.id
    }

    /// The next event; `Err(Disconnected)` when the VM went away first.
    pub async fn next(&mut self) -> Result<ExecEvent, GuestError> {
        loop {
            let frame = self.rx.recv().await.ok_or(GuestError::Disconnected)?;
            match frame.kind {
                FrameKind::Stdout => return Ok(ExecEvent::Stdout(frame.payload)),
                FrameKind::Stderr => return Ok(ExecEvent::Stderr(frame.payload)),
                FrameKind::Message => {
                    return Ok(match frame.message().map_err(GuestError::Protocol)? {
                        Message::Started { pid } => ExecEvent::Started { pid },
                        Message::Exited(status) => ExecEvent::Exited(status),
                        Message::Error { kind, message } => ExecEvent::Failed { kind, message },
                        _ => continue,
                    })
                }
                _ => continue,
            }
        }
    }

    /// Delivers a signal to the command's process group.
    pub async fn signal(&self, signal: i32) -> Result<(), GuestError> {
        self.guest.send(self.id, &Message::Signal { signal }).await
    }
}

impl Drop for ExecStream<'_> {
    fn drop(&mut self) {
        self.guest
            .routes
            .lock()
            .expect("routes")
            .by_id
            .remove(&self.id);
    }
}
