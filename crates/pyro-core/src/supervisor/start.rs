//! How the supervisor brings its VM up: by restoring the saved VM the
//! record names (a warm template, or a memory state of its own: a
//! snapshot's, a suspend's), and when that fails for any reason, by
//! booting the same disk cold. Either way the guest then learns who it is.

use std::path::{Path, PathBuf};
use std::time::Instant;

use pyro_vmm::VmSpec;

use super::checkpoint::{Manifest, MEMORY_TAG, STATE};
use crate::host::boot::{boot, boot_adopting, BootError, BootedVm};
use crate::host::machine::Machine;
use crate::host::template::Shape;
use crate::workspace::diff;
use crate::workspace::layers;
use crate::workspace::store::{BootReport, ResumePoint, WorkspaceRecord};

/// A VM that came up, how, and the memory state whose sessions it runs.
pub(super) struct Started {
    pub(super) booted: BootedVm,
    pub(super) report: BootReport,
    /// A restored memory state: its manifest, its directory, and whether
    /// it is to be removed once its sessions are taken back (a suspend's).
    pub(super) memory: Option<(Manifest, PathBuf, bool)>,
}

/// Brings the VM of `spec` up, restoring `resume` when given. `top` is
/// the workspace's top disk layer (the one `spec` writes to), `dir` the
/// workspace directory.
pub(super) async fn start_vm(
    machine: &Machine,
    (spec, shape): (VmSpec, Shape),
    resume: Option<ResumePoint>,
    (dir, top): (&Path, &Path),
) -> Result<Started, BootError> {
    let mut fallback = None;
    match resume {
        Some(ResumePoint::Template { key, build, below }) => {
            let short = key[..key.len().min(12)].to_string();
            match restore_template(machine, (&spec, shape), (&key, &build), top, &below).await {
                Ok(booted) => {
                    let report = restored_report(&booted, format!("warm template {short}"));
                    return Ok(Started {
                        booted,
                        report,
                        memory: None,
                    });
                }
                Err(why) => {
                    eprintln!("pyro: restoring warm template {short} failed ({why}); booting cold");
                    fallback = Some(why);
                }
            }
        }
        Some(ResumePoint::Memory {
            dir: state,
            below,
            once,
        }) => {
            let state = dir.join(state);
            match restore_memory(machine, (&spec, shape), &state).await {
                Ok((booted, manifest)) => {
                    let from = format!("its memory saved at {}", manifest.saved_at);
                    let report = restored_report(&booted, from);
                    return Ok(Started {
                        booted,
                        report,
                        memory: Some((manifest, state, once)),
                    });
                }
                Err(why) => {
                    eprintln!("pyro: restoring the saved memory failed ({why}); booting cold");
                    let why = match below.map(|below| renew_top(top, &below)) {
                        Some(Err(disk)) => format!("{why}; and renewing the disk failed: {disk}"),
                        _ => why,
                    };
                    if once {
                        let _ = std::fs::remove_dir_all(&state);
                    }
                    fallback = Some(why);
                }
            }
        }
        None => {}
    }
    let started = Instant::now();
    let booted = boot(&machine.engine, &spec).await?;
    let report = BootReport {
        how: "booted".into(),
        from: None,
        ready_ms: started.elapsed().as_millis() as u64,
        fallback,
        restored: None,
    };
    Ok(Started {
        booted,
        report,
        memory: None,
    })
}

fn restored_report(booted: &BootedVm, from: String) -> BootReport {
    BootReport {
        how: "restored".into(),
        from: Some(from),
        ready_ms: booted.ready_after.as_millis() as u64,
        fallback: None,
        restored: None,
    }
}

/// Restores the memory state in `dir` (see [`super::checkpoint`]).
async fn restore_memory(
    machine: &Machine,
    (spec, shape): (&VmSpec, Shape),
    dir: &Path,
) -> Result<(BootedVm, Manifest), String> {
    let manifest = Manifest::load(dir)?;
    if manifest.machine != machine.template_key(shape, MEMORY_TAG) {
        return Err(
            "pyro, the environment or the VM's size changed since the memory was saved".into(),
        );
    }
    let mut restore = spec.clone();
    restore.restore_from = Some(dir.join(STATE));
    let booted = boot_adopting(&machine.engine, &restore, &manifest.adoption())
        .await
        .map_err(|e| pyro_util::error_chain(&e))?;
    Ok((booted, manifest))
}

/// Makes the top layer `top` empty again over `below`.
fn renew_top(top: &Path, below: &Path) -> Result<(), String> {
    std::fs::remove_file(top)
        .or_else(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Ok(()),
            _ => Err(e),
        })
        .map_err(|e| e.to_string())
        .and_then(|()| {
            pyro_vmm::disk::create_layer(below, top, None).map_err(|e| pyro_util::error_chain(&e))
        })
}

/// Restores build `build` of the template `key`; on failure the workspace's top layer
/// `top` is made empty again over `below` (the guest may have written to
/// it before failing), so a cold boot starts from the disk as it was saved.
async fn restore_template(
    machine: &Machine,
    (spec, shape): (&VmSpec, Shape),
    (key, build): (&str, &str),
    top: &Path,
    below: &Path,
) -> Result<BootedVm, String> {
    if machine.template_key(shape, diff::RECORD_TAG) != key {
        return Err("this VM is no longer of the template's shape".into());
    }
    // Each build has a directory of its own: this one's RAM matches the
    // disk layer the workspace copied, or it is not there at all.
    let template = machine
        .store
        .template_build(key, build)
        .map_err(|unusable| format!("the template is unusable: {unusable}"))?;
    let restore = machine.restore_spec(spec.clone(), &template);
    match boot(&machine.engine, &restore).await {
        Ok(booted) => Ok(booted),
        Err(error) => {
            let why = pyro_util::error_chain(&error);
            // What failed would fail again: the next create makes a new
            // build (VMs still mapping this one's files keep them).
            let _ = machine.store.remove_template_build(key, build);
            match renew_top(top, below) {
                Ok(()) => Err(why),
                Err(disk) => Err(format!("{why}; and renewing the disk failed: {disk}")),
            }
        }
    }
}

/// The guest's hostname for workspace `id`.
/// What a workspace's VM may touch of the host: files under its ceiling
/// on host bytes, a backing chain only through the environment's and its
/// own disk files, and its layer directory for the layers snapshots make.
pub(super) fn bound_to_its_workspace(spec: &mut VmSpec, dir: &Path, record: &WorkspaceRecord) {
    spec.file_size_limit = Some(crate::workspace::ceiling::file_budget(dir, record));
    spec.disk_roots.extend(layers::disk_files(dir));
    let layer_dir = dir.join(layers::LAYERS);
    spec.layer_dir = std::fs::create_dir_all(&layer_dir).ok().map(|()| layer_dir);
}

pub(super) fn hostname(id: &str) -> String {
    format!("pyro-{id}")
}

/// The guest's machine-id for workspace `id`: its own, stable, 32 hex.
pub(super) fn machine_id(id: &str) -> String {
    pyro_env::hash_bytes(&[b"pyro machine-id ", id.as_bytes()])[..32].to_string()
}

/// The guest NIC's MAC for workspace `id`: locally administered, its own.
pub(super) fn mac(id: &str) -> String {
    let digest = pyro_env::hash_bytes(&[b"pyro mac ", id.as_bytes()]);
    let bytes = (0..4)
        .map(|i| &digest[i * 2..i * 2 + 2])
        .collect::<Vec<_>>()
        .join(":");
    format!("02:50:{bytes}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn identities_differ_per_workspace_and_have_the_right_shape() {
        let (a, b) = (
            super::machine_id("0123456789ab"),
            super::machine_id("0123456789ac"),
        );
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
        assert_eq!(super::hostname("0123456789ab"), "pyro-0123456789ab");
        let mac = super::mac("0123456789ab");
        assert_eq!(mac.len(), 17);
        assert!(mac.starts_with("02:50:"));
        assert_ne!(mac, super::mac("0123456789ac"));
    }
}
