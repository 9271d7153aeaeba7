//! Published ports: `[ADDR:]HOSTPORT:GUESTPORT`, a host listener whose
//! connections the stack opens into the guest.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};

use serde::{Deserialize, Serialize};

/// One port published from the host into the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publish {
    /// The host address it listens on (`127.0.0.1` unless asked otherwise).
    pub address: Ipv4Addr,
    /// The host port; 0 picks a free one.
    pub host_port: u16,
    /// The guest port connections go to.
    pub guest_port: u16,
}

/// Why a `--publish` entry does not parse, or cannot be bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    #[error("`{0}` is not `[ADDR:]HOSTPORT:GUESTPORT` (for example `8080:8000`, `0:8000` for a free host port, or `0.0.0.0:8080:8000`)")]
    Form(String),
    #[error("`{entry}` has a bad port `{port}`; a host port is 0 to 65535 (0 picks a free one), a guest port 1 to 65535")]
    Port { entry: String, port: String },
    #[error("`{entry}` has a bad address `{address}`; give an IPv4 address such as 127.0.0.1 or 0.0.0.0")]
    Address { entry: String, address: String },
    #[error("host port {address}:{port} is already in use; pick another, or 0 for a free one")]
    Taken { address: Ipv4Addr, port: u16 },
    #[error("cannot listen on host port {address}:{port}: {reason}")]
    Bind {
        address: Ipv4Addr,
        port: u16,
        reason: String,
    },
}

impl Publish {
    /// Parses `[ADDR:]HOSTPORT:GUESTPORT`.
    pub fn parse(entry: &str) -> Result<Publish, PublishError> {
        let text = entry.trim();
        let parts: Vec<&str> = text.split(':').collect();
        let (address, host, guest) = match parts.as_slice() {
            [host, guest] => ("127.0.0.1", *host, *guest),
            [address, host, guest] => (*address, *host, *guest),
            _ => return Err(PublishError::Form(entry.into())),
        };
        let port = |word: &str, zero: bool| {
            word.parse::<u16>()
                .ok()
                .filter(|p| zero || *p != 0)
                .ok_or_else(|| PublishError::Port {
                    entry: entry.into(),
                    port: word.into(),
                })
        };
        let address = address
            .parse::<Ipv4Addr>()
            .map_err(|_| PublishError::Address {
                entry: entry.into(),
                address: address.into(),
            })?;
        Ok(Publish {
            address,
            host_port: port(host, true)?,
            guest_port: port(guest, false)?,
        })
    }

    /// Binds the host side. `host_port` 0 takes a free port.
    pub fn bind(&self) -> Result<TcpListener, PublishError> {
        let at = SocketAddrV4::new(self.address, self.host_port);
        TcpListener::bind(at).map_err(|e| match e.kind() {
            std::io::ErrorKind::AddrInUse => PublishError::Taken {
                address: self.address,
                port: self.host_port,
            },
            _ => PublishError::Bind {
                address: self.address,
                port: self.host_port,
                reason: e.to_string(),
            },
        })
    }

    /// `http://127.0.0.1:8080`: where a browser on the host finds it
    /// (a wildcard address is reached through loopback).
    pub fn url(&self) -> String {
        let address = match self.address.is_unspecified() {
            true => Ipv4Addr::LOCALHOST,
            false => self.address,
        };
        format!("http://{address}:{}", self.host_port)
    }
}

impl fmt::Display for Publish {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.address, self.host_port, self.guest_port)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_parse_with_loopback_by_default() {
        let p = Publish::parse("8080:8000").unwrap();
        assert_eq!(
            (p.address, p.host_port, p.guest_port),
            (Ipv4Addr::LOCALHOST, 8080, 8000)
        );
        let p = Publish::parse("0.0.0.0:0:22").unwrap();
        assert_eq!(
            (p.address, p.host_port, p.guest_port),
            (Ipv4Addr::UNSPECIFIED, 0, 22)
        );
        assert_eq!(p.to_string(), "0.0.0.0:0:22");
        assert_eq!(Publish::parse(&p.to_string()).unwrap(), p);
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        let err = |s: &str| Publish::parse(s).unwrap_err().to_string();
        assert!(err("8000").contains("HOSTPORT:GUESTPORT"));
        assert!(err("a:b:c:d").contains("HOSTPORT:GUESTPORT"));
        assert!(err("8080:0").contains("bad port `0`"));
        assert!(err("70000:80").contains("bad port `70000`"));
        assert!(err("localhost:80:80").contains("bad address"));
    }

    #[test]
    fn a_taken_port_is_named() {
        let held = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        let spec = Publish::parse(&format!("{port}:80")).unwrap();
        let err = spec.bind().unwrap_err().to_string();
        assert!(err.contains("already in use"), "{err}");
        let free = Publish::parse("0:80").unwrap().bind().unwrap();
        assert_ne!(free.local_addr().unwrap().port(), 0);
    }

    #[test]
    fn wildcard_urls_go_through_loopback() {
        let p = Publish::parse("0.0.0.0:8080:80").unwrap();
        assert_eq!(p.url(), "http://127.0.0.1:8080");
    }
}
