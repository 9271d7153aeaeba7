//! The supervisor's side of `agent.sock`: each client speaks the guest
//! protocol as if the supervisor were the agent. Every request it opens
//! is proxied onto the single guest channel, and frames are copied both
//! ways under the client's own ids. An exec's output passes through the
//! workspace's secret redactors on its way out, so no client (CLI, MCP)
//! ever receives a value.

use std::collections::HashMap;
use std::sync::Arc;

use pyro_protocol::{encode_frame, encode_message, Decoder, Frame, FrameKind, Message, GENERATION};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use crate::host::guest::{is_terminal, Guest, RequestStream};
use crate::workspace::events;
use crate::workspace::netlog::{Running, RunningGuard};
use crate::workspace::secrets::LiveRedactor;
use crate::workspace::store::{now, WorkspaceStore};

/// Frames queued towards one client before its proxies wait.
const CLIENT_QUEUE: usize = 64;

/// Serves one client connection until it closes.
pub(super) async fn serve_client(
    stream: UnixStream,
    guest: Arc<Guest>,
    store: WorkspaceStore,
    id: String,
    running: Arc<Running>,
) {
    let (mut reader, mut writer) = stream.into_split();
    let (out_tx, mut out_rx) = mpsc::channel::<Vec<u8>>(CLIENT_QUEUE);
    let writer_task = tokio::spawn(async move {
        while let Some(bytes) = out_rx.recv().await {
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let hello = Message::Hello {
        generation: GENERATION,
        agent_version: guest.hello().agent_version.clone(),
        uptime_ms: None,
        time_unix_ms: None,
    };
    if out_tx.send(encode_message(0, &hello)).await.is_err() {
        return;
    }

    let mut live: HashMap<u32, Arc<RequestHandle>> = HashMap::new();
    let mut decoder = Decoder::new();
    let mut buf = vec![0u8; 64 * 1024];
    'read: loop {
        let n = match reader.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        decoder.push(&buf[..n]);
        loop {
            let frame = match decoder.next_frame() {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(_) => break 'read,
            };
            live.retain(|_, handle| !handle.finished());
            if let Some(handle) = live.get(&frame.id) {
                handle.forward(frame).await;
                continue;
            }
            if frame.kind != FrameKind::Message {
                continue;
            }
            let Ok(message) = frame.message() else {
                continue;
            };
            match message {
                Message::Hello { .. } if frame.id == 0 => {
                    let _ = out_tx.send(encode_message(0, &hello)).await;
                }
                _ if frame.id == 0 => {}
                message => {
                    let mut command = None;
                    let mut redact = None;
                    if let Message::Exec(exec) = &message {
                        let _ = store.update(&id, |record| {
                            record.last_activity_at = now();
                            Ok(())
                        });
                        // Read at each command: a secret set meanwhile counts.
                        let live = LiveRedactor::new(&store.dir(&id));
                        let line = live.secrets().redact(&events::command_line(&exec.argv));
                        command = Some(running.start(line));
                        redact = Some([live.clone(), live]);
                    }
                    match guest.open(&message).await {
                        Ok(request) => {
                            let handle = RequestHandle::start(
                                request,
                                frame.id,
                                out_tx.clone(),
                                command,
                                redact,
                            );
                            live.insert(frame.id, handle);
                        }
                        Err(_) => break 'read,
                    }
                }
            }
        }
    }
    // The client left: its running commands must not outlive it.
    for handle in live.values() {
        handle.kill().await;
    }
    drop(out_tx);
    let _ = writer_task.await;
}

/// A frame from the guest, encoded for the client under `client_id`, with
/// an exec's output through its redactors (what they hold back goes out
/// before the frame that ends the command).
fn redacted(
    client_id: u32,
    frame: &Frame,
    terminal: bool,
    redact: &mut Option<[LiveRedactor; 2]>,
) -> Vec<u8> {
    let mut bytes = Vec::new();
    let Some(streams) = redact else {
        encode_frame(client_id, frame.kind, &frame.payload, &mut bytes);
        return bytes;
    };
    let [stdout, stderr] = streams;
    match frame.kind {
        FrameKind::Stdout | FrameKind::Stderr => {
            let stream = match frame.kind {
                FrameKind::Stdout => stdout,
                _ => stderr,
            };
            let shown = stream.push(&frame.payload);
            if !shown.is_empty() {
                encode_frame(client_id, frame.kind, &shown, &mut bytes);
            }
        }
        kind => {
            if terminal {
                for (kind, stream) in [(FrameKind::Stdout, stdout), (FrameKind::Stderr, stderr)] {
                    let rest = stream.finish();
                    if !rest.is_empty() {
                        encode_frame(client_id, kind, &rest, &mut bytes);
                    }
                }
            }
            encode_frame(client_id, kind, &frame.payload, &mut bytes);
        }
    }
    bytes
}

/// One proxied request: frames from the guest go to the client under the
/// client's id; the client's follow-up frames go to the guest.
struct RequestHandle {
    to_guest: mpsc::Sender<Frame>,
    done: std::sync::atomic::AtomicBool,
}

impl RequestHandle {
    /// `redact`: an exec's stdout and stderr redactors; its output reaches
    /// the client only through them.
    fn start(
        mut request: RequestStream,
        client_id: u32,
        to_client: mpsc::Sender<Vec<u8>>,
        running: Option<RunningGuard>,
        mut redact: Option<[LiveRedactor; 2]>,
    ) -> Arc<Self> {
        let (to_guest, mut from_client) = mpsc::channel::<Frame>(CLIENT_QUEUE);
        let handle = Arc::new(RequestHandle {
            to_guest,
            done: std::sync::atomic::AtomicBool::new(false),
        });
        let task_handle = Arc::clone(&handle);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    frame = request.next_frame() => {
                        let Ok(frame) = frame else { break };
                        let terminal = is_terminal(&frame);
                        let bytes = redacted(client_id, &frame, terminal, &mut redact);
                        if to_client.send(bytes).await.is_err() || terminal {
                            break;
                        }
                    }
                    Some(frame) = from_client.recv() => {
                        let sent = match frame.kind {
                            FrameKind::Message => match frame.message() {
                                Ok(message) => request.send(&message).await,
                                Err(_) => Ok(()),
                            },
                            kind => request.send_data(kind, &frame.payload).await,
                        };
                        if sent.is_err() {
                            break;
                        }
                    }
                }
            }
            drop(running);
            task_handle
                .done
                .store(true, std::sync::atomic::Ordering::Relaxed);
        });
        handle
    }

    fn finished(&self) -> bool {
        self.done.load(std::sync::atomic::Ordering::Relaxed)
    }

    async fn forward(&self, frame: Frame) {
        let _ = self.to_guest.send(frame).await;
    }

    async fn kill(&self) {
        if !self.finished() {
            let frame = Frame {
                id: 0,
                kind: FrameKind::Message,
                payload: serde_json::to_vec(&Message::Signal {
                    signal: libc::SIGKILL,
                    foreground: false,
                })
                .expect("serialise"),
            };
            let _ = self.to_guest.send(frame).await;
            // Give the proxy task a moment to deliver it.
            tokio::task::yield_now().await;
        }
    }
}
