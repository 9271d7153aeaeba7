//! What each mode sets, and how a create's explicit settings win over it
//! (each one said in the record). Without a mode, a create is what it was.

use std::time::Duration;

use super::{describe_duration, DEFAULT_CPUS, DEFAULT_MEMORY_MIB};
use crate::api::network::NetworkRequest;
use crate::host::network::NetworkMode;
use crate::workspace::mode::{Mode, ModeOverride, ModeRecord};
use crate::workspace::{Seed, WorkspaceRecord};

/// The package indexes a cold-start workspace reaches: Python, npm, Rust,
/// Go, Ruby, Maven and the Debian, Ubuntu and Alpine archives.
pub const PACKAGE_INDEXES: &[&str] = &[
    "pypi.org",
    "files.pythonhosted.org",
    "registry.npmjs.org",
    "registry.yarnpkg.com",
    "crates.io",
    "index.crates.io",
    "static.crates.io",
    "proxy.golang.org",
    "sum.golang.org",
    "rubygems.org",
    "repo.maven.apache.org",
    "deb.debian.org",
    "security.debian.org",
    "archive.ubuntu.com",
    "security.ubuntu.com",
    "dl-cdn.alpinelinux.org",
];

/// What a mode sets when the caller does not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModeDefaults {
    /// vCPUs.
    pub cpus: u32,
    /// Memory, MiB.
    pub memory_mib: u32,
    /// Egress to [`PACKAGE_INDEXES`] (else no network).
    pub package_egress: bool,
    /// Suspend when idle this long.
    pub idle_timeout: Option<Duration>,
    /// Whether secrets may be set.
    pub takes_secrets: bool,
}

/// The settings of `mode`.
pub fn defaults(mode: Mode) -> ModeDefaults {
    let minutes = |m: u64| Some(Duration::from_secs(m * 60));
    let base = ModeDefaults {
        cpus: DEFAULT_CPUS,
        memory_mib: DEFAULT_MEMORY_MIB,
        package_egress: false,
        idle_timeout: minutes(60),
        takes_secrets: true,
    };
    match mode {
        Mode::ColdStart => ModeDefaults {
            cpus: 2,
            memory_mib: 2048,
            package_egress: true,
            ..base
        },
        Mode::ReproFix | Mode::Review => base,
        Mode::Parallel => ModeDefaults {
            idle_timeout: minutes(15),
            ..base
        },
        Mode::Untrusted => ModeDefaults {
            memory_mib: 512,
            idle_timeout: minutes(15),
            takes_secrets: false,
            ..base
        },
    }
}

/// The seed a create in `mode` gets when it names none: the front end's
/// default (an MCP server's project), except that untrusted code gets the
/// project only when the call names it.
pub fn default_seed(mode: Option<Mode>, default: Option<&Seed>) -> Option<&Seed> {
    match mode {
        Some(Mode::Untrusted) => None,
        _ => default,
    }
}

/// What a create asked for, before its mode fills the gaps.
#[derive(Debug, Clone, Default)]
pub struct Asked {
    /// vCPUs, when given.
    pub cpus: Option<u32>,
    /// Memory, when given.
    pub memory_mib: Option<u32>,
    /// The network as given (`mode: None` and nothing else: not given).
    pub network: NetworkRequest,
    /// The idle timeout, when given (`Some(None)`: off).
    pub idle_timeout: Option<Option<Duration>>,
    /// Whether secrets were given.
    pub secrets: bool,
    /// Whether a mode may open the network: false from an MCP server whose
    /// profile gives workspaces none.
    pub network_permitted: bool,
}

/// A create's settings once its mode has filled what the caller left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    /// vCPUs.
    pub cpus: u32,
    /// Memory, MiB.
    pub memory_mib: u32,
    /// The network to check and use.
    pub network: NetworkRequest,
    /// The idle timeout.
    pub idle_timeout: Option<Duration>,
    /// The mode, with what was chosen over it.
    pub mode: Option<ModeRecord>,
}

/// The settings of a create in `mode` asking for `asked`: what the caller
/// gave wins, and the record says so.
pub fn settle(mode: Option<Mode>, asked: Asked) -> Settled {
    let Some(mode) = mode else {
        return Settled {
            cpus: asked.cpus.unwrap_or(DEFAULT_CPUS),
            memory_mib: asked.memory_mib.unwrap_or(DEFAULT_MEMORY_MIB),
            network: asked.network,
            idle_timeout: asked.idle_timeout.flatten(),
            mode: None,
        };
    };
    let wanted = defaults(mode);
    let mut overrides = Vec::new();
    let mut note = |setting: &str, note: String| {
        overrides.push(ModeOverride {
            setting: setting.into(),
            note,
        })
    };
    let cpus = match asked.cpus {
        Some(cpus) if cpus != wanted.cpus => {
            let vcpus = |n: u32| format!("{n} vCPU{}", if n == 1 { "" } else { "s" });
            let (given, mode_cpus) = (vcpus(cpus), vcpus(wanted.cpus));
            note(
                "cpus",
                format!("{given} as asked, not the mode's {mode_cpus}"),
            );
            cpus
        }
        _ => wanted.cpus,
    };
    let memory_mib = match asked.memory_mib {
        Some(mib) if mib != wanted.memory_mib => {
            let mode_mib = wanted.memory_mib;
            note(
                "memory",
                format!("{mib} MiB as asked, not the mode's {mode_mib} MiB"),
            );
            mib
        }
        _ => wanted.memory_mib,
    };
    let idle_timeout = match asked.idle_timeout {
        Some(given) if given != wanted.idle_timeout => {
            let say = |t: Option<Duration>| t.map_or("off".to_string(), describe_duration);
            let (given_text, mode_text) = (say(given), say(wanted.idle_timeout));
            note(
                "idle-timeout",
                format!("idle timeout {given_text} as asked, not the mode's {mode_text}"),
            );
            given
        }
        _ => wanted.idle_timeout,
    };
    if asked.secrets && !wanted.takes_secrets {
        note(
            "secrets",
            "secrets kept as given, though the mode takes none".into(),
        );
    }
    let network = settle_network(&wanted, asked.network, asked.network_permitted, &mut note);
    Settled {
        cpus,
        memory_mib,
        network,
        idle_timeout,
        mode: Some(ModeRecord {
            name: mode,
            overrides,
        }),
    }
}

/// Says in a workspace's mode line what `workspace update` changed of it
/// (its `network`, its `idle` timeout): no longer the mode's.
pub(crate) fn note_update(record: &mut WorkspaceRecord, network: bool, idle: bool) {
    let network_now = match record.network.allow.len() {
        0 => record.network.mode.to_string(),
        n => format!("{} to {n} allowed destinations", record.network.mode),
    };
    let idle_now = record.idle_timeout_secs.map_or("off".into(), |secs| {
        describe_duration(Duration::from_secs(secs))
    });
    let Some(mode) = record.mode.as_mut() else {
        return;
    };
    if network {
        let note = format!("network {network_now} set by an update");
        mode.note_update("network", &["allow"], note);
    }
    if idle {
        let note = format!("idle timeout {idle_now} set by an update");
        mode.note_update("idle-timeout", &[], note);
    }
}

fn settle_network(
    wanted: &ModeDefaults,
    asked: NetworkRequest,
    permitted: bool,
    note: &mut impl FnMut(&str, String),
) -> NetworkRequest {
    let given_mode = asked.mode.clone();
    // Published ports need the network that carries them.
    let egress = match asked.publish.is_empty() {
        true => "egress",
        false => "egress+ports",
    };
    let off = |mode: &Option<String>| {
        mode.as_deref()
            .is_none_or(|m| NetworkMode::parse(m) == Some(NetworkMode::Off))
    };
    if !wanted.package_egress {
        if !off(&given_mode) {
            let given = given_mode.unwrap_or_default();
            note(
                "network",
                format!("network {given} as asked, not the mode's off"),
            );
        }
        return asked;
    }
    if !permitted {
        note(
            "network",
            "network off: this server's profile gives workspaces no network".into(),
        );
        return asked;
    }
    match (&given_mode, asked.allow.is_empty()) {
        (Some(_), _) if off(&given_mode) => {
            note(
                "network",
                "network off as asked, not the mode's egress to the package indexes".into(),
            );
            asked
        }
        (Some(mode), true) => {
            note(
                "allow",
                format!("network {mode} to every public destination as asked, not only the mode's package indexes"),
            );
            asked
        }
        (_, false) => {
            note(
                "allow",
                format!(
                    "allowed {} as asked, not the mode's package indexes",
                    asked.allow.join(", ")
                ),
            );
            NetworkRequest {
                mode: Some(given_mode.unwrap_or_else(|| egress.into())),
                ..asked
            }
        }
        (None, true) => NetworkRequest {
            mode: Some(egress.into()),
            allow: PACKAGE_INDEXES
                .iter()
                .map(|host| host.to_string())
                .collect(),
            ..asked
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn asked() -> Asked {
        Asked {
            network_permitted: true,
            ..Asked::default()
        }
    }

    fn settings(record: &Option<ModeRecord>) -> Vec<String> {
        let record = record.as_ref().unwrap();
        record.overrides.iter().map(|o| o.setting.clone()).collect()
    }

    #[test]
    fn without_a_mode_nothing_changes() {
        let settled = settle(None, asked());
        assert_eq!(
            (settled.cpus, settled.memory_mib),
            (DEFAULT_CPUS, DEFAULT_MEMORY_MIB)
        );
        assert_eq!(settled.network, NetworkRequest::default());
        assert_eq!((settled.idle_timeout, settled.mode), (None, None));
        let given = Asked {
            cpus: Some(3),
            idle_timeout: Some(Some(Duration::from_secs(60))),
            ..asked()
        };
        let settled = settle(None, given);
        assert_eq!(settled.cpus, 3);
        assert_eq!(settled.idle_timeout, Some(Duration::from_secs(60)));
    }

    #[test]
    fn each_mode_fills_what_is_not_given() {
        let cold = settle(Some(Mode::ColdStart), asked());
        assert_eq!((cold.cpus, cold.memory_mib), (2, 2048));
        assert_eq!(cold.network.mode.as_deref(), Some("egress"));
        assert!(cold.network.allow.iter().any(|host| host == "pypi.org"));
        assert!(cold.network.check().is_ok());
        assert!(settings(&cold.mode).is_empty());

        let untrusted = settle(Some(Mode::Untrusted), asked());
        assert_eq!((untrusted.cpus, untrusted.memory_mib), (1, 512));
        assert_eq!(untrusted.network, NetworkRequest::default());
        assert_eq!(untrusted.idle_timeout, Some(Duration::from_secs(900)));
        assert!(untrusted.mode.unwrap().refuses_secrets());

        for mode in [Mode::ReproFix, Mode::Parallel, Mode::Review] {
            let settled = settle(Some(mode), asked());
            assert_eq!(settled.network, NetworkRequest::default(), "{mode}");
        }
    }

    #[test]
    fn explicit_settings_win_and_are_noted() {
        let given = Asked {
            cpus: Some(4),
            memory_mib: Some(2048),
            network: NetworkRequest::mode("off"),
            idle_timeout: Some(None),
            ..asked()
        };
        let cold = settle(Some(Mode::ColdStart), given);
        assert_eq!((cold.cpus, cold.memory_mib), (4, 2048));
        assert_eq!(cold.network.mode.as_deref(), Some("off"));
        assert_eq!(cold.idle_timeout, None);
        // 2048 MiB is the mode's own: no note.
        assert_eq!(settings(&cold.mode), ["cpus", "idle-timeout", "network"]);
        let line = cold.mode.unwrap().line();
        assert!(
            line.starts_with("cold-start (4 vCPUs as asked, not the mode's 2 vCPUs;"),
            "{line}"
        );

        let allow = Asked {
            network: NetworkRequest {
                allow: vec!["example.com".into()],
                ..NetworkRequest::default()
            },
            ..asked()
        };
        let cold = settle(Some(Mode::ColdStart), allow);
        assert_eq!(cold.network.mode.as_deref(), Some("egress"));
        assert_eq!(cold.network.allow, ["example.com"]);
        assert_eq!(settings(&cold.mode), ["allow"]);

        let secrets = Asked {
            secrets: true,
            network: NetworkRequest::mode("egress"),
            ..asked()
        };
        let untrusted = settle(Some(Mode::Untrusted), secrets);
        assert_eq!(untrusted.network.mode.as_deref(), Some("egress"));
        assert_eq!(settings(&untrusted.mode), ["secrets", "network"]);
        assert!(!untrusted.mode.unwrap().refuses_secrets());
    }

    #[test]
    fn untrusted_code_gets_the_project_only_when_named() {
        let project = Seed::Path("/p".into());
        assert!(default_seed(Some(Mode::Untrusted), Some(&project)).is_none());
        assert!(default_seed(Some(Mode::Review), Some(&project)).is_some());
        assert!(default_seed(None, Some(&project)).is_some());
    }

    #[test]
    fn none_is_off_to_every_mode() {
        let none = || Asked {
            network: NetworkRequest::mode("none"),
            ..asked()
        };
        let cold = settle(Some(Mode::ColdStart), none());
        assert_eq!(cold.network.mode.as_deref(), Some("none"));
        assert_eq!(settings(&cold.mode), ["network"]);
        assert!(cold.mode.unwrap().overrides[0]
            .note
            .starts_with("network off as asked"));
        let review = settle(Some(Mode::Review), none());
        assert!(settings(&review.mode).is_empty());
    }

    #[test]
    fn a_server_without_network_keeps_a_cold_start_offline_and_says_so() {
        let settled = settle(
            Some(Mode::ColdStart),
            Asked {
                network_permitted: false,
                ..asked()
            },
        );
        assert_eq!(settled.network, NetworkRequest::default());
        let record = settled.mode.unwrap();
        assert!(record.overrides[0]
            .note
            .contains("profile gives workspaces no network"));
    }
}
