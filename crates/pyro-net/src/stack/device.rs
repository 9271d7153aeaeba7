//! The link's frames: QEMU's length-prefixed stream in, smoltcp's device
//! queues, and the first look at each frame before smoltcp takes it.

use std::collections::VecDeque;
use std::net::Ipv4Addr;

use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, TcpPacket,
    UdpPacket,
};
use tokio::io::AsyncReadExt;

use super::{Key, HOST_MAC};
use crate::GATEWAY;

/// Largest Ethernet frame taken from QEMU: the guest's MTU of 1500, its
/// header and a VLAN tag. Larger ones are read and dropped.
pub(super) const FRAME_LIMIT: usize = 1522;
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
    loop {
        reader.read_exact(&mut len).await?;
        let size = u32::from_be_bytes(len);
        if size as usize <= FRAME_LIMIT {
            let mut frame = vec![0u8; size as usize];
            reader.read_exact(&mut frame).await?;
            return Ok(frame);
        }
        let skipped = tokio::io::copy(
            &mut (&mut *reader).take(u64::from(size)),
            &mut tokio::io::sink(),
        )
        .await?;
        if skipped < u64::from(size) {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

pub(super) enum FirstLook {
    Syn(Key),
    Udp(Ipv4Addr, u16),
}

/// A TCP SYN (a new connection) or a UDP datagram, from the guest, in a
/// frame smoltcp will take too (addressed to the host, checksums right).
pub(super) fn first_look(frame: &[u8]) -> Option<FirstLook> {
    let host_mac = EthernetAddress(HOST_MAC);
    let ethernet = EthernetFrame::new_checked(frame).ok()?;
    if ethernet.ethertype() != EthernetProtocol::Ipv4
        || ethernet.dst_addr() != host_mac && !ethernet.dst_addr().is_broadcast()
    {
        return None;
    }
    let ip = Ipv4Packet::new_checked(ethernet.payload()).ok()?;
    if !ip.verify_checksum() {
        return None;
    }
    let (src, dst) = (
        IpAddress::Ipv4(ip.src_addr()),
        IpAddress::Ipv4(ip.dst_addr()),
    );
    let address = ip.dst_addr();
    if address == GATEWAY && ip.next_header() != IpProtocol::Tcp || ip.frag_offset() != 0 {
        return None;
    }
    match ip.next_header() {
        IpProtocol::Tcp => {
            let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
            (tcp.syn() && !tcp.ack() && tcp.verify_checksum(&src, &dst))
                .then_some(FirstLook::Syn((tcp.src_port(), address, tcp.dst_port())))
        }
        IpProtocol::Udp => {
            let udp = UdpPacket::new_checked(ip.payload()).ok()?;
            Some(FirstLook::Udp(address, udp.dst_port()))
        }
        _ => None,
    }
}
