//! The host half of one allowed connection: a host socket, and the bytes
//! copied between it and the stack's socket for the guest, with bounded
//! queues both ways (a full queue stops reading, so neither side can make
//! the host buffer without limit).

use std::net::SocketAddrV4;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};

/// How long connecting to a destination may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
/// Chunks queued each way.
pub(crate) const QUEUE: usize = 8;
/// Bytes read from the host socket at a time.
const CHUNK: usize = 32 * 1024;

/// What the host side sends towards the guest.
pub(crate) enum Chunk {
    Data(Vec<u8>),
    /// The destination closed its end cleanly.
    End,
    /// The destination could not be reached or reset the connection.
    Failed,
}

/// The stack's end of a relay. Dropping it stops the relay's task and
/// closes its host socket, whatever the task was waiting on.
pub(crate) struct Relay {
    /// Guest bytes towards the destination; dropped when the guest closed.
    pub(crate) to_host: Option<mpsc::Sender<Vec<u8>>>,
    pub(crate) from_host: mpsc::Receiver<Chunk>,
    task: tokio::task::AbortHandle,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connects to `destination` and starts copying; `first` are bytes the
/// guest already sent (read while deciding), written before anything else.
/// `wake` is notified whenever the stack has something to do.
pub(crate) fn start(destination: SocketAddrV4, first: Vec<u8>, wake: Arc<Notify>) -> Relay {
    let connect = async move {
        let connected =
            tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(destination)).await;
        connected.ok().and_then(Result::ok)
    };
    spawn(connect, first, wake)
}

/// Starts copying over a host connection already open: one accepted on a
/// published port, whose guest end the stack is connecting.
pub(crate) fn attach(stream: TcpStream, wake: Arc<Notify>) -> Relay {
    spawn(async move { Some(stream) }, Vec::new(), wake)
}

fn spawn(
    connect: impl std::future::Future<Output = Option<TcpStream>> + Send + 'static,
    first: Vec<u8>,
    wake: Arc<Notify>,
) -> Relay {
    let (to_host, mut guest_bytes) = mpsc::channel::<Vec<u8>>(QUEUE);
    let (host_bytes, from_host) = mpsc::channel::<Chunk>(QUEUE);
    let task = tokio::spawn(async move {
        let Some(stream) = connect.await else {
            let _ = host_bytes.send(Chunk::Failed).await;
            wake.notify_one();
            return;
        };
        let _ = stream.set_nodelay(true);
        let (mut reader, mut writer) = stream.into_split();
        let up_wake = Arc::clone(&wake);
        let up = async move {
            if !first.is_empty() && writer.write_all(&first).await.is_err() {
                return;
            }
            while let Some(bytes) = guest_bytes.recv().await {
                // Room in the queue again: the stack may read more.
                up_wake.notify_one();
                if writer.write_all(&bytes).await.is_err() {
                    return;
                }
            }
            let _ = writer.shutdown().await;
        };
        let down = async move {
            let mut buf = vec![0u8; CHUNK];
            let last = loop {
                let read = tokio::select! {
                    read = reader.read(&mut buf) => read,
                    // The guest side is gone: stop waiting on the destination.
                    _ = host_bytes.closed() => return,
                };
                match read {
                    Ok(0) => break Chunk::End,
                    Ok(n) => {
                        if host_bytes
                            .send(Chunk::Data(buf[..n].to_vec()))
                            .await
                            .is_err()
                        {
                            return;
                        }
                        wake.notify_one();
                    }
                    Err(_) => break Chunk::Failed,
                }
            };
            let _ = host_bytes.send(last).await;
            wake.notify_one();
        };
        tokio::join!(up, down);
    });
    Relay {
        to_host: Some(to_host),
        from_host,
        task: task.abort_handle(),
    }
}
