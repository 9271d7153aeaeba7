//! `pyro-agent`: the guest side of pyro.
//!
//! Run as PID 1 of the initramfs pyro writes (`/init`), it boots the VM
//! (`init.rs`: modules, root disk, switch_root, userland mounts), opens its
//! virtio-serial port (`port.rs`), says `Hello` and serves the host ⇄ guest
//! protocol of `pyro-protocol` (`server.rs`): running commands with streamed
//! output (`spawn.rs`, `exec.rs`) and flow-controlled stdin (`inflow.rs`),
//! reading, writing and listing files confined beneath `/workspace`
//! (`confine.rs`, `files.rs`, `write.rs`), commands on pseudo-terminals
//! (`pty.rs`), `/workspace` over a seed disk (`seed.rs`), readiness probes (`probe.rs`), reaping every process
//! (`reaper.rs`), and powering the VM off (`power.rs`).
//!
//! Run as an ordinary process, `--serve-stdio` serves the same protocol on
//! stdin/stdout so request handling can be tested on the host without a VM.
//!
//! As PID 1 it must never exit (the kernel would panic): every way out of
//! `main` powers the VM off instead, and request handlers are shielded from
//! panics. Diagnostics go to stderr (the VM console) with a `pyro-agent:`
//! prefix; the happy path prints nothing.

mod child;
mod cmdline;
mod confine;
mod exec;
mod files;
mod fsys;
mod identity;
mod inflow;
mod init;
mod modules;
mod net;
mod outbox;
mod port;
mod power;
mod probe;
mod pty;
mod reaper;
mod seed;
mod server;
mod spawn;
mod sys;
mod write;

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::FromRawFd;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use crate::outbox::Outbox;
use crate::reaper::Reaper;
use crate::server::{End, Server};
use crate::sys::log;

const PORT_TIMEOUT: Duration = Duration::from_secs(10);

const USAGE: &str = "\
usage: pyro-agent [--version | --serve-stdio | --mount-seed DEVICE]

The pyro guest agent. It runs as /init (PID 1) of a pyro VM's initramfs.
  --version            print the version and exit
  --serve-stdio        serve the host-guest protocol on stdin/stdout (for tests)
  --mount-seed DEVICE  put the seed disk DEVICE under /workspace (see seed.rs)
";

fn main() {
    if sys::is_pid1() {
        run_as_init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--version" | "-V") => println!("pyro-agent {}", env!("CARGO_PKG_VERSION")),
        Some("--serve-stdio") => serve_stdio(),
        Some("--mount-seed") => seed::run_cli(args.get(1).map(String::as_str)),
        Some("--help" | "-h") => print!("{USAGE}"),
        _ => {
            let _ = io::stderr().write_all(USAGE.as_bytes());
            std::process::exit(2);
        }
    }
}

fn run_as_init() -> ! {
    power::set_init(true);
    panic::set_hook(Box::new(|info| log!("panic: {info}")));
    let outcome = panic::catch_unwind(AssertUnwindSafe(boot_and_serve));
    match outcome {
        Ok(Err(err)) => power::fatal(err),
        Ok(Ok(())) => power::fatal("the protocol server stopped"),
        Err(_) => power::fatal("the agent panicked"),
    }
}

/// Boots the VM and serves the host until the stream breaks.
fn boot_and_serve() -> io::Result<()> {
    let (config, phases) = init::early();
    init::switch_to_root(&config, &phases)?;
    init::finish_userland(&phases);
    if let Some(device) = &config.seed {
        if let Err(err) = seed::mount_seed(device) {
            log!("mounting the seed: {err}");
        }
        phases.mark("seed mounted");
    }
    let reaper = Reaper::start();
    let port = Arc::new(port::open(&config.port, PORT_TIMEOUT)?);
    phases.mark("port open");
    let outbox = Outbox::start(port::PortWriter(Arc::clone(&port)));
    outbox.push_control(0, &server::agent_hello());
    let server = Server::new(outbox, reaper);
    match server.serve(&mut port::PortReader::new(port)) {
        End::Eof => Ok(()),
        End::Broken(err) => Err(io::Error::new(
            err.kind(),
            format!("reading from the host: {err}"),
        )),
    }
}

fn serve_stdio() {
    // Orphaned grandchildren come back to the agent, as they would to PID 1.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    // SAFETY: descriptors 0 and 1 are open for the life of the process and
    // nothing else in the agent uses them in this mode.
    let (input, output) = unsafe { (File::from_raw_fd(0), File::from_raw_fd(1)) };
    let reaper = Reaper::start();
    let outbox = Outbox::start(output);
    outbox.push_control(0, &server::agent_hello());
    let server = Server::new(Arc::clone(&outbox), reaper);
    let mut input = io::BufReader::new(input);
    let code = match server.serve(&mut input) {
        End::Eof => 0,
        End::Broken(err) => {
            log!("reading from the host: {err}");
            1
        }
    };
    server.kill_all();
    outbox.flush(Duration::from_secs(1));
    std::process::exit(code);
}
