//! Faults at bad moments: a process killed in the middle of an operation
//! leaves the workspace in a defined state, says so, and loses nothing an
//! operation had already promised.

use std::time::Duration;

use crate::support::*;

#[test]
fn a_supervisor_killed_mid_snapshot_leaves_the_state_before_it() {
    let mut caught = false;
    // The kill lands at some point of the snapshot; try a few delays until
    // one lands inside it.
    for delay_ms in [150, 300, 500, 800, 1200] {
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
        std::thread::sleep(Duration::from_millis(delay_ms));
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
