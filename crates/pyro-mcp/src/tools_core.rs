//! The `workspace-core` lifecycle tools: create, list, status, delete,
//! exec and reset.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use pyro_core::params::{self, call_seed, command_argv};
use pyro_core::{CreateRequest, ExecOptions, InvalidRequest, Mode, Seed};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, RoleServer};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::output::{gone, schema, Out, ToolResult};
use crate::progress::Progress;
use crate::tools_run::default_env;
use crate::types::{CommandResult, WorkspaceInfo, WorkspaceList};
use crate::{Profile, PyroServer};

/// Arguments of `workspace_create`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateParams {
    /// The environment to boot (default `debian:12`; see env_list in the vm-run profile).
    #[serde(default = "default_env")]
    pub env: String,
    /// An optional unique name to refer to the workspace by (letters, digits, '.', '_', '-').
    pub name: Option<String>,
    /// Free-form labels, key -> value, e.g. {"task": "123"}.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// A host directory to copy into /workspace, inside the server's project (or a directory the user allowed). Omit to use the server's project (if it has one).
    pub seed_path: Option<String>,
    /// A Git repository to clone into /workspace instead of seed_path: an https, ssh or git URL, or a local repository inside the project.
    pub repo_url: Option<String>,
    /// The branch, tag or commit of repo_url to check out (default: its HEAD).
    pub repo_ref: Option<String>,
    /// Seed paths to leave out, gitignore syntax: ["node_modules/", "target/", "*.log"].
    /// The seed's own .pyroignore applies too.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// The workflow the workspace is for; its defaults fill what is not given here, and
    /// whatever is given wins (the result's mode says so). "cold-start": egress to the
    /// package indexes (workspace-full profile), 2 vCPUs, 2 GiB. "repro-fix" and "review":
    /// no network. "parallel": no network, suspended after 15m idle. "untrusted": no
    /// network, no secrets, 512 MiB, and the server's project only when seed_path or
    /// repo_url names it.
    /// The prompts of the same names are the playbooks.
    pub mode: Option<String>,
    /// vCPUs (default: the mode's, else 1).
    pub cpus: Option<u32>,
    /// Memory in MiB (default: the mode's, else 1024).
    pub memory_mib: Option<u32>,
    /// Network (workspace-full profile only): "off" (no network device; the default unless
    /// the mode opens one),
    /// "egress" (outbound TCP and DNS through the host, e.g. to install dependencies), or
    /// "egress+ports" (egress, and host ports forwarded in: see `publish`).
    pub network: Option<String>,
    /// With egress, open only these destinations: "pypi.org", "*.pythonhosted.org:443", an
    /// IPv4 address, or "host.pyro.internal:PORT" for a service on the user's machine.
    #[serde(default)]
    pub allow: Vec<String>,
    /// With egress+ports, host ports to forward into the guest: "HOSTPORT:GUESTPORT", e.g.
    /// "0:8000" (0 picks a free host port on the host's 127.0.0.1; the result's ports carry
    /// each url).
    #[serde(default)]
    pub publish: Vec<String>,
    /// Suspend the workspace after this long without a tool call on it ("15m", "2h",
    /// "90s", or "off"); the next call on it resumes it, with every process. Default: the
    /// mode's, else never.
    pub idle_timeout: Option<String>,
    /// The most host disk the workspace may hold, its snapshots included ("16G",
    /// "512M"); past it, the guest's writes fail. Default: twice the environment's disk
    /// (16G).
    pub max_host_disk: Option<String>,
    /// The size of the workspace's disk ("20G"): larger than the environment's 8G
    /// when the task needs the room; up to "2T". Default: the environment's.
    pub disk_size: Option<String>,
}

/// A workspace, by id, id prefix or name.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceParams {
    /// The workspace id (or a unique prefix of it) or its name, as workspace_create returned.
    pub workspace: String,
}

/// Arguments of `workspace_list`.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    /// Only workspaces carrying every one of these labels (key -> value).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// Arguments of `workspace_exec`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExecParams {
    /// The workspace id or name.
    pub workspace: String,
    /// A shell command line, run with `sh -c` (pipes, `&&` and redirects work).
    pub command: Option<String>,
    /// The command as an exact argv list instead of `command`, e.g. ["python3", "-c", "print(1)"].
    pub argv: Option<Vec<String>>,
    /// The working directory in the guest (default /workspace; a relative one is under it).
    pub cwd: Option<String>,
    /// Extra environment variables, NAME -> value.
    #[serde(default)]
    pub env_vars: BTreeMap<String, String>,
    /// Secrets the user set for this workspace, given as variables: "NAME", or
    /// "ENVVAR=NAME". Their values appear as [secret:NAME] in every output.
    #[serde(default)]
    pub secret_env: Vec<String>,
    /// Stop the command after this many seconds (default: no limit).
    pub timeout_seconds: Option<u64>,
    /// Text fed to the command's standard input (default: none, it reads an empty input).
    pub stdin: Option<String>,
}

/// Arguments of `workspace_reset`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ResetParams {
    /// The workspace id or name.
    pub workspace: String,
    /// A snapshot to go back to; omit for the baseline (the state right after create).
    pub snapshot: Option<String>,
}

/// What `workspace_reset` did.
#[derive(Debug, serde::Serialize, JsonSchema)]
pub struct ResetInfo {
    /// The workspace as it is now.
    #[serde(flatten)]
    pub workspace: WorkspaceInfo,
    /// Shells (ids) that were open and ended.
    pub ended_shells: Vec<String>,
    /// Services that were running and ended.
    pub ended_services: Vec<String>,
    /// Shells open again: the snapshot's memory had them.
    pub restored_shells: Vec<String>,
    /// Services running again: the snapshot's memory had them.
    pub restored_services: Vec<String>,
}

#[tool_router(router = core_router, vis = "pub(crate)")]
impl PyroServer {
    /// Create a workspace: a Linux VM that keeps running between calls, with the project
    /// copied into /workspace. Call it once per task and keep the returned id for every
    /// other workspace tool. Takes a few seconds.
    #[tool(
        output_schema = schema::<WorkspaceInfo>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false)
    )]
    async fn workspace_create(
        &self,
        Parameters(params): Parameters<CreateParams>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult<WorkspaceInfo> {
        let progress = Progress::new(&context);
        let mode = params.mode.as_deref().map(Mode::parse).transpose();
        let mode = mode.map_err(InvalidRequest::from)?;
        let project = params::modes::default_seed(mode, self.default_seed.as_ref());
        let seed = call_seed(
            params.seed_path.map(PathBuf::from),
            params.repo_url,
            params.repo_ref,
            project,
        )?;
        let request = CreateRequest {
            env: params.env,
            name: params.name,
            labels: params.labels.into_iter().collect(),
            mode,
            cpus: params.cpus,
            memory_mib: params.memory_mib,
            seed: seed.clone(),
            exclude: params.exclude,
            network: self.network_request(params.network, params.allow, params.publish)?,
            network_permitted: self.profile == Profile::WorkspaceFull,
            // Values come only through workspace_secret_set.
            secrets: Vec::new(),
            warm: true,
            idle_timeout: params
                .idle_timeout
                .as_deref()
                .map(params::idle_timeout)
                .transpose()?,
            max_host_bytes: params
                .max_host_disk
                .as_deref()
                .map(params::max_host_disk)
                .transpose()?,
            disk_bytes: params
                .disk_size
                .as_deref()
                .map(params::disk_size)
                .transpose()?,
        };
        let mut stage = progress.stage_fn();
        // A cancelled create is deleted by the facade once it is made.
        let cancelled = context.ct.clone();
        let created = progress
            .with_heartbeat(
                self.pyro.workspace_create_staged(
                    &request,
                    &mut stage,
                    cancelled.cancelled_owned(),
                ),
                |elapsed| format!("creating workspace ({}s)", elapsed.as_secs()),
            )
            .await;
        // The stage callback holds the forwarder open; drop it first.
        drop(stage);
        progress.done().await;
        let record = created?;
        let info = WorkspaceInfo::from(record);
        let seeded = match &seed {
            Some(Seed::Path(path)) => format!(", /workspace seeded from {}", path.display()),
            Some(Seed::Repo { url, .. }) => format!(", /workspace cloned from {url}"),
            None => ", /workspace is empty".into(),
        };
        let mode = match &info.mode {
            Some(mode) if info.mode_overrides.is_empty() => format!("; mode {mode}"),
            Some(mode) => format!("; mode {mode}, except: {}", info.mode_overrides.join("; ")),
            None => String::new(),
        };
        Ok(Out::new(
            format!("created workspace {}{seeded}{mode}", info.line()),
            info,
        ))
    }

    /// List workspaces (id, name, environment, state), optionally filtered by labels. Use it to
    /// find a workspace created earlier.
    #[tool(
        output_schema = schema::<WorkspaceList>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn workspace_list(
        &self,
        Parameters(params): Parameters<ListParams>,
    ) -> ToolResult<WorkspaceList> {
        let labels: Vec<(String, String)> = params.labels.into_iter().collect();
        let workspaces: Vec<WorkspaceInfo> = self
            .pyro
            .workspace_list(&labels)?
            .into_iter()
            .map(WorkspaceInfo::from)
            .collect();
        let text = if workspaces.is_empty() {
            "no workspaces".to_string()
        } else {
            workspaces
                .iter()
                .map(WorkspaceInfo::line)
                .collect::<Vec<_>>()
                .join("\n")
        };
        Ok(Out::new(text, WorkspaceList { workspaces }))
    }

    /// Show one workspace: its state (running, stopped, crashed with the reason), labels and
    /// snapshots.
    #[tool(
        output_schema = schema::<WorkspaceInfo>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn workspace_status(
        &self,
        Parameters(params): Parameters<WorkspaceParams>,
    ) -> ToolResult<WorkspaceInfo> {
        let info = WorkspaceInfo::from(self.pyro.workspace_status(&params.workspace)?);
        Ok(Out::new(info.line(), info))
    }

    /// Delete a workspace: kill its VM and remove its disk and snapshots for good. Export
    /// anything you need first.
    #[tool(
        output_schema = schema::<WorkspaceInfo>(),
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false)
    )]
    async fn workspace_delete(
        &self,
        Parameters(params): Parameters<WorkspaceParams>,
    ) -> ToolResult<WorkspaceInfo> {
        let info = WorkspaceInfo::from(self.pyro.workspace_delete(&params.workspace).await?);
        Ok(Out::new(format!("deleted workspace {}", info.id), info))
    }

    /// Run a shell command in a workspace (cwd /workspace) and get its exit code, stdout and
    /// stderr (each capped at 64 KiB). Use it to build, test, install packages and inspect.
    #[tool(
        output_schema = schema::<CommandResult>(),
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false)
    )]
    async fn workspace_exec(
        &self,
        Parameters(params): Parameters<ExecParams>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult<CommandResult> {
        let cancel = context.ct.clone();
        let progress = Progress::new(&context);
        let options = ExecOptions {
            argv: command_argv(params.command, params.argv)?,
            cwd: params.cwd,
            env_vars: params.env_vars.into_iter().collect(),
            secret_env: params.secret_env,
            timeout: params.timeout_seconds.map(Duration::from_secs),
            stdin: params
                .stdin
                .map(|text| pyro_core::Input::from_reader(std::io::Cursor::new(text.into_bytes())))
                .unwrap_or_default(),
        };
        let pyro = self.pyro.clone();
        let workspace = params.workspace;
        let workspace_ref = workspace.clone();
        let ran = crate::local::run_streaming(
            &self.local,
            progress,
            cancel,
            "running",
            async move |sink, cancel: tokio_util::sync::CancellationToken| {
                pyro.workspace_exec(&workspace, &options, sink, cancel.cancelled_owned())
                    .await
            },
        )
        .await;
        let (report, sink) = ran.ok_or_else(gone)?;
        let report = report?;
        let result = CommandResult::new(
            &report.end,
            report.exit_code(),
            report.duration_ms,
            sink.stdout.finish(),
            sink.stderr.finish(),
        )
        .with_network_note(self.exec_denial_note(&workspace_ref, &report.network_denied));
        Ok(Out::new(result.text(), result))
    }

    /// Put the whole workspace disk back to the baseline (the state right after create) or to
    /// a named snapshot, and reboot it. Every change since is lost; running commands end.
    #[tool(
        output_schema = schema::<WorkspaceInfo>(),
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn workspace_reset(
        &self,
        Parameters(params): Parameters<ResetParams>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult<ResetInfo> {
        let progress = Progress::new(&context);
        progress.stage("resetting disk and restoring or rebooting VM");
        let reset = progress
            .with_heartbeat(
                self.pyro
                    .workspace_reset(&params.workspace, params.snapshot.as_deref()),
                |elapsed| format!("resetting ({}s)", elapsed.as_secs()),
            )
            .await;
        progress.done().await;
        let report = reset?;
        let target = params.snapshot.as_deref().unwrap_or("the baseline");
        let info = ResetInfo {
            ended_shells: report.ended.shells,
            ended_services: report.ended.services,
            restored_shells: report.restored.shells,
            restored_services: report.restored.services,
            workspace: WorkspaceInfo::from(report.workspace),
        };
        let mut text = format!("workspace {} reset to {target}", info.workspace.id);
        for (what, names) in [
            ("shells ended", &info.ended_shells),
            ("services ended", &info.ended_services),
            ("shells running again", &info.restored_shells),
            ("services running again", &info.restored_services),
        ] {
            if !names.is_empty() {
                text.push_str(&format!("; {what}: {}", names.join(", ")));
            }
        }
        Ok(Out::new(text, info))
    }
}
