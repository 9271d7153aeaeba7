//! `pyro workspace secret ...`: values come from a file or standard
//! input (a terminal is read without echo), never from the command line.

use std::io::{IsTerminal, Read};

use anyhow::Context;
use pyro_core::Pyro;

use crate::cli_network::SecretCommand;

pub fn secret(pyro: &Pyro, command: SecretCommand) -> anyhow::Result<i32> {
    let (names, json) = match command {
        SecretCommand::Set(args) => {
            let value = match &args.file {
                Some(path) => pyro_core::read_secret_file(&args.name, path)?,
                None => read_stdin(&args.name)?,
            };
            let names = pyro.workspace_secret_set(&args.workspace, &args.name, &value)?;
            if !args.json {
                println!(
                    "secret {} set; give it to a command with --secret-env {}",
                    args.name, args.name
                );
            }
            (names, args.json)
        }
        SecretCommand::Unset(args) => {
            let names = pyro.workspace_secret_unset(&args.workspace, &args.name)?;
            if !args.json {
                println!("secret {} removed", args.name);
            }
            (names, args.json)
        }
        SecretCommand::List(args) => {
            let names = pyro.workspace_secret_list(&args.workspace)?;
            if !args.json {
                match names.is_empty() {
                    true => println!("no secrets"),
                    false => names.iter().for_each(|name| println!("{name}")),
                }
            }
            (names, args.json)
        }
    };
    if json {
        super::print_json(&serde_json::json!({ "secrets": names }))?;
    }
    Ok(0)
}

/// The value from standard input: a terminal is asked once, without echo.
fn read_stdin(name: &str) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut text = String::new();
        stdin
            .lock()
            .read_to_string(&mut text)
            .context("cannot read the secret from standard input")?;
        return Ok(pyro_core::without_line_end(&text).to_string());
    }
    eprint!("value of {name} (not echoed): ");
    let _echo = NoEcho::new();
    let mut line = String::new();
    stdin
        .read_line(&mut line)
        .context("cannot read the secret from the terminal")?;
    eprintln!();
    Ok(pyro_core::without_line_end(&line).to_string())
}

/// The terminal's echo off while it lives.
struct NoEcho(Option<libc::termios>);

impl NoEcho {
    fn new() -> NoEcho {
        // SAFETY: termios is plain data, filled in by tcgetattr on fd 0.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: tcgetattr/tcsetattr on standard input with a valid struct.
        unsafe {
            if libc::tcgetattr(0, &mut saved) != 0 {
                return NoEcho(None);
            }
            let mut quiet = saved;
            quiet.c_lflag &= !libc::ECHO;
            libc::tcsetattr(0, libc::TCSANOW, &quiet);
        }
        NoEcho(Some(saved))
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        if let Some(saved) = &self.0 {
            // SAFETY: restores what tcgetattr returned.
            unsafe { libc::tcsetattr(0, libc::TCSANOW, saved) };
        }
    }
}
