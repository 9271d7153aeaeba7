//! Booting a VM for an environment and waiting until its agent answers.

use std::time::{Duration, Instant};

use pyro_vmm::{Accel, Engine, Vm, VmExit, VmSpec};

use super::guest::{Adoption, Guest, GuestError, Handshake};

/// Why a VM did not come up.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    #[error(transparent)]
    Engine(#[from] pyro_vmm::EngineError),
    #[error("the VM stopped during boot ({exit}){}{}", hint(.diagnosis), console_lines(.console_tail))]
    Died {
        exit: String,
        diagnosis: Option<String>,
        console_tail: Vec<String>,
    },
    #[error("the guest did not answer within {}s of starting{}{}", .waited.as_secs(), hint(.diagnosis), console_lines(.console_tail))]
    Timeout {
        waited: Duration,
        diagnosis: Option<String>,
        console_tail: Vec<String>,
    },
    #[error("could not talk to the guest agent")]
    Guest(#[source] GuestError),
}

/// `: <diagnosis>` when there is one.
pub(crate) fn hint(diagnosis: &Option<String>) -> String {
    diagnosis
        .as_ref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

/// QEMU refusing its sandbox (a host fact), else the console's diagnosis,
/// else a memory hint for small VMs, which fail to boot in ways the
/// console does not always name.
fn diagnose(
    vm: &dyn pyro_vmm::Vm,
    console: &pyro_vmm::ConsoleLog,
    memory_mib: u32,
) -> Option<String> {
    if vm.engine_said().contains("-sandbox") {
        return Some(
            "QEMU refused its seccomp sandbox (a build without seccomp?): install one with it, \
             or set PYRO_QEMU_SANDBOX=off to run without it (pyro doctor says more)"
                .into(),
        );
    }
    console.diagnose().or_else(|| {
        (memory_mib < 256).then(|| {
            format!(
                "{memory_mib} MiB of memory may be too little for this guest; try 512 MiB or more"
            )
        })
    })
}

/// The console's last lines, indented under a heading, for error messages.
pub(crate) fn console_lines(tail: &[String]) -> String {
    if tail.is_empty() {
        return String::new();
    }
    let mut text = String::from("\nthe guest's console says (last lines):");
    for line in tail {
        text.push_str("\n  ");
        text.push_str(&pyro_util::text::visible(line));
    }
    text
}

/// How long a restored guest may take to answer.
const RESTORE_DEADLINE: Duration = Duration::from_secs(20);

/// A VM whose agent has said hello.
pub struct BootedVm {
    pub vm: Box<dyn Vm>,
    pub guest: Guest,
    /// From asking the engine to start until the agent's hello.
    pub ready_after: Duration,
}

/// How long a guest may take to answer: generous under TCG, where four
/// parallel boots on two cores take several seconds each.
pub fn boot_deadline(accel: Accel) -> Duration {
    if let Some(secs) = std::env::var("PYRO_BOOT_TIMEOUT")
        .ok()
        .and_then(|v| v.parse::<u64>().ok())
    {
        return Duration::from_secs(secs);
    }
    match accel {
        Accel::Kvm => Duration::from_secs(30),
        Accel::Tcg => Duration::from_secs(120),
    }
}

/// Starts the VM and waits for its agent. Any failure kills the VM.
pub async fn boot(engine: &dyn Engine, spec: &VmSpec) -> Result<BootedVm, BootError> {
    boot_adopting(engine, spec, &Adoption::default()).await
}

/// [`boot`], for a VM restored from a state whose guest runs the requests
/// `adopt` names.
pub async fn boot_adopting(
    engine: &dyn Engine,
    spec: &VmSpec,
    adopt: &Adoption,
) -> Result<BootedVm, BootError> {
    let started = Instant::now();
    let mut vm = engine.start(spec)?;
    let stream = vm
        .take_agent_stream()
        .expect("a fresh VM has its agent stream");
    // A restored agent is already up: it answers at once, or never.
    let deadline = match spec.restore_from {
        Some(_) => boot_deadline(spec.accel).min(RESTORE_DEADLINE),
        None => boot_deadline(spec.accel),
    };
    let handshake = match spec.restore_from {
        Some(_) => Handshake::Restored,
        None => Handshake::FreshBoot,
    };
    match tokio::time::timeout(deadline, Guest::connect(stream, handshake, adopt)).await {
        Ok(Ok(guest)) => Ok(BootedVm {
            vm,
            guest,
            ready_after: started.elapsed(),
        }),
        Ok(Err(GuestError::Disconnected)) => {
            // The channel closed: the VM is exiting; give it a moment so the
            // console holds its last words.
            let exit = vm.wait_timeout(Duration::from_secs(2)).unwrap_or_else(|| {
                vm.kill();
                VmExit {
                    code: None,
                    signal: Some(libc::SIGKILL),
                }
            });
            let console = vm.console();
            Err(BootError::Died {
                exit: describe_exit(&exit),
                diagnosis: diagnose(vm.as_ref(), &console, spec.memory_mib),
                console_tail: console.tail(12),
            })
        }
        Ok(Err(other)) => {
            vm.kill();
            Err(BootError::Guest(other))
        }
        Err(_elapsed) => {
            vm.kill();
            let console = vm.console();
            Err(BootError::Timeout {
                waited: deadline,
                diagnosis: diagnose(vm.as_ref(), &console, spec.memory_mib),
                console_tail: console.tail(12),
            })
        }
    }
}

/// How a VM's end reads to a user.
pub(crate) fn describe_exit(exit: &VmExit) -> String {
    match exit.code {
        // QEMU exits 0 when the guest reboots under -no-reboot, which is how
        // a guest kernel panic ends.
        Some(0) => "the guest kernel rebooted or panicked".into(),
        _ => format!("QEMU ended with {exit}"),
    }
}
