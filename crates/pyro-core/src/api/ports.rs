//! Published ports of a workspace: host ports forwarded into the guest,
//! opened and closed while it runs ([`Pyro::workspace_port_publish`]), or
//! kept for its next start while it is stopped.

use serde::Serialize;

use super::error::Error;
use super::network::check_distinct;
use super::params::InvalidRequest;
use super::Pyro;
use crate::host::network::{NetworkConfig, NetworkMode, PublishedPort};
use crate::supervisor::client;
use crate::workspace::events;

/// A workspace's published ports.
#[derive(Debug, Clone, Serialize)]
pub struct PortList {
    /// The workspace's id.
    pub workspace: String,
    /// Whether its VM runs (a stopped one's ports open at its start).
    pub running: bool,
    /// Its ports, with their URLs once bound.
    pub ports: Vec<PublishedPort>,
}

impl Pyro {
    /// Publishes `[ADDR:]HOSTPORT:GUESTPORT`. A running workspace listens
    /// at once (a taken host port fails here, with nothing recorded); a
    /// stopped one binds it at its next start.
    pub async fn workspace_port_publish(
        &self,
        query: &str,
        entry: &str,
    ) -> Result<PublishedPort, Error> {
        let store = self.store()?;
        let id = store.resolve(query)?.id;
        // An idle suspend does not begin meanwhile.
        let _in_use = self.in_use(&id).await?;
        let record = store.observe(&id)?;
        let asked = PublishedPort::asked(
            pyro_net::Publish::parse(entry).map_err(InvalidRequest::BadPublish)?,
        );
        self.admit(&record.network, entry, &asked)?;
        let dir = store.dir(&record.id);
        let port = match store.supervisor_alive(&record.id)? {
            true => client::publish_port(&dir, asked.port).await?,
            false => asked,
        };
        // Under the record's lock: the network may have changed meanwhile.
        let mut refused = None;
        let recorded = store.update(&record.id, |record| {
            match self.admit(&record.network, entry, &port) {
                Ok(all) => record.network.ports = all,
                Err(error) => refused = Some(error),
            }
            Ok(())
        });
        let failed = match (recorded, refused) {
            (Err(error), _) => Some(Error::from(error)),
            (Ok(_), Some(refused)) => Some(refused.into()),
            (Ok(_), None) => None,
        };
        if let Some(error) = failed {
            if let Some(bound) = port.bound_at() {
                let _ = client::unpublish_port(&dir, bound).await;
            }
            return Err(error);
        }
        events::record(
            &dir,
            events::EventKind::PortPublished {
                port: port.describe(),
            },
        );
        Ok(port)
    }

    /// Closes a published port, named by its host port (`8080`,
    /// `127.0.0.1:8080`) or, when no host port matches, its guest port.
    /// Connections that came in through it are closed too.
    pub async fn workspace_port_unpublish(
        &self,
        query: &str,
        port: &str,
    ) -> Result<PublishedPort, Error> {
        let store = self.store()?;
        let id = store.resolve(query)?.id;
        // An idle suspend does not begin meanwhile.
        let _in_use = self.in_use(&id).await?;
        let record = store.observe(&id)?;
        let index = find(&record.network.ports, port)?;
        let found = record.network.ports[index].clone();
        let dir = store.dir(&record.id);
        if let (true, Some(bound)) = (store.supervisor_alive(&record.id)?, found.bound_at()) {
            client::unpublish_port(&dir, bound).await?;
        }
        store.update(&record.id, |record| {
            record.network.ports.retain(|p| p.port != found.port);
            Ok(())
        })?;
        events::record(
            &dir,
            events::EventKind::PortUnpublished {
                port: found.describe(),
            },
        );
        Ok(found)
    }

    /// The workspace's published ports, with their URLs once bound.
    pub fn workspace_port_list(&self, query: &str) -> Result<PortList, Error> {
        let store = self.store()?;
        let record = store.observe(&store.resolve(query)?.id)?;
        Ok(PortList {
            running: store.supervisor_alive(&record.id)?,
            workspace: record.id,
            ports: record.network.ports,
        })
    }
}

impl Pyro {
    /// `network`'s ports with `port` added, if the network may take it:
    /// the mode has ports, no host port is asked for twice, and a model
    /// (a caller whose host paths are confined) keeps to loopback.
    fn admit(
        &self,
        network: &NetworkConfig,
        entry: &str,
        port: &PublishedPort,
    ) -> Result<Vec<PublishedPort>, InvalidRequest> {
        if network.mode != NetworkMode::EgressPorts {
            return Err(InvalidRequest::PublishNeedsPorts {
                entry: entry.to_string(),
            });
        }
        let mut all = network.ports.clone();
        all.push(port.clone());
        self.check_port_addresses(&all)?;
        check_distinct(&all)?;
        Ok(all)
    }

    /// Opening a guest's server to the host's network is the user's call,
    /// not a model's.
    pub(crate) fn check_port_addresses(
        &self,
        ports: &[PublishedPort],
    ) -> Result<(), InvalidRequest> {
        match ports.iter().find(|p| !p.port.address.is_loopback()) {
            Some(p) if self.host_paths.is_confined() => Err(InvalidRequest::PublishOffLoopback {
                entry: p.port.to_string(),
                address: p.port.address.to_string(),
            }),
            _ => Ok(()),
        }
    }
}

/// The port `given` names: `[ADDR:]HOSTPORT` first, else a guest port
/// only one published port has.
fn find(ports: &[PublishedPort], given: &str) -> Result<usize, InvalidRequest> {
    let not_published = || InvalidRequest::NotPublished {
        port: given.to_string(),
        published: match ports.is_empty() {
            true => "none".to_string(),
            false => super::network::describe_ports(ports),
        },
    };
    let (address, number) = match given.trim().rsplit_once(':') {
        Some((address, number)) => {
            let address: std::net::Ipv4Addr = address.parse().map_err(|_| not_published())?;
            (Some(address), number)
        }
        None => (None, given.trim()),
    };
    let number: u16 = number.parse().map_err(|_| not_published())?;
    let host = ports
        .iter()
        .position(|p| p.port.host_port == number && address.is_none_or(|a| a == p.port.address));
    if let Some(index) = host {
        return Ok(index);
    }
    let guest: Vec<usize> = (0..ports.len())
        .filter(|i| address.is_none() && ports[*i].port.guest_port == number)
        .collect();
    match guest.as_slice() {
        [index] => Ok(*index),
        _ => Err(not_published()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(entry: &str) -> PublishedPort {
        PublishedPort::asked(pyro_net::Publish::parse(entry).unwrap())
    }

    #[test]
    fn ports_are_found_by_host_port_then_guest_port() {
        let ports = vec![port("8080:8000"), port("0.0.0.0:9090:22"), port("7070:22")];
        assert_eq!(find(&ports, "8080").unwrap(), 0);
        assert_eq!(find(&ports, "0.0.0.0:9090").unwrap(), 1);
        assert_eq!(find(&ports, "8000").unwrap(), 0);
        // Two ports lead to guest port 22: a host port must say which.
        assert!(find(&ports, "22").is_err());
        let err = find(&ports, "127.0.0.1:9090").unwrap_err().to_string();
        assert!(
            err.contains("not published") && err.contains("8080"),
            "{err}"
        );
        assert!(find(&[], "x").unwrap_err().to_string().contains("none"));
    }

    #[test]
    fn two_ports_cannot_ask_for_one_host_port() {
        assert!(check_distinct(&[port("8080:1"), port("8080:2")]).is_err());
        assert!(check_distinct(&[port("0.0.0.0:8080:1"), port("8080:2")]).is_err());
        assert!(check_distinct(&[port("127.0.0.2:8080:1"), port("8080:2")]).is_ok());
        assert!(check_distinct(&[port("0:1"), port("0:2")]).is_ok());
    }
}
