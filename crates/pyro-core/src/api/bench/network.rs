//! Network measurements: a download from a server on the host's loopback,
//! in the guest and on the host itself, the guest's TCP connect time, and
//! round trips through a published port ([`super::ports`]).
//! The server runs in this process and answers every request with
//! [`DOWNLOAD_MB`] MB, or two bytes on `/small`.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::{run_once, run_output, BenchOptions, Samples};
use crate::api::error::Error;
use pyro_net::GATEWAY;

/// Size of the download.
const DOWNLOAD_MB: usize = 100;
/// Connects timed per run.
const CONNECTS: usize = 10;

fn failed(what: &str, error: impl std::fmt::Display) -> Error {
    Error::Benchmark(format!("{what}: {error}"))
}

/// The network rows, in a workspace of their own in a throw-away home.
pub(super) async fn rows(
    options: &BenchOptions,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Vec<Samples>, Error> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| failed("a host-local server", e))?;
    let port = listener
        .local_addr()
        .map_err(|e| failed("a host-local server", e))?
        .port();
    let server = tokio::spawn(serve(listener));
    let home = tempfile::tempdir().map_err(|e| failed("scratch home", e))?;
    let measured = measure(options, home.path(), port, progress).await;
    server.abort();
    // On every way out, so no VM outlives its scratch home.
    let envs = [("PYRO_HOME", home.path().as_os_str())];
    let delete = ["workspace", "delete", "net"];
    let deleted = run_once(
        "pyro workspace delete",
        options.program.as_os_str(),
        &delete,
        &envs,
    );
    let deleted = deleted.await;
    let rows = measured?;
    deleted?;
    Ok(rows)
}

async fn measure(
    options: &BenchOptions,
    home: &std::path::Path,
    port: u16,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Vec<Samples>, Error> {
    let envs = [("PYRO_HOME", home.as_os_str())];
    let program = options.program.as_os_str();
    let runs = options.runs;
    let allow = format!("host.pyro.internal:{port}");
    let publish = format!("0:{}", super::ports::GUEST_PORT);
    let create = [
        "workspace",
        "create",
        options.env.as_str(),
        "--name",
        "net",
        "--network",
        "egress+ports",
        "--allow",
        &allow,
        "--publish",
        &publish,
    ];
    run_once(
        "pyro workspace create --network egress+ports",
        program,
        &create,
        &envs,
    )
    .await?;

    progress(&format!(
        "{DOWNLOAD_MB} MB from a host-local server, guest and host, {runs} runs"
    ));
    let url = format!("http://host.pyro.internal:{port}/");
    let fetch = [
        "workspace",
        "exec",
        "net",
        "--",
        "curl",
        "-sSfo",
        "/dev/null",
        &url,
    ];
    let mut guest = Samples::new(format!(
        "download {DOWNLOAD_MB} MB from the host's loopback, in the guest (`exec curl`)"
    ));
    let mut host = Samples::new(format!("the same {DOWNLOAD_MB} MB, on the host"));
    for _ in 0..runs {
        guest.push(run_once("exec curl", program, &fetch, &envs).await?);
        host.push(download(port).await?);
    }

    progress(&format!("TCP connect from the guest, {CONNECTS} × {runs}"));
    // By address, so no lookup is in the time; the stack answers the
    // handshake, then dials the host.
    let script = format!(
        "for i in $(seq {CONNECTS}); do curl -sSf --max-time 30 -o /dev/null \
         -w '%{{time_connect}} %{{time_starttransfer}}\\n' http://{GATEWAY}:{port}/small || exit 1; done"
    );
    let connects = ["workspace", "exec", "net", "--", "sh", "-c", &script];
    let mut connect = Samples::new("TCP connect, guest to pyro's stack (curl's time_connect)");
    let mut first_byte = Samples::new(
        "small request to the host's loopback, to first byte (curl's time_starttransfer)",
    );
    for _ in 0..runs {
        let (_, stdout) = run_output("the guest's connects", program, &connects, &envs).await?;
        let stdout = String::from_utf8_lossy(&stdout);
        for line in stdout.lines() {
            let mut times = line
                .split_whitespace()
                .filter_map(|t| t.parse::<f64>().ok())
                .filter_map(|s| Duration::try_from_secs_f64(s).ok())
                .filter(|t| !t.is_zero());
            if let (Some(to_connect), Some(to_byte)) = (times.next(), times.next()) {
                connect.push(to_connect);
                first_byte.push(to_byte);
            }
        }
    }
    if connect.millis.is_empty() {
        return Err(Error::Benchmark(
            "the guest's connects printed no times".into(),
        ));
    }
    progress(&format!("published port round trips, {runs} runs"));
    let mut rows = vec![guest, host, connect, first_byte];
    rows.extend(super::ports::rows(options, &envs).await?);
    Ok(rows)
}

/// The download on the host: the same request, read to the end.
async fn download(port: u16) -> Result<Duration, Error> {
    let started = Instant::now();
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| failed("host download", e))?;
    stream
        .write_all(b"GET / HTTP/1.0\r\n\r\n")
        .await
        .map_err(|e| failed("host download", e))?;
    let mut sink = tokio::io::sink();
    let copied = tokio::io::copy(&mut stream, &mut sink)
        .await
        .map_err(|e| failed("host download", e))?;
    // The body, and at least the status line before it.
    if (copied as usize) < DOWNLOAD_MB * 1_000_000 + 17 {
        return Err(Error::Benchmark(format!(
            "host download ended at {copied} bytes"
        )));
    }
    Ok(started.elapsed())
}

/// Answers each connection's request, then closes it.
async fn serve(listener: TcpListener) {
    let body = vec![b'x'; 1024 * 1024];
    let body = std::sync::Arc::new(body);
    while let Ok((stream, _)) = listener.accept().await {
        let body = std::sync::Arc::clone(&body);
        tokio::spawn(async move {
            let _ = answer(stream, &body).await;
        });
    }
}

async fn answer(mut stream: TcpStream, chunk: &[u8]) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 16 * 1024 {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
    }
    let small = request.starts_with(b"GET /small");
    let size = match small {
        true => 2,
        false => DOWNLOAD_MB * 1_000_000,
    };
    let head = format!("HTTP/1.0 200 OK\r\nContent-Length: {size}\r\n\r\n");
    stream.write_all(head.as_bytes()).await?;
    let mut left = size;
    while left > 0 {
        let n = left.min(chunk.len());
        stream.write_all(&chunk[..n]).await?;
        left -= n;
    }
    stream.shutdown().await
}
