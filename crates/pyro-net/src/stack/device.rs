//! The link's frames: QEMU's length-prefixed stream in, smoltcp's device
//! queues, and the first look at each frame before smoltcp takes it.

use std::collections::VecDeque;
use std::net::Ipv4Addr;

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpProtocol, Ipv4Packet, TcpPacket, UdpPacket,
};
use tokio::io::AsyncReadExt;

use super::Key;
use crate::GATEWAY;

pub(super) const FRAME_LIMIT: usize = 65_550;
/// Frames queued from QEMU, and towards it (more are dropped, as a busy
/// link drops them; TCP sends them again).
pub(super) const FRAME_QUEUE: usize = 1024;

/// Frames in and out of smoltcp.
pub(super) struct Queues {
    pub(super) rx: VecDeque<Vec<u8>>,
    pub(super) tx: VecDeque<Vec<u8>>,
}

pub(super) struct RxToken(Vec<u8>);
pub(super) struct TxToken<'a>(&'a mut VecDeque<Vec<u8>>);

impl phy::RxToken for RxToken {
    fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R {
        f(&self.0)
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
        let mut frame = vec![0u8; len];
        let result = f(&mut frame);
        self.0.push_back(frame);
        result
    }
}

impl Device for Queues {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken<'a>;

    fn receive(
        &mut self,
        _: smoltcp::time::Instant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let frame = self.rx.pop_front()?;
        Some((RxToken(frame), TxToken(&mut self.tx)))
    }

    fn transmit(&mut self, _: smoltcp::time::Instant) -> Option<Self::TxToken<'_>> {
        Some(TxToken(&mut self.tx))
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = 1514;
        caps
    }
}

pub(super) async fn read_frame(
    reader: &mut tokio::net::unix::OwnedReadHalf,
) -> std::io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    reader.read_exact(&mut len).await?;
    let len = u32::from_be_bytes(len) as usize;
    if len > FRAME_LIMIT {
        return Err(std::io::Error::other("oversized frame"));
    }
    let mut frame = vec![0u8; len];
    reader.read_exact(&mut frame).await?;
    Ok(frame)
}

pub(super) enum FirstLook {
    Syn(Key),
    Udp(Ipv4Addr, u16),
}

/// A TCP SYN (a new connection) or a UDP datagram, from the guest.
pub(super) fn first_look(frame: &[u8]) -> Option<FirstLook> {
    let ethernet = EthernetFrame::new_checked(frame).ok()?;
    if ethernet.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(ethernet.payload()).ok()?;
    let address = ip.dst_addr();
    if address == GATEWAY && ip.next_header() != IpProtocol::Tcp || ip.frag_offset() != 0 {
        return None;
    }
    match ip.next_header() {
        IpProtocol::Tcp => {
            let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
            (tcp.syn() && !tcp.ack()).then_some(FirstLook::Syn((
                tcp.src_port(),
                address,
                tcp.dst_port(),
            )))
        }
        IpProtocol::Udp => {
            let udp = UdpPacket::new_checked(ip.payload()).ok()?;
            Some(FirstLook::Udp(address, udp.dst_port()))
        }
        _ => None,
    }
}
