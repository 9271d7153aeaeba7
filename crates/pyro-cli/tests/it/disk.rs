//! `workspace disk list|read|export` (and MCP's `workspace_disk_*`): a
//! stopped workspace's disk read by a helper VM, without starting it.

use serde_json::json;

use crate::support::fixtures::repo;
use crate::support::mcp::{serve, tool_err, tool_ok};
use crate::support::*;

fn state(home: &TestHome, workspace: &str) -> String {
    let status = home.run(&["workspace", "status", workspace, "--json"]);
    let record: serde_json::Value = serde_json::from_slice(&status.stdout).unwrap();
    record["state"].as_str().unwrap().to_string()
}

#[test]
fn a_stopped_workspaces_disk_reads_back_without_starting_it() {
    let home = TestHome::new();
    let project = tempfile::tempdir().unwrap();
    repo(
        project.path(),
        &[("src/app.py", "print('seeded')\n".into())],
    );
    let seed = project.path().to_str().unwrap();
    let id = home.create(&["--seed-path", seed, "--name", "offline"]);
    let made = home.sh(
        &id,
        "echo changed > src/app.py && mkdir -p out/sub && echo one > out/a.txt && \
         echo two > out/sub/b.txt && echo kept > /root/marker",
    );
    ok(made, "write in the guest");
    let running = home.run(&["workspace", "disk", "read", "offline", "src/app.py"]);
    assert_eq!(running.status.code(), Some(125));
    assert!(
        stderr(&running).contains("is running"),
        "{}",
        stderr(&running)
    );
    ok(home.run(&["workspace", "stop", "offline"]), "stop");

    let read = |path: &str| home.run(&["workspace", "disk", "read", "offline", path]);
    assert!(stdout(&read("/etc/os-release")).contains("Debian GNU/Linux 12"));
    assert_eq!(stdout(&read("src/app.py")), "changed\n");
    assert_eq!(stdout(&read("/root/marker")), "kept\n");
    let listed = stdout(&home.run(&["workspace", "disk", "list", "offline", "/workspace"]));
    for name in [".git/", "out/", "src/"] {
        assert!(listed.contains(&format!("  {name}\n")), "{listed}");
    }
    let host = tempfile::tempdir().unwrap();
    let output = host.path().join("out");
    let out_arg = output.to_str().unwrap();
    ok(
        home.run(&[
            "workspace",
            "disk",
            "export",
            "offline",
            "out",
            "--output",
            out_arg,
        ]),
        "disk export",
    );
    assert_eq!(
        std::fs::read_to_string(output.join("a.txt")).unwrap(),
        "one\n"
    );
    assert_eq!(
        std::fs::read_to_string(output.join("sub/b.txt")).unwrap(),
        "two\n"
    );

    let missing = read("/no/such/file");
    assert_eq!(missing.status.code(), Some(125));
    assert!(
        stderr(&missing).contains(
            "no such file or directory on the disk of workspace 'offline': /no/such/file"
        ),
        "{}",
        stderr(&missing)
    );
    let dir = read("/etc");
    assert!(stderr(&dir).contains("is a directory"), "{}", stderr(&dir));
    let list = |path: &str| home.run(&["workspace", "disk", "list", "offline", path]);
    // /bin is a link to usr/bin on a merged /usr: listed as the directory.
    assert!(
        stdout(&list("/bin")).contains("  sh"),
        "{}",
        stderr(&list("/bin"))
    );
    let file = list("/etc/os-release");
    assert!(
        stderr(&file).contains("is not a directory"),
        "{}",
        stderr(&file)
    );
    let kernel = read("/proc/1/environ");
    assert!(
        stderr(&kernel).contains("is not on the disk"),
        "{}",
        stderr(&kernel)
    );
    // Looking at it does not wake it.
    ok(home.run(&["workspace", "status", "offline"]), "status");
    // It stayed as it was, and starts with everything in place.
    assert!(
        state(&home, "offline").starts_with("suspended"),
        "{}",
        state(&home, "offline")
    );
    let after = home.sh("offline", "cat src/app.py /root/marker");
    assert_eq!(stdout(&after), "changed\nkept\n", "{}", stderr(&after));
}

#[test]
fn a_disk_the_guest_broke_is_a_clear_error_and_nothing_more() {
    let home = TestHome::new();
    let id = home.create(&["--name", "broken"]);
    let wrecked = home.sh(
        &id,
        "dd if=/dev/urandom of=/dev/vda bs=1M count=8 conv=notrunc; sync",
    );
    ok(wrecked, "overwrite the root filesystem's start");
    ok(
        home.run(&["workspace", "stop", "broken", "--power-off"]),
        "power off",
    );
    let read = home.run(&["workspace", "disk", "read", "broken", "/etc/os-release"]);
    assert_eq!(read.status.code(), Some(125));
    assert!(
        stderr(&read).contains("the helper VM could not boot from it"),
        "{}",
        stderr(&read)
    );
    assert_eq!(state(&home, "broken"), "stopped");
    ok(home.run(&["workspace", "delete", "broken"]), "delete");
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_reads_a_stopped_workspaces_disk() {
    let home = TestHome::new();
    let project = tempfile::tempdir().unwrap();
    repo(project.path(), &[("notes.txt", "from the host\n".into())]);
    let client = serve(
        home.path(),
        project.path(),
        &["--profile", "workspace-full"],
    )
    .await;
    let ws = tool_ok(&client, "workspace_create", json!({"name": "mcp-disk"})).await;
    let id = ws["id"].as_str().unwrap();
    let args = json!({"workspace": id, "path": "/etc/hostname"});
    let running = tool_err(&client, "workspace_disk_read", args.clone()).await;
    assert!(running.contains("workspace_stop"), "{running}");
    tool_ok(&client, "workspace_stop", json!({"workspace": id})).await;
    let notes = json!({"workspace": id, "path": "notes.txt"});
    let read = tool_ok(&client, "workspace_disk_read", notes).await;
    assert_eq!(read["content"], "from the host\n");
    assert_eq!(read["path"], "/workspace/notes.txt");
    let listed = tool_ok(
        &client,
        "workspace_disk_list",
        json!({"workspace": id, "path": "/"}),
    )
    .await;
    let names: Vec<&str> = listed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"etc") && names.contains(&"workspace"),
        "{names:?}"
    );
    tool_ok(&client, "workspace_delete", json!({"workspace": id})).await;
    client.cancel().await.unwrap();
}
