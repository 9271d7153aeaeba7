//! The `pyro` binary: parses arguments, calls the `pyro-core` facade, prints
//! human or JSON output and picks the exit status. No logic of its own.

mod cli;
mod cli_common;
mod cli_files;
mod cli_network;
mod cli_sessions;
mod cli_states;
mod commands;
mod hints;
mod progress;

use clap::Parser;

fn main() {
    // What our caller left open is not ours to pass on (to a supervisor,
    // QEMU, git): every child gets only what it is handed.
    pyro_util::fds::close_on_exec_from(3);
    quiet_on_closed_stdout();
    let cli = cli::Cli::parse();
    let code = match commands::dispatch(cli) {
        Ok(code) => code,
        Err(error) => {
            let mut message = pyro_util::error_chain(error.as_ref());
            let facade = error.downcast_ref::<pyro_core::Error>();
            let hint = facade.and_then(pyro_core::Error::hint);
            if let Some(hint) = hint {
                message.push_str("; ");
                message.push_str(&hints::render(&hint));
            }
            eprintln!("pyro: {}", pyro_util::text::visible_lines(&message));
            match facade {
                Some(pyro_core::Error::CreateCancelled { .. }) => commands::INTERRUPTED_EXIT,
                _ => commands::ERROR_EXIT,
            }
        }
    };
    std::process::exit(code);
}

/// `pyro workspace list | head -1`: when the reader of our stdout goes away,
/// stop quietly with the status a shell expects (128 + SIGPIPE), like any
/// Unix tool, instead of a panic report. SIGPIPE itself stays ignored, so a
/// socket to a supervisor that died still gives a proper error.
fn quiet_on_closed_stdout() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(128 + libc::SIGPIPE);
        }
        default(info);
    }));
}
