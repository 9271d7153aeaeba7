//! Memory states against real guests: `stop` suspends (the VM's memory to
//! disk, no process left on the host) and `start`, or any call, resumes
//! with every process, shell and service alive; a snapshot keeps the
//! memory, and a reset to it has its service answering again; a corrupt
//! state boots cold; a save that fails leaves the VM running.
//!
//! Run with: `cargo test -p pyro-cli --test it memory::`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::support::*;

/// Answers 200 once the guest's server on port 8000 does.
pub(crate) const GET: &str = "python3 -c \"import urllib.request as u; \
    print(u.urlopen('http://127.0.0.1:8000/', timeout=20).status)\"";

pub(crate) fn start_web(home: &TestHome, ws: &str) {
    ok(
        home.run(&[
            "workspace",
            "service",
            "start",
            ws,
            "web",
            "--ready-http",
            "http://127.0.0.1:8000/",
            "--",
            "python3",
            "-m",
            "http.server",
            "8000",
        ]),
        "service start",
    );
}

pub(crate) fn status(home: &TestHome, ws: &str) -> serde_json::Value {
    json(&ok(
        home.run(&["workspace", "status", ws, "--json"]),
        "status",
    ))
}

pub(crate) fn open_shell(home: &TestHome, ws: &str) -> String {
    let output = ok(
        home.run(&["workspace", "shell", "open", ws, "--id-only"]),
        "shell open",
    );
    stdout(&output).trim().to_string()
}

/// Writes `line` to a shell and reads until `needle` shows.
pub(crate) fn shell_says(home: &TestHome, ws: &str, shell: &str, line: &str, needle: &str) {
    ok(
        home.run(&["workspace", "shell", "write", ws, shell, "--line", line]),
        "shell write",
    );
    let mut seen = String::new();
    let found = wait_for(std::time::Duration::from_secs(60), || {
        let read = json(&ok(
            home.run(&["workspace", "shell", "read", ws, shell, "--json"]),
            "shell read",
        ));
        seen.push_str(read["text"].as_str().unwrap_or_default());
        seen.contains(needle).then_some(())
    });
    assert!(found.is_some(), "never saw {needle:?}; saw:\n{seen}");
}

pub(crate) fn workspace_dir(home: &TestHome, id: &str) -> PathBuf {
    home.path().join("workspaces").join(id)
}

fn suspend_state(home: &TestHome, id: &str) -> PathBuf {
    workspace_dir(home, id).join("memory/suspend/state")
}

#[test]
fn a_suspended_workspace_resumes_with_its_processes_shells_and_services() {
    let home = TestHome::new();
    let id = home.create(&[]);
    ok(
        home.sh(
            &id,
            "nohup sleep 1000 >/dev/null 2>&1 & echo $! > /root/pid",
        ),
        "background process",
    );
    start_web(&home, &id);
    let shell = open_shell(&home, &id);
    shell_says(&home, &id, &shell, "export KEPT=in-memory; echo set", "set");
    let vm = home.vm_pids(&id);
    let supervisor = home.supervisor_pid(&id).unwrap();

    let stopped = ok(home.run(&["workspace", "stop", &id]), "suspend");
    assert!(
        stdout(&stopped).contains("suspended since"),
        "{}",
        stdout(&stopped)
    );
    assert_gone(vm[0], "QEMU after suspend");
    assert_gone(supervisor, "the supervisor after suspend");
    let record = status(&home, &id);
    assert_eq!(record["state"], "suspended", "{record}");
    assert!(record["since"].as_str().is_some(), "{record}");
    let list = stdout(&ok(home.run(&["workspace", "list"]), "list"));
    assert!(list.contains("suspended"), "{list}");
    let state = suspend_state(&home, &id);
    let mode = std::fs::metadata(&state).unwrap().permissions().mode();
    assert_eq!(mode & 0o077, 0, "the saved memory is the owner's only");

    ok(home.run(&["workspace", "start", &id]), "resume");
    let boot = &status(&home, &id)["last_boot"];
    assert_eq!(boot["how"], "restored", "{boot}");
    assert!(!state.exists(), "a resumed state is not kept");
    let alive = ok(
        home.sh(&id, "kill -0 $(cat /root/pid) && echo alive"),
        "pid",
    );
    assert_eq!(stdout(&alive), "alive\n");
    assert_eq!(stdout(&ok(home.sh(&id, GET), "web after resume")), "200\n");
    let services = stdout(&ok(
        home.run(&["workspace", "service", "list", &id]),
        "list",
    ));
    assert!(services.contains("running"), "{services}");
    shell_says(
        &home,
        &id,
        &shell,
        "echo \"value=$KEPT\"",
        "value=in-memory",
    );

    // Any call resumes a suspended workspace by itself.
    ok(home.run(&["workspace", "stop", &id]), "suspend again");
    let alive = ok(
        home.sh(&id, "kill -0 $(cat /root/pid) && echo alive"),
        "pid",
    );
    assert_eq!(stdout(&alive), "alive\n");
    assert_eq!(status(&home, &id)["state"], "running");

    // Powered off, a suspended workspace forgets its memory and boots.
    ok(
        home.run(&["workspace", "stop", &id]),
        "suspend a third time",
    );
    ok(
        home.run(&["workspace", "stop", &id, "--power-off"]),
        "power off",
    );
    assert_eq!(status(&home, &id)["state"], "stopped");
    assert!(!workspace_dir(&home, &id).join("memory/suspend").exists());
    ok(home.run(&["workspace", "start", &id]), "boot");
    assert_eq!(status(&home, &id)["last_boot"]["how"], "booted");
    let gone = home.sh(&id, "kill -0 $(cat /root/pid) 2>/dev/null || echo gone");
    assert_eq!(stdout(&gone), "gone\n");
}

#[test]
fn a_reset_to_a_memory_snapshot_has_its_service_answering_again() {
    let home = TestHome::new();
    let id = home.create(&[]);
    start_web(&home, &id);
    ok(home.sh(&id, "echo before > /workspace/note"), "write");
    let created = stdout(&ok(
        home.run(&["workspace", "snapshot", "create", &id, "serving"]),
        "snapshot",
    ));
    assert!(created.contains("disk and memory"), "{created}");
    ok(
        home.run(&[
            "workspace",
            "snapshot",
            "create",
            &id,
            "plain",
            "--disk-only",
        ]),
        "disk-only snapshot",
    );
    ok(
        home.run(&["workspace", "service", "stop", &id, "web"]),
        "stop web",
    );
    ok(home.sh(&id, "echo after > /workspace/note"), "write");
    let late = open_shell(&home, &id);

    let reset = ok(
        home.run(&["workspace", "reset", &id, "--snapshot", "serving"]),
        "reset",
    );
    let said = stdout(&reset);
    assert!(said.contains(&format!("shells ended: {late}")), "{said}");
    assert!(said.contains("services running again: web"), "{said}");
    assert_eq!(stdout(&ok(home.sh(&id, GET), "web after reset")), "200\n");
    assert_eq!(stdout(&home.sh(&id, "cat /workspace/note")), "before\n");
    let diff = json(&ok(home.run(&["workspace", "diff", &id, "--json"]), "diff"));
    assert_eq!(diff["files"].as_array().map(Vec::len), Some(0), "{diff}");
    // Reset again to the same state: it is kept for the next time.
    ok(home.sh(&id, "echo again > /workspace/note"), "write");
    ok(
        home.run(&["workspace", "reset", &id, "--snapshot", "serving"]),
        "reset again",
    );
    assert_eq!(stdout(&home.sh(&id, "cat /workspace/note")), "before\n");
    assert_eq!(stdout(&ok(home.sh(&id, GET), "web again")), "200\n");

    // A disk-only snapshot boots: its service does not come back.
    let reset = ok(
        home.run(&["workspace", "reset", &id, "--snapshot", "plain", "--json"]),
        "reset to the disk-only snapshot",
    );
    let report = json(&reset);
    assert_eq!(report["ended"]["services"][0], "web", "{report}");
    assert_eq!(report["last_boot"]["how"], "booted", "{report}");

    let memory = workspace_dir(&home, &id).join("memory/snapshot-serving");
    assert!(memory.join("state").exists());
    ok(
        home.run(&["workspace", "snapshot", "delete", &id, "serving"]),
        "delete",
    );
    assert!(!memory.exists(), "a deleted snapshot's memory stays");
}

#[test]
fn a_corrupt_saved_memory_boots_cold_and_a_failed_save_keeps_the_vm_running() {
    let home = TestHome::new();
    let id = home.create(&[]);
    ok(home.sh(&id, "echo kept > /workspace/file"), "write");
    ok(home.run(&["workspace", "stop", &id]), "suspend");
    let state = suspend_state(&home, &id);
    let len = std::fs::metadata(&state).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&state)
        .unwrap();
    file.set_len(len / 2).unwrap();
    drop(file);
    ok(home.run(&["workspace", "start", &id]), "start");
    let boot = &status(&home, &id)["last_boot"];
    assert_eq!(boot["how"], "booted", "{boot}");
    assert!(boot["fallback"].as_str().is_some(), "{boot}");
    assert_eq!(stdout(&home.sh(&id, "cat /workspace/file")), "kept\n");

    // A host disk too full for the memory: the suspend fails, the VM runs.
    let memory = workspace_dir(&home, &id).join("memory");
    std::fs::create_dir_all(&memory).unwrap();
    if !mount_tiny_tmpfs(&memory) {
        eprintln!("skipping the full-disk part: cannot mount a tmpfs here");
        return;
    }
    let refused = home.run(&["workspace", "stop", &id]);
    let _ = std::process::Command::new("umount").arg(&memory).status();
    let said = refused_text(refused);
    assert!(said.contains("could not be suspended"), "{said}");
    assert!(said.contains("stop --power-off"), "{said}");
    assert_eq!(status(&home, &id)["state"], "running");
    assert_eq!(stdout(&home.sh(&id, "cat /workspace/file")), "kept\n");
    ok(home.run(&["workspace", "stop", &id]), "suspend with room");
    ok(home.run(&["workspace", "start", &id]), "resume");
    assert_eq!(status(&home, &id)["last_boot"]["how"], "restored");
}

fn refused_text(output: std::process::Output) -> String {
    assert!(!output.status.success(), "{}", stdout(&output));
    stderr(&output)
}

/// Mounts a 1 MiB tmpfs on `dir` (root only).
fn mount_tiny_tmpfs(dir: &Path) -> bool {
    std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success())
}

/// The state of workspace `id` once its killed supervisor is wholly gone:
/// its lock goes with its last thread, which may outlive QEMU and the
/// thread `/proc` shows as a zombie, so a moment after the kill it may
/// still read as running.
pub(crate) fn settled_state(home: &TestHome, id: &str) -> serde_json::Value {
    let mut state = status(home, id)["state"].clone();
    for _ in 0..200 {
        if state != "running" && state != "starting" {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
        state = status(home, id)["state"].clone();
    }
    state
}

/// The supervisor of workspace `id` (by its command line), once running.
fn supervisor_of(id: &str) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline);
            (cmdline.contains("__supervise") && cmdline.contains(id)).then_some(pid)
        })
}

/// `kill -9` of the supervisor while it saves a suspend, and while it
/// restores one: no QEMU is left, no state that looks whole, and the
/// workspace reads as crashed, never as broken; a start boots its disk.
#[test]
fn a_supervisor_killed_while_it_suspends_or_resumes_leaves_a_crashed_workspace() {
    let home = TestHome::new();
    let id = home.create(&[]);
    ok(home.sh(&id, "echo kept > /workspace/file"), "write");
    let memory = workspace_dir(&home, &id).join("memory/suspend");

    // While it saves: killed once the save has begun.
    let vm = home.vm_pids(&id);
    let supervisor = home.supervisor_pid(&id).unwrap();
    let stop = home
        .pyro()
        .args(["workspace", "stop", &id])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let saving = wait_for(std::time::Duration::from_secs(60), || {
        memory.join("sessions.json").exists().then_some(())
    });
    assert!(saving.is_some(), "the suspend never began");
    // SAFETY: kill(2) on the supervisor this test started.
    unsafe { libc::kill(supervisor as i32, libc::SIGKILL) };
    let stopped = stop.wait_with_output().unwrap();
    assert_gone(vm[0], "QEMU after its supervisor was killed mid-save");
    let state = settled_state(&home, &id);
    if stopped.status.success() {
        // The save was done before the kill: it is suspended, whole.
        assert_eq!(state, "suspended");
        ok(home.run(&["workspace", "start", &id]), "resume");
    } else {
        assert_eq!(state, "crashed", "{}", stderr(&stopped));
        assert!(
            !memory.join("state").exists(),
            "a cut-short save looks whole"
        );
        ok(
            home.run(&["workspace", "start", &id]),
            "start after the crash",
        );
        assert!(!memory.exists(), "the cut-short save was left");
    }
    assert_eq!(stdout(&home.sh(&id, "cat /workspace/file")), "kept\n");

    // While it restores: killed as soon as the new supervisor runs.
    ok(home.run(&["workspace", "stop", &id]), "suspend");
    let start = home
        .pyro()
        .args(["workspace", "start", &id])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let restoring = wait_for(std::time::Duration::from_secs(60), || supervisor_of(&id));
    let restoring = restoring.expect("no supervisor started");
    let qemu = wait_for(std::time::Duration::from_secs(60), || {
        children_of(restoring)
            .into_iter()
            .find(|&pid| process_name(pid).starts_with("qemu-system"))
    });
    // SAFETY: kill(2) on the supervisor this test started.
    unsafe { libc::kill(restoring as i32, libc::SIGKILL) };
    let started = start.wait_with_output().unwrap();
    if let Some(qemu) = qemu {
        assert_gone(qemu, "QEMU after its supervisor was killed mid-restore");
    }
    let state = settled_state(&home, &id);
    assert!(
        state == "crashed" || (started.status.success() && state == "running"),
        "{state}: {}",
        stderr(&started)
    );
    if state == "crashed" {
        ok(
            home.run(&["workspace", "start", &id]),
            "start after the crash",
        );
    }
    assert_eq!(stdout(&home.sh(&id, "cat /workspace/file")), "kept\n");
}
