//! The summary's network part: each refused destination once, with how
//! often, why, what was running and the allowlist entry that would open it.

use serde::Serialize;

/// Most destinations the text form lists.
const TEXT_DENIED: usize = 10;

/// One destination the network refused, since the last reset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DeniedSummary {
    /// `files.example.com:443`, or a name for a lookup.
    pub destination: String,
    pub reason: String,
    /// The allowlist entry that would open it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow: Option<String>,
    /// The first command it was refused to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    pub times: usize,
}

/// Counts one denial in `list`.
pub(super) fn note(
    list: &mut Vec<DeniedSummary>,
    destination: &str,
    reason: &str,
    allow: &Option<String>,
    command: &Option<String>,
) {
    match list
        .iter_mut()
        .find(|d| d.destination == destination && d.reason == reason)
    {
        Some(seen) => seen.times += 1,
        None => list.push(DeniedSummary {
            destination: destination.to_string(),
            reason: reason.to_string(),
            allow: allow.clone(),
            command: command.clone(),
            times: 1,
        }),
    }
}

/// The text section: a title and its lines, when anything was refused.
pub(super) fn section(list: &[DeniedSummary]) -> Option<(String, Vec<String>)> {
    if list.is_empty() {
        return None;
    }
    let total: usize = list.iter().map(|d| d.times).sum();
    let mut lines: Vec<String> = list
        .iter()
        .take(TEXT_DENIED)
        .map(|d| {
            let mut line = format!("{}: {}", d.destination, d.reason);
            if d.times > 1 {
                line.push_str(&format!(" (x{})", d.times));
            }
            if let Some(command) = &d.command {
                line.push_str(&format!("; during {command}"));
            }
            if let Some(allow) = &d.allow {
                line.push_str(&format!("; allowlist entry to open it: {allow}"));
            }
            line
        })
        .collect();
    super::more(&mut lines, list.len(), TEXT_DENIED, "destinations");
    Some((format!("Network denied ({total}):"), lines))
}
