//! The tools `workspace-full` adds: snapshots, fork, stop/start, sync
//! push, logs and update.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rmcp::handler::server::wrapper::Parameters;
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, RoleServer};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::output::{schema, Out, ToolResult};
use crate::progress::Progress;
use crate::tools_core::WorkspaceParams;
use crate::types::{Done, WorkspaceInfo};
use crate::PyroServer;

/// A workspace and a snapshot name.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotParams {
    /// The workspace id or name.
    pub workspace: String,
    /// The snapshot name (letters, digits, '.', '_', '-').
    pub name: String,
}

/// Arguments of `workspace_snapshot_create`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SnapshotCreateParams {
    /// The workspace id or name.
    pub workspace: String,
    /// The snapshot name (letters, digits, '.', '_', '-').
    pub name: String,
    /// Keep only the disk, not the running VM's memory: a reset to it then
    /// boots, and shells and services do not come back.
    #[serde(default)]
    pub disk_only: bool,
}

/// Arguments of `workspace_fork`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ForkParams {
    /// The workspace id or name to fork.
    pub workspace: String,
    /// A unique name for the new workspace.
    pub name: Option<String>,
    /// Fork this snapshot of the workspace instead of its running VM.
    pub snapshot: Option<String>,
}

/// What `workspace_fork` made.
#[derive(Debug, Serialize, JsonSchema)]
pub struct ForkInfo {
    /// The new workspace: use its id from now on.
    #[serde(flatten)]
    pub workspace: WorkspaceInfo,
    /// The id of the workspace it was forked from (it keeps running).
    pub forked_from: String,
    /// The snapshot it was forked from, when one was named.
    pub snapshot: Option<String>,
    /// How long the original was paused while its state was saved, ms.
    pub parent_paused_ms: Option<u64>,
    /// Shells (ids) open in the fork, as in the original.
    pub running_shells: Vec<String>,
    /// Services running in the fork, as in the original.
    pub running_services: Vec<String>,
    /// The original's published ports on fixed host ports, which stay with it.
    pub ports_left: Vec<String>,
}

/// Arguments of `workspace_stop`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StopParams {
    /// The workspace id or name.
    pub workspace: String,
    /// Power the VM off (every process ends) instead of suspending it.
    #[serde(default)]
    pub power_off: bool,
}

/// One snapshot.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SnapshotInfo {
    /// Its name, for workspace_reset's `snapshot`.
    pub name: String,
    /// When it was taken (RFC 3339).
    pub created_at: String,
    /// Whether it keeps the VM's memory (a reset to it has its shells and
    /// services running again).
    pub memory: bool,
}

/// A workspace's snapshots.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SnapshotList {
    /// Oldest first.
    pub snapshots: Vec<SnapshotInfo>,
}

/// Arguments of `workspace_sync_push`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyncPushParams {
    /// The workspace id or name.
    pub workspace: String,
    /// A directory on the host to copy in, inside the server's project (or a directory the user allowed).
    pub source: String,
    /// Where under /workspace to put its content (default: /workspace itself).
    pub dest: Option<String>,
}

/// What a sync copied.
#[derive(Debug, Serialize, JsonSchema)]
pub struct SyncResult {
    /// Files copied.
    pub files: u64,
    /// Bytes copied.
    pub bytes: u64,
}

/// Arguments of `workspace_update`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateParams {
    /// The workspace id or name.
    pub workspace: String,
    /// A new unique name.
    pub name: Option<String>,
    /// Labels to set, key -> value; an empty value removes the label.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// New network mode: "off", "egress" or "egress+ports". A running workspace started with
    /// the network off must be stopped and started to turn it on.
    pub network: Option<String>,
    /// Replaces the allowlist (HOST[:PORT], *.DOMAIN, IPv4, host.pyro.internal:PORT); [] opens
    /// every public destination. A running workspace enforces it at once.
    pub allow: Option<Vec<String>>,
    /// Suspend the workspace after this long without a tool call ("15m", "2h"); "off" never.
    pub idle_timeout: Option<String>,
}

/// A workspace's logs.
#[derive(Debug, Serialize, JsonSchema)]
pub struct LogsResult {
    /// The VM's serial console (last 64 KiB): kernel and agent messages.
    pub console: String,
    /// What the supervisor process printed (last 64 KiB).
    pub supervisor: String,
}

/// The last [`crate::STREAM_CAP`] bytes of a log.
fn tail(text: &str) -> String {
    let mut cut = text.len().saturating_sub(crate::STREAM_CAP);
    while !text.is_char_boundary(cut) {
        cut += 1;
    }
    text[cut..].to_string()
}

#[tool_router(router = full_router, vis = "pub(crate)")]
impl PyroServer {
    /// Name the current state of a workspace, cheaply, to come back to later with
    /// workspace_reset: its whole disk and the running VM's memory, so shells and services
    /// running now run again after the reset (disk_only: the disk alone). Take one before
    /// risky changes.
    #[tool(
        output_schema = schema::<SnapshotInfo>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false)
    )]
    async fn workspace_snapshot_create(
        &self,
        Parameters(params): Parameters<SnapshotCreateParams>,
    ) -> ToolResult<SnapshotInfo> {
        let snapshot = self
            .pyro
            .workspace_snapshot_create(&params.workspace, &params.name, params.disk_only)
            .await?;
        let kept = match snapshot.memory {
            Some(_) => "disk and memory",
            None => "disk only",
        };
        Ok(Out::new(
            format!("snapshot {} taken ({kept})", snapshot.name),
            SnapshotInfo {
                memory: snapshot.memory.is_some(),
                name: snapshot.name,
                created_at: snapshot.created_at,
            },
        ))
    }

    /// List a workspace's snapshots, oldest first.
    #[tool(
        output_schema = schema::<SnapshotList>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn workspace_snapshot_list(
        &self,
        Parameters(params): Parameters<WorkspaceParams>,
    ) -> ToolResult<SnapshotList> {
        let snapshots: Vec<SnapshotInfo> = self
            .pyro
            .workspace_snapshot_list(&params.workspace)?
            .into_iter()
            .map(|s| SnapshotInfo {
                memory: s.memory.is_some(),
                name: s.name,
                created_at: s.created_at,
            })
            .collect();
        let text = if snapshots.is_empty() {
            "no snapshots".to_string()
        } else {
            snapshots
                .iter()
                .map(|s| format!("{} ({})", s.name, s.created_at))
                .collect::<Vec<_>>()
                .join("\n")
        };
        Ok(Out::new(text, SnapshotList { snapshots }))
    }

    /// Delete a snapshot of a workspace; the workspace itself is not changed.
    #[tool(
        output_schema = schema::<Done>(),
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = false, open_world_hint = false)
    )]
    async fn workspace_snapshot_delete(
        &self,
        Parameters(params): Parameters<SnapshotParams>,
    ) -> ToolResult<Done> {
        self.pyro
            .workspace_snapshot_delete(&params.workspace, &params.name)
            .await?;
        let message = format!("snapshot {} deleted", params.name);
        Ok(Out::new(message.clone(), Done { message }))
    }

    /// Make a new workspace from a running one: a copy-on-write twin of its disk and memory
    /// at this instant, with every process, shell and service running in both; the original
    /// keeps running. Use it to try two approaches from one state. snapshot: fork one of its
    /// snapshots instead. The fork's diff starts empty; it has its own id.
    #[tool(
        output_schema = schema::<ForkInfo>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false)
    )]
    async fn workspace_fork(
        &self,
        Parameters(params): Parameters<ForkParams>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult<ForkInfo> {
        let progress = Progress::new(&context);
        progress.stage("saving the workspace's state and starting the fork");
        let request = pyro_core::ForkRequest {
            name: params.name,
            snapshot: params.snapshot,
        };
        let forked = progress
            .with_heartbeat(
                self.pyro.workspace_fork(&params.workspace, &request),
                |elapsed| format!("forking ({}s)", elapsed.as_secs()),
            )
            .await;
        progress.done().await;
        let report = forked?;
        let info = ForkInfo {
            workspace: WorkspaceInfo::from(report.workspace),
            forked_from: report.forked_from,
            snapshot: report.snapshot,
            parent_paused_ms: report.parent_paused_ms,
            running_shells: report.restored.shells,
            running_services: report.restored.services,
            ports_left: report.ports_left,
        };
        let mut text = format!(
            "workspace {} forked from {}",
            info.workspace.line(),
            info.forked_from
        );
        for (what, names) in [
            ("shells open", &info.running_shells),
            ("services running", &info.running_services),
            ("ports left with the original", &info.ports_left),
        ] {
            if !names.is_empty() {
                text.push_str(&format!("; {what}: {}", names.join(", ")));
            }
        }
        Ok(Out::new(text, info))
    }

    /// Suspend a workspace: its VM's memory goes to disk and nothing of it runs on the host.
    /// workspace_start, or any later tool call on it, resumes it with every process, shell
    /// and service alive. power_off: power the VM off instead (processes end, the disk keeps
    /// every change).
    #[tool(
        output_schema = schema::<WorkspaceInfo>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn workspace_stop(
        &self,
        Parameters(params): Parameters<StopParams>,
    ) -> ToolResult<WorkspaceInfo> {
        let how = match params.power_off {
            true => pyro_core::StopMode::PowerOff,
            false => pyro_core::StopMode::Suspend,
        };
        let info = WorkspaceInfo::from(self.pyro.workspace_stop(&params.workspace, how).await?);
        Ok(Out::new(info.line(), info))
    }

    /// Resume a suspended workspace, or boot a stopped or crashed one again from its disk.
    #[tool(
        output_schema = schema::<WorkspaceInfo>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false)
    )]
    async fn workspace_start(
        &self,
        Parameters(params): Parameters<WorkspaceParams>,
    ) -> ToolResult<WorkspaceInfo> {
        let info = WorkspaceInfo::from(self.pyro.workspace_start(&params.workspace).await?);
        Ok(Out::new(info.line(), info))
    }

    /// Copy a host directory into /workspace (or a subdirectory of it), overwriting files of
    /// the same name. Use it to bring in files that changed on the host.
    #[tool(
        output_schema = schema::<SyncResult>(),
        annotations(read_only_hint = false, destructive_hint = true, idempotent_hint = true, open_world_hint = false)
    )]
    async fn workspace_sync_push(
        &self,
        Parameters(params): Parameters<SyncPushParams>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult<SyncResult> {
        let source = PathBuf::from(&params.source);
        let progress = Progress::new(&context);
        progress.stage("copying into the guest");
        let pushed = progress
            .with_heartbeat(
                self.pyro
                    .workspace_sync_push(&params.workspace, &source, params.dest.as_deref()),
                |elapsed| format!("copying ({}s)", elapsed.as_secs()),
            )
            .await;
        progress.done().await;
        let report = pushed?;
        Ok(Out::new(
            format!("copied {} files ({} bytes)", report.files, report.bytes),
            SyncResult {
                files: report.files,
                bytes: report.bytes,
            },
        ))
    }

    /// Show a workspace's VM console and supervisor log (last 64 KiB each). Use it when a
    /// workspace crashed or will not start.
    #[tool(
        output_schema = schema::<LogsResult>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn workspace_logs(
        &self,
        Parameters(params): Parameters<WorkspaceParams>,
    ) -> ToolResult<LogsResult> {
        let logs = self.pyro.workspace_logs(&params.workspace)?;
        let value = LogsResult {
            console: tail(&logs.console),
            supervisor: tail(&logs.supervisor),
        };
        let text = format!(
            "--- console ---\n{}\n--- supervisor ---\n{}",
            value.console, value.supervisor
        );
        Ok(Out::new(text, value))
    }

    /// Rename a workspace, change its labels, or change its network: a new allowlist takes
    /// effect at once in a running workspace, without a reboot.
    #[tool(
        output_schema = schema::<WorkspaceInfo>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn workspace_update(
        &self,
        Parameters(params): Parameters<UpdateParams>,
    ) -> ToolResult<WorkspaceInfo> {
        let update = pyro_core::UpdateRequest {
            name: params.name,
            labels: params.labels.into_iter().collect(),
            network: pyro_core::NetworkUpdate {
                mode: params.network,
                allow: params.allow,
            },
            idle_timeout: params
                .idle_timeout
                .as_deref()
                .map(pyro_core::params::idle_timeout)
                .transpose()?,
        };
        let record = self
            .pyro
            .workspace_update(&params.workspace, &update)
            .await?;
        let info = WorkspaceInfo::from(record);
        Ok(Out::new(info.line(), info))
    }
}
