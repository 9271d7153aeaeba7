//! The stack loop: frames from QEMU into smoltcp, decisions on each new
//! connection, bytes between smoltcp's sockets and the relays, frames back.
//!
//! smoltcp runs with "any IP" on: it takes packets for every address routed
//! through the gateway. A TCP socket exists only for connections the policy
//! let through its first check (a SYN with no socket is answered by a reset,
//! so a denied connection fails at once with "connection refused"). DNS is
//! one UDP socket on the resolver address; other UDP gets "port
//! unreachable".

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpAddress, IpCidr, IpListenEndpoint};
use tokio::io::AsyncWriteExt;
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot};

use crate::policy::{DenyReason, HostAddresses, Verdict};
mod connection;
mod device;
mod lookup;
mod published;
mod relaying;

pub(crate) use published::Command;

use crate::{now_unix_ms, NetEvent, Shared, Via, GATEWAY, HOST_NAME, PREFIX, RESOLVER};
use connection::Phase;
use device::{first_look, read_frame, FirstLook, Queues, FRAME_QUEUE};
use lookup::{Answer, LOOKUP_LIMIT};

/// The host end's MAC address.
const HOST_MAC: [u8; 6] = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];
/// TCP connections open at once; more are refused.
const CONNECTION_LIMIT: usize = 256;
/// Socket buffers per connection, each way.
const TCP_BUFFER: usize = 128 * 1024;
/// How long a connection may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the guest has to send a TLS server name or HTTP `Host` when
/// the policy needs one.
const SNIFF_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the host's own addresses are looked up again.
const HOST_REFRESH: Duration = Duration::from_secs(30);

struct Connection {
    handle: SocketHandle,
    address: Ipv4Addr,
    port: u16,
    /// Names the guest resolved to the address.
    names: Vec<String>,
    /// The name the connection was let through for (its TLS server name
    /// or HTTP `Host`), when it was decided by one.
    name: Option<String>,
    /// Its first bytes were read and passed (a name they carry allowed).
    inspected: bool,
    since: Instant,
    phase: Phase,
    /// The published port it came in through; such a connection is the
    /// host's, and no policy of the guest's applies to it.
    published: Option<std::net::SocketAddrV4>,
}

/// How a destination is shown: a name the guest resolved to it, else the
/// host's name for the gateway, else the address.
fn shown(address: Ipv4Addr, names: &[String]) -> String {
    match names.first() {
        Some(name) => name.clone(),
        None if address == GATEWAY => HOST_NAME.to_string(),
        None => address.to_string(),
    }
}

/// A socket for one connection: bounded buffers each way, no Nagle.
fn new_socket() -> tcp::Socket<'static> {
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
        tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
    );
    socket.set_nagle_enabled(false);
    socket
}

/// (guest port, destination address, destination port).
type Key = (u16, Ipv4Addr, u16);

struct Stack {
    shared: Arc<Shared>,
    iface: Interface,
    device: Queues,
    sockets: SocketSet<'static>,
    connections: HashMap<Key, Connection>,
    dns: SocketHandle,
    answers_tx: mpsc::Sender<Answer>,
    answers: mpsc::Receiver<Answer>,
    lookups: usize,
    /// Address → names the guest resolved to it.
    names: HashMap<Ipv4Addr, Vec<String>>,
    /// The host's addresses, looked up again every [`HOST_REFRESH`].
    host: HostAddresses,
    host_checked: Instant,
    /// The policy generation the open connections were decided under.
    generation: u64,
    /// Sockets done with, kept until smoltcp has sent what they owe (the
    /// reset of an aborted one).
    closing: Vec<SocketHandle>,
    listeners: published::Listeners,
    epoch: Instant,
}

/// Serves the link until QEMU closes it or `stop` fires.
pub(crate) async fn serve(
    link: UnixStream,
    shared: Arc<Shared>,
    mut commands: mpsc::UnboundedReceiver<Command>,
    mut stop: oneshot::Receiver<()>,
) {
    let (mut reader, mut writer) = link.into_split();
    let (frames_tx, mut frames) = mpsc::channel::<Vec<u8>>(FRAME_QUEUE);
    tokio::spawn(async move {
        while let Ok(frame) = read_frame(&mut reader).await {
            if frames_tx.send(frame).await.is_err() {
                break;
            }
        }
    });
    let (out_tx, mut out) = mpsc::channel::<Vec<u8>>(FRAME_QUEUE);
    tokio::spawn(async move {
        while let Some(frame) = out.recv().await {
            let mut bytes = Vec::with_capacity(frame.len() + 4);
            bytes.extend((frame.len() as u32).to_be_bytes());
            bytes.extend(frame);
            if writer.write_all(&bytes).await.is_err() {
                break;
            }
        }
    });
    let wake = Arc::clone(&shared.wake);
    let (listeners, mut inbound) = published::Listeners::new();
    let mut stack = Stack::new(shared, listeners);
    loop {
        stack.step();
        while let Some(frame) = stack.device.tx.pop_front() {
            // A full queue drops the frame, as a congested link would.
            let _ = out_tx.try_send(frame);
        }
        let now = stack.now();
        let delay = stack
            .iface
            .poll_delay(now, &stack.sockets)
            .map(|d| Duration::from_micros(d.total_micros()))
            .unwrap_or(Duration::from_secs(1))
            .min(Duration::from_secs(1));
        tokio::select! {
            frame = frames.recv() => {
                let Some(frame) = frame else { break };
                stack.take_frame(frame);
                while let Ok(frame) = frames.try_recv() {
                    stack.take_frame(frame);
                }
            }
            Some(answer) = stack.answers.recv() => stack.deliver(answer),
            Some(command) = commands.recv() => stack.command(command),
            Some(accepted) = inbound.recv() => stack.inbound(accepted),
            _ = wake.notified() => {}
            _ = tokio::time::sleep(delay) => {}
            _ = &mut stop => break,
        }
    }
}

impl Stack {
    fn new(shared: Arc<Shared>, listeners: published::Listeners) -> Stack {
        let mut device = Queues {
            rx: VecDeque::new(),
            tx: VecDeque::new(),
        };
        let epoch = Instant::now();
        let config = Config::new(HardwareAddress::Ethernet(EthernetAddress(HOST_MAC)));
        let mut iface = Interface::new(config, &mut device, smoltcp::time::Instant::ZERO);
        iface.update_ip_addrs(|addresses| {
            let _ = addresses.push(IpCidr::new(IpAddress::Ipv4(GATEWAY), PREFIX));
            let _ = addresses.push(IpCidr::new(IpAddress::Ipv4(RESOLVER), PREFIX));
        });
        let _ = iface.routes_mut().add_default_ipv4_route(GATEWAY);
        iface.set_any_ip(true);
        let mut sockets = SocketSet::new(Vec::new());
        let mut dns = udp::Socket::new(
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 64], vec![0; 64 * 1024]),
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 64], vec![0; 64 * 1024]),
        );
        let _ = dns.bind(IpListenEndpoint {
            addr: Some(IpAddress::Ipv4(RESOLVER)),
            port: 53,
        });
        let dns = sockets.add(dns);
        let (answers_tx, answers) = mpsc::channel(LOOKUP_LIMIT);
        Stack {
            shared,
            iface,
            device,
            sockets,
            connections: HashMap::new(),
            dns,
            answers_tx,
            answers,
            lookups: 0,
            names: HashMap::new(),
            host: HostAddresses {
                gateway: GATEWAY,
                own: crate::host::own_addresses(),
            },
            host_checked: Instant::now(),
            generation: 0,
            closing: Vec::new(),
            listeners,
            epoch,
        }
    }

    fn now(&self) -> smoltcp::time::Instant {
        smoltcp::time::Instant::from_micros(self.epoch.elapsed().as_micros() as i64)
    }

    /// Looks at a frame before smoltcp does: a new TCP connection gets its
    /// first decision (and a socket, if it may go on); UDP that is not DNS
    /// is reported.
    fn take_frame(&mut self, frame: Vec<u8>) {
        if let Some(first) = first_look(&frame) {
            match first {
                FirstLook::Syn(key) => self.new_connection(key),
                FirstLook::Udp(address, port) => {
                    if address != RESOLVER || port != 53 {
                        self.report(Via::Udp, address, Some(port), Some(DenyReason::Protocol));
                    }
                }
            }
        }
        if self.device.rx.len() < FRAME_QUEUE {
            self.device.rx.push_back(frame);
        }
    }

    fn names_of(&self, address: Ipv4Addr) -> Vec<String> {
        self.names.get(&address).cloned().unwrap_or_default()
    }

    fn report(&self, via: Via, address: Ipv4Addr, port: Option<u16>, denied: Option<DenyReason>) {
        let destination = shown(address, &self.names_of(address));
        self.shared.report(NetEvent {
            time_unix_ms: now_unix_ms(),
            via,
            destination,
            address: Some(address),
            port,
            denied,
            unreported: 0,
        });
    }

    fn new_connection(&mut self, key: Key) {
        if self.connections.contains_key(&key) {
            return; // a retransmitted SYN
        }
        let (_, address, port) = key;
        let names = self.names_of(address);
        self.refresh_host();
        // A first decision, so a denied connection fails at once; it is
        // taken again when the handshake completes (this SYN may be one
        // smoltcp drops, and the policy may change meanwhile).
        let verdict = self
            .shared
            .policy()
            .decide(address, port, &self.host, &names);
        if let Verdict::Deny(reason) = verdict {
            self.report(Via::Tcp, address, Some(port), Some(reason));
            return;
        }
        if self.open(false) >= CONNECTION_LIMIT {
            return;
        }
        let mut socket = new_socket();
        if socket
            .listen(IpListenEndpoint {
                addr: Some(IpAddress::Ipv4(address)),
                port,
            })
            .is_err()
        {
            return;
        }
        self.track(key, socket, names, Phase::Accepting, None);
    }

    /// Connections open now: through published ports, or the guest's own.
    fn open(&self, published: bool) -> usize {
        self.connections
            .values()
            .filter(|c| c.published.is_some() == published)
            .count()
    }

    /// Keeps `socket` as the connection `key`, in `phase`.
    fn track(
        &mut self,
        key: Key,
        socket: tcp::Socket<'static>,
        names: Vec<String>,
        phase: Phase,
        published: Option<std::net::SocketAddrV4>,
    ) {
        let (_, address, port) = key;
        let connection = Connection {
            handle: self.sockets.add(socket),
            address,
            port,
            names,
            name: None,
            inspected: false,
            since: Instant::now(),
            phase,
            published,
        };
        self.connections.insert(key, connection);
    }

    /// One round: smoltcp takes in and sends out what it can, every
    /// connection moves its bytes, DNS queries are answered or sent off.
    fn step(&mut self) {
        let generation = self
            .shared
            .generation
            .load(std::sync::atomic::Ordering::SeqCst);
        if generation != self.generation {
            self.generation = generation;
            self.recheck();
        }
        for _ in 0..4 {
            let now = self.now();
            let changed = self.iface.poll(now, &mut self.device, &mut self.sockets);
            for handle in std::mem::take(&mut self.closing) {
                self.sockets.remove(handle);
            }
            let moved = self.pump_connections();
            self.serve_dns();
            if changed == smoltcp::iface::PollResult::None && !moved {
                break;
            }
        }
    }

    fn pump_connections(&mut self) -> bool {
        let mut moved = false;
        let keys: Vec<Key> = self.connections.keys().copied().collect();
        for key in keys {
            let mut connection = self.connections.remove(&key).expect("listed");
            let (done, progress) = self.pump(&mut connection);
            moved |= progress;
            if done {
                self.closing.push(connection.handle);
            } else {
                self.connections.insert(key, connection);
            }
        }
        moved
    }

    fn refresh_host(&mut self) {
        if self.host_checked.elapsed() > HOST_REFRESH {
            self.host.own = crate::host::own_addresses();
            self.host_checked = Instant::now();
        }
    }
}
