//! Interactive shells: a PTY command per shell, kept open by the
//! supervisor and read back as plain text.
//!
//! The supervisor runs each shell as a guest exec with a pseudo-terminal
//! and feeds everything it prints into a terminal emulator (`pyro-term`),
//! so a read returns what a person would see: colours and cursor games
//! interpreted, a `\r` progress bar as its final line, a full-screen
//! program as its screen. Output accumulates between reads; a read waits
//! until the shell has been quiet for a while (or a time limit passes), so
//! one read after a command returns its whole output. Shells live as long
//! as the VM: any number of CLI and MCP calls reach the same shell by id.

use serde::de::DeserializeOwned;

use super::error::Error;
use super::params::{self, ShellInput, ShellReadOptions};
use super::Pyro;
use crate::supervisor::client;
use crate::supervisor::protocol::{ControlRequest, SessionError, ShellInfo, ShellRead, CALL_SLACK};
use crate::supervisor::registry::{self, ShellRegistry, SHELLS_FILE};
use crate::workspace::WorkspaceError;

impl Pyro {
    /// Opens an interactive shell (bash, else sh) on a PTY in the workspace,
    /// with the secrets `secret_env` names (`NAME` or `ENVVAR=NAME`) in its
    /// environment.
    pub async fn workspace_shell_open(
        &self,
        query: &str,
        cwd: Option<&str>,
        rows: Option<u16>,
        cols: Option<u16>,
        secret_env: &[String],
    ) -> Result<ShellInfo, Error> {
        let (rows, cols) = params::shell_size(rows, cols);
        let (_, dir, _in_use) = self.running_workspace(query).await?;
        let request = ControlRequest::ShellOpen {
            cwd: cwd.map(str::to_string),
            rows,
            cols,
            env: super::secrets::env_for(&dir, query, secret_env)?,
        };
        self.session_call(query, &request, CALL_SLACK).await
    }

    /// What the shell printed since the previous read, once it is quiet.
    pub async fn workspace_shell_read(
        &self,
        query: &str,
        shell: &str,
        options: ShellReadOptions,
    ) -> Result<ShellRead, Error> {
        // Within bounds however the options were built.
        let options =
            ShellReadOptions::new(Some(options.wait_idle), Some(options.timeout), options.raw);
        let request = ControlRequest::ShellRead {
            shell: shell.to_string(),
            wait_idle_ms: options.wait_idle.as_millis() as u64,
            timeout_ms: options.timeout.as_millis() as u64,
            raw: options.raw,
        };
        self.session_call(query, &request, options.timeout.saturating_add(CALL_SLACK))
            .await
            .map_err(|e| self.shell_gone(query, shell, e))
    }

    /// Types into a shell; returns the bytes sent.
    pub async fn workspace_shell_write(
        &self,
        query: &str,
        shell: &str,
        input: &ShellInput,
    ) -> Result<u64, Error> {
        let request = ControlRequest::ShellWrite {
            shell: shell.to_string(),
            data: input.data.clone(),
            keys: input.keys.clone(),
        };
        self.session_call(query, &request, CALL_SLACK)
            .await
            .map_err(|e| self.shell_gone(query, shell, e))
    }

    /// Signals what runs in the shell's foreground.
    pub async fn workspace_shell_signal(
        &self,
        query: &str,
        shell: &str,
        signal: i32,
    ) -> Result<(), Error> {
        let request = ControlRequest::ShellSignal {
            shell: shell.to_string(),
            signal,
        };
        self.session_call(query, &request, CALL_SLACK)
            .await
            .map_err(|e| self.shell_gone(query, shell, e))
    }

    /// Changes a shell's terminal size.
    pub async fn workspace_shell_resize(
        &self,
        query: &str,
        shell: &str,
        rows: u16,
        cols: u16,
    ) -> Result<(), Error> {
        let request = ControlRequest::ShellResize {
            shell: shell.to_string(),
            rows,
            cols,
        };
        self.session_call(query, &request, CALL_SLACK)
            .await
            .map_err(|e| self.shell_gone(query, shell, e))
    }

    /// Ends a shell and what runs in it.
    pub async fn workspace_shell_close(
        &self,
        query: &str,
        shell: &str,
    ) -> Result<ShellInfo, Error> {
        let request = ControlRequest::ShellClose {
            shell: shell.to_string(),
        };
        self.session_call(query, &request, CALL_SLACK)
            .await
            .map_err(|e| self.shell_gone(query, shell, e))
    }

    /// Every shell the workspace has had (open ones and recently ended).
    pub async fn workspace_shell_list(&self, query: &str) -> Result<Vec<ShellInfo>, Error> {
        match self
            .session_call(query, &ControlRequest::ShellList, CALL_SLACK)
            .await
        {
            Ok(list) => Ok(list),
            Err(error) => {
                // A stopped workspace still tells what its shells were.
                let store = self.store()?;
                let record = store.resolve(query)?;
                if store.supervisor_alive(&record.id)? {
                    return Err(error);
                }
                let registry: ShellRegistry = registry::load(&store.dir(&record.id), SHELLS_FILE);
                Ok(registry.shells)
            }
        }
    }

    /// When a shell call fails because the workspace is not running, says
    /// what became of the shell instead (ended by a reset, say), if known.
    fn shell_gone(&self, query: &str, shell: &str, error: Error) -> Error {
        let Error::Workspace(WorkspaceError::Stopped { .. } | WorkspaceError::Crashed { .. }) =
            &error
        else {
            return error;
        };
        let Ok(store) = self.store() else {
            return error;
        };
        let Ok(record) = store.resolve(query) else {
            return error;
        };
        let registry: ShellRegistry = registry::load(&store.dir(&record.id), SHELLS_FILE);
        match registry.get(shell) {
            Some(info) if !info.state.is_open() => SessionError::ShellGone {
                shell: shell.to_string(),
                workspace: record.display_name().to_string(),
                how: info.state.describe(),
            }
            .into(),
            _ => error,
        }
    }
}

impl Pyro {
    /// Sends a shell or service request to a running workspace's supervisor.
    pub(crate) async fn session_call<T: DeserializeOwned>(
        &self,
        query: &str,
        request: &ControlRequest,
        timeout: std::time::Duration,
    ) -> Result<T, Error> {
        let (_, dir, _in_use) = self.running_workspace(query).await?;
        Ok(client::call(&dir, request, timeout).await?)
    }
}
