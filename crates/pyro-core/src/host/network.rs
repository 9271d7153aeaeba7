//! A VM's network: whether it has one ([`NetworkConfig`], kept in the
//! workspace record), the device in its spec, and, once the guest answers,
//! the host's stack on the device's other end ([`attach`]) with the guest
//! told to bring the device up and trust the host's CAs.
//!
//! The stack is `pyro-net`'s: it decides every lookup and connection on the
//! host. See `docs/network.md`.

use std::path::PathBuf;
use std::sync::Arc;

use pyro_net::{Allow, Network, Observer, Policy};
use pyro_protocol::{FrameKind, Message, STDIN_WINDOW};
use pyro_vmm::{Vm, VmSpec};
use serde::{Deserialize, Serialize};

use super::guest::{Guest, GuestError};

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
            spec.network = true;
            spec.extra_cmdline
                .push(pyro_protocol::net::BOOT_FLAG.to_string());
        }
    }
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
    loop {
        let frame = request.next_frame().await.map_err(NetworkError::Channel)?;
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
    fn old_records_read_as_off_with_host_ca() {
        let config: NetworkConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, NetworkConfig::off());
        assert!(!config.policy().enabled);
    }
}
