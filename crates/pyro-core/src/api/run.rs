//! `pyro run`: one command in a throw-away VM.
//!
//! Boot, exec, stream, tear down. The VM is killed on every path: the
//! command's exit, a timeout, cancellation (Ctrl-C), an error, and, through
//! the engine's parent-death signal, the death of this process. Its root
//! disk is an ephemeral layer that vanishes with it.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use pyro_net::NetEvent;

use pyro_protocol::ExecRequest;
use pyro_vmm::{Accel, DiskFormat, RootDisk};
use serde::Serialize;

use super::error::Error;
use super::network::NetworkRequest;
use super::params::{self, InvalidRequest};
use super::Pyro;
use crate::host::boot::{boot, describe_exit};
use crate::host::exec::{drive_exec, OutputSink, RunEnd, TIMEOUT_GRACE};
use crate::host::guest::GuestError;
use crate::host::input::Input;
use crate::host::machine::Machine;
use crate::host::network::{attach, NetworkConfig, NetworkMode};
use crate::workspace::netlog::Collected;

/// What to run and in what VM.
#[derive(Debug, Clone)]
pub struct RunRequest {
    /// The environment to boot.
    pub env: String,
    /// The command and its arguments.
    pub argv: Vec<String>,
    /// Stop the command after this long (boot time is not counted).
    pub timeout: Option<Duration>,
    /// vCPUs of the VM.
    pub cpus: u32,
    /// Memory of the VM, MiB.
    pub memory_mib: u32,
    /// Extra environment variables.
    pub env_vars: Vec<(String, String)>,
    /// The command's standard input (none: `/dev/null`).
    pub stdin: Input,
    /// The VM's network (default: none).
    pub network: NetworkRequest,
}

impl RunRequest {
    /// `argv` in a VM of `env` of the default size, with no timeout,
    /// extra environment or input.
    pub fn new(env: impl Into<String>, argv: Vec<String>) -> Self {
        RunRequest {
            env: env.into(),
            argv,
            timeout: None,
            cpus: params::DEFAULT_CPUS,
            memory_mib: params::DEFAULT_MEMORY_MIB,
            env_vars: Vec::new(),
            stdin: Input::default(),
            network: NetworkRequest::default(),
        }
    }

    fn validate(&self) -> Result<NetworkConfig, InvalidRequest> {
        if self.argv.is_empty() {
            return Err(InvalidRequest::NoCommand);
        }
        params::validate_size(self.cpus, self.memory_mib)?;
        if self.timeout == Some(Duration::ZERO) {
            return Err(InvalidRequest::ZeroTimeout);
        }
        self.network.check_for_run()
    }
}

/// The result of a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunReport {
    /// How the command ended.
    #[serde(flatten)]
    pub end: RunEnd,
    /// The environment it ran in.
    pub env: String,
    /// KVM or TCG.
    pub accel: Accel,
    /// VM start until the agent answered.
    pub boot_ms: u64,
    /// From boot to the end of the command.
    pub total_ms: u64,
    /// The VM's network mode.
    pub network: NetworkMode,
    /// Lookups and connections the network refused while it ran.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub network_denied: Vec<NetEvent>,
}

impl RunReport {
    /// The process exit code a front end should use: the command's own, else
    /// 124 on timeout, 126 not executable, 127 not found, 130 cancelled.
    pub fn exit_code(&self) -> i32 {
        self.end.exit_code()
    }
}

impl Pyro {
    /// Runs one command in a fresh VM of `request.env`, streaming its output
    /// to `sink`. `cancel` resolving stops the run at once.
    pub async fn run(
        &self,
        request: &RunRequest,
        sink: &mut dyn OutputSink,
        cancel: impl Future<Output = ()>,
    ) -> Result<RunReport, Error> {
        let network = request.validate()?;
        let started = Instant::now();
        let machine = Machine::for_env(&self.cache_dir, &request.env)?;
        let accel = &machine.accel;
        let mut spec = machine.spec(
            Some(RootDisk::Ephemeral {
                base: machine.artifacts.rootfs.clone(),
                format: DiskFormat::Qcow2,
            }),
            request.cpus,
            request.memory_mib,
            None,
        );
        network.apply(&mut spec);
        let engine = &machine.engine;
        // The report of a run cancelled before its command started.
        let cancelled = |boot_ms: u64| RunReport {
            end: RunEnd::Cancelled,
            env: request.env.clone(),
            accel: accel.chosen,
            boot_ms,
            total_ms: started.elapsed().as_millis() as u64,
            network: network.mode,
            network_denied: Vec::new(),
        };

        tokio::pin!(cancel);
        let booted = tokio::select! {
            booted = boot(engine, &spec) => booted?,
            _ = &mut cancel => return Ok(cancelled(0)),
        };
        let mut vm = booted.vm;
        let observed = Arc::new(Collected::default());
        let attached = tokio::select! {
            attached = attach(vm.as_mut(), &booted.guest, &network, pyro_protocol::net::GUEST_MAC, observed.clone()) => attached,
            _ = &mut cancel => {
                vm.kill();
                return Ok(cancelled(booted.ready_after.as_millis() as u64));
            }
        };
        let _stack = match attached {
            Ok(stack) => stack,
            Err(error) => {
                vm.kill();
                return Err(error.into());
            }
        };
        let boot_ms = booted.ready_after.as_millis() as u64;
        let exec = ExecRequest {
            argv: request.argv.clone(),
            cwd: None,
            env: request.env_vars.clone(),
            timeout_ms: request.timeout.map(|t| t.as_millis() as u64),
            stdin: false,
            pty: None,
        };
        let host_deadline = request.timeout.map(|t| t + TIMEOUT_GRACE);
        let end = {
            let result = tokio::select! {
                end = drive_exec(&booted.guest, exec, &request.stdin, sink, host_deadline) => end,
                _ = &mut cancel => Ok(RunEnd::Cancelled),
            };
            match result {
                Ok(end) => end,
                Err(GuestError::Disconnected) => {
                    let exit = vm.wait_timeout(Duration::from_secs(1));
                    vm.kill();
                    let console = vm.console();
                    return Err(Error::VmCrashed {
                        exit: exit
                            .as_ref()
                            .map(describe_exit)
                            .unwrap_or_else(|| "it stopped answering and was killed".into()),
                        diagnosis: console.diagnose(),
                        console_tail: console.tail(12),
                    });
                }
                Err(other) => {
                    vm.kill();
                    return Err(Error::Guest(other));
                }
            }
        };
        // The disk is throw-away: no need for an orderly power-off.
        vm.kill();
        Ok(RunReport {
            end,
            env: request.env.clone(),
            accel: accel.chosen,
            boot_ms,
            total_ms: started.elapsed().as_millis() as u64,
            network: network.mode,
            network_denied: observed.denied(),
        })
    }
}
