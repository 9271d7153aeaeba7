//! Who this guest is: its hostname, its machine-id, and a kernel RNG of its
//! own. The host sends them each time it starts the VM, booted or
//! restored, right after the hellos (`Message::Identity`), which
//! matters most for a guest restored from a memory image many guests share
//! (a warm template): without it they would all share one name and, until
//! the kernel reseeds, one random stream.

use std::fs;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;

use crate::sys::{self, log};

const MACHINE_ID: &str = "/etc/machine-id";
/// `RNDADDENTROPY`: `_IOW('R', 0x03, int[2])`.
const RNDADDENTROPY: libc::c_ulong = 0x4008_5203;
/// `RNDRESEEDCRNG`: `_IO('R', 0x07)`.
const RNDRESEEDCRNG: libc::c_ulong = 0x5207;
/// Most entropy bytes taken from one message.
const ENTROPY_LIMIT: usize = 512;

/// Applies an identity; each failure is logged, none is fatal.
pub fn apply(hostname: &str, machine_id: &str, entropy: &str) {
    if let Err(err) = set_hostname(hostname) {
        log!("set hostname: {err}");
    }
    if let Err(err) = write_machine_id(machine_id) {
        log!("write {MACHINE_ID}: {err}");
    }
    match decode_hex(entropy) {
        Some(bytes) if !bytes.is_empty() => {
            if let Err(err) = reseed(&bytes[..bytes.len().min(ENTROPY_LIMIT)]) {
                log!("reseed the kernel RNG: {err}");
            }
        }
        _ => log!("identity: the entropy is not hex; the RNG was not reseeded"),
    }
}

pub fn set_hostname(name: &str) -> io::Result<()> {
    // SAFETY: the pointer and length describe `name`, which outlives the call.
    sys::check(unsafe { libc::sethostname(name.as_ptr().cast(), name.len()) }).map(drop)
}

/// Writes the machine-id (32 hex digits and a newline) unless it is there.
fn write_machine_id(id: &str) -> io::Result<()> {
    if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not 32 hex digits",
        ));
    }
    let content = format!("{}\n", id.to_ascii_lowercase());
    if fs::read_to_string(MACHINE_ID).is_ok_and(|old| old == content) {
        return Ok(());
    }
    let temp = format!("{MACHINE_ID}.pyro-new");
    fs::write(&temp, content)?;
    fs::rename(&temp, MACHINE_ID)
}

/// Mixes `bytes` into the kernel pool, credited, and makes the kernel's
/// generator reseed from it at once.
fn reseed(bytes: &[u8]) -> io::Result<()> {
    let urandom = fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_CLOEXEC)
        .open("/dev/urandom")?;
    // struct rand_pool_info { int entropy_count; int buf_size; __u32 buf[]; }
    let mut info = Vec::with_capacity(8 + bytes.len());
    info.extend_from_slice(&((bytes.len() * 8) as i32).to_ne_bytes());
    info.extend_from_slice(&(bytes.len() as i32).to_ne_bytes());
    info.extend_from_slice(bytes);
    // SAFETY: `info` is a rand_pool_info of `bytes.len()` payload bytes and
    // outlives the call.
    sys::check(unsafe { libc::ioctl(urandom.as_raw_fd(), RNDADDENTROPY, info.as_ptr()) })?;
    // SAFETY: RNDRESEEDCRNG takes no argument.
    sys::check(unsafe { libc::ioctl(urandom.as_raw_fd(), RNDRESEEDCRNG) }).map(drop)
}

fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn decodes_hex() {
        assert_eq!(super::decode_hex("00ff10"), Some(vec![0, 255, 16]));
        assert_eq!(super::decode_hex("0"), None);
        assert_eq!(super::decode_hex("zz"), None);
    }
}
