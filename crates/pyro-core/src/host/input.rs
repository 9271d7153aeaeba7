//! A command's standard input from the host: any reader (the CLI's stdin,
//! a file), read on a thread of its own and sent under the guest's ack
//! window, so a slow or silent command never makes pyro buffer more than
//! the window.

use std::fmt;
use std::io::Read;
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;

/// Bytes read per stdin frame.
const CHUNK: usize = 64 * 1024;
/// Chunks read ahead of the guest.
const AHEAD: usize = 4;

/// Where a command's stdin comes from; none (`/dev/null`) by default.
/// Cloning shares the one reader: it is taken by the first command that
/// runs.
#[derive(Clone, Default)]
pub struct Input(Option<Arc<Mutex<Option<Reader>>>>);

/// The reader, until a command takes it.
type Reader = Box<dyn Read + Send>;

impl Input {
    /// The command reads `reader` until its end.
    pub fn from_reader(reader: impl Read + Send + 'static) -> Self {
        Input(Some(Arc::new(Mutex::new(Some(Box::new(reader))))))
    }

    /// Whether there is input at all.
    pub fn is_some(&self) -> bool {
        self.0.is_some()
    }

    /// Starts reading ahead on a thread; `None` when there is no input.
    /// The receiver yields chunks, then `None` at the end (or on a read
    /// error, which ends the input like an end of file).
    pub(crate) fn start(&self) -> Option<mpsc::Receiver<Vec<u8>>> {
        let mut reader = self.0.as_ref()?.lock().ok()?.take()?;
        let (tx, rx) = mpsc::channel(AHEAD);
        std::thread::spawn(move || loop {
            let mut chunk = vec![0u8; CHUNK];
            match reader.read(&mut chunk) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    chunk.truncate(n);
                    // The command ended: nobody wants the rest.
                    if tx.blocking_send(chunk).is_err() {
                        break;
                    }
                }
            }
        });
        Some(rx)
    }
}

impl fmt::Debug for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "Input(reader)"
        } else {
            "Input(none)"
        })
    }
}
