//! Where a summary starts: the workspace's creation, its last reset, or
//! the fork it came from.

use serde::Serialize;

use crate::workspace::events::{Event, EventKind};

/// The start of the summary: the workspace's creation or its last reset.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Since {
    pub at: String,
    /// `created`, `reset` or `forked`.
    pub event: &'static str,
    /// The snapshot a reset went back to, or a fork was made from (none:
    /// the baseline, or the running VM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

/// The boundary the events start with, if they do.
pub fn since(events: &[Event]) -> Option<Since> {
    let first = events.first()?;
    match &first.kind {
        EventKind::Created { .. } => Some(Since {
            at: first.at.clone(),
            event: "created",
            snapshot: None,
        }),
        EventKind::Reset { snapshot } => Some(Since {
            at: first.at.clone(),
            event: "reset",
            snapshot: snapshot.clone(),
        }),
        EventKind::ForkedFrom { snapshot, .. } => Some(Since {
            at: first.at.clone(),
            event: "forked",
            snapshot: snapshot.clone(),
        }),
        _ => None,
    }
}
