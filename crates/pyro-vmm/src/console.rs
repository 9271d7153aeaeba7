//! Capture of a VM's serial console into a bounded in-memory ring.
//!
//! The guest kernel and agent print diagnostics there; the host keeps the tail
//! so that a boot failure (kernel panic, out of memory, missing disk) can be
//! explained to the user. A reader thread drains the console socket so the
//! guest never blocks on it.

use std::io::{Read, Write};
use std::sync::{Arc, Mutex};

/// Bytes of console output kept in memory.
const CAPACITY: usize = 64 * 1024;
/// Bytes of console output written to a log file, at most.
pub const FILE_CAP: u64 = 4 << 20;

/// Shared handle to the tail of a VM's console output.
#[derive(Debug, Clone, Default)]
pub struct ConsoleLog {
    inner: Arc<Mutex<Vec<u8>>>,
}

impl ConsoleLog {
    /// Starts a thread that reads `stream` until EOF into a new log, and
    /// appends it to `file` too (up to [`FILE_CAP`] bytes) when given.
    pub(crate) fn capture(
        mut stream: impl Read + Send + 'static,
        mut file: Option<std::fs::File>,
    ) -> Self {
        let log = ConsoleLog::default();
        let sink = log.clone();
        std::thread::Builder::new()
            .name("vm-console".into())
            .spawn(move || {
                let mut buf = [0u8; 8192];
                let mut written = 0u64;
                loop {
                    match stream.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => {
                            sink.append(&buf[..n]);
                            if let Some(out) = &mut file {
                                written += n as u64;
                                let ok = if written > FILE_CAP {
                                    let _ = out.write_all(b"\n[pyro: console log truncated]\n");
                                    false
                                } else {
                                    out.write_all(&buf[..n]).is_ok()
                                };
                                if !ok {
                                    file = None;
                                }
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                        Err(_) => break,
                    }
                }
            })
            .expect("spawn console thread");
        log
    }

    pub(crate) fn push_text(&self, text: &str) {
        self.append(text.as_bytes());
    }

    fn append(&self, bytes: &[u8]) {
        let mut buf = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        buf.extend_from_slice(bytes);
        if buf.len() > CAPACITY {
            let excess = buf.len() - CAPACITY;
            buf.drain(..excess);
        }
    }

    /// The captured text, lossily decoded.
    pub fn text(&self) -> String {
        let buf = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// The last `n` non-empty lines, or, after a kernel panic, the `n`
    /// lines ending at the panic line: what led to it, not the register
    /// dump that follows.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let text = self.text();
        let lines: Vec<&str> = text
            .lines()
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| !l.trim().is_empty())
            .collect();
        let end = lines
            .iter()
            .rposition(|l| l.contains("Kernel panic - not syncing"))
            .map_or(lines.len(), |i| i + 1);
        lines[end.saturating_sub(n)..end]
            .iter()
            .map(|l| l.to_string())
            .collect()
    }

    /// What the console says about why the guest died, labelled as the
    /// guest's word (a guest can print any line on purpose): the last
    /// kernel panic line, quoted with its control characters escaped, with
    /// what to do about it. An out-of-memory line counts only among the
    /// lines just before that panic, so an old OOM kill the guest lived
    /// through does not explain a later crash.
    pub fn diagnose(&self) -> Option<String> {
        const PANIC: &str = "Kernel panic - not syncing: ";
        /// Lines before the panic that may hold its out-of-memory cause.
        const LEAD_UP: usize = 30;
        let text = self.text();
        let lines: Vec<&str> = text.lines().map(|l| l.trim_end_matches('\r')).collect();
        let Some(at) = lines.iter().rposition(|l| l.contains(PANIC)) else {
            return lines
                .iter()
                .any(|l| l.contains("Initramfs unpacking failed"))
                .then(|| {
                    format!(
                        "{}: the VM memory may be too small (try 512 MiB or more)",
                        said("Initramfs unpacking failed")
                    )
                });
        };
        let why = lines[at]
            .split_once(PANIC)
            .map_or("", |(_, why)| why.trim());
        let out_of_memory = why.contains("memory")
            || lines[at.saturating_sub(LEAD_UP)..at]
                .iter()
                .any(|l| l.contains("Out of memory") || l.contains("oom-kill"));
        let advice = if out_of_memory {
            "; if it ran out of memory, give it more with --memory"
        } else if why.contains("VFS") || why.contains("initramfs") || why.contains("init") {
            "; the environment may be damaged: re-pull it with --force"
        } else {
            ""
        };
        Some(format!("{}{advice}", said(&format!("{PANIC}{why}"))))
    }
}

/// A console line as the guest's word: labelled, quoted and escaped.
fn said(line: &str) -> String {
    format!(
        "the guest's console says: \"{}\"",
        pyro_util::text::visible(line)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_only_the_tail() {
        let log = ConsoleLog::default();
        for i in 0..20_000 {
            log.append(format!("line {i}\n").as_bytes());
        }
        assert!(log.text().len() <= CAPACITY);
        assert_eq!(log.tail(1), vec!["line 19999".to_string()]);
    }

    #[test]
    fn diagnoses_out_of_memory() {
        let log = ConsoleLog::default();
        log.append(b"[    1.0] Out of memory: Killed process 1 (pyro-agent)\r\n");
        log.append(b"[    1.1] Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000009\r\n");
        let diagnosis = log.diagnose().unwrap();
        assert!(diagnosis.starts_with("the guest's console says: \"Kernel panic"));
        assert!(diagnosis.contains("--memory"), "{diagnosis}");
    }

    #[test]
    fn an_old_out_of_memory_line_does_not_explain_a_later_panic() {
        let log = ConsoleLog::default();
        log.append(b"[    1.0] Out of memory: Killed process 88 (python3)\n");
        for i in 0..100 {
            log.append(format!("[    2.{i}] working\n").as_bytes());
        }
        log.append(b"[    9.0] Kernel panic - not syncing: sysrq triggered crash\n");
        assert_eq!(
            log.diagnose().unwrap(),
            "the guest's console says: \"Kernel panic - not syncing: sysrq triggered crash\""
        );
        // Without a panic, an out-of-memory line names nothing.
        let log = ConsoleLog::default();
        log.append(b"Out of memory: Killed process 88 (python3)\n");
        assert_eq!(log.diagnose(), None);
    }

    #[test]
    fn the_last_panic_counts_and_its_escapes_stay_visible() {
        let log = ConsoleLog::default();
        log.append(b"Kernel panic - not syncing: first\n");
        log.append(b"Kernel panic - not syncing: \x1b]0;owned\x07 second\n");
        assert_eq!(
            log.diagnose().unwrap(),
            "the guest's console says: \"Kernel panic - not syncing: \\u{1b}]0;owned\\u{7} second\""
        );
    }

    #[test]
    fn tail_ends_at_the_panic_line() {
        let log = ConsoleLog::default();
        log.append(b"a\nsysrq: Trigger a crash\nKernel panic - not syncing: sysrq triggered crash\nRIP: 0033\nRSP: 002b\n");
        assert_eq!(
            log.tail(2),
            vec![
                "sysrq: Trigger a crash".to_string(),
                "Kernel panic - not syncing: sysrq triggered crash".to_string()
            ]
        );
    }

    #[test]
    fn quotes_the_panic_line() {
        let log = ConsoleLog::default();
        log.append(b"[    0.3] Kernel panic - not syncing: System is deadlocked on memory\n[    0.4] Call Trace:\n");
        assert_eq!(
            log.diagnose().unwrap(),
            "the guest's console says: \"Kernel panic - not syncing: System is deadlocked on memory\"; \
             if it ran out of memory, give it more with --memory"
        );
    }
}
