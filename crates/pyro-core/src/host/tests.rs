//! (A unit test because it drives the crate's own boot and guest channel.)
//!
//! The engine's save/restore of a running VM, against a real guest booted
//! from the real `debian:12` environment (pulled by `scripts/test`).
//!
//! Proves the restored VM is the same machine, not a reboot: a process
//! started before the save still runs after the restore, and files written
//! before it are there.

use std::time::Instant;

use pyro_protocol::ExecRequest;

use super::boot::boot;
use super::guest::{ExecEvent, Guest};
use super::machine::Machine;
use pyro_vmm::disk::create_overlay;
use pyro_vmm::{Accel, DiskFormat, RootDisk, VmSpec};

/// Runs `script` with `sh -c` and returns (exit code, stdout).
async fn sh(guest: &Guest, script: &str) -> (i32, String) {
    let mut stream = guest
        .exec(ExecRequest {
            argv: vec!["sh".into(), "-c".into(), script.into()],
            ..ExecRequest::default()
        })
        .await
        .expect("exec");
    let mut stdout = Vec::new();
    loop {
        match stream.next().await.expect("exec event") {
            ExecEvent::Stdout(bytes) => stdout.extend(bytes),
            ExecEvent::Exited(status) => {
                return (status.shell_code(), String::from_utf8(stdout).unwrap())
            }
            ExecEvent::Failed { message, .. } => panic!("exec failed: {message}"),
            _ => {}
        }
    }
}

#[tokio::test]
async fn a_saved_vm_resumes_with_its_processes_and_files() {
    let machine = Machine::for_env(&super::paths::default_cache_dir(), "debian:12")
        .expect("debian:12 must be pulled first: pyro env pull debian:12");
    let artifacts = &machine.artifacts;
    let engine = &machine.engine;
    let accel = machine.accel.chosen;
    let dir = tempfile::tempdir().unwrap();
    let overlay = dir.path().join("disk.qcow2");
    create_overlay(&artifacts.rootfs, DiskFormat::Qcow2, &overlay).unwrap();
    let mut spec = VmSpec {
        kernel: artifacts.kernel.clone(),
        initramfs: artifacts.initramfs.clone(),
        root_disk: Some(RootDisk::Persistent {
            path: overlay.clone(),
            format: DiskFormat::Qcow2,
        }),
        cpus: 1,
        memory_mib: 512,
        ram: pyro_vmm::GuestRam::Anonymous,
        extra_cmdline: Vec::new(),
        accel,
        restore_from: None,
        console_log: None,
        network: false,
        seed_disk: None,
        transfer_slot: None,
        file_size_limit: None,
        disk_roots: vec![machine.store.root().to_path_buf()],
        layer_dir: None,
    };

    let mut booted = boot(engine, &spec).await.expect("boot");
    let (code, pid) = sh(
        &booted.guest,
        "echo kept > /root/marker && sync && sleep 1000 >/dev/null 2>&1 & echo $!",
    )
    .await;
    assert_eq!(code, 0);
    let pid = pid.trim().to_string();

    let state = dir.path().join("vm.state");
    let saved = Instant::now();
    booted.vm.save(&state).expect("save");
    let save_time = saved.elapsed();
    booted.vm.kill();
    drop(booted);

    spec.restore_from = Some(state);
    let restoring = Instant::now();
    let restored = boot(engine, &spec).await.expect("restore");
    let restore_time = restoring.elapsed();
    let (code, out) = sh(
        &restored.guest,
        &format!("cat /root/marker; kill -0 {pid} && echo alive"),
    )
    .await;
    assert_eq!(code, 0, "{out}");
    assert_eq!(out, "kept\nalive\n");
    eprintln!(
        "save {save_time:?}, restore to responsive {restore_time:?} ({})",
        if accel == Accel::Kvm { "kvm" } else { "tcg" }
    );
}
