//! Finding and reading the virtio-serial port the agent serves on.
//!
//! There is no udev in the guest: the agent scans
//! `/sys/class/virtio-ports/*/name` for its port name, polling until the
//! device shows up, and opens `/dev/<vportNpM>` once, read-write.
//!
//! A virtio-serial port reads as end-of-file while no host is connected to
//! its chardev, and writes block until one is. [`PortReader`] hides the
//! former: it waits for the host to come back instead of reporting EOF.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::sys::log;

const SYS_PORTS: &str = "/sys/class/virtio-ports";
/// How often to look again while the port or the host is missing.
const POLL_INTERVAL: Duration = Duration::from_millis(2);
const RECONNECT_INTERVAL: Duration = Duration::from_millis(10);

/// Waits up to `timeout` for the port named `name`, then opens it.
pub fn open(name: &str, timeout: Duration) -> io::Result<File> {
    let deadline = Instant::now() + timeout;
    let device = loop {
        if let Some(device) = find(Path::new(SYS_PORTS), name) {
            break device;
        }
        if Instant::now() >= deadline {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no virtio-serial port named {name:?} after {}s (is virtio_console loaded \
                     and the virtserialport device present?)",
                    timeout.as_secs()
                ),
            ));
        }
        thread::sleep(POLL_INTERVAL);
    };
    let path = Path::new("/dev").join(&device);
    // devtmpfs creates the node as the device registers; allow the same wait.
    loop {
        match File::options()
            .read(true)
            .write(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(&path)
        {
            Ok(file) => return Ok(file),
            Err(err) if err.kind() == io::ErrorKind::NotFound && Instant::now() < deadline => {
                thread::sleep(POLL_INTERVAL);
            }
            Err(err) => {
                return Err(io::Error::new(
                    err.kind(),
                    format!("open {}: {err}", path.display()),
                ))
            }
        }
    }
}

/// The device name (`vport0p1`) of the port called `name`, if present.
pub fn find(sys_ports: &Path, name: &str) -> Option<String> {
    let entries = fs::read_dir(sys_ports).ok()?;
    for entry in entries.flatten() {
        let Ok(port_name) = fs::read_to_string(entry.path().join("name")) else {
            continue;
        };
        if port_name.trim_end() == name {
            return entry.file_name().into_string().ok();
        }
    }
    None
}

/// Reads from the port, waiting out host disconnections instead of
/// returning end-of-file.
pub struct PortReader {
    port: Arc<File>,
    disconnected: bool,
}

impl PortReader {
    pub fn new(port: Arc<File>) -> Self {
        Self {
            port,
            disconnected: false,
        }
    }
}

impl Read for PortReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            let n = (&*self.port).read(buf)?;
            if n > 0 || buf.is_empty() {
                if self.disconnected {
                    self.disconnected = false;
                    log!("host reconnected");
                }
                return Ok(n);
            }
            if !self.disconnected {
                self.disconnected = true;
                log!("host disconnected from the port; waiting for it");
            }
            // The port polls readable while disconnected, so sleeping is the
            // only way to wait here.
            thread::sleep(RECONNECT_INTERVAL);
        }
    }
}

/// Writes to the port; shares the one descriptor with [`PortReader`].
pub struct PortWriter(pub Arc<File>);

impl Write for PortWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self.0).write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_port_by_name() {
        let root = std::env::temp_dir().join(format!("pyro-agent-ports-{}", std::process::id()));
        for (device, name) in [("vport0p0", "other"), ("vport0p1", "pyro.agent")] {
            fs::create_dir_all(root.join(device)).unwrap();
            fs::write(root.join(device).join("name"), format!("{name}\n")).unwrap();
        }
        assert_eq!(find(&root, "pyro.agent").as_deref(), Some("vport0p1"));
        assert_eq!(find(&root, "missing"), None);
        fs::remove_dir_all(&root).unwrap();
    }
}
