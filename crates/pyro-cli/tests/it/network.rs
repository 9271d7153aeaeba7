//! The network end to end against real VMs: egress to the package index
//! this machine reaches (through the host's CA), the default of no network,
//! the host's loopback closed unless allowed, private and metadata
//! addresses refused, every denial shown where a model reads it (the exec
//! result, `network log`, `summary`, MCP), and a running workspace's
//! allowlist changed without a reboot.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command};

use serde_json::{json, Value};

use crate::support::mcp::{serve, tool_err, tool_ok};
use crate::support::*;

/// A `python3 -m http.server` on the host's 127.0.0.1, serving `dir`;
/// killed on drop.
struct HostServer {
    child: Child,
    port: u16,
}

impl HostServer {
    fn start(dir: &Path) -> HostServer {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new("python3")
            .args([
                "-m",
                "http.server",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .current_dir(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start python3 -m http.server");
        let up = wait_for(std::time::Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).ok()
        });
        assert!(up.is_some(), "the host test server did not start");
        HostServer { child, port }
    }
}

impl Drop for HostServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn egress_reaches_the_package_index_and_off_fails_at_the_lookup() {
    let pip = ["pip", "download", "--no-deps", "-d", "/tmp", "six"];
    let output = run(&["--network", "egress"], &pip);
    assert!(
        output.status.success(),
        "pip download with egress failed: {}{}",
        stdout(&output),
        stderr(&output)
    );
    assert!(stdout(&output).contains("Successfully downloaded six"));

    let output = run(&["--network", "off"], &pip);
    assert!(
        !output.status.success(),
        "pip reached the index with the network off"
    );
    assert!(
        stderr(&output).contains("name resolution"),
        "no name-resolution error from pip: {}",
        stderr(&output)
    );

    // A bad request is refused before any VM boots.
    let output = run(&["--allow", "pypi.org"], &["true"]);
    assert!(!output.status.success(), "{}", stderr(&output));
    assert!(
        stderr(&output).contains("needs egress"),
        "{}",
        stderr(&output)
    );
    let output = run(
        &["--network", "egress", "--allow", "pypi.org:http"],
        &["true"],
    );
    assert!(
        stderr(&output).contains("pypi.org:http"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn the_host_is_closed_unless_allowed_and_denials_are_shown() {
    let served = tempfile::tempdir().unwrap();
    std::fs::write(served.path().join("index.html"), "hello-from-host\n").unwrap();
    let open = HostServer::start(served.path());
    let closed = HostServer::start(served.path());
    let home = TestHome::new();
    let allow = format!("host.pyro.internal:{}", open.port);
    home.create(&["--name", "net", "--network", "egress", "--allow", &allow]);

    let status = stdout(&ok(home.run(&["workspace", "status", "net"]), "status"));
    assert!(
        status.contains(&format!("egress (allow: {allow})")),
        "{status}"
    );
    let listed = json(&ok(home.run(&["workspace", "list", "--json"]), "list"));
    assert_eq!(listed[0]["network"]["mode"], "egress", "{listed}");

    let curl = |port: u16| format!("curl -sS -m 10 http://host.pyro.internal:{port}/");
    let reached = ok(home.sh("net", &curl(open.port)), "curl to the allowed port");
    assert_eq!(stdout(&reached), "hello-from-host\n");

    // The other host port, cloud metadata, a private address and a name
    // outside the allowlist: each refused at once, each reported.
    let script = format!(
        "{}; curl -sS -m 10 http://169.254.169.254/; curl -sS -m 10 http://10.1.2.3/; \
         curl -sS -m 10 https://pypi.org/; true",
        curl(closed.port)
    );
    let started = std::time::Instant::now();
    let refused = ok(home.sh("net", &script), "refused curls");
    assert!(
        started.elapsed().as_secs() < 20,
        "refusals took {:?}",
        started.elapsed()
    );
    let note = stderr(&refused);
    for expected in [
        "4 connections denied".to_string(),
        format!(
            "host.pyro.internal:{}, the host's own services are closed",
            closed.port
        ),
        "169.254.169.254:80, a link-local address".into(),
        "10.1.2.3:80, a private address".into(),
        "pypi.org, not in the allowlist".into(),
        format!(
            "pyro workspace update net --allow {allow} --allow host.pyro.internal:{}",
            closed.port
        ),
    ] {
        assert!(note.contains(&expected), "missing {expected:?} in: {note}");
    }

    let log = json(&ok(
        home.run(&["workspace", "network", "log", "net", "--json"]),
        "log",
    ));
    assert_eq!(log["denied"], 4, "{log}");
    let entries = log["entries"].as_array().unwrap();
    let denied_host = entries
        .iter()
        .find(|e| e["port"] == closed.port && !e["denied"].is_null())
        .unwrap_or_else(|| panic!("no denial of the closed port in {log}"));
    assert_eq!(denied_host["denied"]["kind"], "host_closed");
    assert!(denied_host["commands"][0]
        .as_str()
        .unwrap()
        .contains("curl"));
    assert!(denied_host["time_unix_ms"].as_u64().unwrap() > 0);
    let text = stdout(&ok(
        home.run(&["workspace", "network", "log", "net"]),
        "log",
    ));
    assert!(text.contains("DENIED  169.254.169.254:80"), "{text}");

    let summary = json(&ok(
        home.run(&["workspace", "summary", "net", "--json"]),
        "summary",
    ));
    let denied: Vec<String> = summary["network_denied"]
        .as_array()
        .unwrap_or_else(|| panic!("no network_denied in {summary}"))
        .iter()
        .map(|d| d["destination"].as_str().unwrap().to_string())
        .collect();
    assert!(
        denied.contains(&"169.254.169.254:80".to_string()),
        "{denied:?}"
    );
    let text = stdout(&ok(home.run(&["workspace", "summary", "net"]), "summary"));
    assert!(text.contains("Network denied (4)"), "{text}");

    // A new allowlist applies to the running workspace without a reboot.
    let closed_entry = format!("host.pyro.internal:{}", closed.port);
    ok(
        home.run(&["workspace", "update", "net", "--allow", &closed_entry]),
        "update --allow",
    );
    let reached = ok(home.sh("net", &curl(closed.port)), "curl after update");
    assert_eq!(stdout(&reached), "hello-from-host\n");
    let refused = home.sh("net", &curl(open.port));
    assert!(!refused.status.success(), "the dropped entry still opens");
    // A connection open when the network goes off is closed too: a reader
    // waiting on it sees the reset, not the 60 s of its own timeout.
    let holder = format!(
        "nohup bash -c 'exec 3<>/dev/tcp/host.pyro.internal/{}; echo open > /tmp/held; \
         timeout 60 cat <&3; echo \"ended $?\" >> /tmp/held' >/dev/null 2>&1 & \
         for i in $(seq 100); do [ -s /tmp/held ] && break; sleep 0.1; done; cat /tmp/held",
        closed.port
    );
    let held = ok(home.sh("net", &holder), "open a connection to keep");
    assert_eq!(stdout(&held), "open\n");
    // Off on a running workspace closes everything; turning it on again
    // works because the device is still there.
    ok(
        home.run(&["workspace", "update", "net", "--network", "off"]),
        "update off",
    );
    let ended = ok(
        home.sh(
            "net",
            "for i in $(seq 200); do grep -q ended /tmp/held && break; sleep 0.1; done; cat /tmp/held",
        ),
        "the held connection",
    );
    let ended = stdout(&ended);
    assert!(
        ended.contains("ended") && !ended.contains("ended 124"),
        "the connection outlived the network: {ended}"
    );
    assert!(!home.sh("net", &curl(closed.port)).status.success());
    let output = home.run(&[
        "workspace",
        "update",
        "net",
        "--network",
        "off",
        "--allow",
        "x.org",
    ]);
    assert!(
        stderr(&output).contains("needs egress"),
        "{}",
        stderr(&output)
    );
}

#[test]
fn a_workspace_without_network_cannot_turn_it_on_while_running() {
    let home = TestHome::new();
    home.create(&["--name", "quiet"]);
    let status = stdout(&ok(home.run(&["workspace", "status", "quiet"]), "status"));
    assert!(status.contains("network:       off"), "{status}");
    let output = home.sh("quiet", "ls /sys/class/net");
    assert_eq!(
        stdout(&output).trim(),
        "lo",
        "a device with the network off"
    );

    let output = home.run(&["workspace", "update", "quiet", "--network", "egress"]);
    assert!(!output.status.success());
    assert!(
        stderr(&output).contains("stop the workspace"),
        "{}",
        stderr(&output)
    );
    let status = stdout(&ok(home.run(&["workspace", "status", "quiet"]), "status"));
    assert!(
        status.contains("network:       off"),
        "the failed update changed the record"
    );

    // Stopped: the change is kept and applies at start.
    ok(
        home.run(&["workspace", "stop", "quiet", "--power-off"]),
        "stop",
    );
    let output = ok(
        home.run(&["workspace", "update", "quiet", "--network", "egress"]),
        "update",
    );
    assert!(stderr(&output).contains("applies when the workspace starts"));
    ok(home.run(&["workspace", "start", "quiet"]), "start");
    let output = ok(home.sh("quiet", "ip -4 addr show eth0"), "eth0 after start");
    assert!(
        stdout(&output).contains("10.0.2.15/24"),
        "{}",
        stdout(&output)
    );
}

#[tokio::test]
async fn mcp_opens_the_network_only_in_the_full_profile() {
    let home = TestHome::new();
    let cwd = tempfile::tempdir().unwrap();
    let core = serve(home.path(), cwd.path(), &[]).await;
    let refused = tool_err(&core, "workspace_create", json!({"network": "egress"})).await;
    assert!(refused.contains("--profile workspace-full"), "{refused}");
    core.cancel().await.unwrap();

    let full = serve(home.path(), cwd.path(), &["--profile", "workspace-full"]).await;
    let created: Value = tool_ok(
        &full,
        "workspace_create",
        json!({"network": "egress", "allow": ["pypi.org"]}),
    )
    .await;
    assert_eq!(created["network"], "egress", "{created}");
    assert_eq!(created["allow"], json!(["pypi.org"]), "{created}");
    let id = created["id"].as_str().unwrap().to_string();

    let result = tool_ok(
        &full,
        "workspace_exec",
        json!({"workspace": id, "command": "curl -sS -m 10 https://files.pythonhosted.org/ || true"}),
    )
    .await;
    let note = result["network_denied"].as_str().unwrap_or_default();
    assert!(
        note.contains("files.pythonhosted.org, not in the allowlist"),
        "{result}"
    );
    assert!(
        note.contains(r#"workspace_update with allow: ["pypi.org", "files.pythonhosted.org"]"#),
        "{note}"
    );

    let updated = tool_ok(
        &full,
        "workspace_update",
        json!({"workspace": id, "allow": ["pypi.org", "files.pythonhosted.org"]}),
    )
    .await;
    assert_eq!(
        updated["allow"],
        json!(["pypi.org", "files.pythonhosted.org"])
    );
    let result = tool_ok(
        &full,
        "workspace_exec",
        json!({"workspace": id, "command": "curl -sS -m 10 -o /dev/null -w '%{http_code}' https://pypi.org/simple/six/"}),
    )
    .await;
    assert_eq!(result["stdout"]["text"], "200", "{result}");
    assert!(result["network_denied"].is_null(), "{result}");
    full.cancel().await.unwrap();
}
