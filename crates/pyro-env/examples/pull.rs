//! Pulls environments into a store and prints each phase with its time.
//!
//! ```text
//! sudo cargo run -p pyro-env --example pull -- [--force] [--quiet] [--root DIR] debian:12-base debian:12
//! cargo run -p pyro-env --example pull -- --root DIR --boot AGENT debian:12   # time boot_artifacts
//! cargo run -p pyro-env --example pull -- --root DIR --prune
//! ```

use std::sync::Mutex;
use std::time::Instant;

use pyro_env::{EnvStore, Progress};

/// Prints phases with the time since the start; details indented.
struct Printer {
    started: Instant,
    quiet_details: bool,
    last_detail: Mutex<Option<String>>,
}

impl Progress for Printer {
    fn phase(&self, name: &str) {
        eprintln!("[{:7.2}s] {name}", self.started.elapsed().as_secs_f64());
    }
    fn detail(&self, line: &str) {
        if self.quiet_details {
            *self.last_detail.lock().unwrap() = Some(line.to_owned());
        } else {
            eprintln!("           | {line}");
        }
    }
    fn finish(&self) {
        eprintln!("[{:7.2}s] done", self.started.elapsed().as_secs_f64());
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mut force = false;
    let mut quiet = false;
    let mut root = std::env::temp_dir().join("pyro-example-store");
    let mut names = Vec::new();
    let mut boot_agent: Option<std::path::PathBuf> = None;
    let mut prune = false;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--force" => force = true,
            "--quiet" => quiet = true,
            "--root" => root = args.next().expect("--root DIR").into(),
            "--boot" => boot_agent = Some(args.next().expect("--boot AGENT").into()),
            "--prune" => prune = true,
            _ => names.push(arg),
        }
    }
    let store = EnvStore::open(&root).unwrap_or_else(|err| fail(&err));
    if prune {
        let report = store.prune().unwrap_or_else(|err| fail(&err));
        println!("{}", serde_json::to_string_pretty(&report).unwrap());
    }
    if let Some(agent) = boot_agent {
        let agent = std::fs::read(agent).expect("read agent");
        for name in &names {
            for round in 0..3 {
                let started = Instant::now();
                let boot = store
                    .boot_artifacts(name, &agent)
                    .unwrap_or_else(|err| fail(&err));
                eprintln!(
                    "boot_artifacts({name}) round {round}: {:?}",
                    started.elapsed()
                );
                if round == 2 {
                    println!("{}", serde_json::to_string_pretty(&boot).unwrap());
                }
            }
        }
        return;
    }
    for name in names {
        let printer = Printer {
            started: Instant::now(),
            quiet_details: quiet,
            last_detail: Mutex::new(None),
        };
        let outcome = store
            .pull(&name, force, &printer)
            .unwrap_or_else(|err| fail(&err));
        println!("{}", serde_json::to_string_pretty(&outcome).unwrap());
    }
}

fn fail(err: &dyn std::error::Error) -> ! {
    eprintln!("error: {}", pyro_util::error_chain(err));
    std::process::exit(1);
}
