//! How the supervisor brings its VM up: by restoring the saved VM the
//! record names (a warm template), and when that fails for any reason, by
//! booting the same disk cold. Either way the guest then learns who it is.

use std::path::Path;
use std::time::Instant;

use pyro_vmm::VmSpec;

use crate::host::boot::{boot, BootError, BootedVm};
use crate::host::machine::Machine;
use crate::host::template::Shape;
use crate::workspace::diff;
use crate::workspace::store::{BootReport, ResumePoint};

/// Brings the VM of `spec` up, restoring `resume` when given. `top` is
/// the workspace's top disk layer (the one `spec` writes to).
pub(super) async fn start_vm(
    machine: &Machine,
    (spec, shape): (VmSpec, Shape),
    resume: Option<ResumePoint>,
    top: &Path,
) -> Result<(BootedVm, BootReport), BootError> {
    let mut fallback = None;
    if let Some(ResumePoint::Template { key, build, below }) = resume {
        let short = key[..key.len().min(12)].to_string();
        match restore_template(machine, (&spec, shape), (&key, &build), top, &below).await {
            Ok(booted) => {
                let report = BootReport {
                    how: "restored".into(),
                    from: Some(format!("warm template {short}")),
                    ready_ms: booted.ready_after.as_millis() as u64,
                    fallback: None,
                };
                return Ok((booted, report));
            }
            Err(why) => {
                eprintln!("pyro: restoring warm template {short} failed ({why}); booting cold");
                fallback = Some(why);
            }
        }
    }
    let started = Instant::now();
    let booted = boot(&machine.engine, &spec).await?;
    let report = BootReport {
        how: "booted".into(),
        from: None,
        ready_ms: started.elapsed().as_millis() as u64,
        fallback,
    };
    Ok((booted, report))
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
            let renewed = std::fs::remove_file(top)
                .map_err(|e| e.to_string())
                .and_then(|()| {
                    pyro_vmm::disk::create_overlay(below, pyro_vmm::DiskFormat::Qcow2, top)
                        .map_err(|e| pyro_util::error_chain(&e))
                });
            match renewed {
                Ok(()) => Err(why),
                Err(disk) => Err(format!("{why}; and renewing the disk failed: {disk}")),
            }
        }
    }
}

/// The guest's hostname for workspace `id`.
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
