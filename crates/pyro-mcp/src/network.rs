//! The network in MCP terms: which profile may ask for it, and the note a
//! command result carries when the network refused something.

use pyro_core::{NetEvent, NetworkRequest};

use crate::output::ToolError;
use crate::{Profile, PyroServer};

impl PyroServer {
    /// The network a `workspace_create` call asks for; only the
    /// workspace-full profile may open one.
    pub(crate) fn network_request(
        &self,
        network: Option<String>,
        allow: Vec<String>,
        publish: Vec<String>,
    ) -> Result<NetworkRequest, ToolError> {
        let asks = network.as_deref().is_some_and(|m| m != "off")
            || !allow.is_empty()
            || !publish.is_empty();
        if asks && self.profile != Profile::WorkspaceFull {
            return Err(ToolError(format!(
                "this server ({} profile) gives workspaces no network; the user can start it \
                 with --profile workspace-full to let workspace_create open one",
                self.profile.name()
            )));
        }
        Ok(NetworkRequest {
            mode: network,
            allow,
            publish,
            ..NetworkRequest::default()
        })
    }

    /// The denial note of a `workspace_exec`: `workspace_update` opens a
    /// workspace's destinations, in the workspace-full profile.
    pub(crate) fn exec_denial_note(&self, workspace: &str, denied: &[NetEvent]) -> Option<String> {
        if denied.is_empty() {
            return None;
        }
        let current: Vec<String> = match self.pyro.workspace_status(workspace) {
            Ok(record) => record.network.allow.iter().map(|a| a.to_string()).collect(),
            Err(_) => Vec::new(),
        };
        let call = match self.profile {
            Profile::WorkspaceFull => "workspace_update",
            _ => "workspace_update (a tool of the workspace-full profile)",
        };
        denial_note(denied, call, &current)
    }
}

/// `1 connection denied: x:443, not in the allowlist; ...` with how to
/// open it, for a command result: `call` names the call that would, and
/// `current` is the allowlist the new entries join (the call replaces it).
pub(crate) fn denial_note(denied: &[NetEvent], call: &str, current: &[String]) -> Option<String> {
    let summary = pyro_core::denial_summary(denied)?;
    let entries = pyro_core::allow_entries(denied);
    if entries.is_empty() {
        return Some(summary);
    }
    let mut all = current.to_vec();
    all.extend(entries.into_iter().filter(|e| !current.contains(e)));
    let list: Vec<String> = all.iter().map(|e| format!("\"{e}\"")).collect();
    Some(format!(
        "{summary}. If the task needs it, ask the user to allow it: {call} with allow: [{}]",
        list.join(", ")
    ))
}
