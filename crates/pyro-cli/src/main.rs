//! The `pyro` binary: parses arguments, calls the `pyro-core` facade, prints
//! human or JSON output and picks the exit status. No logic of its own.

mod cli;
mod cli_files;
mod cli_sessions;
mod commands;
mod progress;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let code = match commands::dispatch(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("pyro: {}", render_chain(&error));
            commands::ERROR_EXIT
        }
    };
    std::process::exit(code);
}

/// The error and its causes, each once: `a: b: c`.
fn render_chain(error: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
    }
    parts.join(": ")
}
