//! What the guest may reach: `--allow` entries, the address classes that
//! stay closed unless named, and the decision for one destination.
//!
//! The rules, in order:
//! 1. The gateway address stands for the host. Its loopback services open
//!    one port at a time, by `host.pyro.internal:PORT`, and never otherwise.
//! 2. Loopback, private, shared (CGNAT), link-local (cloud metadata),
//!    multicast and reserved addresses are closed unless an entry names the
//!    address itself.
//! 3. With no entries, every other (public) address is open.
//! 4. With entries, a destination is open when an entry names its address,
//!    or names a host the guest resolved to that address through pyro's DNS,
//!    or names the TLS server name or HTTP `Host` the connection opened with
//!    (when that name resolves, on the host, to the address dialled).

use std::fmt;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

/// The name under which the guest reaches the host's loopback services.
pub const HOST_NAME: &str = "host.pyro.internal";

/// One `--allow` entry: a host (a name, `*.suffix`, or an IPv4 address) and
/// an optional port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allow {
    pub host: AllowHost,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AllowHost {
    /// A DNS name, lower case, without a trailing dot.
    Name(String),
    /// `*.example.org`: any name below `example.org` (not the name itself).
    Suffix(String),
    Address(Ipv4Addr),
    /// `host.pyro.internal`: the host's loopback.
    Host,
}

/// Why an `--allow` entry does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowError {
    #[error(
        "`{0}` is empty; give a host name, `*.domain` or an IPv4 address, optionally with `:PORT`"
    )]
    Empty(String),
    #[error("`{entry}` has a bad port `{port}`; a port is a number from 1 to 65535")]
    Port { entry: String, port: String },
    #[error("`{0}` is not a host name, `*.domain` or IPv4 address (letters, digits, `-` and `.` only; a `*` only as the first label)")]
    Host(String),
    #[error("`{0}` needs a port (`{HOST_NAME}:8080`): the host's loopback services open one port at a time")]
    HostPort(String),
    #[error("`{0}` would open every address; name the hosts or addresses to allow")]
    Everything(String),
}

impl Allow {
    /// Parses `HOST[:PORT]`.
    pub fn parse(entry: &str) -> Result<Allow, AllowError> {
        let text = entry.trim();
        if text.is_empty() {
            return Err(AllowError::Empty(entry.into()));
        }
        let (host, port) = match text.rsplit_once(':') {
            Some((host, port)) => {
                let parsed = port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| AllowError::Port {
                        entry: entry.into(),
                        port: port.into(),
                    })?;
                (host, Some(parsed))
            }
            None => (text, None),
        };
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if host.is_empty() {
            return Err(AllowError::Empty(entry.into()));
        }
        if host == "*" {
            return Err(AllowError::Everything(entry.into()));
        }
        let host = if host == HOST_NAME {
            if port.is_none() {
                return Err(AllowError::HostPort(entry.into()));
            }
            AllowHost::Host
        } else if let Ok(address) = host.parse::<Ipv4Addr>() {
            AllowHost::Address(address)
        } else if let Some(suffix) = host.strip_prefix("*.") {
            if !is_host_name(suffix) {
                return Err(AllowError::Host(entry.into()));
            }
            AllowHost::Suffix(suffix.to_string())
        } else if is_host_name(&host) {
            AllowHost::Name(host)
        } else {
            return Err(AllowError::Host(entry.into()));
        };
        Ok(Allow { host, port })
    }

    fn port_matches(&self, port: u16) -> bool {
        self.port.is_none_or(|p| p == port)
    }

    /// Whether this entry names `name` (lower case, no trailing dot).
    pub fn names(&self, name: &str) -> bool {
        match &self.host {
            AllowHost::Name(n) => n == name,
            AllowHost::Suffix(suffix) => name
                .strip_suffix(suffix.as_str())
                .is_some_and(|head| head.len() > 1 && head.ends_with('.')),
            AllowHost::Host => name == HOST_NAME,
            AllowHost::Address(_) => false,
        }
    }
}

impl fmt::Display for Allow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.host {
            AllowHost::Name(name) => f.write_str(name)?,
            AllowHost::Suffix(suffix) => write!(f, "*.{suffix}")?,
            AllowHost::Address(address) => write!(f, "{address}")?,
            AllowHost::Host => f.write_str(HOST_NAME)?,
        }
        match self.port {
            Some(port) => write!(f, ":{port}"),
            None => Ok(()),
        }
    }
}

/// Whether `name` is a host name this code will show, store and compare:
/// DNS labels of letters, digits, `-` and `_`, not all digits (that would
/// be an address). Names the guest sends (in DNS, TLS or HTTP) that are not
/// are treated as naming nothing, so no guest-chosen text reaches a
/// terminal or a suggested command.
pub fn is_host_name(name: &str) -> bool {
    is_dns_name(name) && !name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// Lower case and without a trailing dot, as names are compared.
pub fn normalize_name(name: &str) -> String {
    name.trim_end_matches('.').to_ascii_lowercase()
}

/// Address classes that are closed unless an entry names the address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Closed {
    Loopback,
    Private,
    LinkLocal,
    Shared,
    Multicast,
    Reserved,
    /// One of the host's own interface addresses.
    HostAddress,
}

impl Closed {
    /// The class of `address`, when it is one that stays closed.
    pub fn of(address: Ipv4Addr) -> Option<Closed> {
        let [a, b, ..] = address.octets();
        if address.is_loopback() {
            Some(Closed::Loopback)
        } else if address.is_private() {
            Some(Closed::Private)
        } else if address.is_link_local() {
            Some(Closed::LinkLocal)
        } else if a == 100 && (64..128).contains(&b) {
            Some(Closed::Shared)
        } else if address.is_multicast() {
            Some(Closed::Multicast)
        } else if a == 0
            || a >= 240
            || address.octets()[..3] == [192, 0, 0]
            || a == 198 && (18..20).contains(&b)
        {
            Some(Closed::Reserved)
        } else {
            None
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Closed::Loopback => "a loopback address",
            Closed::Private => "a private address",
            Closed::LinkLocal => "a link-local address (where cloud metadata services live)",
            Closed::Shared => "a shared (carrier-grade NAT) address",
            Closed::Multicast => "a multicast address",
            Closed::Reserved => "a reserved address",
            Closed::HostAddress => "one of the host's own addresses",
        }
    }
}

/// Why a destination is closed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DenyReason {
    /// Egress was turned off while the workspace ran.
    NetworkOff,
    /// The host's loopback, on a port no `host.pyro.internal:PORT` opened.
    HostClosed,
    /// A closed address class.
    Closed { class: Closed },
    /// Not in the allowlist.
    NotAllowed,
    /// The connection named an allowed host (TLS or HTTP) but went to an
    /// address that name does not resolve to.
    NameMismatch { name: String },
    /// Only TCP and DNS leave the guest.
    Protocol,
}

impl fmt::Display for DenyReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DenyReason::NetworkOff => f.write_str("the workspace's network is off"),
            DenyReason::HostClosed => {
                write!(f, "the host's own services are closed to the guest")
            }
            DenyReason::Closed { class } => {
                write!(f, "{} is closed to the guest", class.describe())
            }
            DenyReason::NotAllowed => f.write_str("not in the allowlist"),
            DenyReason::NameMismatch { name } => {
                write!(f, "it named {name}, which does not resolve to that address")
            }
            DenyReason::Protocol => f.write_str("only TCP and DNS leave the guest"),
        }
    }
}

/// The egress policy of one workspace.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    /// False drops everything (the network was switched off while running).
    pub enabled: bool,
    /// Empty: every public address is open.
    pub allow: Vec<Allow>,
}

/// Where the host is, as the guest could dial it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostAddresses {
    /// The address that stands for the host's loopback.
    pub gateway: Ipv4Addr,
    /// The host's own interface addresses, closed like private ones.
    pub own: Vec<Ipv4Addr>,
}

/// The first decision, taken on the connection's first packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Connect to this address on the host.
    Open(Ipv4Addr),
    /// Connect to this address, which an allowed name the guest looked up
    /// resolved to; but a TLS server name or HTTP `Host` the connection
    /// opens with must be allowed too, since one address (a CDN's) serves
    /// many names.
    Resolved(Ipv4Addr),
    /// Wait for the first bytes (a TLS server name or an HTTP `Host`), then
    /// ask [`Policy::allows_name`] about the name they carry.
    Sniff,
    Deny(DenyReason),
}

impl Policy {
    pub fn open(allow: Vec<Allow>) -> Policy {
        Policy {
            enabled: true,
            allow,
        }
    }

    /// Decides a connection to `address:port`; `host` says which addresses
    /// are the host's; `resolved` are the names the guest resolved to
    /// `address` through pyro's DNS.
    pub fn decide(
        &self,
        address: Ipv4Addr,
        port: u16,
        host: &HostAddresses,
        resolved: &[String],
    ) -> Verdict {
        let gateway = host.gateway;
        if !self.enabled {
            return Verdict::Deny(DenyReason::NetworkOff);
        }
        if address == gateway {
            let open = self
                .allow
                .iter()
                .any(|a| a.host == AllowHost::Host && a.port_matches(port));
            return match open {
                true => Verdict::Open(Ipv4Addr::LOCALHOST),
                false => Verdict::Deny(DenyReason::HostClosed),
            };
        }
        let named = self
            .allow
            .iter()
            .any(|a| a.host == AllowHost::Address(address) && a.port_matches(port));
        if named {
            return Verdict::Open(address);
        }
        let class = match host.own.contains(&address) {
            true => Some(Closed::HostAddress),
            false => Closed::of(address),
        };
        if let Some(class) = class {
            return Verdict::Deny(DenyReason::Closed { class });
        }
        if self.allow.is_empty() {
            return Verdict::Open(address);
        }
        if resolved.iter().any(|name| self.allows_name(name, port)) {
            return Verdict::Resolved(address);
        }
        Verdict::Sniff
    }

    /// Whether an entry opens `name` on `port`.
    pub fn allows_name(&self, name: &str, port: u16) -> bool {
        self.enabled
            && (self.allow.is_empty() && name != HOST_NAME
                || self
                    .allow
                    .iter()
                    .any(|a| a.names(name) && a.port_matches(port)))
    }

    /// Whether the guest may look `name` up at all: with an allowlist, only
    /// names some entry opens on some port (a lookup is a message too).
    pub fn allows_lookup(&self, name: &str) -> bool {
        self.enabled
            && (name == HOST_NAME
                || self.allow.is_empty()
                || self.allow.iter().any(|a| a.names(name)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GW: &HostAddresses = &HostAddresses {
        gateway: Ipv4Addr::new(10, 0, 2, 2),
        own: Vec::new(),
    };

    fn policy(entries: &[&str]) -> Policy {
        Policy::open(entries.iter().map(|e| Allow::parse(e).unwrap()).collect())
    }

    #[test]
    fn entries_parse_and_print_back() {
        for entry in [
            "pypi.org",
            "pypi.org:443",
            "*.example.org",
            "10.1.2.3:5432",
            "host.pyro.internal:8080",
        ] {
            assert_eq!(Allow::parse(entry).unwrap().to_string(), entry);
        }
        assert_eq!(Allow::parse("PyPI.org.").unwrap().to_string(), "pypi.org");
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        let err = |e: &str| Allow::parse(e).unwrap_err().to_string();
        assert!(err("").contains("empty"));
        assert!(err("pypi.org:http").contains("bad port `http`"));
        assert!(err("pypi.org:0").contains("bad port"));
        assert!(err("pypi.org:70000").contains("bad port"));
        assert!(err("a b.org").contains("not a host name"));
        assert!(err("foo.*.org").contains("not a host name"));
        assert!(err("1.2.3").contains("not a host name"));
        assert!(err("*").contains("every address"));
        assert!(err("*.1").contains("not a host name"));
        assert!(err("evil.org;rm -rf").contains("not a host name"));
        assert!(err("host.pyro.internal").contains("needs a port"));
        assert!(
            err("[::1]:80").contains("not a host name") || err("[::1]:80").contains("bad port")
        );
    }

    #[test]
    fn wildcards_match_names_below_only() {
        let allow = Allow::parse("*.example.org").unwrap();
        assert!(allow.names("files.example.org"));
        assert!(allow.names("a.b.example.org"));
        assert!(!allow.names("example.org"));
        assert!(!allow.names("badexample.org"));
    }

    #[test]
    fn open_egress_reaches_public_addresses_only() {
        let p = policy(&[]);
        let public = Ipv4Addr::new(203, 0, 113, 80);
        assert_eq!(p.decide(public, 443, GW, &[]), Verdict::Open(public));
        for (address, class) in [
            ("127.0.0.1", Closed::Loopback),
            ("10.1.2.3", Closed::Private),
            ("192.168.1.1", Closed::Private),
            ("172.16.0.1", Closed::Private),
            ("169.254.169.254", Closed::LinkLocal),
            ("100.64.0.1", Closed::Shared),
            ("224.0.0.1", Closed::Multicast),
            ("0.0.0.0", Closed::Reserved),
            ("192.0.0.192", Closed::Reserved),
            ("198.18.0.1", Closed::Reserved),
            ("255.255.255.255", Closed::Reserved),
        ] {
            let verdict = p.decide(address.parse().unwrap(), 80, GW, &[]);
            assert_eq!(
                verdict,
                Verdict::Deny(DenyReason::Closed { class }),
                "{address}"
            );
        }
        assert_eq!(
            p.decide(GW.gateway, 8080, GW, &[]),
            Verdict::Deny(DenyReason::HostClosed)
        );
    }

    #[test]
    fn the_host_opens_one_named_port_at_a_time() {
        let p = policy(&["host.pyro.internal:8080"]);
        assert_eq!(
            p.decide(GW.gateway, 8080, GW, &[]),
            Verdict::Open(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(
            p.decide(GW.gateway, 8081, GW, &[]),
            Verdict::Deny(DenyReason::HostClosed)
        );
        assert!(p.allows_lookup(HOST_NAME));
    }

    #[test]
    fn private_addresses_open_only_by_address() {
        let p = policy(&["10.1.2.3:5432"]);
        let db = Ipv4Addr::new(10, 1, 2, 3);
        assert_eq!(p.decide(db, 5432, GW, &[]), Verdict::Open(db));
        assert!(matches!(p.decide(db, 22, GW, &[]), Verdict::Deny(_)));
        // A name resolving to a private address does not open it.
        let p = policy(&["internal.example.org"]);
        assert!(matches!(
            p.decide(db, 80, GW, &["internal.example.org".into()]),
            Verdict::Deny(DenyReason::Closed { .. })
        ));
    }

    #[test]
    fn allowlists_open_resolved_names_and_sniff_the_rest() {
        let p = policy(&["pypi.org:443", "*.pythonhosted.org"]);
        let ip = Ipv4Addr::new(203, 0, 113, 80);
        assert_eq!(
            p.decide(ip, 443, GW, &["pypi.org".into()]),
            Verdict::Resolved(ip)
        );
        assert_eq!(p.decide(ip, 80, GW, &["pypi.org".into()]), Verdict::Sniff);
        assert_eq!(
            p.decide(ip, 443, GW, &["files.pythonhosted.org".into()]),
            Verdict::Resolved(ip)
        );
        assert_eq!(p.decide(ip, 443, GW, &[]), Verdict::Sniff);
        assert!(p.allows_lookup("pypi.org"));
        assert!(!p.allows_lookup("evil.example.com"));
        assert!(!p.allows_name("pypi.org", 80));
    }

    #[test]
    fn a_network_switched_off_denies_everything() {
        let p = Policy {
            enabled: false,
            allow: vec![],
        };
        assert_eq!(
            p.decide(Ipv4Addr::new(203, 0, 113, 80), 443, GW, &[]),
            Verdict::Deny(DenyReason::NetworkOff)
        );
        assert!(!p.allows_lookup("pypi.org"));
    }

    #[test]
    fn the_hosts_own_addresses_stay_closed() {
        let own = Ipv4Addr::new(203, 0, 113, 7);
        let host = HostAddresses {
            gateway: GW.gateway,
            own: vec![own],
        };
        let closed = Verdict::Deny(DenyReason::Closed {
            class: Closed::HostAddress,
        });
        assert_eq!(policy(&[]).decide(own, 22, &host, &[]), closed);
        let p = policy(&["203.0.113.7:8080"]);
        assert_eq!(p.decide(own, 8080, &host, &[]), Verdict::Open(own));
    }

    #[test]
    fn only_plain_host_names_count_as_names() {
        assert!(is_host_name("files.pythonhosted.org"));
        assert!(is_host_name("_http._tcp.example.org"));
        for bad in [
            "",
            "1.2.3.4",
            "a b",
            "x;rm",
            "evil\u{1b}[2J.org",
            "a..b",
            "-a.org",
        ] {
            assert!(!is_host_name(bad), "{bad}");
        }
    }
}
