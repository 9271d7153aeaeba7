//! One module per top-level command; each returns the process exit status.

mod bench;
pub(crate) mod demo;
mod doctor;
mod env;
pub(crate) mod host;
pub(crate) mod mcp;
mod run;
mod workspace;
mod workspace_diff;
mod workspace_files;
mod workspace_network;
mod workspace_secrets;
mod workspace_sessions;
mod workspace_summary;

use crate::cli::{Cli, Command};

/// Exit status for pyro's own failures (bad input, missing environment, VM
/// trouble): 125, so it never collides with common command exit codes.
pub const ERROR_EXIT: i32 = 125;

/// Exit status when the user interrupted pyro (128 + SIGINT), as for a
/// cancelled `pyro run`.
pub const INTERRUPTED_EXIT: i32 = 130;

pub fn dispatch(cli: Cli) -> anyhow::Result<i32> {
    let pyro = pyro_core::Pyro::from_env();
    match cli.command {
        Command::Doctor(args) => doctor::doctor(&pyro, &args),
        Command::Env(command) => env::env(&pyro, command),
        Command::Run(args) => run::run(&pyro, args),
        Command::Bench(args) => bench::bench(&pyro, &args),
        Command::Demo(args) => demo::demo(args.name.as_deref()),
        Command::Host(command) => host::host(command),
        Command::Mcp(command) => mcp::mcp(&pyro, command),
        Command::Workspace(command) => workspace::workspace(&pyro, command),
        Command::Supervise { home, id, ready_fd } => Ok(pyro_core::run_supervisor(
            pyro.cache_dir(),
            &home,
            &id,
            Some(ready_fd),
        )),
    }
}

/// A runtime for one command. Single-threaded on purpose: VMs are tied to
/// the thread that spawned them (parent-death signal), which must live as
/// long as they do.
pub fn runtime() -> Runtime {
    Runtime(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("build the tokio runtime"),
    )
}

/// The command's runtime: every facade call it runs that resumed a
/// suspended workspace says so on stderr.
pub struct Runtime(tokio::runtime::Runtime);

impl Runtime {
    pub fn block_on<F: std::future::Future>(&self, call: F) -> F::Output {
        let (output, resumed) = self.0.block_on(pyro_core::noting_resumes(call));
        for resumed in resumed {
            eprintln!("pyro: {}", resumed.line());
        }
        output
    }
}

/// Prints a value as pretty JSON on stdout.
pub fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// The command's stdin: pyro's own with `--stdin`, else none.
fn stdin_input(wanted: bool) -> pyro_core::Input {
    if wanted {
        pyro_core::Input::from_reader(std::io::stdin())
    } else {
        pyro_core::Input::default()
    }
}
