//! `workspace logs`: a workspace's VM console and its supervisor's log,
//! secrets redacted, the guest's escapes shown as text.

use serde::Serialize;

use super::error::Error;
use super::Pyro;
use crate::workspace::{CONSOLE, LOG};

/// What `workspace logs` shows.
#[derive(Debug, Clone, Serialize)]
pub struct WorkspaceLogs {
    /// The VM's serial console: kernel and agent messages.
    pub console: String,
    /// What the supervisor process printed.
    pub supervisor: String,
}

impl std::fmt::Display for WorkspaceLogs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (title, text) in [
            ("VM console", &self.console),
            ("supervisor", &self.supervisor),
        ] {
            writeln!(f, "== {title} ==")?;
            // The guest writes its console: its escapes stay visible text.
            f.write_str(&pyro_util::text::visible_lines(text))?;
            if !text.is_empty() && !text.ends_with('\n') {
                writeln!(f)?;
            }
        }
        Ok(())
    }
}

impl Pyro {
    /// The VM console and the supervisor's log of a workspace.
    pub fn workspace_logs(&self, query: &str) -> Result<WorkspaceLogs, Error> {
        let store = self.store()?;
        let dir = store.dir(&store.resolve(query)?.id);
        let secrets = crate::workspace::secrets::secrets(&dir);
        let read = |file: &str| {
            let text = String::from_utf8_lossy(&std::fs::read(dir.join(file)).unwrap_or_default())
                .into_owned();
            secrets.redact(&text)
        };
        Ok(WorkspaceLogs {
            console: read(CONSOLE),
            supervisor: read(LOG),
        })
    }
}
