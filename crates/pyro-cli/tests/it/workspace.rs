//! Persistent workspaces end to end through the `pyro` binary, against real
//! VMs: lifecycle, exec, concurrency, and the faults (a killed supervisor,
//! deleting under a running command, a full guest disk).

use std::process::Stdio;
use std::time::Duration;

use crate::support::*;

#[test]
fn lifecycle_create_list_update_stop_start_delete() {
    let home = TestHome::new();
    let id = home.create(&["--name", "api-fix", "--label", "team=core"]);
    assert_eq!(id.len(), 12, "{id}");

    let status = json(&home.run(&["workspace", "status", "api-fix", "--json"]));
    assert_eq!(status["id"], id.as_str());
    assert_eq!(status["state"], "running");
    assert_eq!(status["env"], ENV);
    assert_eq!(status["labels"]["team"], "core");

    let listed = home.run(&["workspace", "list"]);
    let text = stdout(&listed);
    assert!(
        text.contains(&id) && text.contains("api-fix") && text.contains("running"),
        "{text}"
    );
    let filtered = json(&home.run(&["workspace", "list", "--label", "team=other", "--json"]));
    assert_eq!(filtered.as_array().unwrap().len(), 0);

    let renamed = json(&home.run(&[
        "workspace",
        "update",
        &id,
        "--name",
        "api-fix-2",
        "--label",
        "team=",
        "--json",
    ]));
    assert_eq!(renamed["name"], "api-fix-2");
    assert!(renamed["labels"].as_object().unwrap().is_empty());

    // State persists between calls, and across stop/start (the disk).
    let written = home.sh(
        "api-fix-2",
        "echo kept > /root/state && cd /workspace && pwd",
    );
    assert!(written.status.success(), "{}", stderr(&written));
    assert_eq!(stdout(&written), "/workspace\n");
    let vm = home.vm_pids(&id);
    assert_eq!(vm.len(), 1, "one QEMU per workspace");

    let stopped = home.run(&["workspace", "stop", "api-fix-2", "--power-off"]);
    assert!(stopped.status.success(), "{}", stderr(&stopped));
    assert_gone(vm[0], "QEMU after stop");
    let refused = home.sh("api-fix-2", "true");
    assert_eq!(refused.status.code(), Some(125));
    assert!(
        stderr(&refused).contains("is stopped; start it with: pyro workspace start api-fix-2"),
        "{}",
        stderr(&refused)
    );

    let started = home.run(&["workspace", "start", "api-fix-2"]);
    assert!(started.status.success(), "{}", stderr(&started));
    assert_eq!(stdout(&home.sh(&id, "cat /root/state")), "kept\n");

    let vm = home.vm_pids(&id);
    let deleted = home.run(&["workspace", "delete", "api-fix-2"]);
    assert!(deleted.status.success(), "{}", stderr(&deleted));
    assert_gone(vm[0], "QEMU after delete");
    assert!(!home.path().join("workspaces").join(&id).exists());
    assert_eq!(
        json(&home.run(&["workspace", "list", "--json"]))
            .as_array()
            .unwrap()
            .len(),
        0
    );
}

#[test]
fn exec_streams_exit_codes_cwd_env_and_timeout() {
    let home = TestHome::new();
    let id = home.create(&[]);
    let output = home.sh(&id, "echo out; echo err >&2; exit 7");
    assert_eq!(output.status.code(), Some(7));
    assert_eq!(stdout(&output), "out\n");
    assert_eq!(stderr(&output), "err\n");

    let output = home.run(&[
        "workspace",
        "exec",
        &id,
        "--cwd",
        "/tmp",
        "--env",
        "A=b c",
        "--",
        "sh",
        "-c",
        "pwd; echo $A",
    ]);
    assert_eq!(stdout(&output), "/tmp\nb c\n");

    let output = home.run(&[
        "workspace",
        "exec",
        &id,
        "--timeout",
        "2",
        "--",
        "sleep",
        "30",
    ]);
    assert_eq!(output.status.code(), Some(124));
    assert!(
        stderr(&output).contains("timed out after 2s"),
        "{}",
        stderr(&output)
    );
    // The workspace outlives the timed-out command.
    assert!(home.sh(&id, "true").status.success());

    let output = home.run(&["workspace", "exec", &id, "--", "no-such-tool"]);
    assert_eq!(output.status.code(), Some(127));
}

#[test]
fn names_are_unique_and_unknown_workspaces_say_how_to_list() {
    let home = TestHome::new();
    home.create(&["--name", "one"]);
    let duplicate = home.run(&["workspace", "create", ENV, "--name", "one"]);
    assert_eq!(duplicate.status.code(), Some(125));
    assert!(
        stderr(&duplicate).contains("'one' already exists"),
        "{}",
        stderr(&duplicate)
    );
    let unknown = home.run(&["workspace", "status", "nope"]);
    assert_eq!(unknown.status.code(), Some(125));
    assert!(
        stderr(&unknown).contains("pyro workspace list"),
        "{}",
        stderr(&unknown)
    );
    let bad = home.run(&["workspace", "create", ENV, "--name", "no spaces"]);
    assert!(
        stderr(&bad).contains("invalid workspace name"),
        "{}",
        stderr(&bad)
    );
}

#[test]
fn a_killed_supervisor_reads_as_crashed_and_leaves_no_vm() {
    let home = TestHome::new();
    let id = home.create(&["--name", "doomed"]);
    let vm = home.vm_pids(&id);
    let supervisor = home.supervisor_pid(&id).unwrap();
    // SAFETY: kill(2) on the supervisor this test created.
    unsafe { libc::kill(supervisor as i32, libc::SIGKILL) };
    assert_gone(vm[0], "QEMU after kill -9 of its supervisor");
    // The last of the supervisor's threads may release its lock a moment
    // after QEMU is gone.
    let status = wait_for(Duration::from_secs(10), || {
        let status = json(&home.run(&["workspace", "status", "doomed", "--json"]));
        (status["state"] == "crashed").then_some(status)
    })
    .expect("the workspace never read as crashed");
    assert!(
        status["reason"].as_str().unwrap().contains("supervisor"),
        "{status}"
    );
    let exec = home.sh("doomed", "true");
    assert_eq!(exec.status.code(), Some(125));
    assert!(stderr(&exec).contains("crashed"), "{}", stderr(&exec));
    // A crashed workspace can be started again from its disk, or deleted.
    assert!(home.run(&["workspace", "start", "doomed"]).status.success());
    assert!(home.sh("doomed", "true").status.success());
    assert!(home
        .run(&["workspace", "delete", "doomed"])
        .status
        .success());
}

#[test]
fn a_vm_that_crashes_reads_as_crashed_with_the_reason() {
    let home = TestHome::new();
    let id = home.create(&["--name", "panics"]);
    let vm = home.vm_pids(&id);
    // The guest writes an old out-of-memory line and a terminal escape to
    // its console before it panics: neither may steer what pyro reports.
    let crash = home.sh(
        "panics",
        "printf 'Out of memory: Killed process 9 (old)\\n\\033]0;owned\\007\\n' > /dev/console; \
         for i in $(seq 40); do echo filler > /dev/console; done; echo c > /proc/sysrq-trigger",
    );
    assert_eq!(crash.status.code(), Some(125), "{}", stderr(&crash));
    assert!(
        stderr(&crash).contains("workspace 'panics' crashed")
            && stderr(&crash).contains("sysrq triggered crash")
            && !stderr(&crash).contains('\u{1b}'),
        "{}",
        stderr(&crash)
    );
    assert_gone(vm[0], "QEMU after the guest kernel panicked");
    let status = wait_for(Duration::from_secs(10), || {
        let status = json(&home.run(&["workspace", "status", "panics", "--json"]));
        (status["state"] == "crashed").then_some(status)
    })
    .expect("the workspace never read as crashed");
    // Host facts first, then the guest's word, labelled as such.
    let reason = status["reason"].as_str().unwrap();
    assert!(reason.starts_with("the VM stopped ("), "{reason}");
    assert!(
        reason.contains(
            "the guest's console says: \"Kernel panic - not syncing: sysrq triggered crash\""
        ) && !reason.contains("memory"),
        "{reason}"
    );
    let logs = stdout(&home.run(&["workspace", "logs", "panics"]));
    assert!(
        logs.contains("== VM console ==") && logs.contains("Kernel panic"),
        "{logs}"
    );
    assert!(
        logs.contains("\\u{1b}]0;owned\\u{7}") && !logs.contains('\u{1b}'),
        "{logs}"
    );
    let logs = json(&home.run(&["workspace", "logs", "panics", "--json"]));
    let console = logs["console"].as_str().unwrap();
    assert!(console.contains("Kernel panic"), "{logs}");
    assert!(
        console.contains("\u{1b}]0;owned\u{7}"),
        "--json keeps the bytes"
    );
    assert!(home
        .run(&["workspace", "delete", "panics"])
        .status
        .success());
    assert!(!home.path().join("workspaces").join(&id).exists());
}

#[test]
fn two_processes_use_one_workspace_at_once() {
    let home = TestHome::new();
    let id = home.create(&[]);
    let spawn = |n: u32| {
        home.pyro()
            .args(["workspace", "exec", &id, "--", "sh", "-c"])
            .arg(format!("for i in 1 2 3; do echo {n}-$i >> /workspace/log-{n}; sleep 0.2; done; cat /workspace/log-{n}"))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (first, second) = (spawn(1), spawn(2));
    let first = first.wait_with_output().unwrap();
    let second = second.wait_with_output().unwrap();
    assert_eq!(stdout(&first), "1-1\n1-2\n1-3\n");
    assert_eq!(stdout(&second), "2-1\n2-2\n2-3\n");
}

#[test]
fn deleting_under_a_running_command_ends_it_clearly() {
    let home = TestHome::new();
    let id = home.create(&[]);
    let vm = home.vm_pids(&id);
    let mut running = home
        .pyro()
        .args([
            "workspace",
            "exec",
            &id,
            "--",
            "sh",
            "-c",
            "echo started; sleep 300",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(running.stdout.take().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line, "started\n");
    assert!(home.run(&["workspace", "delete", &id]).status.success());
    let output = running.wait_with_output().unwrap();
    assert_eq!(output.status.code(), Some(125));
    assert!(
        stderr(&output).contains("stopped or deleted while the command ran"),
        "{}",
        stderr(&output)
    );
    assert_gone(vm[0], "QEMU after delete");
}

#[test]
fn a_full_guest_disk_fails_the_command_and_the_workspace_recovers() {
    let home = TestHome::new();
    let id = home.create(&[]);
    // fallocate takes the free space without writing it (fast under TCG).
    let fill = home.sh(
        &id,
        "fallocate -l $(( $(df --output=avail -B1 / | tail -1) - 4096 )) /workspace/big && df --output=avail -B1M / | tail -1 && echo x > /workspace/more",
    );
    assert_ne!(
        fill.status.code(),
        Some(0),
        "the write on a full disk must fail"
    );
    assert_eq!(stdout(&fill).trim(), "0", "the disk was not full");
    assert!(!stderr(&fill).is_empty(), "the command says why it failed");
    // The agent still answers, and freeing space makes the disk usable
    // again (once the journal commits the free).
    let freed = home.sh(
        &id,
        "rm /workspace/big && sync && echo ok > /workspace/more && cat /workspace/more",
    );
    assert!(freed.status.success(), "{}", stderr(&freed));
    assert_eq!(stdout(&freed), "ok\n");
}

#[test]
fn exec_stdin_streams_into_the_command() {
    let home = TestHome::new();
    let id = home.create(&[]);
    // Several windows' worth, checked end to end.
    let data: Vec<u8> = (0..6 * 1024 * 1024u32)
        .map(|i| (i * 7 % 251) as u8)
        .collect();
    let expected = {
        let out = std::process::Command::new("sha256sum")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut child| {
                std::io::Write::write_all(child.stdin.as_mut().unwrap(), &data)?;
                drop(child.stdin.take());
                child.wait_with_output()
            })
            .expect("host sha256sum");
        String::from_utf8_lossy(&out.stdout)[..64].to_string()
    };
    let output = home.run_with_stdin(
        &["workspace", "exec", &id, "--stdin", "--", "sha256sum"],
        &data,
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(&stdout(&output)[..64], expected);

    // A command that never reads its input still ends, and so does pyro.
    let output = home.run_with_stdin(&["workspace", "exec", &id, "-i", "--", "true"], &data);
    assert!(output.status.success(), "{}", stderr(&output));

    // Without --stdin the command reads an empty input.
    let output = home.run_with_stdin(&["workspace", "exec", &id, "--", "wc", "-c"], b"ignored");
    assert_eq!(stdout(&output).trim(), "0");
}

#[test]
fn ctrl_c_during_create_deletes_the_workspace_and_exits_130() {
    let home = TestHome::new();
    let child = home
        .pyro()
        .args(["workspace", "create", ENV, "--name", "abandoned"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn pyro");
    // Interrupted while the VM boots (the record exists by then).
    let workspaces = home.path().join("workspaces");
    let made = wait_for(Duration::from_secs(60), || {
        std::fs::read_dir(&workspaces)
            .ok()?
            .flatten()
            .any(|entry| entry.path().join("workspace.json").exists())
            .then_some(())
    });
    assert!(made.is_some(), "create never wrote its record");
    // SAFETY: plain kill(2) on a child we own.
    unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
    let output = child.wait_with_output().unwrap();
    assert_eq!(
        output.status.code(),
        Some(130),
        "signal {:?}: {}",
        std::os::unix::process::ExitStatusExt::signal(&output.status),
        stderr(&output)
    );
    let text = stderr(&output);
    assert!(text.contains("interrupted; the create finishes"), "{text}");
    assert!(text.contains("was deleted"), "{text}");
    let listed = json(&home.run(&["workspace", "list", "--json"]));
    assert_eq!(listed.as_array().unwrap().len(), 0, "{listed}");
}
