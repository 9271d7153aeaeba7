//! Progress for long work: a spinner with the phase and elapsed time on a
//! terminal, plain `pyro: …` lines otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

pub struct TerminalProgress {
    bar: Option<ProgressBar>,
    phase: Mutex<String>,
}

impl TerminalProgress {
    /// A spinner when stderr is a terminal and `quiet` is false.
    pub fn new(quiet: bool) -> Self {
        let bar = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new_spinner();
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {prefix:.bold} {wide_msg}",
                )
                .expect("valid template"),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        TerminalProgress {
            bar,
            phase: Mutex::new(String::new()),
        }
    }
}

impl pyro_core::Progress for TerminalProgress {
    fn phase(&self, name: &str) {
        *self.phase.lock().expect("phase") = name.to_string();
        match &self.bar {
            Some(bar) => {
                bar.set_prefix(name.to_string());
                bar.set_message("");
            }
            None => eprintln!("pyro: {name}"),
        }
    }

    fn detail(&self, line: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(line.trim().to_string());
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
