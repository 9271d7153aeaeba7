//! The pyro MCP server: `pyro mcp serve` over stdio.
//!
//! It adapts the facade ([`pyro_core::Pyro`]) to MCP tools with rmcp's
//! `#[tool_router]`/`#[tool]`: arguments are `Parameters<T>` with a described
//! schema, results are structured content (with an output schema) plus a
//! short text, and failures a model can act on are `is_error` results with
//! the facade's message. Three profiles choose the tool set; see [`Profile`].
//! No product logic lives here.

mod local;
mod network;
mod output;
mod portable;
mod progress;
mod prompts;
mod tools_core;
mod tools_disk;
mod tools_files;
mod tools_full;
mod tools_ports;
mod tools_run;
mod tools_secrets;
mod tools_services;
mod tools_shells;
mod tools_summary;
mod transport;
mod types;

use std::path::PathBuf;

use pyro_core::{HostPaths, Pyro, Seed};
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::model::{CustomRequest, CustomResult, Implementation, ServerCapabilities, ServerConfig};
use rmcp::service::RequestContext;
use rmcp::transport::async_rw::AsyncRwTransport;
use rmcp::{tool_handler, RoleServer, ServerHandler, ServiceExt};

pub use output::STREAM_CAP;
#[doc(hidden)]
pub use transport::fuzz_guard;
pub use transport::MAX_MESSAGE_BYTES;

/// Which tools the server offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// One-shot `vm_run` and `env_list`.
    VmRun,
    /// Workspace lifecycle, exec, files, patches, diff, export, reset.
    #[default]
    WorkspaceCore,
    /// Core plus snapshots, stop/start, sync push, logs and update.
    WorkspaceFull,
}

impl Profile {
    /// The profile's name on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Profile::VmRun => "vm-run",
            Profile::WorkspaceCore => "workspace-core",
            Profile::WorkspaceFull => "workspace-full",
        }
    }
}

/// What the server was started with.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    pub profile: Profile,
    /// What `workspace_create` seeds /workspace with when the call names no
    /// seed; see [`pyro_core::params::project_seed`].
    pub default_seed: Option<Seed>,
    /// Host directories the operator allowed beyond the project
    /// (`--allow-host-path`).
    pub allowed_host_paths: Vec<PathBuf>,
}

/// The MCP server: the facade plus the profile's tools.
#[derive(Clone)]
pub struct PyroServer {
    pyro: Pyro,
    profile: Profile,
    default_seed: Option<Seed>,
    local: local::LocalRunner,
    tool_router: ToolRouter<Self>,
    /// The names of the tools offered, for hints (see [`output::offering`]).
    offered: std::sync::Arc<Vec<String>>,
}

impl PyroServer {
    /// The server for `options`. Every host path a call names is confined
    /// to the project of `default_seed` and `allowed_host_paths`; fails
    /// when one of those is not a directory.
    pub fn new(pyro: Pyro, options: ServeOptions) -> std::io::Result<Self> {
        let host_paths =
            HostPaths::for_server(options.default_seed.as_ref(), &options.allowed_host_paths)?;
        let mut tool_router = match options.profile {
            Profile::VmRun => Self::run_router(),
            Profile::WorkspaceCore => {
                Self::core_router() + Self::files_router() + Self::summary_router()
            }
            Profile::WorkspaceFull => {
                Self::core_router()
                    + Self::files_router()
                    + Self::summary_router()
                    + Self::full_router()
                    + Self::disk_router()
                    + Self::ports_router()
                    + Self::secrets_router()
                    + Self::shells_router()
                    + Self::services_router()
            }
        };
        for route in tool_router.map.values_mut() {
            let tool = &mut route.attr;
            portable::portable_schema(std::sync::Arc::make_mut(&mut tool.input_schema));
            if let Some(output) = &mut tool.output_schema {
                portable::portable_schema(std::sync::Arc::make_mut(output));
            }
        }
        let offered = tool_router
            .list_all()
            .into_iter()
            .map(|tool| tool.name.into_owned())
            .collect();
        Ok(PyroServer {
            pyro: pyro.with_host_paths(host_paths),
            profile: options.profile,
            default_seed: options.default_seed,
            local: local::LocalRunner::start(),
            tool_router,
            offered: std::sync::Arc::new(offered),
        })
    }

    /// The names of the tools this server offers, sorted.
    pub fn tool_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.offered.to_vec();
        names.sort();
        names
    }

    fn instructions(&self) -> String {
        let seed = match &self.default_seed {
            Some(Seed::Path(path)) => format!(
                "workspace_create without a seed copies the project {} into /workspace \
                 (mode \"untrusted\" gets it only when seed_path names it).",
                path.display()
            ),
            Some(Seed::Repo { url, reference }) => format!(
                "workspace_create without a seed clones {url}{} into /workspace \
                 (mode \"untrusted\" gets it only when repo_url names it).",
                reference
                    .as_deref()
                    .map(|r| format!(" at {r}"))
                    .unwrap_or_default()
            ),
            None => "workspace_create without a seed starts with an empty /workspace.".into(),
        };
        let extra = match self.profile {
            Profile::WorkspaceFull => {
                " Interactive programs (a REPL, prompts, state kept between commands): \
                 workspace_shell_open, then workspace_shell_write and workspace_shell_read \
                 (plain text). Servers and databases: workspace_service_start with a readiness \
                 check, then workspace_service_logs / _status / _stop."
            }
            _ => "",
        };
        match self.profile {
            Profile::VmRun => "pyro runs commands in disposable Linux VMs (network off). \
                 Use vm_run for one command in a fresh VM (env_list shows the environments); \
                 nothing persists between calls."
                .into(),
            _ => format!(
                "pyro gives you a disposable workspace inside a real Linux VM (network off). \
                 Workflow: workspace_create once per task (keep the returned id), then \
                 workspace_exec to run commands (cwd /workspace), workspace_file_read / \
                 workspace_file_write / workspace_patch_apply to inspect and edit, \
                 workspace_diff to review changes since the baseline, workspace_export to copy \
                 results to the host, workspace_reset to start over, workspace_summary to \
                 review what was run and changed, and workspace_delete when done. Paths are \
                 relative to /workspace. {seed}{extra}"
            ),
        }
    }
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for PyroServer {
    fn get_info(&self) -> ServerConfig {
        let capabilities = match self.profile {
            Profile::VmRun => ServerCapabilities::builder().enable_tools().build(),
            _ => ServerCapabilities::builder()
                .enable_tools()
                .enable_prompts()
                .build(),
        };
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("pyro", env!("CARGO_PKG_VERSION")))
            .with_instructions(self.instructions())
    }

    /// Each call runs knowing which tools this server offers, so that an
    /// error's hint never names a tool the model cannot call.
    async fn call_tool(
        &self,
        request: rmcp::model::CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::CallToolResponse, rmcp::ErrorData> {
        let call = rmcp::handler::server::tool::ToolCallContext::new(self, request, context);
        let (result, resumed) = pyro_core::noting_resumes(output::offering(
            self.offered.clone(),
            self.tool_router.call(call),
        ))
        .await;
        result.map(|response| output::note_resumes(response, &resumed))
    }

    async fn list_prompts(
        &self,
        _request: Option<rmcp::model::PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::ListPromptsResult, rmcp::ErrorData> {
        Ok(rmcp::model::ListPromptsResult::with_all_items(
            prompts::list(self.profile),
        ))
    }

    async fn get_prompt(
        &self,
        request: rmcp::model::GetPromptRequestParams,
        _context: RequestContext<RoleServer>,
    ) -> Result<rmcp::model::GetPromptResponse, rmcp::ErrorData> {
        let project = self.default_seed.is_some();
        let arguments = request.arguments.as_ref();
        prompts::get(self.profile, project, &request.name, arguments).map(Into::into)
    }

    /// Answers the stand-in for a message too large to read (see
    /// [`transport`]); any other custom method is unknown.
    async fn on_custom_request(
        &self,
        request: CustomRequest,
        _context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, rmcp::ErrorData> {
        if request.method == transport::OVERSIZED_METHOD {
            return transport::oversized_response(request.params.as_ref());
        }
        Err(rmcp::ErrorData::new(
            rmcp::model::ErrorCode::METHOD_NOT_FOUND,
            request.method,
            None,
        ))
    }
}

/// Serves `server` over stdin/stdout until the client disconnects. Call it
/// on a multi-thread runtime whose worker threads outlive any VM it starts.
/// Messages up to [`MAX_MESSAGE_BYTES`] are read; a larger request is
/// answered with an error instead of being dropped.
pub async fn serve_stdio(server: PyroServer) -> anyhow::Result<()> {
    let (stdin, stdout) = rmcp::transport::stdio();
    let transport = AsyncRwTransport::new_server(
        transport::MessageGuard::new(stdin, MAX_MESSAGE_BYTES),
        stdout,
    )
    // The guard ends every line it passes on within the limit (plus the
    // byte that marks a cut line invalid).
    .with_max_line_length(MAX_MESSAGE_BYTES + 2);
    let running = server.serve(transport).await?;
    running.waiting().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server(profile: Profile) -> PyroServer {
        let dir = tempfile::tempdir().unwrap();
        let options = ServeOptions {
            profile,
            ..ServeOptions::default()
        };
        PyroServer::new(Pyro::with_dirs(dir.path(), dir.path()), options).unwrap()
    }

    #[test]
    fn each_profile_offers_its_tools() {
        let core = server(Profile::WorkspaceCore).tool_names();
        assert!(core.contains(&"workspace_exec".to_string()));
        assert!(!core.contains(&"workspace_shell_open".to_string()));
        assert!(!core.contains(&"vm_run".to_string()));
        let full = server(Profile::WorkspaceFull).tool_names();
        assert!(core.iter().all(|tool| full.contains(tool)));
        for tool in [
            "workspace_shell_open",
            "workspace_service_start",
            "workspace_sync_push",
        ] {
            assert!(full.contains(&tool.to_string()), "{tool}");
        }
        assert_eq!(server(Profile::VmRun).tool_names(), ["env_list", "vm_run"]);
    }

    #[test]
    fn every_schema_is_portable_and_every_tool_annotated() {
        for tool in server(Profile::WorkspaceFull)
            .tool_router
            .list_all()
            .into_iter()
            .chain(server(Profile::VmRun).tool_router.list_all())
        {
            let name = &tool.name;
            let input = serde_json::Value::Object((*tool.input_schema).clone());
            assert!(
                !portable::has_type_arrays_or_null(&input),
                "{name}: {input}"
            );
            let output = tool.output_schema.as_ref().expect("an output schema");
            let output = serde_json::Value::Object((**output).clone());
            assert!(
                !portable::has_type_arrays_or_null(&output),
                "{name}: {output}"
            );
            let annotations = tool.annotations.as_ref().expect("annotations");
            assert_eq!(annotations.open_world_hint, Some(false), "{name}");
            assert!(annotations.read_only_hint.is_some(), "{name}");
        }
    }

    #[test]
    fn commands_take_a_shell_line_or_an_argv_everywhere() {
        let full = server(Profile::WorkspaceFull);
        let run = server(Profile::VmRun);
        for (server, tool) in [
            (&full, "workspace_exec"),
            (&full, "workspace_service_start"),
            (&run, "vm_run"),
        ] {
            let tool = server.tool_router.get(tool).unwrap();
            let properties = &tool.input_schema["properties"];
            assert_eq!(properties["command"]["type"], "string", "{}", tool.name);
            assert_eq!(properties["argv"]["type"], "array", "{}", tool.name);
        }
    }
}
