//! A VM's network: whether it has one ([`NetworkConfig`], kept in the
//! workspace record), the device in its spec, and, once the guest answers,
//! the host's stack on the device's other end ([`attach`]) with the guest
//! told to bring the device up and trust the host's CAs.
//!
//! The stack is `pyro-net`'s: it decides every lookup and connection on the
//! host. See `docs/network.md`.

use std::path::PathBuf;
use std::sync::Arc;

use pyro_net::{Allow, Network, Observer, Policy, Publish, PublishError};
use pyro_protocol::{FrameKind, Message, STDIN_WINDOW};
use pyro_vmm::{Vm, VmSpec};
use serde::{Deserialize, Serialize};

use super::guest::{Guest, GuestError};

/// How long the agent may take to bring the guest's network up.
const NETWORK_UP_LIMIT: std::time::Duration = std::time::Duration::from_secs(60);

/// How much of the guest's network is on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum NetworkMode {
    /// No network device at all.
    #[default]
    #[serde(rename = "off")]
    Off,
    /// Outbound TCP and DNS through the host's stack.
    #[serde(rename = "egress")]
    Egress,
    /// Egress, and host ports forwarded into the guest.
    #[serde(rename = "egress+ports")]
    EgressPorts,
}

impl NetworkMode {
    /// The word front ends and records use.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Off => "off",
            NetworkMode::Egress => "egress",
            NetworkMode::EgressPorts => "egress+ports",
        }
    }

    /// Parses `off`, `egress` or `egress+ports`.
    pub fn parse(word: &str) -> Option<NetworkMode> {
        match word {
            "off" | "none" => Some(NetworkMode::Off),
            "egress" => Some(NetworkMode::Egress),
            "egress+ports" => Some(NetworkMode::EgressPorts),
            _ => None,
        }
    }

    /// Whether the VM has a network device.
    pub fn is_on(self) -> bool {
        self != NetworkMode::Off
    }
}

impl std::fmt::Display for NetworkMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A VM's network settings, validated ([`crate::params::network`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    /// Off, egress, or egress and published ports.
    #[serde(default)]
    pub mode: NetworkMode,
    /// Empty: every public destination.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<Allow>,
    /// Trust the host's CA bundle in the guest.
    #[serde(default = "yes")]
    pub host_ca: bool,
    /// Proxy variables from the host, given to every command.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxy_env: Vec<(String, String)>,
    /// Host ports forwarded into the guest (with `egress+ports`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<PublishedPort>,
}

/// A published port as the record keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PublishedPort {
    /// The host address and port (the one in use once bound; 0 until a
    /// free one is picked at start), and the guest port.
    #[serde(flatten)]
    pub port: Publish,
    /// Asked as port 0: at start, another free port is picked when this
    /// one has been taken meanwhile.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub picked: bool,
    /// `http://127.0.0.1:PORT` on the host, once a port is bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl PublishedPort {
    /// A port as asked for, not bound yet.
    pub fn asked(port: Publish) -> PublishedPort {
        PublishedPort {
            port,
            picked: port.host_port == 0,
            url: None,
        }
    }

    /// Where it listens; `None` before a port is picked.
    pub(crate) fn bound_at(&self) -> Option<std::net::SocketAddrV4> {
        (self.port.host_port != 0)
            .then(|| std::net::SocketAddrV4::new(self.port.address, self.port.host_port))
    }

    /// Binds its host side: the same port as before when it is free, else
    /// (for one pyro picked) any free port.
    pub(crate) fn bind(&self) -> Result<BoundPort, NetworkError> {
        self.bind_listener().map_err(NetworkError::Publish)
    }

    fn bind_listener(&self) -> Result<BoundPort, PublishError> {
        let listener = match self.port.bind() {
            Err(PublishError::Taken { .. }) if self.picked => Publish {
                host_port: 0,
                ..self.port
            }
            .bind()?,
            other => other?,
        };
        let host_port = listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or(self.port.host_port);
        let port = Publish {
            host_port,
            ..self.port
        };
        let bound = PublishedPort {
            port,
            picked: self.picked,
            url: Some(port.url()),
        };
        Ok(BoundPort {
            asked: self.clone(),
            bound,
            listener: Some(listener),
        })
    }

    /// `http://127.0.0.1:41234 -> guest port 8000` once bound, else as
    /// asked; a port open beyond loopback says so.
    pub fn line(&self) -> String {
        let mut line = match &self.url {
            Some(url) => format!("{url} -> guest port {}", self.port.guest_port),
            None => self.describe(),
        };
        if !self.port.address.is_loopback() {
            let open = format!(" (listening on {}, open to the network)", self.port.address);
            line.push_str(&open);
        }
        line
    }

    /// `127.0.0.1:8080 -> guest port 8000`, as asked.
    pub fn describe(&self) -> String {
        let host = match self.port.host_port {
            0 => format!("{}:(a free port, picked at start)", self.port.address),
            port => format!("{}:{port}", self.port.address),
        };
        format!("{host} -> guest port {}", self.port.guest_port)
    }
}

fn yes() -> bool {
    true
}

impl NetworkConfig {
    /// No network.
    pub fn off() -> NetworkConfig {
        NetworkConfig {
            host_ca: true,
            ..NetworkConfig::default()
        }
    }

    /// The policy the host's stack enforces.
    pub fn policy(&self) -> Policy {
        Policy {
            enabled: self.mode.is_on(),
            allow: self.allow.clone(),
        }
    }

    /// Adds the network device to `spec` when the network is on.
    pub(crate) fn apply(&self, spec: &mut VmSpec) {
        if self.mode.is_on() {
            add_nic(spec);
        }
    }
}

/// Gives the VM its network device (and the guest its drivers at boot).
pub(crate) fn add_nic(spec: &mut VmSpec) {
    spec.network = true;
    spec.extra_cmdline
        .push(pyro_protocol::net::BOOT_FLAG.to_string());
}

/// Why the network could not come up.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // Each variant says what it is in its message.
pub enum NetworkError {
    #[error("the VM has no network device")]
    NoDevice,
    #[error("could not start the host side of the network")]
    Start(#[source] std::io::Error),
    #[error("could not read the host's CA bundle {}", .path.display())]
    HostCa {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the host's CA bundle {} is {size} bytes, more than the {limit} the guest takes", .path.display())]
    HostCaTooLarge {
        path: PathBuf,
        size: u64,
        limit: u64,
    },
    #[error("the guest could not bring its network up: {0}")]
    Guest(String),
    #[error("lost the guest while bringing its network up")]
    Channel(#[source] GuestError),
    #[error(transparent)]
    Publish(PublishError),
}

/// One published port of a starting VM: as the record asked for it, and
/// as bound.
pub(crate) struct BoundPort {
    pub(crate) asked: PublishedPort,
    pub(crate) bound: PublishedPort,
    listener: Option<std::net::TcpListener>,
}

/// Binds the host side of every published port, before the VM boots, so
/// a taken port fails the start at once. None unless the mode has ports.
pub(crate) fn bind_ports(config: &NetworkConfig) -> Result<Vec<BoundPort>, NetworkError> {
    if config.mode != NetworkMode::EgressPorts {
        return Ok(Vec::new());
    }
    config.ports.iter().map(PublishedPort::bind).collect()
}

/// Hands bound ports to the running network.
pub(crate) fn publish_all(network: &Network, ports: &mut [BoundPort]) -> Result<(), NetworkError> {
    for port in ports {
        if let Some(listener) = port.listener.take() {
            network
                .publish(listener, port.bound.port.guest_port)
                .map_err(NetworkError::Start)?;
        }
    }
    Ok(())
}

/// The record's ports once the VM is up: each one still asked for gets
/// its bound port and URL; ports unpublished while the VM booted come
/// back as `stale`, to be closed.
pub(crate) fn merge_ports(
    current: &[PublishedPort],
    bound: &[BoundPort],
) -> (Vec<PublishedPort>, Vec<std::net::SocketAddrV4>) {
    let ports = current
        .iter()
        .map(|port| match bound.iter().find(|b| &b.asked == port) {
            Some(b) => b.bound.clone(),
            None => port.clone(),
        })
        .collect();
    let stale = bound
        .iter()
        .filter(|b| !current.contains(&b.asked))
        .filter_map(|b| b.bound.bound_at())
        .collect();
    (ports, stale)
}

/// Where the host keeps its CA bundle: `SSL_CERT_FILE`, else the first of
/// the usual places that exists.
pub(crate) fn host_ca_bundle() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SSL_CERT_FILE") {
        return Some(PathBuf::from(path));
    }
    [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        "/etc/ssl/cert.pem",
    ]
    .iter()
    .map(PathBuf::from)
    .find(|path| path.is_file())
}

/// Starts the host's stack on `vm`'s network device and brings the guest's
/// side up. `None` when the network is off.
pub(crate) async fn attach(
    vm: &mut dyn Vm,
    guest: &Guest,
    config: &NetworkConfig,
    mac: &str,
    observer: Arc<dyn Observer>,
) -> Result<Option<Network>, NetworkError> {
    if !config.mode.is_on() {
        return Ok(None);
    }
    let link = vm.take_network_link().ok_or(NetworkError::NoDevice)?;
    let bundle = match (config.host_ca, host_ca_bundle()) {
        (true, Some(path)) => Some(read_bundle(path)?),
        _ => None,
    };
    let network = Network::start(link, config.policy(), observer).map_err(NetworkError::Start)?;
    let mut request = guest
        .open(&Message::NetworkUp {
            host_ca: bundle.is_some(),
            env: config.proxy_env.clone(),
            mac: Some(mac.to_string()),
        })
        .await
        .map_err(NetworkError::Channel)?;
    if let Some(bundle) = bundle {
        // At most one window: the agent takes it all without an `Ack`.
        for chunk in bundle.chunks(128 * 1024) {
            request
                .send_data(FrameKind::File, chunk)
                .await
                .map_err(NetworkError::Channel)?;
        }
        request
            .send_data(FrameKind::File, &[])
            .await
            .map_err(NetworkError::Channel)?;
    }
    // A guest that never answers, or chatters, does not hold its start.
    let deadline = tokio::time::Instant::now() + NETWORK_UP_LIMIT;
    loop {
        let frame = tokio::time::timeout_at(deadline, request.next_frame())
            .await
            .map_err(|_| NetworkError::Channel(GuestError::NoAnswer("the network request")))?
            .map_err(NetworkError::Channel)?;
        if frame.kind != FrameKind::Message {
            continue;
        }
        match frame
            .message()
            .map_err(|e| NetworkError::Channel(GuestError::Protocol(e)))?
        {
            Message::Done { .. } => return Ok(Some(network)),
            Message::Error { message, .. } => return Err(NetworkError::Guest(message)),
            _ => continue,
        }
    }
}

fn read_bundle(path: PathBuf) -> Result<Vec<u8>, NetworkError> {
    let bytes = std::fs::read(&path).map_err(|source| NetworkError::HostCa {
        path: path.clone(),
        source,
    })?;
    if bytes.len() as u64 > STDIN_WINDOW {
        return Err(NetworkError::HostCaTooLarge {
            path,
            size: bytes.len() as u64,
            limit: STDIN_WINDOW,
        });
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_print() {
        for mode in [
            NetworkMode::Off,
            NetworkMode::Egress,
            NetworkMode::EgressPorts,
        ] {
            assert_eq!(NetworkMode::parse(mode.as_str()), Some(mode));
            let json = serde_json::to_string(&mode).unwrap();
            assert_eq!(json, format!("\"{mode}\""));
        }
        assert_eq!(NetworkMode::parse("on"), None);
    }

    #[test]
    fn ports_unpublished_while_booting_are_closed_not_recorded() {
        let asked = |entry: &str| PublishedPort::asked(Publish::parse(entry).unwrap());
        let config = NetworkConfig {
            mode: NetworkMode::EgressPorts,
            ports: vec![asked("0:80"), asked("0:81")],
            ..NetworkConfig::off()
        };
        let bound = bind_ports(&config).unwrap();
        assert!(bound
            .iter()
            .all(|b| b.bound.port.host_port != 0 && b.bound.url.is_some()));
        // The second was unpublished meanwhile, and a third asked for.
        let current = vec![asked("0:80"), asked("0:82")];
        let (ports, stale) = merge_ports(&current, &bound);
        assert_eq!(ports[0], bound[0].bound);
        assert_eq!(ports[1], asked("0:82"));
        assert_eq!(
            stale,
            vec![std::net::SocketAddrV4::new(
                std::net::Ipv4Addr::LOCALHOST,
                bound[1].bound.port.host_port
            )]
        );
        // A mode without ports binds nothing, whatever the record holds.
        let egress = NetworkConfig {
            mode: NetworkMode::Egress,
            ..config
        };
        assert!(bind_ports(&egress).unwrap().is_empty());
    }

    #[test]
    fn old_records_read_as_off_with_host_ca() {
        let config: NetworkConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, NetworkConfig::off());
        assert!(!config.policy().enabled);
    }
}
