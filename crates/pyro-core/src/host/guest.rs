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
    Message, Probe, GENERATION,
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
    #[error("the guest agent did not answer {0} in time")]
    NoAnswer(&'static str),
}

/// Requests a restored guest already runs, for [`Guest::connect`].
#[derive(Debug, Clone, Default)]
pub struct Adoption {
    /// Their ids.
    pub ids: Vec<u32>,
    /// The saved connection's next request id.
    pub next_id: u32,
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
}

#[derive(Default)]
struct Routes {
    by_id: HashMap<u32, mpsc::Sender<Frame>>,
    /// Set by the reader when the stream ended; no new request may start.
    closed: bool,
}

/// What requests share with the connection: the writer and the routes.
struct Shared {
    writer: tokio::sync::Mutex<OwnedWriteHalf>,
    /// While the guest is quiesced: what requests wrote meanwhile, sent
    /// after the `Hello` that ends the quiesce (writes never wait for it,
    /// so no request's task blocks and stops draining its queue).
    held: Mutex<Option<Vec<u8>>>,
    routes: Arc<Mutex<Routes>>,
    next_id: AtomicU32,
}

impl Shared {
    async fn send(&self, id: u32, message: &Message) -> Result<(), GuestError> {
        self.write(&encode_message(id, message)).await
    }

    async fn send_data(&self, id: u32, kind: FrameKind, data: &[u8]) -> Result<(), GuestError> {
        let mut bytes = Vec::new();
        encode_data(id, kind, data, &mut bytes);
        self.write(&bytes).await
    }

    async fn write(&self, bytes: &[u8]) -> Result<(), GuestError> {
        let mut writer = self.writer.lock().await;
        if let Some(held) = self.held.lock().expect("held").as_mut() {
            held.extend_from_slice(bytes);
            return Ok(());
        }
        writer
            .write_all(bytes)
            .await
            .map_err(|_| GuestError::Disconnected)
    }
}

/// How long the agent may take to answer `Quiesce` or a `Hello`.
const CONTROL_ANSWER: Duration = Duration::from_secs(10);

/// A connected guest agent.
pub struct Guest {
    shared: Arc<Shared>,
    /// Frames of id 0 (hellos, `Quiesced`).
    control: tokio::sync::Mutex<mpsc::Receiver<Frame>>,
    /// Streams of requests a restored guest already runs, until taken.
    adopted: Mutex<HashMap<u32, RequestStream>>,
    hello: AgentHello,
    reader: tokio::task::JoinHandle<()>,
    /// Becomes true when the stream ends.
    closed: tokio::sync::watch::Receiver<bool>,
}

impl Guest {
    /// Takes over the VM's agent stream, exchanges hellos and sets the guest
    /// clock. Fails with `Disconnected` if the VM stops first.
    ///
    /// A freshly booted agent speaks first, when it opens its port (the host
    /// must not write before: the port may drop bytes until the guest opens
    /// it). A restored agent already has its port open and waits for the
    /// host's hello.
    ///
    /// `adopt` names requests the restored guest already runs (from the
    /// state it was saved in): their frames are routed from the start, to
    /// streams [`Guest::take_adopted`] hands out, and new requests take ids
    /// above `next_id` and theirs.
    pub async fn connect(
        stream: StdUnixStream,
        handshake: Handshake,
        adopt: &Adoption,
    ) -> Result<Guest, GuestError> {
        stream.set_nonblocking(true).map_err(GuestError::Io)?;
        let stream = UnixStream::from_std(stream).map_err(GuestError::Io)?;
        let (mut read_half, write_half) = stream.into_split();
        let routes = Arc::new(Mutex::new(Routes::default()));
        let (control_tx, control_rx) = mpsc::channel(QUEUE_FRAMES);
        routes.lock().expect("routes").by_id.insert(0, control_tx);
        let mut adopted_rx = Vec::new();
        for &id in adopt.ids.iter().filter(|&&id| id != 0) {
            let (tx, rx) = mpsc::channel(QUEUE_FRAMES);
            routes.lock().expect("routes").by_id.insert(id, tx);
            adopted_rx.push((id, rx));
        }
        let first_id = adopt
            .ids
            .iter()
            .map(|id| id.saturating_add(1))
            .chain([adopt.next_id, 1])
            .max()
            .unwrap_or(1);

        let reader_routes = Arc::clone(&routes);
        let (closed_tx, closed) = tokio::sync::watch::channel(false);
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
                            match route {
                                // Connection frames are few; a guest that
                                // floods them loses them, never stalls us.
                                Some(tx) if frame.id == 0 => {
                                    let _ = tx.try_send(frame);
                                }
                                // A closed queue means its owner left; drop the frame.
                                Some(tx) => {
                                    let _ = tx.send(frame).await;
                                }
                                None => {}
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
            let _ = closed_tx.send(true);
        });

        let shared = Arc::new(Shared {
            writer: tokio::sync::Mutex::new(write_half),
            held: Mutex::new(None),
            routes,
            next_id: AtomicU32::new(first_id),
        });
        let adopted = adopted_rx
            .into_iter()
            .map(|(id, rx)| {
                let shared = Arc::clone(&shared);
                (id, RequestStream { shared, id, rx })
            })
            .collect();
        let mut guest = Guest {
            shared,
            control: tokio::sync::Mutex::new(control_rx),
            adopted: Mutex::new(adopted),
            hello: AgentHello {
                agent_version: None,
            },
            reader,
            closed,
        };
        let mut control = guest.control.lock().await;
        if handshake == Handshake::FreshBoot {
            wait_hello(&mut control).await?;
        }
        // Ours carries the clock (a restored guest's is stale) and ends a
        // quiesce the state was saved in; the agent answers with its hello.
        guest.shared.send(0, &host_hello()).await?;
        let hello = wait_hello(&mut control).await?;
        drop(control);
        guest.hello = hello;
        Ok(guest)
    }

    /// The stream of adopted request `id` (see [`Guest::connect`]), once.
    pub fn take_adopted(&self, id: u32) -> Option<RequestStream> {
        self.adopted.lock().expect("adopted").remove(&id)
    }

    /// Ends the adopted requests nobody took (commands a saved VM ran for
    /// clients that are gone): SIGKILL, their frames dropped.
    pub async fn release_adopted(&self) {
        let left: Vec<u32> = {
            let mut adopted = self.adopted.lock().expect("adopted");
            adopted.drain().map(|(id, _)| id).collect()
        };
        for id in left {
            let _ = self.signal_request(id, libc::SIGKILL).await;
        }
    }

    /// Ids of the requests in flight on this connection, for a state
    /// about to be saved: whoever restores it adopts or ends them.
    pub fn live_requests(&self) -> Vec<u32> {
        let routes = self.shared.routes.lock().expect("routes");
        let mut ids: Vec<u32> = routes.by_id.keys().copied().filter(|&id| id != 0).collect();
        ids.sort_unstable();
        ids
    }

    /// The id the next request would take.
    pub fn next_request_id(&self) -> u32 {
        self.shared.next_id.load(Ordering::Relaxed)
    }

    /// Brings the guest to a point where its state can be saved: the
    /// agent writes nothing more, and requests' writes are held, until
    /// [`Guest::unquiesce`]. Everything sent before was read by the agent.
    pub async fn quiesce(&self) -> Result<(), GuestError> {
        let mut control = self.control.lock().await;
        {
            let mut writer = self.shared.writer.lock().await;
            writer
                .write_all(&encode_message(0, &Message::Quiesce))
                .await
                .map_err(|_| GuestError::Disconnected)?;
            *self.shared.held.lock().expect("held") = Some(Vec::new());
        }
        let answered = tokio::time::timeout(CONTROL_ANSWER, async {
            loop {
                let frame = control.recv().await.ok_or(GuestError::Disconnected)?;
                if matches!(frame.message(), Ok(Message::Quiesced)) {
                    return Ok(());
                }
            }
        })
        .await;
        match answered {
            Ok(result) => result,
            Err(_) => Err(GuestError::NoAnswer("quiesce")),
        }
    }

    /// Ends a quiesce on this same VM (it carries on after a memory
    /// snapshot): our hello, then what requests wrote meanwhile.
    pub async fn unquiesce(&self) -> Result<(), GuestError> {
        let mut control = self.control.lock().await;
        {
            let mut writer = self.shared.writer.lock().await;
            let held = self.shared.held.lock().expect("held").take();
            let mut bytes = encode_message(0, &host_hello());
            bytes.extend(held.unwrap_or_default());
            writer
                .write_all(&bytes)
                .await
                .map_err(|_| GuestError::Disconnected)?;
        }
        match tokio::time::timeout(CONTROL_ANSWER, wait_hello(&mut control)).await {
            Ok(result) => result.map(drop),
            Err(_) => Err(GuestError::NoAnswer("hello")),
        }
    }

    pub fn hello(&self) -> &AgentHello {
        &self.hello
    }

    /// Runs `sync` in the guest: its dirty pages reach its disks.
    pub async fn sync(&self) -> Result<(), GuestError> {
        let mut stream = self
            .exec(ExecRequest {
                argv: vec!["sync".into()],
                ..ExecRequest::default()
            })
            .await?;
        loop {
            match stream.next().await? {
                ExecEvent::Exited(_) | ExecEvent::Failed { .. } => return Ok(()),
                _ => {}
            }
        }
    }

    /// Tells the agent the guest's hostname and machine-id, with fresh
    /// entropy from the host for its kernel RNG. Requests sent after it
    /// see them applied (the agent takes id 0 in order).
    pub async fn identify(&self, hostname: &str, machine_id: &str) -> Result<(), GuestError> {
        let mut entropy = [0u8; 64];
        let random = std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut entropy));
        random.map_err(GuestError::Io)?;
        let entropy = entropy.iter().map(|b| format!("{b:02x}")).collect();
        let message = Message::Identity {
            hostname: hostname.to_string(),
            machine_id: machine_id.to_string(),
            entropy,
        };
        self.shared.send(0, &message).await
    }

    /// Resolves when the channel has closed (the VM or the peer went away).
    pub async fn closed(&self) {
        let mut closed = self.closed.clone();
        let _ = closed.wait_for(|closed| *closed).await;
    }

    /// Sends `message` under a fresh request id; every frame the guest
    /// sends back under that id arrives on the returned stream.
    pub async fn open(&self, message: &Message) -> Result<RequestStream, GuestError> {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(QUEUE_FRAMES);
        {
            let mut routes = self.shared.routes.lock().expect("routes");
            if routes.closed {
                return Err(GuestError::Disconnected);
            }
            routes.by_id.insert(id, tx);
        }
        let stream = RequestStream {
            shared: Arc::clone(&self.shared),
            id,
            rx,
        };
        self.shared.send(id, message).await?;
        Ok(stream)
    }

    /// Starts a command; its output and exit arrive on the returned stream.
    pub async fn exec(&self, request: ExecRequest) -> Result<ExecStream, GuestError> {
        Ok(ExecStream {
            request: self.open(&Message::Exec(request)).await?,
        })
    }

    /// Runs one readiness check in the guest and says how it went.
    pub async fn probe_outcome(&self, probe: Probe) -> Result<ProbeOutcome, GuestError> {
        let mut request = self.open(&Message::Probe(probe)).await?;
        loop {
            let frame = request.next_frame().await?;
            if frame.kind != FrameKind::Message {
                continue;
            }
            match frame.message().map_err(GuestError::Protocol)? {
                Message::Done { .. } => return Ok(ProbeOutcome::Ready),
                Message::Error {
                    kind: ErrorKind::NotReady,
                    message,
                } => return Ok(ProbeOutcome::NotReady(message)),
                Message::Error { kind, message } => {
                    return Ok(ProbeOutcome::Refused { kind, message })
                }
                _ => continue,
            }
        }
    }

    /// Sends a signal on request `id` (an adopted request nobody took: a
    /// command the saved VM ran for a client that is gone).
    pub async fn signal_request(&self, id: u32, signal: i32) -> Result<(), GuestError> {
        let message = Message::Signal {
            signal,
            foreground: false,
        };
        self.shared.send(id, &message).await
    }

    /// Asks the agent to flush disks and power the VM off.
    pub async fn power_off(&self) -> Result<(), GuestError> {
        self.shared.send(0, &Message::PowerOff).await
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
                ..
            } => {
                if generation != GENERATION {
                    return Err(GuestError::Generation {
                        guest: generation,
                        host: GENERATION,
                    });
                }
                return Ok(AgentHello { agent_version });
            }
            _ => continue,
        }
    }
}

/// How a readiness probe went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProbeOutcome {
    /// The check passed.
    Ready,
    /// The check ran and did not pass; why (connection refused, HTTP 503 …).
    NotReady(String),
    /// The agent would not run the check (`invalid_request` for a URL it
    /// cannot handle, `unsupported` from an agent that predates probes).
    Refused { kind: ErrorKind, message: String },
}

/// One event of a running command.
#[derive(Debug)]
pub enum ExecEvent {
    Started,
    Stdout(Vec<u8>),
    Stderr(Vec<u8>),
    /// The command ended; the stream is over.
    Exited(ExitStatus),
    /// The command could not run; the stream is over.
    Failed {
        kind: ErrorKind,
        message: String,
    },
    /// The agent delivered this many more stdin bytes (flow control).
    Ack(u64),
}

/// The frames of one request, by id; the route is removed on drop.
pub struct RequestStream {
    shared: Arc<Shared>,
    id: u32,
    rx: mpsc::Receiver<Frame>,
}

impl RequestStream {
    /// The next frame for this request; `Err(Disconnected)` when the VM
    /// went away first.
    pub async fn next_frame(&mut self) -> Result<Frame, GuestError> {
        self.rx.recv().await.ok_or(GuestError::Disconnected)
    }

    /// Sends a follow-up message (a signal, say) under this request's id.
    pub async fn send(&self, message: &Message) -> Result<(), GuestError> {
        self.shared.send(self.id, message).await
    }

    /// Sends data (stdin, file content) under this request's id; empty
    /// `data` marks its end.
    pub async fn send_data(&self, kind: FrameKind, data: &[u8]) -> Result<(), GuestError> {
        self.shared.send_data(self.id, kind, data).await
    }
}

impl Drop for RequestStream {
    fn drop(&mut self) {
        self.shared
            .routes
            .lock()
            .expect("routes")
            .by_id
            .remove(&self.id);
    }
}

/// Whether `frame` ends its request: nothing follows it under its id.
pub fn is_terminal(frame: &Frame) -> bool {
    frame.kind == FrameKind::Message
        && matches!(
            frame.message(),
            Ok(Message::Exited(_)) | Ok(Message::Error { .. }) | Ok(Message::Done { .. })
        )
}

/// The events of one exec request.
pub struct ExecStream {
    request: RequestStream,
}

impl ExecStream {
    /// A command's stream from an adopted request (see [`Guest::connect`]).
    pub fn adopted(request: RequestStream) -> Self {
        ExecStream { request }
    }

    /// The request's id on the guest channel.
    pub fn id(&self) -> u32 {
        self.request.id
    }

    /// The next event; `Err(Disconnected)` when the VM went away first.
    pub async fn next(&mut self) -> Result<ExecEvent, GuestError> {
        loop {
            let frame = self.request.next_frame().await?;
            match frame.kind {
                FrameKind::Stdout => return Ok(ExecEvent::Stdout(frame.payload)),
                FrameKind::Stderr => return Ok(ExecEvent::Stderr(frame.payload)),
                FrameKind::Message => {
                    return Ok(match frame.message().map_err(GuestError::Protocol)? {
                        Message::Started { .. } => ExecEvent::Started,
                        Message::Exited(status) => ExecEvent::Exited(status),
                        Message::Error { kind, message } => ExecEvent::Failed { kind, message },
                        Message::Ack { bytes } => ExecEvent::Ack(bytes),
                        _ => continue,
                    })
                }
                _ => continue,
            }
        }
    }

    /// Delivers a signal to the command's process group.
    pub async fn signal(&self, signal: i32) -> Result<(), GuestError> {
        self.request
            .send(&Message::Signal {
                signal,
                foreground: false,
            })
            .await
    }

    /// On a pty exec: delivers a signal to the terminal's foreground job
    /// only (the shell itself when nothing else runs), as a key would.
    pub async fn signal_foreground(&self, signal: i32) -> Result<(), GuestError> {
        let message = Message::Signal {
            signal,
            foreground: true,
        };
        self.request.send(&message).await
    }

    /// Sends stdin bytes; empty `data` closes the command's stdin.
    pub async fn write_stdin(&self, data: &[u8]) -> Result<(), GuestError> {
        self.request.send_data(FrameKind::Stdin, data).await
    }

    /// Sets the window size of the command's terminal (an exec with
    /// `pty`); the agent ignores it on a command without one.
    pub async fn resize(&self, rows: u16, cols: u16) -> Result<(), GuestError> {
        self.request.send(&Message::Resize { rows, cols }).await
    }
}
