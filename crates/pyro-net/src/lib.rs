//! The guest's network, run on the host.
//!
//! A workspace with egress gets one virtio-net device whose other end is a
//! Unix socket pair in the host process that owns the VM (QEMU's
//! `-netdev socket,fd=N`: each Ethernet frame behind a 4-byte big-endian
//! length). On the host end runs [`Network`]: a user-space TCP/IP stack
//! (smoltcp) that answers ARP and the guest's DNS queries, terminates every
//! TCP connection the guest opens, decides it against the [`Policy`], and
//! relays the allowed ones through ordinary host sockets. Nothing of the
//! host is reachable that the policy did not name, because nothing is
//! routed: every byte leaves through a socket this code opened on purpose.
//!
//! The guest sees a QEMU-like network: it is [`GUEST`]`/24`, its gateway
//! [`GATEWAY`] (which also stands for the host, as [`HOST_NAME`]), its
//! resolver [`RESOLVER`]. Only TCP and DNS leave; other UDP is refused and
//! reported.
//!
//! Every decision is reported to an [`Observer`]: opened and denied
//! connections, with the destination the guest asked for.

mod dns;
mod host;
pub mod policy;
mod ports;
mod relay;
mod sniff;
mod stack;

use std::net::Ipv4Addr;
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

pub use policy::{Allow, AllowError, AllowHost, Closed, DenyReason, Policy, HOST_NAME};
pub use ports::{Publish, PublishError};

pub use pyro_protocol::net::{GATEWAY, GUEST, PREFIX, RESOLVER};

/// How a connection or lookup travelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Via {
    Tcp,
    Udp,
    Dns,
}

/// One decision of the network: a lookup or connection opened or denied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetEvent {
    pub time_unix_ms: u64,
    pub via: Via,
    /// The name the guest asked for (resolved through pyro, or sent as TLS
    /// server name or HTTP `Host`), else the address.
    pub destination: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Ipv4Addr>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
    /// `None`: allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denied: Option<DenyReason>,
    /// Decisions made since the event before this one and not reported,
    /// because the guest made them faster than [`REPORT_RATE`] allows.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub unreported: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Decisions reported per second at most, after a burst of [`REPORT_BURST`]:
/// a guest that floods connections must not flood the host's logs.
pub const REPORT_RATE: u32 = 20;
const REPORT_BURST: u32 = 200;

impl NetEvent {
    /// The `--allow` entry that would open this destination, when one can.
    pub fn allow_entry(&self) -> Option<String> {
        match &self.denied {
            None | Some(DenyReason::NetworkOff) | Some(DenyReason::Protocol) => None,
            Some(DenyReason::HostClosed) => Some(format!("{HOST_NAME}:{}", self.port?)),
            Some(DenyReason::Closed { .. }) => {
                let address = self.address?;
                Some(match self.port {
                    Some(port) => format!("{address}:{port}"),
                    None => address.to_string(),
                })
            }
            Some(DenyReason::NotAllowed) | Some(DenyReason::NameMismatch { .. }) => {
                Some(match self.port {
                    Some(port) => format!("{}:{port}", self.destination),
                    None => self.destination.clone(),
                })
            }
        }
    }

    /// `files.example.com:443`, or the bare destination of a lookup.
    pub fn target(&self) -> String {
        match self.port {
            Some(port) => format!("{}:{port}", self.destination),
            None => self.destination.clone(),
        }
    }
}

/// Receives every decision, from the network's own thread; keep it quick.
pub trait Observer: Send + Sync {
    fn event(&self, event: NetEvent);
}

/// State shared between a [`Network`] handle and its thread.
pub(crate) struct Shared {
    pub(crate) policy: RwLock<Policy>,
    /// Bumped on every policy change, so the stack re-decides what is open.
    pub(crate) generation: AtomicU64,
    /// Wakes the stack's loop.
    pub(crate) wake: Arc<tokio::sync::Notify>,
    pub(crate) observer: Arc<dyn Observer>,
    reports: Mutex<Reports>,
}

/// What keeps reporting bounded.
struct Reports {
    /// Recently reported events, so a guest retrying in a loop is reported
    /// once a second per destination rather than once per packet.
    recent: std::collections::HashMap<String, Instant>,
    /// Token buckets of [`REPORT_RATE`] a second, one for allowed and one
    /// for denied decisions, so a busy install cannot crowd denials out.
    tokens: [f64; 2],
    filled: Instant,
    unreported: u64,
}

impl Shared {
    pub(crate) fn policy(&self) -> Policy {
        self.policy
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn report(&self, event: NetEvent) {
        let key = format!(
            "{:?}{}{:?}{:?}",
            event.via,
            event.target(),
            event.address,
            event.denied
        );
        let now = Instant::now();
        let unreported = {
            let mut reports = self.reports.lock().unwrap_or_else(|e| e.into_inner());
            if reports.recent.len() > 4096 {
                reports.recent.clear();
            }
            if let Some(at) = reports.recent.get(&key) {
                if now.duration_since(*at) < Duration::from_secs(1) {
                    return;
                }
            }
            let elapsed = now.duration_since(reports.filled).as_secs_f64();
            reports.filled = now;
            for tokens in &mut reports.tokens {
                *tokens = (*tokens + elapsed * f64::from(REPORT_RATE)).min(f64::from(REPORT_BURST));
            }
            let bucket = &mut reports.tokens[usize::from(event.denied.is_some())];
            if *bucket < 1.0 {
                reports.unreported += 1;
                return;
            }
            *bucket -= 1.0;
            reports.recent.insert(key, now);
            std::mem::take(&mut reports.unreported)
        };
        self.observer.event(NetEvent {
            unreported,
            ..event
        });
    }
}

/// The running network of one VM. Dropping it stops the network.
pub struct Network {
    shared: Arc<Shared>,
    commands: tokio::sync::mpsc::UnboundedSender<stack::Command>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Network {
    /// Serves the guest NIC whose host end is `link`, on a thread of its own.
    pub fn start(
        link: UnixStream,
        policy: Policy,
        observer: Arc<dyn Observer>,
    ) -> std::io::Result<Network> {
        let shared = Arc::new(Shared {
            policy: RwLock::new(policy),
            generation: AtomicU64::new(0),
            wake: Arc::new(tokio::sync::Notify::new()),
            observer,
            reports: Mutex::new(Reports {
                recent: Default::default(),
                tokens: [f64::from(REPORT_BURST); 2],
                filled: Instant::now(),
                unreported: 0,
            }),
        });
        link.set_nonblocking(true)?;
        let (stop, stopped) = tokio::sync::oneshot::channel();
        let (commands, commands_rx) = tokio::sync::mpsc::unbounded_channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("pyro-net".into())
            .spawn(move || {
                runtime.block_on(async move {
                    if let Ok(link) = tokio::net::UnixStream::from_std(link) {
                        stack::serve(link, thread_shared, commands_rx, stopped).await
                    }
                });
                // A host lookup still blocked in the resolver must not hold
                // up the VM's teardown: leave it to finish on its own.
                runtime.shutdown_background();
            })?;
        Ok(Network {
            shared,
            commands,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Replaces the policy. Open connections the new policy would not let
    /// through are closed (the guest sees a reset), and so are names the
    /// guest resolved while the network was on, once it is off.
    pub fn set_policy(&self, policy: Policy) {
        *self
            .shared
            .policy
            .write()
            .unwrap_or_else(|e| e.into_inner()) = policy;
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        self.shared.wake.notify_one();
    }

    pub fn policy(&self) -> Policy {
        self.shared.policy()
    }

    /// Forwards connections to `listener` (bound by [`Publish::bind`]) to
    /// the guest's `guest_port`, until [`Network::unpublish`]; returns the
    /// address it listens on.
    pub fn publish(
        &self,
        listener: std::net::TcpListener,
        guest_port: u16,
    ) -> std::io::Result<std::net::SocketAddrV4> {
        listener.set_nonblocking(true)?;
        let bound = match listener.local_addr()? {
            std::net::SocketAddr::V4(bound) => bound,
            std::net::SocketAddr::V6(_) => return Err(std::io::ErrorKind::Unsupported.into()),
        };
        self.commands
            .send(stack::Command::Publish {
                listener,
                bound,
                guest_port,
            })
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::NotConnected))?;
        Ok(bound)
    }

    /// Stops listening on `bound` and closes the connections that came in
    /// through it; returns once the port is closed, `false` when nothing
    /// was published there.
    pub async fn unpublish(&self, bound: std::net::SocketAddrV4) -> bool {
        let (done, closed) = tokio::sync::oneshot::channel();
        if self
            .commands
            .send(stack::Command::Unpublish(bound, done))
            .is_err()
        {
            return false;
        }
        closed.await.unwrap_or(false)
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Milliseconds since the Unix epoch: the clock of [`NetEvent::time_unix_ms`].
pub fn now_unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
