//! Faults at bad moments: a process killed in the middle of an operation
//! leaves the workspace in a defined state, says so, and loses nothing an
//! operation had already promised.

use std::time::Duration;

use crate::support::*;

#[test]
fn a_supervisor_killed_mid_snapshot_leaves_the_state_before_it() {
    let mut caught = false;
    // The kill lands inside the snapshot: once the supervisor has begun its
    // memory state (a few tries, should one finish first).
    for _ in 0..5 {
        let home = TestHome::new();
        let id = home.create(&["--name", "snap"]);
        // Durable before the snapshot begins (a snapshot that never
        // finished promises nothing about later writes).
        ok(
            home.sh("snap", "echo kept > /workspace/kept.txt && sync"),
            "a file",
        );
        let supervisor = home.supervisor_pid(&id).unwrap();
        let snapshot = home
            .pyro()
            .args(["workspace", "snapshot", "create", "snap", "s1"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let state = home
            .path()
            .join("workspaces")
            .join(&id)
            .join("memory/snapshot-s1");
        wait_for(Duration::from_secs(20), || state.exists().then_some(()));
        // SAFETY: kill(2) on the supervisor this test started.
        unsafe { libc::kill(supervisor as i32, libc::SIGKILL) };
        let output = snapshot.wait_with_output().unwrap();
        if output.status.success() {
            continue;
        }
        caught = true;
        let said = stderr(&output);
        assert!(
            said.contains("died during snapshot 's1'")
                && said.contains("start it again with: pyro workspace start snap"),
            "{said}"
        );
        let status = json(&home.run(&["workspace", "status", "snap", "--json"]));
        assert_eq!(status["state"], "crashed", "{status}");
        assert!(
            status["snapshots"].as_array().is_none_or(|s| s.is_empty()),
            "{status}"
        );
        let dir = home.path().join("workspaces").join(&id);
        assert!(
            !dir.join("memory/snapshot-s1").exists(),
            "half a memory state"
        );
        ok(home.run(&["workspace", "start", "snap"]), "start");
        let kept = home.sh("snap", "cat /workspace/kept.txt");
        assert_eq!(stdout(&kept), "kept\n");
        ok(
            home.run(&["workspace", "snapshot", "create", "snap", "s1"]),
            "again",
        );
        ok(home.run(&["workspace", "delete", "snap"]), "delete");
        break;
    }
    assert!(caught, "no kill landed inside a snapshot");
}

#[test]
fn what_an_exec_wrote_survives_a_stop() {
    let home = TestHome::new();
    home.create(&["--name", "durable"]);
    // Written, returned, and stopped at once: the stop flushes it.
    ok(
        home.sh(
            "durable",
            "head -c 50000000 /dev/urandom > /workspace/big && echo done > /workspace/small",
        ),
        "write",
    );
    ok(home.run(&["workspace", "stop", "durable"]), "stop");
    ok(home.run(&["workspace", "start", "durable"]), "start");
    let read = home.sh("durable", "cat /workspace/small; stat -c %s /workspace/big");
    assert_eq!(stdout(&read), "done\n50000000\n");
    ok(home.run(&["workspace", "delete", "durable"]), "delete");
}

/// Operations the fault loop cuts short.
const OPS: [&str; 7] = [
    "create", "exec", "snapshot", "reset", "fork", "sync", "delete",
];
/// Who it kills.
const VICTIMS: [&str; 3] = ["cli", "supervisor", "qemu"];
/// States a workspace may read as between calls.
const DEFINED: [&str; 4] = ["running", "stopped", "crashed", "suspended"];

/// The supervisor of a workspace of `home` other than `except`, by the
/// lock it holds.
fn new_supervisor(home: &TestHome, except: &str) -> Option<u32> {
    std::fs::read_dir(home.path().join("workspaces"))
        .ok()?
        .flatten()
        .filter(|e| e.file_name().to_string_lossy() != except && e.path().is_dir())
        .find_map(|e| {
            let lock = e.path().join("supervisor.lock");
            pyro_util::fsutil::lock_holder_pids(&lock).first().copied()
        })
}

/// Every workspace in `home`, as `(id, name, state)`; the listing itself
/// must work.
fn workspaces(home: &TestHome) -> Vec<(String, String, String)> {
    let list = json(&ok(home.run(&["workspace", "list", "--json"]), "list"));
    list.as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["id"].as_str().unwrap().to_string(),
                w["name"].as_str().unwrap_or_default().to_string(),
                w["state"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// A running workspace named `w`, made or brought back as needed.
fn ensure_running(home: &TestHome) {
    let found = workspaces(home)
        .into_iter()
        .find(|(_, name, _)| name == "w");
    match found.map(|(_, _, state)| state) {
        Some(state) if state == "running" => {}
        Some(_) => {
            if !home.run(&["workspace", "start", "w"]).status.success() {
                ok(
                    home.run(&["workspace", "delete", "w"]),
                    "delete what cannot start",
                );
                home.create(&["--name", "w"]);
            }
        }
        None => {
            home.create(&["--name", "w"]);
        }
    }
}

/// Deletes every workspace (each delete must work), then checks nothing of
/// them is left: no directory, no process.
fn delete_all_and_check(home: &TestHome) {
    for (id, _, _) in workspaces(home) {
        ok(home.run(&["workspace", "delete", &id]), "delete");
    }
    let dir = home.path().join("workspaces");
    let left: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name())
        .collect();
    assert!(left.is_empty(), "workspace directories left: {left:?}");
    let alive = wait_for(Duration::from_secs(10), || {
        let pids = processes_naming(home.path());
        pids.is_empty().then_some(()).or(None)
    });
    assert!(
        alive.is_some(),
        "processes left: {:?}",
        processes_naming(home.path())
            .iter()
            .map(|p| process_name(*p))
            .collect::<Vec<_>>()
    );
}

/// `kill -9` of the CLI, the supervisor or QEMU at a random point of each
/// operation; after each, every workspace reads as a defined state and
/// `delete` cleans up without leaving a process, a directory or a lock.
/// `PYRO_FAULT_ITERATIONS` (default 21: three of each operation) and
/// `PYRO_FAULT_SEED` repeat or lengthen a run.
#[test]
fn the_fault_loop_leaves_defined_states_and_nothing_behind() {
    let iterations: usize = std::env::var("PYRO_FAULT_ITERATIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(21);
    let mut seed: u64 = std::env::var("PYRO_FAULT_SEED")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("fault loop: PYRO_FAULT_SEED={seed}");
    let mut random = move |below: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    };
    let home = TestHome::new();
    let tree = tempfile::tempdir().unwrap();
    for i in 0..50 {
        std::fs::write(tree.path().join(format!("f{i}.txt")), vec![b'x'; 20_000]).unwrap();
    }
    let mut outcomes = std::collections::BTreeMap::<String, u32>::new();
    for i in 0..iterations {
        let op = OPS[i % OPS.len()];
        let victim = VICTIMS[random(3) as usize];
        // Within how long each takes here, so most kills land inside it.
        let within = match op {
            "create" | "delete" => 400,
            "reset" | "sync" => 1000,
            _ => 1500,
        };
        let delay = Duration::from_millis(random(within));
        ensure_running(&home);
        let w_id = workspaces(&home)
            .into_iter()
            .find(|(_, name, _)| name == "w")
            .unwrap()
            .0;
        let (fork_name, snap_name) = (format!("f{i}"), format!("s{i}"));
        let args: Vec<&str> = match op {
            "create" => vec!["workspace", "create", ENV, "--id-only"],
            "exec" => vec![
                "workspace",
                "exec",
                "w",
                "--",
                "sh",
                "-c",
                "echo x > /workspace/x; sleep 1",
            ],
            "snapshot" => vec!["workspace", "snapshot", "create", "w", &snap_name],
            "reset" => vec!["workspace", "reset", "w"],
            "fork" => vec!["workspace", "fork", "w", "--name", &fork_name],
            "sync" => vec![
                "workspace",
                "sync",
                "push",
                "w",
                tree.path().to_str().unwrap(),
                "--dest",
                "in",
            ],
            _ => vec!["workspace", "delete", "w"],
        };
        let child = home
            .pyro()
            .args(&args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        // A create's own supervisor and VM: found by the lock it holds
        // (it records its pid only once running).
        let supervisor = match op {
            "create" => new_supervisor(&home, &w_id),
            _ => home.supervisor_pid(&w_id),
        };
        let target = match victim {
            "cli" => Some(child.id()),
            "supervisor" => supervisor,
            _ => supervisor.and_then(|pid| {
                children_of(pid)
                    .into_iter()
                    .find(|&c| process_name(c).starts_with("qemu-system"))
            }),
        };
        if let Some(pid) = target {
            // SAFETY: kill(2) on a process of this test's home.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        }
        let output = child.wait_with_output().unwrap();
        // A usage error would test nothing.
        assert_ne!(
            output.status.code(),
            Some(2),
            "{args:?}: {}",
            stderr(&output)
        );
        let ended = match output.status.code() {
            Some(0) => "ok".to_string(),
            Some(code) => format!("exit {code}"),
            None => "killed".to_string(),
        };
        *outcomes
            .entry(format!("{op}/{victim}: {ended}"))
            .or_default() += 1;
        // No panic, no raw error, whatever it said.
        let said = stderr(&output);
        assert!(
            !said.contains("panicked"),
            "{op}/{victim} after {delay:?}: {said}"
        );
        // `starting` is a VM still booting under a live supervisor (one a
        // killed `reset` or `start` launched): it must settle.
        let settled = wait_for(Duration::from_secs(60), || {
            let all = workspaces(&home);
            all.iter()
                .all(|(_, _, state)| state != "starting")
                .then_some(all)
        })
        .unwrap_or_else(|| panic!("{op}/{victim} after {delay:?}: a workspace stays starting"));
        for (id, _, state) in settled {
            assert!(
                DEFINED.contains(&state.as_str()),
                "{op}/{victim} after {delay:?}: workspace {id} reads as {state}"
            );
        }
        // A create cut short reads as crashed and says why; one that
        // finished is whole (it has its baseline, so diff works).
        if op == "create" && ended != "ok" {
            for (id, name, state) in workspaces(&home) {
                if name == "w" {
                    continue;
                }
                let whole =
                    state == "crashed" || home.run(&["workspace", "diff", &id]).status.success();
                assert!(
                    whole,
                    "{op}/{victim} after {delay:?}: {id} reads {state} but is not whole"
                );
            }
        }
        if i % OPS.len() == OPS.len() - 1 {
            delete_all_and_check(&home);
        }
    }
    delete_all_and_check(&home);
    eprintln!("fault loop outcomes: {outcomes:#?}");
}
