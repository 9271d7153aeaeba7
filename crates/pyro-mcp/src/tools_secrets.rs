//! The secret tools of `workspace-full`: the only way a value reaches pyro
//! over MCP. Results carry names only; commands get a value through their
//! `secret_env`, and every output shows `[secret:NAME]` in its place.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::output::{schema, Out, ToolResult};
use crate::PyroServer;

/// Arguments of `workspace_secret_set`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretSetParams {
    /// The workspace id or name.
    pub workspace: String,
    /// The secret's name: letters, digits and '_', not starting with a digit.
    pub name: String,
    /// Its value (at least 4 characters); never shown again.
    pub value: String,
}

/// Arguments of `workspace_secret_unset`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SecretNameParams {
    /// The workspace id or name.
    pub workspace: String,
    /// The secret's name.
    pub name: String,
}

/// A workspace's secret names.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SecretNames {
    /// Every secret it has (names only).
    pub secrets: Vec<String>,
}

#[tool_router(router = secrets_router, vis = "pub(crate)")]
impl PyroServer {
    /// Keep a secret (an API token, a password) for a workspace's commands. It is stored on
    /// the host, outside the VM; a command gets it only when its call names it in
    /// `secret_env` (workspace_exec, workspace_service_start, workspace_shell_open), and any
    /// output carrying the value shows [secret:NAME] instead.
    #[tool(
        output_schema = schema::<SecretNames>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn workspace_secret_set(
        &self,
        Parameters(params): Parameters<SecretSetParams>,
    ) -> ToolResult<SecretNames> {
        let secrets =
            self.pyro
                .workspace_secret_set(&params.workspace, &params.name, &params.value)?;
        let text = format!(
            "secret {} set; give it to a command with secret_env: [\"{}\"]",
            params.name, params.name
        );
        Ok(Out::new(text, SecretNames { secrets }))
    }

    /// Remove a secret from a workspace.
    #[tool(
        output_schema = schema::<SecretNames>(),
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false)
    )]
    async fn workspace_secret_unset(
        &self,
        Parameters(params): Parameters<SecretNameParams>,
    ) -> ToolResult<SecretNames> {
        let secrets = self
            .pyro
            .workspace_secret_unset(&params.workspace, &params.name)?;
        let text = format!("secret {} removed", params.name);
        Ok(Out::new(text, SecretNames { secrets }))
    }
}
