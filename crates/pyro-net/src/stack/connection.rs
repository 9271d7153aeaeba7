//! One guest connection through its phases: the handshake, the decision
//! (at once, or on the name its first bytes carry), and the relay.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::Instant;

use smoltcp::socket::tcp;
use tokio::sync::oneshot;

use super::relaying::pump_relay;
use super::{lookup::resolves_to, shown, Connection, Stack, HANDSHAKE_TIMEOUT, SNIFF_TIMEOUT};
use crate::policy::{DenyReason, Policy, Verdict};
use crate::relay::{self, Relay};
use crate::sniff::{may_carry_name, sniff, Sniffed, SNIFF_LIMIT};
use crate::{now_unix_ms, NetEvent, Shared, Via};

/// Where one guest connection stands.
pub(super) enum Phase {
    /// The guest's handshake is under way; then it is decided again, with
    /// the policy of that moment.
    Accepting,
    /// Reading the connection's first bytes for a name, since `since`.
    Sniffing { first: Vec<u8>, since: Instant },
    /// The sniffed name is being resolved on the host, to check the address.
    Checking {
        first: Vec<u8>,
        name: String,
        answer: oneshot::Receiver<bool>,
    },
    Relaying {
        relay: Relay,
        pending: Option<(Vec<u8>, usize)>,
        host_done: bool,
        /// The guest's first bytes, held back (since when) until they show
        /// which name they are for (an address several names share);
        /// `None` once they passed.
        held: Option<(Vec<u8>, Instant)>,
    },
}

/// What the first bytes of a connection opened by address say.
enum Held {
    Wait,
    /// On, with the allowed name they carry, if any.
    Pass(Option<String>),
    /// The name they carry is not allowed, or they may carry one that
    /// could not be read.
    Deny(Option<String>),
}

impl Stack {
    /// Moves one connection on; returns (finished, made progress).
    pub(super) fn pump(&mut self, c: &mut Connection) -> (bool, bool) {
        let socket = self.sockets.get_mut::<tcp::Socket>(c.handle);
        match &mut c.phase {
            Phase::Accepting => match socket.state() {
                tcp::State::Listen | tcp::State::SynReceived => {
                    (c.since.elapsed() > HANDSHAKE_TIMEOUT, false)
                }
                tcp::State::Established | tcp::State::CloseWait => {
                    let names = self.names.get(&c.address).cloned().unwrap_or_default();
                    let verdict = self
                        .shared
                        .policy()
                        .decide(c.address, c.port, &self.host, &names);
                    c.phase = match verdict {
                        Verdict::Open(dial) => {
                            opened(&self.shared, c, None);
                            relaying(&self.shared, dial, c.port, Vec::new(), None)
                        }
                        Verdict::Resolved(dial) => {
                            opened(&self.shared, c, None);
                            let held = Some((Vec::new(), Instant::now()));
                            relaying(&self.shared, dial, c.port, Vec::new(), held)
                        }
                        Verdict::Sniff => Phase::Sniffing {
                            first: Vec::new(),
                            since: Instant::now(),
                        },
                        Verdict::Deny(reason) => {
                            socket.abort();
                            let destination = destination(c, None);
                            denied(&self.shared, c, destination, reason);
                            return (true, true);
                        }
                    };
                    (false, true)
                }
                _ => (true, false),
            },
            Phase::Sniffing { first, since } => {
                let progress = read_start(socket, first);
                let guest_done = !socket.may_recv();
                let timed_out = since.elapsed() > SNIFF_TIMEOUT;
                if !progress && !guest_done && !timed_out {
                    return (false, false);
                }
                let sniffed = match sniff(first) {
                    Sniffed::Incomplete if !guest_done && !timed_out => return (false, progress),
                    Sniffed::Incomplete | Sniffed::NoName => None,
                    Sniffed::Name(name) => Some(name),
                };
                match sniffed {
                    Some(name) if self.shared.policy().allows_name(&name, c.port) => {
                        let (tx, answer) = oneshot::channel();
                        let wake = Arc::clone(&self.shared.wake);
                        let (lookup, address, port) = (name.clone(), c.address, c.port);
                        tokio::spawn(async move {
                            let _ = tx.send(resolves_to(&lookup, port, address).await);
                            wake.notify_one();
                        });
                        c.phase = Phase::Checking {
                            first: std::mem::take(first),
                            name,
                            answer,
                        };
                        (false, true)
                    }
                    other => {
                        socket.abort();
                        let destination = destination(c, other);
                        denied(&self.shared, c, destination, DenyReason::NotAllowed);
                        (true, true)
                    }
                }
            }
            Phase::Checking {
                first,
                name,
                answer,
            } => {
                let verdict = match answer.try_recv() {
                    Err(oneshot::error::TryRecvError::Empty) => return (false, false),
                    Ok(true) if self.shared.policy().allows_name(name, c.port) => None,
                    // The policy changed while the name was being checked.
                    Ok(true) => Some(DenyReason::NotAllowed),
                    Ok(false) | Err(oneshot::error::TryRecvError::Closed) => {
                        Some(DenyReason::NameMismatch { name: name.clone() })
                    }
                };
                let name = name.clone();
                if let Some(reason) = verdict {
                    socket.abort();
                    denied(&self.shared, c, name, reason);
                    return (true, true);
                }
                let first = std::mem::take(first);
                c.name = Some(name.clone());
                c.inspected = true;
                opened(&self.shared, c, Some(name));
                c.phase = relaying(&self.shared, c.address, c.port, first, None);
                (false, true)
            }
            Phase::Relaying {
                relay,
                pending,
                host_done,
                held,
            } => {
                if socket.state() == tcp::State::SynSent {
                    // Into the guest, from a published port: not answered yet.
                    return (c.since.elapsed() > HANDSHAKE_TIMEOUT, false);
                }
                let mut progress = false;
                if let Some((start, since)) = held {
                    let policy = self.shared.policy();
                    let (outcome, read) = inspect(socket, start, since, &policy, c.port);
                    progress |= read;
                    match outcome {
                        Held::Wait => {}
                        Held::Pass(name) => {
                            c.name = name;
                            c.inspected = true;
                            let start = std::mem::take(start);
                            if let (Some(to_host), false) = (&relay.to_host, start.is_empty()) {
                                // Nothing went this way yet: the queue has room.
                                let _ = to_host.try_send(start);
                            }
                            *held = None;
                        }
                        Held::Deny(name) => {
                            socket.abort();
                            let destination = destination(c, name);
                            denied(&self.shared, c, destination, DenyReason::NotAllowed);
                            return (true, true);
                        }
                    }
                }
                let (done, moved) = pump_relay(socket, relay, pending, host_done, held.is_none());
                (done, progress | moved)
            }
        }
    }

    /// Re-decides every relayed connection after a policy change, closing
    /// the ones it no longer lets through. Connections in an earlier phase
    /// are decided with the policy of the moment when they get there.
    pub(super) fn recheck(&mut self) {
        let policy = self.shared.policy();
        if !policy.enabled {
            self.names.clear();
        }
        let mut closed = Vec::new();
        for (key, c) in &self.connections {
            if !matches!(c.phase, Phase::Relaying { .. }) || c.published.is_some() {
                continue;
            }
            let names = self.names_of(c.address);
            let reason = match policy.decide(c.address, c.port, &self.host, &names) {
                Verdict::Deny(reason) => Some(reason),
                _ if c.name.is_some() => {
                    let name = c.name.as_deref().unwrap_or_default();
                    (!policy.allows_name(name, c.port)).then_some(DenyReason::NotAllowed)
                }
                Verdict::Sniff => Some(DenyReason::NotAllowed),
                // Opened when its address was open as it is: its first
                // bytes were never read for the name a shared address needs.
                Verdict::Resolved(_) if !c.inspected => Some(DenyReason::NotAllowed),
                Verdict::Open(_) | Verdict::Resolved(_) => None,
            };
            if let Some(reason) = reason {
                closed.push((*key, reason));
            }
        }
        for (key, reason) in closed {
            let Some(c) = self.connections.remove(&key) else {
                continue;
            };
            self.sockets.get_mut::<tcp::Socket>(c.handle).abort();
            let destination = destination(&c, c.name.clone());
            denied(&self.shared, &c, destination, reason);
            // Let smoltcp send the reset before the socket goes.
            self.closing.push(c.handle);
        }
    }
}

/// Reads more of a connection's first bytes, up to [`SNIFF_LIMIT`];
/// whether any came.
fn read_start(socket: &mut tcp::Socket<'_>, first: &mut Vec<u8>) -> bool {
    let mut progress = false;
    while socket.can_recv() && first.len() < SNIFF_LIMIT {
        let mut buf = vec![0u8; SNIFF_LIMIT - first.len()];
        let n = socket.recv_slice(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        first.extend_from_slice(&buf[..n]);
        progress = true;
    }
    progress
}

/// Looks at the first bytes of a connection let through by a resolved
/// name: a TLS server name or HTTP `Host` they carry must be allowed too,
/// and a start that may carry a name this code cannot read (TLS or HTTP
/// cut oddly, or too long) does not pass. The destination's bytes flow
/// meanwhile, so protocols where the server speaks first are not held up.
fn inspect(
    socket: &mut tcp::Socket<'_>,
    start: &mut Vec<u8>,
    since: &mut Instant,
    policy: &Policy,
    port: u16,
) -> (Held, bool) {
    let was_empty = start.is_empty();
    let progress = read_start(socket, start);
    if was_empty {
        // The time to send a name runs from the first byte: the server
        // may speak first, for as long as it likes.
        *since = Instant::now();
    }
    let ended = !socket.may_recv() || start.len() >= SNIFF_LIMIT;
    let ended = ended || !start.is_empty() && since.elapsed() > SNIFF_TIMEOUT;
    if !progress && !ended {
        return (Held::Wait, false);
    }
    let outcome = match sniff(start) {
        Sniffed::Incomplete if !ended => Held::Wait,
        Sniffed::Name(name) if policy.allows_name(&name, port) => Held::Pass(Some(name)),
        Sniffed::Name(name) => Held::Deny(Some(name)),
        _ if may_carry_name(start) => Held::Deny(None),
        _ => Held::Pass(None),
    };
    (outcome, progress)
}

fn relaying(
    shared: &Shared,
    dial: Ipv4Addr,
    port: u16,
    first: Vec<u8>,
    held: Option<(Vec<u8>, Instant)>,
) -> Phase {
    Phase::Relaying {
        relay: relay::start(
            SocketAddrV4::new(dial, port),
            first,
            Arc::clone(&shared.wake),
        ),
        pending: None,
        host_done: false,
        held,
    }
}

/// The name to show for a connection: the one it sent, else one the guest
/// resolved to its address, else the address.
fn destination(c: &Connection, name: Option<String>) -> String {
    name.unwrap_or_else(|| shown(c.address, &c.names))
}

fn opened(shared: &Shared, c: &Connection, name: Option<String>) {
    let destination = destination(c, name);
    report_tcp(shared, c, destination, None);
}

fn denied(shared: &Shared, c: &Connection, destination: String, reason: DenyReason) {
    report_tcp(shared, c, destination, Some(reason));
}

fn report_tcp(shared: &Shared, c: &Connection, destination: String, denied: Option<DenyReason>) {
    shared.report(NetEvent {
        time_unix_ms: now_unix_ms(),
        via: Via::Tcp,
        destination,
        address: Some(c.address),
        port: Some(c.port),
        denied,
        unreported: 0,
    });
}
