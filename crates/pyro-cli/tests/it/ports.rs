//! Published ports end to end against real VMs: a guest web server
//! reached from the host through `--publish` and `port publish`, its URL
//! where the user reads it (status, service start, MCP), closed again by
//! `unpublish`, bound again at start, and a taken host port refused with
//! nothing half-made.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Output;
use std::time::Duration;

use serde_json::{json, Value};

use crate::support::mcp::{serve, tool_err, tool_ok};
use crate::support::*;

/// `GET /` on the host's `127.0.0.1:port`; the whole answer, or `None`
/// when nothing answers.
fn get(port: u16) -> Option<String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .ok()?;
    stream
        .write_all(b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .ok()?;
    let mut answer = String::new();
    stream.read_to_string(&mut answer).ok()?;
    (!answer.is_empty()).then_some(answer)
}

/// Whether nothing listens on the host's `127.0.0.1:port` any more.
fn closed(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).is_err()
}

/// The host port of `http://127.0.0.1:PORT`.
fn port_of(url: &str) -> u16 {
    url.rsplit(':').next().unwrap().parse().unwrap()
}

fn serve_site(home: &TestHome, ws: &str) -> Output {
    ok(
        home.sh(ws, "echo hello-from-guest > /workspace/index.html"),
        "write the page",
    );
    home.run(&[
        "workspace",
        "service",
        "start",
        ws,
        "web",
        "--ready-tcp",
        "8000",
        "--",
        "python3",
        "-m",
        "http.server",
        "8000",
    ])
}

#[test]
fn a_published_guest_server_answers_on_the_host_until_unpublished() {
    let home = TestHome::new();
    // Refused before anything is made.
    refused(
        home.run(&["workspace", "create", "debian:12", "--publish", "0:8000"]),
        "egress+ports",
    );
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = held.local_addr().unwrap().port();
    let create = [
        "workspace",
        "create",
        "debian:12",
        "--network",
        "egress+ports",
    ];
    refused(
        home.run(&[&create[..], &["--publish", "8000"]].concat()),
        "HOSTPORT:GUESTPORT",
    );
    let publish = format!("{taken}:8000");
    refused(
        home.run(&[&create[..], &["--publish", &publish]].concat()),
        "already in use",
    );
    let listed = json(&ok(home.run(&["workspace", "list", "--json"]), "list"));
    assert_eq!(listed, json!([]), "a refused create left a workspace");

    home.create(&[
        "--name",
        "web",
        "--network",
        "egress+ports",
        "--publish",
        "0:8000",
    ]);
    let status = json(&ok(
        home.run(&["workspace", "status", "web", "--json"]),
        "status",
    ));
    let url = status["network"]["ports"][0]["url"]
        .as_str()
        .unwrap()
        .to_string();
    let first = port_of(&url);
    let shown = stdout(&ok(home.run(&["workspace", "status", "web"]), "status"));
    assert!(
        shown.contains(&format!("{url} -> guest port 8000")),
        "{shown}"
    );

    let started = ok(serve_site(&home, "web"), "service start");
    assert!(
        stdout(&started).contains(&format!("reachable on the host at {url}")),
        "{}",
        stdout(&started)
    );
    let answer = get(first).expect("the published port answers");
    assert!(answer.contains("hello-from-guest"), "{answer}");

    // One more port on the running workspace; a taken one is refused.
    let added = json(&ok(
        home.run(&["workspace", "port", "publish", "web", "0:8000", "--json"]),
        "port publish",
    ));
    let second = added["host_port"].as_u64().unwrap() as u16;
    assert!(get(second).unwrap().contains("hello-from-guest"));
    refused(
        home.run(&[
            "workspace",
            "port",
            "publish",
            "web",
            &format!("{taken}:8000"),
        ]),
        "already in use",
    );
    let list = json(&ok(
        home.run(&["workspace", "port", "list", "web", "--json"]),
        "list",
    ));
    assert_eq!(list["ports"].as_array().unwrap().len(), 2, "{list}");

    // Unpublishing closes the port, and only that one.
    ok(
        home.run(&["workspace", "port", "unpublish", "web", &first.to_string()]),
        "unpublish",
    );
    // Closed by the time unpublish returns: the same port publishes again.
    assert!(closed(first), "the unpublished port still listens");
    assert!(get(second).unwrap().contains("hello-from-guest"));
    let again = format!("{first}:8000");
    ok(
        home.run(&["workspace", "port", "publish", "web", &again]),
        "publish the same port again",
    );
    assert!(get(first).unwrap().contains("hello-from-guest"));
    let at = format!("127.0.0.1:{first}");
    ok(
        home.run(&["workspace", "port", "unpublish", "web", &at]),
        "unpublish by address",
    );
    assert!(closed(first), "the unpublished port still listens");
    refused(
        home.run(&["workspace", "port", "unpublish", "web", &first.to_string()]),
        "not published",
    );

    // A stop closes it; a start binds the same port again.
    ok(
        home.run(&["workspace", "stop", "web", "--power-off"]),
        "stop",
    );
    assert!(closed(second), "a stopped workspace's port still listens");
    ok(home.run(&["workspace", "start", "web"]), "start");
    ok(serve_site(&home, "web"), "service start after start");
    assert!(get(second).unwrap().contains("hello-from-guest"));
    // Leaving the egress+ports network needs the ports gone first.
    let output = home.run(&["workspace", "update", "web", "--network", "egress"]);
    assert!(stderr(&output).contains("unpublish"), "{}", stderr(&output));
    drop(held);
}

#[tokio::test]
async fn mcp_publishes_ports_and_shows_their_urls() {
    let home = TestHome::new();
    let cwd = tempfile::tempdir().unwrap();
    let client = serve(home.path(), cwd.path(), &["--profile", "workspace-full"]).await;
    let created = tool_ok(
        &client,
        "workspace_create",
        json!({"name": "mweb", "network": "egress+ports", "publish": ["0:8000"]}),
    )
    .await;
    let url = created["ports"][0]["url"].as_str().unwrap().to_string();
    tool_ok(
        &client,
        "workspace_exec",
        json!({"workspace": "mweb", "command": "echo hello-mcp > index.html"}),
    )
    .await;
    let service = tool_ok(
        &client,
        "workspace_service_start",
        json!({"workspace": "mweb", "name": "web", "argv": ["python3", "-m", "http.server", "8000"],
               "ready_tcp_port": 8000}),
    )
    .await;
    assert_eq!(service["urls"], json!([url]), "{service}");
    assert!(get(port_of(&url)).unwrap().contains("hello-mcp"));
    let unpublished: Value = tool_ok(
        &client,
        "workspace_port_unpublish",
        json!({"workspace": "mweb", "port": "8000"}),
    )
    .await;
    assert_eq!(unpublished["guest_port"], 8000);
    let gone = wait_for(Duration::from_secs(5), || {
        closed(port_of(&url)).then_some(())
    });
    assert!(gone.is_some(), "the unpublished port still listens");
    let err = tool_err(
        &client,
        "workspace_port_publish",
        json!({"workspace": "mweb", "port": "8000"}),
    )
    .await;
    assert!(err.contains("HOSTPORT:GUESTPORT"), "{err}");
    let err = tool_err(
        &client,
        "workspace_port_publish",
        json!({"workspace": "mweb", "port": "0.0.0.0:0:8000"}),
    )
    .await;
    assert!(err.contains("loopback only"), "{err}");
    client.cancel().await.unwrap();
}
