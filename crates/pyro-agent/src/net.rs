//! The guest's side of the network: when the host asks (`NetworkUp`), the
//! NIC gets the address, route and resolver the host's stack expects
//! (`pyro_protocol::net`), and the host's CA bundle is trusted next to the
//! guest's own. The network drivers were loaded at boot (`pyro.net=1`).
//!
//! The combined bundle lives in `/run/pyro` (memory, never the disk) and is
//! bind-mounted over `/etc/ssl/certs/ca-certificates.crt`, where OpenSSL,
//! curl, git, apt and Debian's pip look; `SSL_CERT_FILE`,
//! `REQUESTS_CA_BUNDLE`, `CARGO_HTTP_CAINFO` and `NODE_EXTRA_CA_CERTS` point
//! the tools that carry their own bundle at it.

use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use pyro_protocol::net::{GATEWAY, GUEST, PREFIX};
use pyro_protocol::ErrorKind;

use crate::confine::FileError;
use crate::inflow::{Inflow, Next};
use crate::spawn;
use crate::sys;

/// How long the NIC may take to appear after boot.
const NIC_TIMEOUT: Duration = Duration::from_secs(10);
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";
const RUN_DIR: &str = "/run/pyro";
const HOST_BUNDLE: &str = "/run/pyro/host-ca.pem";
const COMBINED_BUNDLE: &str = "/run/pyro/ca-certificates.crt";

/// Brings the network up; `ca` carries the host's CA bundle when sent.
pub fn up(
    ca: Option<&Inflow>,
    env: Vec<(String, String)>,
    mac: Option<&str>,
) -> Result<Option<u64>, FileError> {
    let host_ca = ca.map(read_all).transpose()?;
    let mac = mac
        .map(|text| parse_mac(text).ok_or_else(|| fail(format!("not a MAC address: {text}"))))
        .transpose()?;
    let nic = wait_for_nic().map_err(|e| fail(format!("no network device: {e}")))?;
    configure(&nic, mac).map_err(|e| fail(format!("cannot configure {nic}: {e}")))?;
    let mut env = env;
    if let Some(bundle) = host_ca {
        trust(&bundle).map_err(|e| fail(format!("cannot install the host's CA bundle: {e}")))?;
        for key in ["SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "CARGO_HTTP_CAINFO"] {
            env.push((key.into(), COMBINED_BUNDLE.into()));
        }
        env.push(("NODE_EXTRA_CA_CERTS".into(), HOST_BUNDLE.into()));
    }
    spawn::set_network_env(env);
    Ok(None)
}

fn fail(message: String) -> FileError {
    FileError::new(ErrorKind::Internal, message)
}

fn read_all(inflow: &Inflow) -> Result<Vec<u8>, FileError> {
    let mut bytes = Vec::new();
    loop {
        match inflow.next() {
            Next::Data(chunk) => {
                inflow.delivered(chunk.len());
                bytes.extend(chunk);
            }
            Next::End => return Ok(bytes),
            Next::Failed(kind, message) => return Err(FileError::new(kind, message)),
        }
    }
}

/// The first network interface that is not loopback.
fn wait_for_nic() -> io::Result<String> {
    let deadline = Instant::now() + NIC_TIMEOUT;
    loop {
        if let Ok(entries) = fs::read_dir("/sys/class/net") {
            let mut names: Vec<String> = entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| name != "lo")
                .collect();
            names.sort();
            if let Some(name) = names.into_iter().next() {
                return Ok(name);
            }
        }
        if Instant::now() > deadline {
            return Err(io::Error::other(format!(
                "none appeared within {}s",
                NIC_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn sockaddr(address: Ipv4Addr) -> libc::sockaddr {
    let inet = libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: 0,
        sin_addr: libc::in_addr {
            s_addr: u32::from(address).to_be(),
        },
        sin_zero: [0; 8],
    };
    // SAFETY: sockaddr_in and sockaddr have the same size on Linux and
    // sockaddr is plain data; this is how the socket ioctls take addresses.
    unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(inet) }
}

fn ifreq(name: &str) -> libc::ifreq {
    // SAFETY: an all-zero ifreq is a valid value of this plain C struct.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in request.ifr_name.iter_mut().zip(name.bytes().take(15)) {
        *dst = src as libc::c_char;
    }
    request
}

/// `52:54:00:12:34:56` as bytes.
fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = text.split(':');
    for byte in mac.iter_mut() {
        let part = parts.next()?;
        if part.len() != 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

/// MAC (while the link is still down), address, netmask, link up, default
/// route.
fn configure(nic: &str, mac: Option<[u8; 6]>) -> io::Result<()> {
    // SAFETY: socket takes no pointers.
    let sock = sys::check(unsafe {
        libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
    })?;
    let netmask = Ipv4Addr::from(u32::MAX << (32 - PREFIX as u32));
    let result = (|| {
        if let Some(mac) = mac {
            let mut request = ifreq(nic);
            // SAFETY: an all-zero sockaddr is a valid value of this C struct.
            let mut hwaddr: libc::sockaddr = unsafe { std::mem::zeroed() };
            hwaddr.sa_family = libc::ARPHRD_ETHER;
            for (dst, src) in hwaddr.sa_data.iter_mut().zip(mac) {
                *dst = src as libc::c_char;
            }
            request.ifr_ifru.ifru_hwaddr = hwaddr;
            // SAFETY: the ioctl reads the ifreq we own (hwaddr member set).
            sys::check(unsafe { libc::ioctl(sock, libc::SIOCSIFHWADDR, &request) })?;
        }
        let mut request = ifreq(nic);
        request.ifr_ifru.ifru_addr = sockaddr(GUEST);
        // SAFETY: the ioctls read the ifreq we own, whose union member is
        // the one each request uses.
        sys::check(unsafe { libc::ioctl(sock, libc::SIOCSIFADDR, &request) })?;
        request.ifr_ifru.ifru_netmask = sockaddr(netmask);
        // SAFETY: as above.
        sys::check(unsafe { libc::ioctl(sock, libc::SIOCSIFNETMASK, &request) })?;
        let mut flags = ifreq(nic);
        // SAFETY: as above; SIOCGIFFLAGS fills the flags member.
        sys::check(unsafe { libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut flags) })?;
        // SAFETY: the flags member was just filled by the kernel.
        unsafe { flags.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short };
        // SAFETY: as above.
        sys::check(unsafe { libc::ioctl(sock, libc::SIOCSIFFLAGS, &flags) })?;
        // SAFETY: an all-zero rtentry is a valid value of this C struct.
        let mut route: libc::rtentry = unsafe { std::mem::zeroed() };
        route.rt_dst = sockaddr(Ipv4Addr::UNSPECIFIED);
        route.rt_genmask = sockaddr(Ipv4Addr::UNSPECIFIED);
        route.rt_gateway = sockaddr(GATEWAY);
        route.rt_flags = libc::RTF_UP | libc::RTF_GATEWAY;
        // SAFETY: SIOCADDRT reads the rtentry we own.
        match sys::check(unsafe { libc::ioctl(sock, libc::SIOCADDRT, &route) }) {
            Err(e) if e.raw_os_error() == Some(libc::EEXIST) => Ok(()),
            other => other.map(drop),
        }
    })();
    // SAFETY: `sock` is a descriptor we opened and no longer use.
    unsafe { libc::close(sock) };
    result
}

/// Writes the host's bundle and the combined one to `/run/pyro`, and puts
/// the combined one where the system's lives.
fn trust(host_bundle: &[u8]) -> io::Result<()> {
    fs::create_dir_all(RUN_DIR)?;
    // A second NetworkUp mounts again: take the first mount away, so the
    // guest's own bundle is read and mounts do not stack.
    let _ = sys::umount(SYSTEM_BUNDLE);
    let mut combined = fs::read(SYSTEM_BUNDLE).unwrap_or_default();
    if !combined.is_empty() && !combined.ends_with(b"\n") {
        combined.push(b'\n');
    }
    combined.extend_from_slice(host_bundle);
    fs::write(HOST_BUNDLE, host_bundle)?;
    fs::write(COMBINED_BUNDLE, &combined)?;
    if fs::metadata(SYSTEM_BUNDLE).is_ok() {
        sys::mount(COMBINED_BUNDLE, SYSTEM_BUNDLE, None, libc::MS_BIND, None)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn parses_macs() {
        assert_eq!(
            super::parse_mac("02:50:0a:ff:00:01"),
            Some([2, 0x50, 0x0a, 0xff, 0, 1])
        );
        assert_eq!(super::parse_mac("02:50:0a:ff:00"), None);
        assert_eq!(super::parse_mac("02:50:0a:ff:00:01:02"), None);
        assert_eq!(super::parse_mac("2:50:0a:ff:00:01"), None);
    }
}
