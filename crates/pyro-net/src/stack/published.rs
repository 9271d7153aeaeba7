//! Published ports on the stack's side: a task per host listener hands
//! each accepted connection to the stack, which opens the guest's end
//! from the gateway address, like a connection QEMU would forward.

use std::collections::HashMap;
use std::net::{SocketAddrV4, TcpListener};
use std::sync::Arc;

use smoltcp::socket::tcp;
use smoltcp::wire::{IpAddress, IpEndpoint, IpListenEndpoint};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};

use super::connection::Phase;
use super::{new_socket, Stack};
use crate::relay;
use crate::{GATEWAY, GUEST};

/// Accepted connections queued for the stack; more wait in the listener's
/// backlog.
pub(super) const INBOUND_QUEUE: usize = 64;
/// Connections in through published ports at once, apart from the
/// guest's own [`CONNECTION_LIMIT`](super::CONNECTION_LIMIT): neither side
/// can use up the other's.
const PUBLISHED_LIMIT: usize = 128;
/// The stack's own ports for connections into the guest.
const LOCAL_PORTS: std::ops::Range<u16> = 40000..60000;

/// What the [`crate::Network`] handle asks of the stack.
pub(crate) enum Command {
    Publish {
        listener: TcpListener,
        bound: SocketAddrV4,
        guest_port: u16,
    },
    /// Closes the listener and the connections that came in through it;
    /// answers once the port is closed (`false`: nothing listened there).
    Unpublish(SocketAddrV4, oneshot::Sender<bool>),
}

/// A connection accepted on a published port.
pub(super) struct Inbound {
    stream: TcpStream,
    bound: SocketAddrV4,
    guest_port: u16,
}

/// A listening task, and how to stop it: the sender it answers on once
/// its listener is closed.
struct Listening {
    task: tokio::task::AbortHandle,
    stop: oneshot::Sender<oneshot::Sender<bool>>,
}

/// The listening tasks, by the address they are bound to.
pub(super) struct Listeners {
    tasks: HashMap<SocketAddrV4, Listening>,
    tx: mpsc::Sender<Inbound>,
    next_port: u16,
}

impl Listeners {
    pub(super) fn new() -> (Listeners, mpsc::Receiver<Inbound>) {
        let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
        let listeners = Listeners {
            tasks: HashMap::new(),
            tx,
            next_port: LOCAL_PORTS.start,
        };
        (listeners, rx)
    }
}

impl Drop for Listeners {
    fn drop(&mut self) {
        for listening in self.tasks.values() {
            listening.task.abort();
        }
    }
}

impl Stack {
    pub(super) fn command(&mut self, command: Command) {
        match command {
            Command::Publish {
                listener,
                bound,
                guest_port,
            } => {
                let listening = listen(listener, bound, guest_port, self.listeners.tx.clone());
                if let Some(old) = self.listeners.tasks.insert(bound, listening) {
                    old.task.abort();
                }
            }
            Command::Unpublish(bound, done) => {
                match self.listeners.tasks.remove(&bound) {
                    Some(listening) => {
                        if let Err(done) = listening.stop.send(done) {
                            // The task is gone already: so is its listener.
                            let _ = done.send(true);
                        }
                    }
                    None => {
                        let _ = done.send(false);
                    }
                }
                let through: Vec<_> = self
                    .connections
                    .iter()
                    .filter(|(_, c)| c.published == Some(bound))
                    .map(|(key, _)| *key)
                    .collect();
                for key in through {
                    if let Some(c) = self.connections.remove(&key) {
                        self.sockets.get_mut::<tcp::Socket>(c.handle).abort();
                        self.closing.push(c.handle);
                    }
                }
            }
        }
    }

    /// Opens the guest's end of a connection accepted on a published port.
    /// Over [`PUBLISHED_LIMIT`], or when the guest's port is closed, the
    /// host's client sees its connection closed.
    pub(super) fn inbound(&mut self, inbound: Inbound) {
        if self.open(true) >= PUBLISHED_LIMIT || !self.listeners.tasks.contains_key(&inbound.bound)
        {
            return;
        }
        let Some(port) = self.local_port(inbound.guest_port) else {
            return;
        };
        let mut socket = new_socket();
        let remote = IpEndpoint::new(IpAddress::Ipv4(GUEST), inbound.guest_port);
        let local = IpListenEndpoint {
            addr: Some(IpAddress::Ipv4(GATEWAY)),
            port,
        };
        if socket.connect(self.iface.context(), remote, local).is_err() {
            return;
        }
        let phase = Phase::Relaying {
            relay: relay::attach(inbound.stream, Arc::clone(&self.shared.wake)),
            pending: None,
            host_done: false,
            held: None,
        };
        let key = (inbound.guest_port, GATEWAY, port);
        self.track(key, socket, Vec::new(), phase, Some(inbound.bound));
    }

    /// A port of the stack's own not in use towards `guest_port`.
    fn local_port(&mut self, guest_port: u16) -> Option<u16> {
        for _ in LOCAL_PORTS {
            let port = self.listeners.next_port;
            self.listeners.next_port = match port + 1 {
                next if LOCAL_PORTS.contains(&next) => next,
                _ => LOCAL_PORTS.start,
            };
            if !self.connections.contains_key(&(guest_port, GATEWAY, port)) {
                return Some(port);
            }
        }
        None
    }
}

/// Accepts on `listener` until aborted, handing each connection on.
fn listen(
    listener: TcpListener,
    bound: SocketAddrV4,
    guest_port: u16,
    tx: mpsc::Sender<Inbound>,
) -> Listening {
    let (stop, mut stopped) = oneshot::channel::<oneshot::Sender<bool>>();
    let task = tokio::spawn(async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
            return;
        };
        let done = loop {
            let accepted = tokio::select! {
                done = &mut stopped => break done.ok(),
                accepted = listener.accept() => accepted,
            };
            let Ok((stream, _)) = accepted else {
                // Out of descriptors, say: wait rather than spin.
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            };
            let inbound = Inbound {
                stream,
                bound,
                guest_port,
            };
            if tx.send(inbound).await.is_err() {
                return;
            }
        };
        drop(listener);
        if let Some(done) = done {
            let _ = done.send(true);
        }
    });
    Listening {
        task: task.abort_handle(),
        stop,
    }
}
