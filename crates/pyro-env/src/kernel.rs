//! The guest kernel: Debian's `linux-image-*-amd64` package, fetched with the
//! host's apt, unpacked with `dpkg-deb`, and turned into an uncompressed
//! `vmlinux` plus the boot modules.
//!
//! Why `vmlinux`: a compressed bzImage spends most of a TCG boot
//! decompressing itself (~4.7 s to ready against ~1.8 s, see DESIGN.md), so
//! we decompress once here. Debian's bzImage payload is an xz stream (magic
//! `FD 37 7A 58 5A 00`) somewhere after the setup code; we find it, decode it
//! and check the result is an ELF image, which QEMU boots through its PVH
//! entry note.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::command::{self, CommandError};
use crate::Progress;

/// The meta-package that names the current kernel ABI.
pub const META_PACKAGE: &str = "linux-image-amd64";

const XZ_MAGIC: &[u8] = &[0xFD, 0x37, 0x7A, 0x58, 0x5A, 0x00];
const ELF_MAGIC: &[u8] = b"\x7fELF";
/// apt lists missing or stale is the usual cause of resolve/download failures.
const APT_HINT: &str = "run apt-get update and try again";

/// Why the kernel could not be fetched or unpacked.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    #[error("could not resolve the kernel package")]
    Resolve(#[source] CommandError),
    #[error("apt knows no versioned dependency of {META_PACKAGE}; {APT_HINT} (is this host using Debian bookworm apt sources?)")]
    NoVersionedPackage,
    #[error("could not download the kernel package")]
    Download(#[source] CommandError),
    #[error("could not unpack the kernel package")]
    Unpack(#[source] CommandError),
    #[error("apt-get download left no .deb in {dir}")]
    NoDeb { dir: PathBuf },
    #[error("the kernel package has no {what} under {dir}")]
    MissingInPackage { what: &'static str, dir: PathBuf },
    #[error("no xz-compressed payload in {path}; pyro reads Debian's xz-compressed kernels only")]
    NoXzPayload { path: PathBuf },
    #[error("the xz payload of {path} does not decode to an ELF vmlinux")]
    NotElf { path: PathBuf },
    #[error("could not read the kernel files")]
    Io(#[from] std::io::Error),
}

/// The versioned kernel package apt would install for [`META_PACKAGE`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelPackage {
    /// e.g. `linux-image-6.1.0-56-amd64`.
    pub name: String,
    /// e.g. `6.1.192-2`.
    pub version: String,
}

/// Asks the host's apt which versioned package the meta-package depends on
/// and which version of it apt would fetch.
pub fn resolve(progress: &dyn Progress) -> Result<KernelPackage, KernelError> {
    let out = command::run(
        &mut apt_cache(&["depends"], META_PACKAGE),
        progress,
        APT_HINT,
    )
    .map_err(KernelError::Resolve)?;
    let name = parse_depends(&out.stdout).ok_or(KernelError::NoVersionedPackage)?;
    let out = command::run(
        &mut apt_cache(&["show", "--no-all-versions"], &name),
        progress,
        APT_HINT,
    )
    .map_err(KernelError::Resolve)?;
    let version = out
        .stdout
        .iter()
        .find_map(|line| line.strip_prefix("Version:"))
        .map(|v| v.trim().to_owned())
        .ok_or(KernelError::NoVersionedPackage)?;
    Ok(KernelPackage { name, version })
}

/// `apt-cache <args> -- <package>`.
fn apt_cache(args: &[&str], package: &str) -> Command {
    let mut cmd = Command::new("apt-cache");
    cmd.args(args).arg("--").arg(package);
    cmd
}

/// `apt-get download -- name=version`.
fn download_command(package: &KernelPackage) -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.args(["download", "-q", "--"])
        .arg(format!("{}={}", package.name, package.version));
    cmd
}

/// `dpkg-deb -x -- deb tree`.
fn unpack_command(deb: &Path, tree: &Path) -> Command {
    let mut cmd = Command::new("dpkg-deb");
    cmd.args(["-x", "--"]).arg(deb).arg(tree);
    cmd
}

/// Picks `linux-image-<abi>-amd64` out of `apt-cache depends` output.
fn parse_depends(lines: &[String]) -> Option<String> {
    lines.iter().find_map(|line| {
        let dep = line.trim().strip_prefix("Depends:")?.trim();
        let dep = dep.trim_start_matches('|').trim();
        (dep.starts_with("linux-image-") && dep != META_PACKAGE && !dep.starts_with('<'))
            .then(|| dep.to_owned())
    })
}

/// The unpacked kernel package.
#[derive(Debug)]
pub struct UnpackedKernel {
    /// `boot/vmlinuz-<release>`.
    pub vmlinuz: PathBuf,
    /// `lib/modules/<release>`.
    pub modules_dir: PathBuf,
    /// e.g. `6.1.0-56-amd64` (what `uname -r` prints in the guest).
    pub release: String,
}

/// Downloads `package` into `work` (apt-get runs with its cwd there) and
/// unpacks it into `work/x`.
pub fn download_and_unpack(
    package: &KernelPackage,
    work: &Path,
    progress: &dyn Progress,
) -> Result<UnpackedKernel, KernelError> {
    fs_err::create_dir_all(work)?;
    // apt-get download as root warns that the _apt sandbox user cannot
    // write here; the download still succeeds, unsandboxed.
    command::run(
        download_command(package).current_dir(work),
        progress,
        APT_HINT,
    )
    .map_err(KernelError::Download)?;
    let deb = fs_err::read_dir(work)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .ok_or_else(|| KernelError::NoDeb {
            dir: work.to_owned(),
        })?;
    let tree = work.join("x");
    command::run(&mut unpack_command(&deb, &tree), progress, "").map_err(KernelError::Unpack)?;
    locate(&tree)
}

/// Finds the kernel image and module directory in an unpacked package.
pub fn locate(tree: &Path) -> Result<UnpackedKernel, KernelError> {
    let boot = tree.join("boot");
    let vmlinuz = fs_err::read_dir(&boot)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("vmlinuz-"))
        })
        .ok_or(KernelError::MissingInPackage {
            what: "boot/vmlinuz-*",
            dir: tree.to_owned(),
        })?;
    let release = vmlinuz
        .file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .trim_start_matches("vmlinuz-")
        .to_owned();
    let modules_dir = ["lib/modules", "usr/lib/modules"]
        .iter()
        .map(|dir| tree.join(dir).join(&release))
        .find(|dir| dir.is_dir())
        .ok_or(KernelError::MissingInPackage {
            what: "lib/modules/<release>",
            dir: tree.to_owned(),
        })?;
    Ok(UnpackedKernel {
        vmlinuz,
        modules_dir,
        release,
    })
}

/// Reads a bzImage and returns the ELF `vmlinux` inside it.
pub fn extract_vmlinux(vmlinuz: &Path) -> Result<Vec<u8>, KernelError> {
    let image = fs_err::read(vmlinuz)?;
    vmlinux_from_bzimage(&image).map_err(|found_xz| {
        if found_xz {
            KernelError::NotElf {
                path: vmlinuz.to_owned(),
            }
        } else {
            KernelError::NoXzPayload {
                path: vmlinuz.to_owned(),
            }
        }
    })
}

/// Tries each xz magic in `image` until one decodes to an ELF file.
/// `Err(true)` means xz streams were found but none held an ELF image.
fn vmlinux_from_bzimage(image: &[u8]) -> Result<Vec<u8>, bool> {
    let mut found_xz = false;
    let mut start = 0;
    while let Some(offset) = find(&image[start..], XZ_MAGIC) {
        let at = start + offset;
        found_xz = true;
        if let Some(out) = decode_one_stream(&image[at..]) {
            if out.starts_with(ELF_MAGIC) {
                return Ok(out);
            }
        }
        start = at + 1;
    }
    Err(found_xz)
}

/// Decodes the xz stream at the start of `input`, ignoring what follows it
/// (the bzImage tail; `xz2::read::XzDecoder` would reject that as corrupt).
fn decode_one_stream(input: &[u8]) -> Option<Vec<u8>> {
    use xz2::stream::{Action, Status, Stream};
    /// Far above any kernel; stops a hostile stream from eating memory.
    const MAX_OUT: usize = 1 << 30;
    let mut stream = Stream::new_stream_decoder(u64::MAX, 0).ok()?;
    let mut out = Vec::with_capacity(input.len().saturating_mul(4).min(MAX_OUT));
    loop {
        if out.len() == out.capacity() {
            if out.len() >= MAX_OUT {
                return None;
            }
            out.reserve(16 << 20);
        }
        let consumed = usize::try_from(stream.total_in()).ok()?;
        let (in_before, out_before) = (consumed, out.len());
        let status = stream
            .process_vec(&input[consumed..], &mut out, Action::Run)
            .ok()?;
        if status == Status::StreamEnd {
            return Some(out);
        }
        let progressed = stream.total_in() as usize != in_before || out.len() != out_before;
        if !progressed && out.len() < out.capacity() {
            return None; // input ended mid-stream
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    fn xz(data: &[u8]) -> Vec<u8> {
        let mut enc = xz2::write::XzEncoder::new(Vec::new(), 6);
        enc.write_all(data).unwrap();
        enc.finish().unwrap()
    }

    #[test]
    fn extracts_elf_from_a_synthetic_bzimage() {
        let mut payload = b"\x7fELF\x02\x01\x01".to_vec();
        payload.extend(std::iter::repeat_n(0x90u8, 10_000));
        let mut image = vec![0u8; 512];
        image.extend_from_slice(b"HdrS");
        // A decoy: the magic followed by garbage must be skipped.
        image.extend_from_slice(XZ_MAGIC);
        image.extend_from_slice(b"garbage");
        image.extend_from_slice(&xz(&payload));
        image.extend_from_slice(&[0xAA; 64]); // the bzImage tail
        assert_eq!(vmlinux_from_bzimage(&image).unwrap(), payload);
    }

    #[test]
    fn reports_no_payload_and_non_elf_payloads() {
        assert_eq!(vmlinux_from_bzimage(b"no xz here"), Err(false));
        let mut image = vec![0u8; 16];
        image.extend_from_slice(&xz(b"not an elf"));
        assert_eq!(vmlinux_from_bzimage(&image), Err(true));
    }

    #[test]
    fn parses_apt_cache_depends() {
        let lines: Vec<String> = ["linux-image-amd64", "  Depends: linux-image-6.1.0-56-amd64"]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        assert_eq!(
            parse_depends(&lines).as_deref(),
            Some("linux-image-6.1.0-56-amd64")
        );
        assert_eq!(parse_depends(&[]), None);
    }

    /// Uses the kernel unpacked at /tmp/k when present (skips otherwise).
    #[test]
    fn extracts_real_vmlinux_if_present() {
        let tree = Path::new("/tmp/k/x");
        if !tree.join("boot").is_dir() {
            eprintln!("skipping: /tmp/k/x not present");
            return;
        }
        let kernel = locate(tree).unwrap();
        assert_eq!(kernel.release, "6.1.0-56-amd64");
        let vmlinux = extract_vmlinux(&kernel.vmlinuz).unwrap();
        assert!(vmlinux.starts_with(ELF_MAGIC));
        assert!(vmlinux.len() > 20 << 20);
    }

    #[test]
    fn package_names_and_paths_come_after_the_end_of_options() {
        let args = |cmd: &Command| -> Vec<String> {
            cmd.get_args()
                .map(|a| a.to_string_lossy().into_owned())
                .collect()
        };
        assert_eq!(args(&apt_cache(&["show"], "-x")), ["show", "--", "-x"]);
        let package = KernelPackage {
            name: "-x".into(),
            version: "1".into(),
        };
        assert_eq!(args(&download_command(&package))[2..], ["--", "-x=1"]);
        let unpack = unpack_command(Path::new("-deb"), Path::new("-tree"));
        assert_eq!(args(&unpack), ["-x", "--", "-deb", "-tree"]);
    }
}
