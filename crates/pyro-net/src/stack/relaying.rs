//! Bytes between a guest connection's smoltcp socket and its relay.

use smoltcp::socket::tcp;
use tokio::sync::mpsc;

use crate::relay::{Chunk, Relay};

/// Moves bytes both ways between the guest's socket and its relay (the
/// guest's way only when `guest_bytes`: not while its first bytes are held).
pub(super) fn pump_relay(
    socket: &mut tcp::Socket<'_>,
    relay: &mut Relay,
    pending: &mut Option<(Vec<u8>, usize)>,
    host_done: &mut bool,
    guest_bytes: bool,
) -> (bool, bool) {
    let mut progress = false;
    // Destination → guest.
    loop {
        if pending.is_none() && !*host_done {
            match relay.from_host.try_recv() {
                Ok(Chunk::Data(bytes)) => *pending = Some((bytes, 0)),
                Ok(Chunk::End) | Err(mpsc::error::TryRecvError::Disconnected) => {
                    *host_done = true;
                    progress = true;
                }
                Ok(Chunk::Failed) => {
                    socket.abort();
                    return (true, true);
                }
                Err(mpsc::error::TryRecvError::Empty) => {}
            }
        }
        let Some((bytes, at)) = pending else { break };
        if !socket.may_send() {
            socket.abort();
            return (true, true);
        }
        let n = socket.send_slice(&bytes[*at..]).unwrap_or(0);
        *at += n;
        progress |= n > 0;
        if *at < bytes.len() {
            break;
        }
        *pending = None;
    }
    if *host_done && pending.is_none() && socket.may_send() {
        socket.close();
    }
    // Guest → destination.
    if let (Some(to_host), true) = (&relay.to_host, guest_bytes) {
        while socket.can_recv() {
            let Ok(permit) = to_host.try_reserve() else {
                break;
            };
            let mut buf = vec![0u8; 32 * 1024];
            let n = socket.recv_slice(&mut buf).unwrap_or(0);
            buf.truncate(n);
            permit.send(buf);
            progress = true;
        }
        if !socket.may_recv() && !socket.can_recv() {
            relay.to_host = None; // the guest closed its end: pass it on
        }
    }
    let done = matches!(socket.state(), tcp::State::Closed | tcp::State::TimeWait);
    (done, progress)
}
