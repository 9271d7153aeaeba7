//! The guest's DNS: one UDP socket on the resolver address, answered from
//! the policy and the host's resolver.

use std::net::Ipv4Addr;
use std::time::Duration;

use smoltcp::socket::udp;

use super::Stack;
use crate::dns::{self, Query, Rcode};
use crate::policy::{is_host_name, DenyReason};
use crate::{now_unix_ms, NetEvent, Via, GATEWAY, HOST_NAME};

/// How long resolving a name on the host may take.
const RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Lookups in flight at once; more are answered SERVFAIL.
pub(super) const LOOKUP_LIMIT: usize = 64;
/// Addresses remembered with the names that resolved to them.
const NAME_LIMIT: usize = 4096;

/// A DNS answer coming back from a host lookup.
pub(super) struct Answer {
    to: smoltcp::wire::IpEndpoint,
    packet: Vec<u8>,
    name: String,
    addresses: Vec<Ipv4Addr>,
}

impl Stack {
    /// Answers the guest's DNS queries: the host name at once, denied names
    /// with NXDOMAIN, the rest through the host's resolver.
    pub(super) fn serve_dns(&mut self) {
        // Larger than a query may be, so an oversized one is read (and
        // dropped by the parser) rather than stopping the loop.
        let mut buf = [0u8; 4 * dns::QUERY_LIMIT];
        loop {
            let socket = self.sockets.get_mut::<udp::Socket>(self.dns);
            let (n, meta) = match socket.recv_slice(&mut buf) {
                Ok(received) => received,
                Err(udp::RecvError::Truncated) => continue,
                Err(udp::RecvError::Exhausted) => break,
            };
            let Some(query) = dns::parse_query(&buf[..n]) else {
                continue;
            };
            let to = meta.endpoint;
            if query.name != HOST_NAME && !is_host_name(&query.name) {
                // Not a name anyone could allow; nothing of it is shown.
                let packet = dns::answer(&query, Rcode::NxDomain, &[]);
                let _ = socket.send_slice(&packet, to);
                continue;
            }
            let policy = self.shared.policy();
            if query.name == HOST_NAME {
                let addresses = match query.qtype {
                    dns::TYPE_A => vec![GATEWAY],
                    _ => Vec::new(),
                };
                let packet = dns::answer(&query, Rcode::NoError, &addresses);
                let _ = socket.send_slice(&packet, to);
            } else if !policy.allows_lookup(&query.name) {
                let reason = match policy.enabled {
                    true => DenyReason::NotAllowed,
                    false => DenyReason::NetworkOff,
                };
                let packet = dns::answer(&query, Rcode::NxDomain, &[]);
                let _ = socket.send_slice(&packet, to);
                self.shared.report(NetEvent {
                    time_unix_ms: now_unix_ms(),
                    via: Via::Dns,
                    destination: query.name.clone(),
                    address: None,
                    port: None,
                    denied: Some(reason),
                    unreported: 0,
                });
            } else if query.qtype != dns::TYPE_A {
                // No IPv6 in the guest: an empty answer sends it to `A`.
                let packet = dns::answer(&query, Rcode::NoError, &[]);
                let _ = socket.send_slice(&packet, to);
            } else if self.lookups >= LOOKUP_LIMIT {
                let packet = dns::answer(&query, Rcode::ServFail, &[]);
                let _ = socket.send_slice(&packet, to);
            } else {
                self.lookups += 1;
                let answers = self.answers_tx.clone();
                tokio::spawn(async move {
                    let _ = answers.send(lookup(query, to).await).await;
                });
            }
        }
    }

    pub(super) fn deliver(&mut self, answer: Answer) {
        self.lookups = self.lookups.saturating_sub(1);
        if self.names.len() > NAME_LIMIT {
            self.names.clear();
        }
        for address in &answer.addresses {
            let names = self.names.entry(*address).or_default();
            if !names.contains(&answer.name) {
                names.insert(0, answer.name.clone());
                names.truncate(8);
            }
        }
        let socket = self.sockets.get_mut::<udp::Socket>(self.dns);
        let _ = socket.send_slice(&answer.packet, answer.to);
    }
}

/// Whether `name` resolves, on the host, to `address`.
pub(super) async fn resolves_to(name: &str, port: u16, address: Ipv4Addr) -> bool {
    let lookup = tokio::net::lookup_host((name, port));
    match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
        Ok(Ok(mut found)) => found.any(|a| a.ip() == std::net::IpAddr::V4(address)),
        _ => false,
    }
}

/// Resolves a query through the host's resolver.
async fn lookup(query: Query, to: smoltcp::wire::IpEndpoint) -> Answer {
    let lookup = tokio::net::lookup_host((query.name.as_str(), 0));
    let (rcode, addresses) = match tokio::time::timeout(RESOLVE_TIMEOUT, lookup).await {
        Ok(Ok(found)) => {
            let mut addresses: Vec<Ipv4Addr> = Vec::new();
            for found in found {
                if let std::net::IpAddr::V4(v4) = found.ip() {
                    if !addresses.contains(&v4) {
                        addresses.push(v4);
                    }
                }
            }
            (Rcode::NoError, addresses)
        }
        Ok(Err(_)) => (Rcode::NxDomain, Vec::new()),
        Err(_) => (Rcode::ServFail, Vec::new()),
    };
    Answer {
        to,
        packet: dns::answer(&query, rcode, &addresses),
        name: query.name,
        addresses,
    }
}
