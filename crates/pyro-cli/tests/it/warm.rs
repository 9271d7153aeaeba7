//! Warm VMs against real guests: a create restores the environment's
//! warm template (made on first use), every restored guest is its own
//! machine (name, machine-id, random bytes, clock), a reset to the baseline
//! restores the template again, and a template that fails to restore
//! leaves a working, cold-booted workspace.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::support::*;

/// The warm template directory of the test environment for `memory_mib`.
fn template_dir(home: &TestHome, memory_mib: u64) -> Option<PathBuf> {
    let inspected = json(&ok(home.run(&["env", "inspect", ENV]), "env inspect"));
    let root = PathBuf::from(inspected["manifest_path"].as_str().unwrap())
        .parent()?
        .parent()?
        .to_path_buf();
    let templates = inspected["templates"].as_array()?;
    let found = templates
        .iter()
        .find(|t| t["memory_mib"] == memory_mib && t["network"] == false)?;
    let name = format!("{}.{}", found["key"].as_str()?, found["build"].as_str()?);
    Some(root.join("templates").join(name))
}

fn last_start(home: &TestHome, id: &str) -> serde_json::Value {
    let status = json(&ok(
        home.run(&["workspace", "status", id, "--json"]),
        "status",
    ));
    status["last_boot"].clone()
}

#[test]
fn warm_creates_restore_one_template_and_each_guest_is_its_own_machine() {
    let home = TestHome::new();
    // Concurrent creates from one template: made once, restored by all.
    let creates: Vec<_> = (0..3)
        .map(|_| {
            home.pyro()
                .args(["workspace", "create", ENV, "--id-only"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let ids: Vec<String> = creates
        .into_iter()
        .map(|child| {
            let output = ok(child.wait_with_output().unwrap(), "create");
            stdout(&output).trim().to_string()
        })
        .collect();
    let probe =
        "hostname; cat /etc/machine-id; head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \\n'; \
                 echo; date +%s";
    let mut seen = Vec::new();
    for id in &ids {
        let status = json(&ok(
            home.run(&["workspace", "status", id, "--json"]),
            "status",
        ));
        let memory = &status["host_memory"];
        let unique = memory["unique_bytes"]
            .as_u64()
            .expect("status measures its VM");
        // The template's pages are shared: counted whole in RSS only.
        assert!(
            unique > 0 && unique < memory["rss_bytes"].as_u64().unwrap(),
            "{memory}"
        );
        let boot = last_start(&home, id);
        assert_eq!(boot["how"], "restored", "{boot}");
        assert!(boot["from"].as_str().unwrap().starts_with("warm template"));
        let out = ok(home.sh(id, probe), "probe");
        let lines: Vec<String> = stdout(&out).lines().map(str::to_string).collect();
        assert_eq!(lines[0], format!("pyro-{id}"), "its own hostname");
        assert_eq!(lines[1].len(), 32, "a machine-id: {lines:?}");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let guest_now: u64 = lines[3].parse().unwrap();
        assert!(
            now.abs_diff(guest_now) <= 5,
            "the guest clock is now: {guest_now} vs {now}"
        );
        seen.push((lines[1].clone(), lines[2].clone()));
    }
    for (i, a) in seen.iter().enumerate() {
        for b in &seen[i + 1..] {
            assert_ne!(a.0, b.0, "machine-ids differ");
            assert_ne!(a.1, b.1, "random bytes differ");
        }
    }

    // Reset to the baseline restores the template: the state right after
    // create, anywhere on the disk, and the diff starts empty again.
    let id = &ids[0];
    ok(
        home.sh(id, "echo x > /workspace/a && echo y > /root/b && sync"),
        "write",
    );
    ok(home.run(&["workspace", "reset", id]), "reset");
    assert_eq!(last_start(&home, id)["how"], "restored");
    let state = ok(
        home.sh(
            id,
            "ls -A /workspace; test ! -e /root/b && echo clean; hostname",
        ),
        "state",
    );
    assert_eq!(stdout(&state), format!("clean\npyro-{id}\n"));
    let diff = ok(home.run(&["workspace", "diff", id, "--json"]), "diff");
    assert_eq!(
        json(&diff)["files"].as_array().map(Vec::len),
        Some(0),
        "{}",
        stdout(&diff)
    );

    // --cold boots a kernel, with nothing to fall back from.
    let cold = home.create(&["--cold"]);
    let boot = last_start(&home, &cold);
    assert_eq!(boot["how"], "booted");
    assert!(boot.get("fallback").is_none(), "{boot}");
}

#[test]
fn a_template_that_fails_to_restore_leaves_a_cold_booted_workspace() {
    let home = TestHome::new();
    // A size of its own: the template corrupted here is nobody else's.
    let size = ["--memory", "640"];
    home.create(&size);
    let dir = template_dir(&home, 640).expect("the 640 MiB template was made");

    // Corruption the cheap checks cannot see (the recorded digest is made
    // to match): QEMU refuses the state, and the create boots cold.
    let state = dir.join("state");
    let garbage = vec![0x5au8; std::fs::metadata(&state).unwrap().len() as usize];
    std::fs::write(&state, &garbage).unwrap();
    let meta_path = dir.join("template.json");
    let mut meta: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&meta_path).unwrap()).unwrap();
    meta["state_sha256"] = sha256_hex(&garbage).into();
    std::fs::write(&meta_path, meta.to_string()).unwrap();
    let id = home.create(&size);
    let boot = last_start(&home, &id);
    assert_eq!(boot["how"], "booted", "{boot}");
    assert!(boot["fallback"].is_string(), "{boot}");
    let works = ok(home.sh(&id, "echo works; ls -A /workspace"), "exec");
    assert_eq!(stdout(&works), "works\n");
    let logs = stdout(&ok(home.run(&["workspace", "logs", &id]), "logs"));
    assert!(logs.contains("booting cold"), "{logs}");
    let status = stdout(&ok(home.run(&["workspace", "status", &id]), "status"));
    assert!(status.contains("the restore failed"), "{status}");
    // A build that failed to restore is dropped; the next create makes a
    // new one (a directory of its own) and restores it.
    assert!(!dir.exists(), "the failed build is dropped");
    let rebuilt = home.create(&size);
    assert_eq!(last_start(&home, &rebuilt)["how"], "restored");
    let dir = template_dir(&home, 640).expect("made again");

    // Corruption the checks see (the RAM image cut short): the template
    // is made again, and the create restores it.
    std::fs::write(dir.join("memory.ram"), b"short").unwrap();
    let again = home.create(&size);
    assert_eq!(last_start(&home, &again)["how"], "restored");
    let dir = template_dir(&home, 640).expect("made again");

    // Unused templates go with `env prune`; one a workspace holds stays.
    let pruned = ok(home.run(&["env", "prune", "--json"]), "prune");
    assert!(dir.exists(), "held by workspaces: {}", stdout(&pruned));
    let all = home.run(&["workspace", "list", "--json"]);
    for record in json(&all).as_array().unwrap() {
        ok(
            home.run(&["workspace", "delete", record["id"].as_str().unwrap()]),
            "delete",
        );
    }
    let pruned = json(&ok(home.run(&["env", "prune", "--json"]), "prune"));
    assert!(
        pruned["removed_templates"].as_u64().unwrap() >= 1,
        "{pruned}"
    );
    assert!(!dir.exists(), "an unused template is pruned");
}

fn sha256_hex(bytes: &[u8]) -> String {
    let out = std::process::Command::new("sha256sum")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            std::io::Write::write_all(child.stdin.as_mut().unwrap(), bytes)?;
            child.wait_with_output()
        })
        .unwrap();
    String::from_utf8(out.stdout).unwrap()[..64].to_string()
}

/// Through a real MCP client: a create and a reset restore the template,
/// and the results say so.
#[tokio::test]
async fn mcp_creates_and_resets_restore_the_template() {
    use crate::support::mcp::{serve, tool_ok};
    use serde_json::json;
    let home = TestHome::new();
    let cwd = tempfile::tempdir().unwrap();
    let client = serve(home.path(), cwd.path(), &[]).await;
    let created = tool_ok(&client, "workspace_create", json!({"name": "mwarm"})).await;
    let restored = |info: &serde_json::Value| {
        info["last_start"]
            .as_str()
            .is_some_and(|s| s.starts_with("restored from warm template"))
    };
    assert!(restored(&created), "{created}");
    let wrote = json!({"workspace": "mwarm", "command": "echo x > a && touch /root/left"});
    tool_ok(&client, "workspace_exec", wrote).await;
    let reset = tool_ok(&client, "workspace_reset", json!({"workspace": "mwarm"})).await;
    assert!(restored(&reset), "{reset}");
    let check =
        json!({"workspace": "mwarm", "command": "ls -A; test ! -e /root/left && echo clean"});
    let state = tool_ok(&client, "workspace_exec", check).await;
    assert_eq!(state["stdout"]["text"], "clean\n", "{state}");
    let diff = tool_ok(&client, "workspace_diff", json!({"workspace": "mwarm"})).await;
    assert_eq!(diff["files"], json!([]));
}

/// With the network on, restored guests of one template each have a NIC
/// address of their own (the template's would be shared), and reach the
/// network (the network tests run on such guests too).
#[test]
fn restored_guests_with_a_network_have_their_own_mac() {
    let home = TestHome::new();
    let macs: Vec<String> = (0..2)
        .map(|_| {
            let id = home.create(&["--network", "egress"]);
            assert_eq!(last_start(&home, &id)["how"], "restored");
            let out = ok(home.sh(&id, "cat /sys/class/net/eth0/address"), "mac");
            stdout(&out).trim().to_string()
        })
        .collect();
    assert_ne!(macs[0], macs[1]);
    assert!(macs.iter().all(|m| m.starts_with("02:50:")), "{macs:?}");
}
