//! The published-port tools of `workspace-full`: host ports forwarded into
//! a workspace created with the `egress+ports` network.

use rmcp::handler::server::wrapper::Parameters;
use rmcp::{tool, tool_router};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::output::{schema, Out, ToolResult};
use crate::types::PortInfo;
use crate::PyroServer;

/// A workspace and a port.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PortParams {
    /// The workspace id or name.
    pub workspace: String,
    /// To publish: "HOSTPORT:GUESTPORT", e.g. "0:8000" (0 picks a free host port; it listens
    /// on the host's 127.0.0.1). To unpublish: the host port, or the guest port.
    pub port: String,
}

#[tool_router(router = ports_router, vis = "pub(crate)")]
impl PyroServer {
    /// Forward a host port to a port in the guest, so the user can reach a server the
    /// workspace runs (the result's url). Needs a workspace created with network
    /// "egress+ports".
    #[tool(
        output_schema = schema::<PortInfo>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false)
    )]
    async fn workspace_port_publish(
        &self,
        Parameters(params): Parameters<PortParams>,
    ) -> ToolResult<PortInfo> {
        let port = self
            .pyro
            .workspace_port_publish(&params.workspace, &params.port)
            .await?;
        let info = PortInfo::from(&port);
        Ok(Out::new(format!("published {}", info.line()), info))
    }

    /// Close a published port; connections through it end.
    #[tool(
        output_schema = schema::<PortInfo>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false)
    )]
    async fn workspace_port_unpublish(
        &self,
        Parameters(params): Parameters<PortParams>,
    ) -> ToolResult<PortInfo> {
        let port = self
            .pyro
            .workspace_port_unpublish(&params.workspace, &params.port)
            .await?;
        let info = PortInfo::from(&port);
        Ok(Out::new(format!("unpublished {}", info.line()), info))
    }
}
