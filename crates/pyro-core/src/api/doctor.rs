//! `pyro doctor`: what this host can do, and the fix for what it cannot.

use serde::Serialize;

use pyro_vmm::{QemuEngine, Seccomp};

use super::Pyro;
use crate::host::{accel, agent_image};
use pyro_util::human_bytes;

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Works.
    Ok,
    /// Works, with a caveat or slower than it could.
    Warn,
    /// Does not work; `pyro run` cannot either.
    Fail,
}

/// One line of the report.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    /// What was checked, e.g. `qemu`, `kvm`.
    pub name: &'static str,
    /// How it went.
    pub level: Level,
    /// What was found.
    pub detail: String,
    /// What to do about a warning or failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    fn ok(name: &'static str, detail: impl Into<String>) -> Self {
        Check {
            name,
            level: Level::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn problem(
        name: &'static str,
        level: Level,
        detail: impl Into<String>,
        fix: impl Into<String>,
    ) -> Self {
        Check {
            name,
            level,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct DoctorReport {
    /// Every check, in the order run.
    pub checks: Vec<Check>,
    /// True when `pyro run` can work here (no check failed).
    pub ready: bool,
}

/// Free bytes below which the cache dir gets a warning.
const LOW_SPACE: u64 = 4 << 30;

/// What confines QEMU here, and what does not yet.
fn confinement_checks(binary: &std::path::Path) -> Vec<Check> {
    let jail = pyro_vmm::Confinement::probe(binary);
    let seccomp = match jail.seccomp {
        Seccomp::On(denied) => Check::ok("seccomp", format!("QEMU's sandbox is on: {denied}")),
        Seccomp::Refused(said) => Check::problem(
            "seccomp",
            Level::Fail,
            format!("this QEMU refuses its sandbox ({said}); VMs do not start with it"),
            "install a QEMU built with seccomp (Debian's qemu-system-x86 is), or set PYRO_QEMU_SANDBOX=off to run without it",
        ),
        Seccomp::TurnedOff => Check::problem(
            "seccomp",
            Level::Warn,
            "QEMU's sandbox is off: PYRO_QEMU_SANDBOX=off",
            "unset PYRO_QEMU_SANDBOX to turn it back on",
        ),
        Seccomp::Unknown(why) => Check::problem(
            "seccomp",
            Level::Warn,
            format!("QEMU's sandbox could not be checked: {why}"),
            "check the qemu line above",
        ),
    };
    let mut checks = vec![
        seccomp,
        Check::ok("privileges", format!("QEMU {}", jail.privileges)),
    ];
    if let Some(jail) = &jail.jail {
        checks.push(Check::ok("jail", format!("QEMU runs in a jail: {jail}")));
    }
    for gap in jail.missing {
        checks.push(Check::problem(
            "not confined",
            Level::Warn,
            gap.what,
            gap.fix,
        ));
    }
    checks
}

impl Pyro {
    /// Inspects the host. Boots a probe guest once per host kernel when KVM
    /// might work and an environment is there to boot.
    pub fn doctor(&self) -> DoctorReport {
        let mut checks = vec![platform_check()];

        let engine = match QemuEngine::locate() {
            Ok(engine) => {
                let install = engine.install().clone().with_version();
                checks.push(Check::ok(
                    "qemu",
                    format!(
                        "{} (version {})",
                        install.binary.display(),
                        install.version.as_deref().unwrap_or("unknown")
                    ),
                ));
                checks.extend(confinement_checks(&install.binary));
                Some(engine)
            }
            Err(e) => {
                checks.push(Check::problem(
                    "qemu",
                    Level::Fail,
                    "qemu-system-x86_64 not found on PATH",
                    e.to_string()
                        .split("; ")
                        .last()
                        .unwrap_or("install qemu-system-x86")
                        .to_string(),
                ));
                None
            }
        };

        let store = self.env_store();
        let cache = self.cache_dir().display().to_string();
        match &store {
            Ok(_) => match pyro_util::fsutil::free_bytes(self.cache_dir()) {
                Some(free) if free < LOW_SPACE => checks.push(Check::problem(
                    "cache dir",
                    Level::Warn,
                    format!("{cache} ({} free)", human_bytes(free)),
                    "free some space or point PYRO_CACHE_DIR at a larger disk; an environment takes about 1 GiB",
                )),
                Some(free) => checks.push(Check::ok("cache dir", format!("{cache} ({} free)", human_bytes(free)))),
                None => checks.push(Check::ok("cache dir", cache.clone())),
            },
            Err(e) => checks.push(Check::problem(
                "cache dir",
                Level::Fail,
                e.to_string(),
                "make it writable or set PYRO_CACHE_DIR to a writable directory",
            )),
        }

        let mut probe_kernel = None;
        if let Ok(store) = &store {
            match store.list() {
                Ok(envs) => {
                    let installed: Vec<_> = envs.iter().filter(|e| e.installed.is_some()).collect();
                    if let Some(first) = installed.first() {
                        probe_kernel = store
                            .boot_artifacts(&first.name, agent_image::AGENT)
                            .ok()
                            .map(|a| a.kernel);
                        let names: Vec<_> = installed.iter().map(|e| e.name.as_str()).collect();
                        checks.push(Check::ok("environments", names.join(", ")));
                    } else {
                        checks.push(Check::problem(
                            "environments",
                            Level::Warn,
                            "none pulled yet",
                            "pyro env pull debian:12",
                        ));
                    }
                }
                Err(e) => checks.push(Check::problem(
                    "environments",
                    Level::Fail,
                    e.to_string(),
                    "pyro env prune, then pull again",
                )),
            }
        }

        if let Some(engine) = &engine {
            let report = match (&store, &probe_kernel) {
                (Ok(store), Some(kernel)) => {
                    accel::for_kernel(self.cache_dir(), engine, store, kernel)
                }
                _ => accel::choose(self.cache_dir(), engine, || None),
            };
            let detail = report.kvm.describe();
            checks.push(match report.kvm.fix() {
                Some(fix) if report.chosen == pyro_vmm::Accel::Tcg => {
                    Check::problem("kvm", Level::Warn, detail, fix)
                }
                _ => Check::ok("kvm", detail),
            });
            checks.push(Check::ok(
                "accelerator",
                match report.chosen {
                    pyro_vmm::Accel::Kvm => "kvm (hardware virtualisation)".to_string(),
                    pyro_vmm::Accel::Tcg => {
                        "tcg (software emulation fallback: works, several times slower)".to_string()
                    }
                },
            ));
        }

        checks.push(builder_check());
        let ready = checks.iter().all(|c| c.level != Level::Fail);
        DoctorReport { checks, ready }
    }
}

fn platform_check() -> Check {
    let os = std::env::consts::OS;
    let arch = std::env::consts::ARCH;
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let detail = format!("{os} {arch}, host kernel {}", kernel.trim());
    if os == "linux" && arch == "x86_64" {
        Check::ok("platform", detail)
    } else {
        Check::problem(
            "platform",
            Level::Fail,
            detail,
            "pyro runs on Linux x86_64 hosts",
        )
    }
}

/// Tools `pyro env pull` needs to build an environment.
fn builder_check() -> Check {
    let missing = pyro_env::missing_build_tools();
    if missing.is_empty() {
        Check::ok(
            "env builder",
            "mmdebstrap/debootstrap, mkfs.ext4, qemu-img, apt-get, dpkg-deb present",
        )
    } else {
        let tools: Vec<_> = missing.iter().map(|t| t.program).collect();
        let mut packages: Vec<_> = missing.iter().map(|t| t.package).collect();
        packages.dedup();
        Check::problem(
            "env builder",
            Level::Warn,
            format!(
                "missing {} (needed only to pull environments)",
                tools.join(", ")
            ),
            format!("sudo apt-get install {}", packages.join(" ")),
        )
    }
}
