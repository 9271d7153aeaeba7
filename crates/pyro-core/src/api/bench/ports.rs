//! The published-port rows: a 1-byte echo server in the guest, reached
//! from the host through the workspace's published port.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{run_once, run_output, BenchOptions, Samples};
use crate::api::error::Error;

/// The guest port the echo server listens on.
pub(super) const GUEST_PORT: u16 = 8000;
/// Round trips timed per run, on one connection.
const ECHOES: usize = 20;

const ECHO_SERVER: &str = "import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', 8000))
s.listen(16)
while True:
    c, _ = s.accept()
    c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    while True:
        d = c.recv(65536)
        if not d:
            break
        c.sendall(d)
    c.close()
";

fn failed(what: &str, error: impl std::fmt::Display) -> Error {
    Error::Benchmark(format!("{what}: {error}"))
}

/// Connects and echoes through the published port of workspace `net`.
pub(super) async fn rows(
    options: &BenchOptions,
    envs: &[(&str, &std::ffi::OsStr)],
) -> Result<Vec<Samples>, Error> {
    let program = options.program.as_os_str();
    let start = [
        "workspace",
        "service",
        "start",
        "net",
        "echo",
        "--ready-tcp",
        "8000",
        "--",
        "python3",
        "-c",
        ECHO_SERVER,
    ];
    run_once("pyro workspace service start (echo)", program, &start, envs).await?;
    let list = ["workspace", "port", "list", "net", "--json"];
    let (_, listed) = run_output("pyro workspace port list", program, &list, envs).await?;
    let listed: serde_json::Value =
        serde_json::from_slice(&listed).map_err(|e| failed("port list", e))?;
    let port = listed["ports"][0]["host_port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| failed("port list", "no published port"))?;

    let mut connect =
        Samples::new("published port: host connect and first 1-byte echo from the guest");
    let mut echo = Samples::new(format!(
        "published port: 1-byte round trip on an open connection ({ECHOES} per run)"
    ));
    for _ in 0..options.runs {
        let started = Instant::now();
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .map_err(|e| failed("connect to the published port", e))?;
        let _ = stream.set_nodelay(true);
        round_trip(&mut stream).await?;
        connect.push(started.elapsed());
        for _ in 0..ECHOES {
            let started = Instant::now();
            round_trip(&mut stream).await?;
            echo.push(started.elapsed());
        }
    }
    Ok(vec![connect, echo])
}

async fn round_trip(stream: &mut TcpStream) -> Result<(), Error> {
    let exchange = async {
        stream.write_all(b"x").await?;
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await?;
        Ok::<_, std::io::Error>(())
    };
    tokio::time::timeout(Duration::from_secs(30), exchange)
        .await
        .map_err(|_| failed("published port echo", "no answer in 30 s"))?
        .map_err(|e| failed("published port echo", e))
}
