//! The network of runs and workspaces: what a caller asks for, checked once
//! here ([`NetworkRequest::check`]), and the workspace's network log
//! ([`Pyro::workspace_network_log`]).

use pyro_net::{Allow, NetEvent};
use serde::Serialize;

use super::error::Error;
use super::params::InvalidRequest;
use super::Pyro;
use crate::host::network::{NetworkConfig, NetworkMode, PublishedPort};
use crate::supervisor::client;
use crate::workspace::netlog::{self, NetRecord};
use crate::workspace::{events, WorkspaceError, WorkspaceRecord, WorkspaceState};
use pyro_net::Publish;

/// Proxy variables `inherit_proxy` passes from the host's environment.
pub const PROXY_VARIABLES: &[&str] = &[
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "all_proxy",
];

/// A network as a caller asks for it; [`NetworkRequest::check`] turns it
/// into the settings a VM gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetworkRequest {
    /// `off` (the default), `egress` or `egress+ports`.
    pub mode: Option<String>,
    /// `HOST[:PORT]` entries; none opens every public destination.
    pub allow: Vec<String>,
    /// Do not trust the host's CA bundle in the guest.
    pub no_host_ca: bool,
    /// Pass the host's proxy variables to every command.
    pub inherit_proxy: bool,
    /// `[ADDR:]HOSTPORT:GUESTPORT` entries (with `egress+ports`).
    pub publish: Vec<String>,
}

impl NetworkRequest {
    /// The network of `mode` with nothing else set.
    pub fn mode(mode: &str) -> NetworkRequest {
        NetworkRequest {
            mode: Some(mode.to_string()),
            ..NetworkRequest::default()
        }
    }

    /// Checks the request for a workspace.
    pub fn check(&self) -> Result<NetworkConfig, InvalidRequest> {
        let mode = match &self.mode {
            None => NetworkMode::Off,
            Some(word) => NetworkMode::parse(word)
                .ok_or_else(|| InvalidRequest::BadNetworkMode { mode: word.clone() })?,
        };
        if !mode.is_on() {
            if let Some(entry) = self.allow.first() {
                return Err(InvalidRequest::AllowNeedsEgress {
                    entry: entry.clone(),
                });
            }
            if self.inherit_proxy {
                return Err(InvalidRequest::ProxyNeedsEgress);
            }
        }
        let allow = self
            .allow
            .iter()
            .map(|entry| Allow::parse(entry).map_err(InvalidRequest::BadAllow))
            .collect::<Result<Vec<_>, _>>()?;
        let ports = self
            .publish
            .iter()
            .map(|entry| {
                if mode != NetworkMode::EgressPorts {
                    return Err(InvalidRequest::PublishNeedsPorts {
                        entry: entry.clone(),
                    });
                }
                let port = Publish::parse(entry).map_err(InvalidRequest::BadPublish)?;
                Ok(PublishedPort::asked(port))
            })
            .collect::<Result<Vec<_>, _>>()?;
        check_distinct(&ports)?;
        let proxy_env = match self.inherit_proxy {
            true => PROXY_VARIABLES
                .iter()
                .filter_map(|key| Some((key.to_string(), std::env::var(key).ok()?)))
                .collect(),
            false => Vec::new(),
        };
        Ok(NetworkConfig {
            mode,
            allow,
            host_ca: !self.no_host_ca,
            proxy_env,
            ports,
        })
    }

    /// Checks the request for `pyro run`, which has no published ports.
    pub fn check_for_run(&self) -> Result<NetworkConfig, InvalidRequest> {
        let config = self.check()?;
        if config.mode == NetworkMode::EgressPorts {
            return Err(InvalidRequest::RunHasNoPorts);
        }
        Ok(config)
    }
}

/// A change to a workspace's network ([`Pyro::workspace_update_network`]).
#[derive(Debug, Clone, Default)]
pub struct NetworkUpdate {
    /// The new mode; `None` keeps the current one.
    pub mode: Option<String>,
    /// The new allowlist (empty opens every public destination); `None`
    /// keeps the current one.
    pub allow: Option<Vec<String>>,
}

impl NetworkUpdate {
    /// Whether the update changes anything.
    pub fn is_empty(&self) -> bool {
        self.mode.is_none() && self.allow.is_none()
    }

    /// `current` with the update applied, checked as a create's would be.
    /// Switching the network off drops the allowlist.
    pub fn apply(&self, current: &NetworkConfig) -> Result<NetworkConfig, InvalidRequest> {
        let mode = self
            .mode
            .clone()
            .unwrap_or_else(|| current.mode.as_str().to_string());
        let allow = match (&self.allow, NetworkMode::parse(&mode)) {
            (Some(allow), _) => allow.clone(),
            (None, Some(NetworkMode::Off)) => Vec::new(),
            (None, _) => current.allow.iter().map(|a| a.to_string()).collect(),
        };
        let request = NetworkRequest {
            mode: Some(mode),
            allow,
            no_host_ca: !current.host_ca,
            inherit_proxy: false,
            publish: Vec::new(),
        };
        let config = request.check()?;
        if config.mode != NetworkMode::EgressPorts && !current.ports.is_empty() {
            return Err(InvalidRequest::PortsStillPublished {
                ports: describe_ports(&current.ports),
            });
        }
        Ok(NetworkConfig {
            proxy_env: current.proxy_env.clone(),
            ports: current.ports.clone(),
            ..config
        })
    }
}

/// Two ports may not ask for the same host port (0 excepted: each gets
/// its own free one).
pub(crate) fn check_distinct(ports: &[PublishedPort]) -> Result<(), InvalidRequest> {
    for (i, a) in ports.iter().enumerate() {
        let taken = ports[..i].iter().any(|b| {
            a.port.host_port != 0
                && a.port.host_port == b.port.host_port
                && (a.port.address == b.port.address
                    || a.port.address.is_unspecified()
                    || b.port.address.is_unspecified())
        });
        if taken {
            return Err(InvalidRequest::PublishedTwice {
                port: a.port.host_port.to_string(),
            });
        }
    }
    Ok(())
}

/// `127.0.0.1:8080 -> guest port 8000, ...`.
pub fn describe_ports(ports: &[PublishedPort]) -> String {
    let all: Vec<String> = ports.iter().map(PublishedPort::describe).collect();
    all.join(", ")
}

/// One line of `workspace network log`.
pub type NetworkLogEntry = NetRecord;

/// A workspace's network log.
#[derive(Debug, Clone, Serialize)]
pub struct NetworkLog {
    /// The workspace's id.
    pub workspace: String,
    /// Its network mode.
    pub mode: NetworkMode,
    /// Its allowlist; empty opens every public destination.
    pub allow: Vec<String>,
    /// Every decision, oldest first.
    pub entries: Vec<NetworkLogEntry>,
    /// How many of them are denials.
    pub denied: usize,
}

/// `files.example.com:443, not in the allowlist`.
pub fn describe_denial(event: &NetEvent) -> String {
    match &event.denied {
        Some(reason) => format!("{}, {reason}", event.target()),
        None => event.target(),
    }
}

/// `2 connections denied: a:443, not in the allowlist; b:80, ...` — the
/// head of a denial note, before each front end's way to allow them.
pub fn denial_summary(denied: &[NetEvent]) -> Option<String> {
    let first = denied.first()?;
    let noun = match denied.iter().all(|e| e.via == pyro_net::Via::Dns) {
        true => "lookup",
        false => "connection",
    };
    let mut text = match denied.len() {
        1 => format!("1 {noun} denied: {}", describe_denial(first)),
        n => format!("{n} {noun}s denied: {}", describe_denial(first)),
    };
    for event in denied.iter().skip(1).take(4) {
        text.push_str("; ");
        text.push_str(&describe_denial(event));
    }
    if denied.len() > 5 {
        text.push_str("; ...");
    }
    Some(text)
}

/// The allowlist entries that would open `denied`, each once: only ones
/// `--allow` takes, so nothing else the log holds becomes a suggestion.
pub fn allow_entries(denied: &[NetEvent]) -> Vec<String> {
    let mut entries: Vec<String> = Vec::new();
    for entry in denied.iter().filter_map(NetEvent::allow_entry) {
        let Ok(parsed) = pyro_net::Allow::parse(&entry) else {
            continue;
        };
        let entry = parsed.to_string();
        if !entries.contains(&entry) {
            entries.push(entry);
        }
    }
    entries
}

impl Pyro {
    /// Changes a workspace's network mode or allowlist. A running
    /// workspace enforces the new policy at once, without a reboot; a stopped one gets it when it
    /// starts; open connections the new policy would not let through are
    /// closed. A workspace booted with the network off has no network
    /// device, so turning it on needs a stop and a start.
    pub async fn workspace_update_network(
        &self,
        query: &str,
        update: &NetworkUpdate,
    ) -> Result<WorkspaceRecord, Error> {
        let store = self.store()?;
        let id = store.resolve(query)?.id;
        // An idle suspend does not begin meanwhile.
        let _in_use = self.in_use(&id).await?;
        let record = store.observe(&id)?;
        let config = update.apply(&record.network)?;
        let suspended = matches!(record.state, WorkspaceState::Suspended { .. });
        if suspended && config.mode != record.network.mode {
            return Err(WorkspaceError::SuspendedShape {
                name: record.display_name().to_string(),
            }
            .into());
        }
        if store.supervisor_alive(&record.id)? {
            let dir = store.dir(&record.id);
            let applied = client::set_network_policy(&dir, config.policy()).await?;
            if !applied && config.mode.is_on() {
                return Err(WorkspaceError::NetworkNeedsRestart {
                    name: record.display_name().to_string(),
                }
                .into());
            }
        }
        let updated = store.update(&record.id, |record| {
            // Ports are the record's as they are now (published meanwhile
            // too); the policy is the one just applied.
            record.network = NetworkConfig {
                ports: record.network.ports.clone(),
                ..config.clone()
            };
            Ok(())
        })?;
        events::record(
            &store.dir(&record.id),
            events::EventKind::NetworkChanged {
                mode: config.mode.as_str().to_string(),
                allow: config.allow.iter().map(|a| a.to_string()).collect(),
            },
        );
        Ok(updated)
    }

    /// Every lookup and connection the workspace's network decided.
    pub fn workspace_network_log(&self, query: &str) -> Result<NetworkLog, Error> {
        let store = self.store()?;
        let record = store.resolve(query)?;
        let entries = netlog::read(&store.dir(&record.id));
        Ok(NetworkLog {
            workspace: record.id.clone(),
            mode: record.network.mode,
            allow: record.network.allow.iter().map(|a| a.to_string()).collect(),
            denied: entries.iter().filter(|e| e.event.denied.is_some()).count(),
            entries,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(mode: Option<&str>, allow: &[&str]) -> NetworkRequest {
        NetworkRequest {
            mode: mode.map(str::to_string),
            allow: allow.iter().map(|s| s.to_string()).collect(),
            ..NetworkRequest::default()
        }
    }

    #[test]
    fn off_is_the_default_and_trusts_the_host_ca_when_on() {
        let config = request(None, &[]).check().unwrap();
        assert_eq!(config.mode, NetworkMode::Off);
        let config = request(Some("egress"), &["pypi.org:443"]).check().unwrap();
        assert_eq!(config.mode, NetworkMode::Egress);
        assert!(config.host_ca);
        assert_eq!(config.allow[0].to_string(), "pypi.org:443");
    }

    #[test]
    fn bad_requests_say_what_to_change() {
        let err = |r: NetworkRequest| r.check().unwrap_err().to_string();
        assert!(err(request(Some("on"), &[])).contains("'on'"));
        assert!(err(request(None, &["pypi.org"])).contains("needs egress"));
        assert!(err(request(Some("off"), &["pypi.org"])).contains("needs egress"));
        assert!(err(request(Some("egress"), &["pypi.org:x"])).contains("bad port"));
        let proxy = NetworkRequest {
            inherit_proxy: true,
            ..request(None, &[])
        };
        assert!(err(proxy).contains("egress"));
        let run = request(Some("egress+ports"), &[]).check_for_run();
        assert!(run.unwrap_err().to_string().contains("published ports"));
    }

    #[test]
    fn an_update_keeps_what_it_does_not_name() {
        let current = request(Some("egress"), &["pypi.org"]).check().unwrap();
        let update = |mode: Option<&str>, allow: Option<&[&str]>| NetworkUpdate {
            mode: mode.map(str::to_string),
            allow: allow.map(|a| a.iter().map(|s| s.to_string()).collect()),
        };
        let same = update(Some("egress"), None).apply(&current).unwrap();
        assert_eq!(same, current);
        let wider = update(None, Some(&["pypi.org", "*.npmjs.org"])).apply(&current);
        assert_eq!(wider.unwrap().allow.len(), 2);
        let open = update(None, Some(&[])).apply(&current).unwrap();
        assert!(open.allow.is_empty() && open.mode == NetworkMode::Egress);
        let off = update(Some("off"), None).apply(&current).unwrap();
        assert!(off.allow.is_empty() && off.mode == NetworkMode::Off);
        let bad = update(Some("off"), Some(&["pypi.org"])).apply(&current);
        assert!(bad.unwrap_err().to_string().contains("needs egress"));
        assert!(update(None, None).is_empty());
    }

    #[test]
    fn denials_read_as_one_sentence() {
        let event = |dest: &str| NetEvent {
            time_unix_ms: 0,
            via: pyro_net::Via::Tcp,
            destination: dest.into(),
            address: Some("203.0.113.9".parse().unwrap()),
            port: Some(443),
            denied: Some(pyro_net::DenyReason::NotAllowed),
            unreported: 0,
        };
        let denied = vec![event("files.example.com"), event("files.example.com")];
        assert_eq!(
            denial_summary(&denied[..1]).unwrap(),
            "1 connection denied: files.example.com:443, not in the allowlist"
        );
        assert!(denial_summary(&denied)
            .unwrap()
            .starts_with("2 connections denied"));
        assert_eq!(
            allow_entries(&denied),
            vec!["files.example.com:443".to_string()]
        );
        assert_eq!(denial_summary(&[]), None);
        // A destination `--allow` would not take is never suggested.
        assert!(allow_entries(&[event("x.org;reboot")]).is_empty());
    }
}
