//! Loading the kernel modules the initramfs carries.
//!
//! The host puts plain `.ko` files under `/pyro/modules/` and their names, one
//! per line and already in dependency order, in `/pyro/modules.order`. There is
//! no `modules.dep` and no `modprobe`: each file is loaded with
//! `finit_module(2)` in that order.

use std::fs::{self, File};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Instant;

use crate::sys::{log, Context};

/// The module file names listed in a `modules.order` text, in order. Blank
/// lines and `#` comments are skipped.
pub fn parse_order(text: &str) -> Vec<&str> {
    text.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
}

/// Loads every module listed in `order_file` from `dir`, then deletes the
/// files to give their memory back. A missing order file loads nothing.
/// Failures are logged and skipped: a later mount or port lookup reports
/// what is really missing. With `verbose`, logs the time each load took.
/// Returns how many modules were loaded.
pub fn load_all(order_file: &Path, dir: &Path, verbose: bool) -> usize {
    let text = match fs::read_to_string(order_file) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => return 0,
        Err(err) => {
            log!("cannot read {}: {err}", order_file.display());
            return 0;
        }
    };
    let mut loaded = 0;
    for name in parse_order(&text) {
        let path = dir.join(name);
        let begun = Instant::now();
        match load(&path) {
            Ok(()) => loaded += 1,
            Err(err) => log!("{err}"),
        }
        if verbose {
            log!("module {name}: {} µs", begun.elapsed().as_micros());
        }
        // The initramfs lives in RAM for the life of the VM.
        let _ = fs::remove_file(&path);
    }
    loaded
}

/// Loads one module file; a module that is already loaded counts as success.
fn load(path: &Path) -> io::Result<()> {
    let file = File::open(path).context(|| format!("open module {}", path.display()))?;
    let params = c"";
    // SAFETY: finit_module reads the open descriptor and a NUL-terminated
    // (empty) parameter string that outlives the call.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_finit_module,
            file.as_raw_fd(),
            params.as_ptr(),
            0 as libc::c_int,
        )
    };
    if ret < 0 {
        let err = io::Error::last_os_error();
        if err.raw_os_error() != Some(libc::EEXIST) {
            return Err(err).context(|| format!("load module {}", path.display()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn order_skips_blanks_and_comments() {
        let text = "virtio_ring.ko\n\n  virtio.ko \n# note\nvirtio_mmio.ko";
        assert_eq!(
            parse_order(text),
            vec!["virtio_ring.ko", "virtio.ko", "virtio_mmio.ko"]
        );
    }

    #[test]
    fn missing_order_file_loads_nothing() {
        let dir = std::env::temp_dir().join(format!("pyro-agent-mods-{}", std::process::id()));
        assert_eq!(load_all(&dir.join("modules.order"), &dir, false), 0);
    }
}
