//! The `vm-run` profile: one command in a throw-away VM, and the
//! environments it can use.

use std::time::Duration;

use pyro_core::params::{self, command_argv};
use pyro_core::RunRequest;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::service::RequestContext;
use rmcp::{tool, tool_router, RoleServer};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::output::{gone, schema, Out, ToolResult};
use crate::progress::Progress;
use crate::types::CommandResult;
use crate::PyroServer;

/// Arguments of `vm_run`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct VmRunParams {
    /// The environment to boot, e.g. `debian:12` (see env_list).
    #[serde(default = "default_env")]
    pub env: String,
    /// A shell command line, run with `sh -c` (pipes, `&&` and redirects work).
    #[schemars(with = "Option<String>")]
    pub command: Option<LineOrArgv>,
    /// The command as an exact argv list instead of `command`, e.g. ["uname", "-a"].
    pub argv: Option<Vec<String>>,
    /// Stop the command after this many seconds (boot time not counted).
    pub timeout_seconds: Option<u64>,
    /// vCPUs for the VM (default 1).
    pub cpus: Option<u32>,
    /// VM memory in MiB (default 1024).
    pub memory_mib: Option<u32>,
    /// Extra environment variables for the command, NAME -> value.
    #[serde(default)]
    pub env_vars: std::collections::BTreeMap<String, String>,
    /// "off" (the default: no network device) or "egress" (outbound TCP and DNS through the
    /// host, e.g. to download packages).
    pub network: Option<String>,
    /// With egress, open only these destinations: "pypi.org", "*.pythonhosted.org:443", or
    /// an IPv4 address.
    #[serde(default)]
    pub allow: Vec<String>,
}

/// `vm_run`'s `command`: a shell line, or (as `command` was before `argv`
/// existed, so older clients keep working) an argv list. Listed as a string.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum LineOrArgv {
    Line(String),
    Argv(Vec<String>),
}

/// The argv of a `vm_run` call, whichever form `command` came in.
fn run_argv(
    command: Option<LineOrArgv>,
    argv: Option<Vec<String>>,
) -> Result<Vec<String>, params::InvalidRequest> {
    match command {
        Some(LineOrArgv::Argv(_)) if argv.is_some() => Err(params::InvalidRequest::TwoCommandForms),
        Some(LineOrArgv::Argv(listed)) => command_argv(None, Some(listed)),
        Some(LineOrArgv::Line(line)) => command_argv(Some(line), argv),
        None => command_argv(None, argv),
    }
}

pub(crate) fn default_env() -> String {
    params::DEFAULT_ENV.to_string()
}

/// `env_list` takes no arguments.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// The result of `vm_run`.
#[derive(Debug, Serialize, JsonSchema)]
pub struct VmRunResult {
    /// The environment that ran it.
    pub env: String,
    /// `kvm` or `tcg` (software emulation, slower).
    pub accel: String,
    /// Milliseconds until the VM answered.
    pub boot_ms: u64,
    /// How the command ended and what it printed.
    #[serde(flatten)]
    pub result: CommandResult,
}

/// One environment.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EnvInfo {
    /// The name to pass as `env`, e.g. `debian:12`.
    pub name: String,
    /// What it is for.
    pub description: String,
    /// True when it is pulled and can boot now; otherwise a human runs `pyro env pull NAME`.
    pub installed: bool,
    /// Notable packages it contains.
    pub packages: Vec<String>,
}

/// The environments.
#[derive(Debug, Serialize, JsonSchema)]
pub struct EnvList {
    /// Every curated environment.
    pub environments: Vec<EnvInfo>,
}

#[tool_router(router = run_router, vis = "pub(crate)")]
impl PyroServer {
    /// Run one command in a fresh, throw-away Linux VM (network off) and get its exit code and
    /// output. Use for a quick isolated check; nothing persists afterwards.
    #[tool(
        output_schema = schema::<VmRunResult>(),
        annotations(read_only_hint = false, destructive_hint = false, idempotent_hint = false, open_world_hint = false)
    )]
    async fn vm_run(
        &self,
        Parameters(params): Parameters<VmRunParams>,
        context: RequestContext<RoleServer>,
    ) -> ToolResult<VmRunResult> {
        let cancel = context.ct.clone();
        let progress = Progress::new(&context);
        let argv = run_argv(params.command, params.argv)?;
        let mut request = RunRequest::new(params.env, argv);
        request.timeout = params.timeout_seconds.map(Duration::from_secs);
        request.cpus = params.cpus.unwrap_or(params::DEFAULT_CPUS);
        request.memory_mib = params.memory_mib.unwrap_or(params::DEFAULT_MEMORY_MIB);
        request.env_vars = params.env_vars.into_iter().collect();
        request.network = pyro_core::NetworkRequest {
            mode: params.network,
            allow: params.allow,
            ..pyro_core::NetworkRequest::default()
        };
        let pyro = self.pyro.clone();
        // On the long-lived VM thread, never in spawn_blocking: the VM dies
        // with the thread that spawned it.
        let ran = crate::local::run_streaming(
            &self.local,
            progress,
            cancel,
            "booting VM and running",
            async move |sink, cancel: tokio_util::sync::CancellationToken| {
                pyro.run(&request, sink, cancel.cancelled_owned()).await
            },
        )
        .await;
        let (report, sink) = ran.ok_or_else(gone)?;
        let report = report?;
        let result = CommandResult::new(
            &report.end,
            report.exit_code(),
            report.total_ms.saturating_sub(report.boot_ms),
            sink.stdout.finish(),
            sink.stderr.finish(),
        )
        .with_network_note(crate::network::denial_note(
            &report.network_denied,
            "vm_run",
            &[],
        ));
        let value = VmRunResult {
            env: report.env,
            accel: format!("{:?}", report.accel).to_lowercase(),
            boot_ms: report.boot_ms,
            result,
        };
        Ok(Out::new(value.result.text(), value))
    }

    /// List the VM environments (e.g. debian:12) and whether each is pulled and ready to boot.
    #[tool(
        output_schema = schema::<EnvList>(),
        annotations(read_only_hint = true, destructive_hint = false, idempotent_hint = true, open_world_hint = false)
    )]
    async fn env_list(&self, _: Parameters<NoParams>) -> ToolResult<EnvList> {
        let envs = self.pyro.env_list()?;
        let environments: Vec<EnvInfo> = envs
            .into_iter()
            .map(|env| EnvInfo {
                name: env.name,
                description: env.description,
                installed: env.installed.is_some(),
                packages: env.packages,
            })
            .collect();
        let text = environments
            .iter()
            .map(|e| {
                let state = if e.installed { "ready" } else { "not pulled" };
                format!("{} ({state}): {}", e.name, e.description)
            })
            .collect::<Vec<_>>()
            .join("\n");
        Ok(Out::new(text, EnvList { environments }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(json: serde_json::Value) -> VmRunParams {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn command_takes_a_line_or_the_older_argv_list() {
        let line = parse(serde_json::json!({"command": "uname -a"}));
        assert_eq!(
            run_argv(line.command, line.argv).unwrap(),
            ["sh", "-c", "uname -a"]
        );
        let listed = parse(serde_json::json!({"command": ["uname", "-a"]}));
        assert_eq!(
            run_argv(listed.command, listed.argv).unwrap(),
            ["uname", "-a"]
        );
        let both = parse(serde_json::json!({"command": ["uname"], "argv": ["ls"]}));
        assert!(run_argv(both.command, both.argv).is_err());
        let schema = serde_json::to_value(schemars::schema_for!(VmRunParams)).unwrap();
        let command = &schema["properties"]["command"];
        assert!(command.to_string().contains("string"), "{command}");
        assert!(!command.to_string().contains("array"), "{command}");
    }
}
