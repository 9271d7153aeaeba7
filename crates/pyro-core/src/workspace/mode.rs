//! A workspace's mode: the workflow it was made for, recorded with the
//! settings its caller chose over the mode's own. What each mode sets is
//! the facade's rule (`api::params::modes`).

use serde::{Deserialize, Serialize};

/// One of the five workflows pyro is built around.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Open a repository nobody has set up, find how it builds and tests,
    /// install what it needs, run the tests, report.
    ColdStart,
    /// Reproduce a failure, checkpoint, try fixes with resets between
    /// them, export the patch.
    ReproFix,
    /// One of several isolated workspaces, one per issue or branch.
    Parallel,
    /// Run code nobody trusts: no network, no secrets, small resources;
    /// nothing leaves unless exported.
    Untrusted,
    /// Apply a proposed change, run the checks, review from the diff and
    /// the summary.
    Review,
}

impl Mode {
    /// Every mode, in the order they are listed.
    pub const ALL: [Mode; 5] = [
        Mode::ColdStart,
        Mode::ReproFix,
        Mode::Parallel,
        Mode::Untrusted,
        Mode::Review,
    ];

    /// Its name, as given to `--mode`.
    pub fn name(self) -> &'static str {
        match self {
            Mode::ColdStart => "cold-start",
            Mode::ReproFix => "repro-fix",
            Mode::Parallel => "parallel",
            Mode::Untrusted => "untrusted",
            Mode::Review => "review",
        }
    }

    /// The mode named `text`, or an error that lists the modes.
    pub fn parse(text: &str) -> Result<Mode, UnknownMode> {
        Mode::ALL
            .into_iter()
            .find(|mode| mode.name() == text.trim())
            .ok_or_else(|| UnknownMode(text.to_string()))
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is no mode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown mode '{0}'; the modes are cold-start, repro-fix, parallel, untrusted and review")]
pub struct UnknownMode(pub String);

/// A workspace's mode and what its caller chose instead of the mode's
/// settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeRecord {
    /// The mode.
    pub name: Mode,
    /// Settings given explicitly (or held back) over the mode's, each
    /// with a sentence saying so.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<ModeOverride>,
}

/// One setting that is not the mode's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModeOverride {
    /// `cpus`, `memory`, `network`, `allow`, `idle-timeout` or `secrets`.
    pub setting: String,
    /// What was used instead, and why.
    pub note: String,
}

impl ModeRecord {
    /// Whether the workspace refuses secrets: an untrusted one whose
    /// creator gave none.
    pub fn refuses_secrets(&self) -> bool {
        self.name == Mode::Untrusted && !self.overrides.iter().any(|o| o.setting == "secrets")
    }

    /// Records a setting changed after create (`workspace update`): it
    /// replaces what was said of that setting, and of `also`.
    pub fn note_update(&mut self, setting: &str, also: &[&str], note: String) {
        self.overrides
            .retain(|o| o.setting != setting && !also.contains(&o.setting.as_str()));
        self.overrides.push(ModeOverride {
            setting: setting.into(),
            note,
        });
    }

    /// One line for a terminal: `untrusted` or `untrusted (cpus: ...; ...)`.
    pub fn line(&self) -> String {
        if self.overrides.is_empty() {
            return self.name.to_string();
        }
        let notes: Vec<&str> = self.overrides.iter().map(|o| o.note.as_str()).collect();
        format!("{} ({})", self.name, notes.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_by_name_and_unknown_ones_list_the_modes() {
        for mode in Mode::ALL {
            assert_eq!(Mode::parse(mode.name()), Ok(mode));
            let json = serde_json::to_string(&mode).unwrap();
            assert_eq!(json, format!("\"{}\"", mode.name()));
        }
        let error = Mode::parse("yolo").unwrap_err().to_string();
        assert!(error.contains("unknown mode 'yolo'"), "{error}");
        assert!(error.contains("cold-start, repro-fix, parallel, untrusted and review"));
    }

    #[test]
    fn untrusted_refuses_secrets_unless_its_creator_gave_some() {
        let mut record = ModeRecord {
            name: Mode::Untrusted,
            overrides: Vec::new(),
        };
        assert!(record.refuses_secrets());
        assert_eq!(record.line(), "untrusted");
        record.overrides.push(ModeOverride {
            setting: "secrets".into(),
            note: "secrets: kept as given".into(),
        });
        assert!(!record.refuses_secrets());
        assert_eq!(record.line(), "untrusted (secrets: kept as given)");
        record.name = Mode::Review;
        assert!(!record.refuses_secrets());
        record.overrides.push(ModeOverride {
            setting: "allow".into(),
            note: "allowed x".into(),
        });
        record.note_update("network", &["allow"], "network off set by an update".into());
        let settings: Vec<&str> = record
            .overrides
            .iter()
            .map(|o| o.setting.as_str())
            .collect();
        assert_eq!(settings, ["secrets", "network"]);
    }
}
