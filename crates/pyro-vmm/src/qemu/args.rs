//! The QEMU command line and the guest kernel command line.

use std::os::fd::RawFd;

use crate::{Accel, GuestRam, RootDisk, SeedDisk, VmSpec};

/// Kernel command line tuned for fast boots (see docs/architecture.md): no
/// self-tests, no TSC calibration (which can hang under a busy TCG host), no
/// legacy keyboard probing, no LSMs or audit, reboot and panic end the VM.
pub fn kernel_cmdline(extra: &[String]) -> String {
    let mut words = vec![
        "console=ttyS0".to_string(),
        "quiet".into(),
        "reboot=t".into(),
        "panic=-1".into(),
        "cryptomgr.notests=1".into(),
        "no_timer_check".into(),
        "tsc=reliable".into(),
        "mitigations=off".into(),
        "rodata=off".into(),
        "i8042.noaux".into(),
        "i8042.nokbd".into(),
        "i8042.nopnp".into(),
        "lsm=".into(),
        "audit=0".into(),
        "rdinit=/init".into(),
    ];
    if let Some(khz) = host_tsc_khz() {
        words.push(format!("tsc_early_khz={khz}"));
    }
    words.extend(extra.iter().cloned());
    words.join(" ")
}

/// The host's TSC frequency in kHz, from `/proc/cpuinfo`'s `cpu MHz`.
fn host_tsc_khz() -> Option<u64> {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    parse_cpu_khz(&cpuinfo)
}

fn parse_cpu_khz(cpuinfo: &str) -> Option<u64> {
    let line = cpuinfo.lines().find(|l| l.starts_with("cpu MHz"))?;
    let mhz: f64 = line.split(':').nth(1)?.trim().parse().ok()?;
    (mhz > 0.0).then(|| (mhz * 1000.0).round() as u64)
}

/// Arguments for `qemu-system-x86_64` booting `spec`, with the console,
/// agent and QMP monitor channels on inherited descriptors.
/// Descriptors QEMU inherits for its channels.
pub(crate) struct ChannelFds {
    pub console: RawFd,
    pub agent: RawFd,
    pub monitor: RawFd,
    /// The guest NIC's link, when the spec asks for a network.
    pub network: Option<RawFd>,
    /// An ephemeral root disk's throw-away overlay, open for writing.
    pub ephemeral: Option<RawFd>,
}

/// The descriptor set an ephemeral root disk's overlay is added to.
const EPHEMERAL_FDSET: u32 = 1;

pub(crate) fn qemu_args(spec: &VmSpec, fds: &ChannelFds) -> Vec<String> {
    let (accel, cpu) = match spec.accel {
        Accel::Kvm => ("kvm", "host"),
        // qemu64 boots fastest under TCG; the x86-64-v2 extensions keep
        // binaries built for that baseline (many Python wheels) working.
        Accel::Tcg => ("tcg", "qemu64,+ssse3,+sse4.1,+sse4.2,+popcnt,+cx16"),
    };
    let mut args: Vec<String> = [
        "-M",
        "microvm",
        "-accel",
        accel,
        "-cpu",
        cpu,
        "-nodefaults",
        "-no-user-config",
        "-display",
        "none",
        "-no-reboot",
    ]
    .map(String::from)
    .to_vec();
    args.extend(super::confinement::sandbox_args());
    // The RAM is always the backend `pyro.ram`, so a state saved by a VM
    // of either kind of RAM restores into either (a migration stream names
    // its RAM blocks).
    // `-M microvm,memory-backend=…` must come with the first -M.
    args[1] = "microvm,memory-backend=pyro.ram".into();
    let backend = match &spec.ram {
        GuestRam::Anonymous => format!("memory-backend-ram,id=pyro.ram,size={}M", spec.memory_mib),
        GuestRam::File { path, shared } => {
            // `readonly=on` would make the RAM read-only to the guest too;
            // a private mapping never writes the file back anyway.
            let mapping = match shared {
                true => "share=on",
                false => "share=off",
            };
            format!(
                "memory-backend-file,id=pyro.ram,size={}M,mem-path={},{mapping}",
                spec.memory_mib,
                escape_option(&path.display().to_string())
            )
        }
    };
    args.extend(["-object".into(), backend]);
    args.extend([
        "-smp".into(),
        spec.cpus.to_string(),
        "-m".into(),
        spec.memory_mib.to_string(),
        "-kernel".into(),
        spec.kernel.display().to_string(),
        "-initrd".into(),
        spec.initramfs.display().to_string(),
        "-append".into(),
        kernel_cmdline(&spec.extra_cmdline),
        "-chardev".into(),
        format!("socket,id=console,fd={}", fds.console),
        "-serial".into(),
        "chardev:console".into(),
        "-device".into(),
        "virtio-serial-device".into(),
        "-chardev".into(),
        format!("socket,id=agent,fd={}", fds.agent),
        "-device".into(),
        format!(
            "virtserialport,chardev=agent,name={}",
            pyro_protocol::AGENT_PORT_NAME
        ),
        "-chardev".into(),
        format!("socket,id=monitor,fd={}", fds.monitor),
        "-mon".into(),
        "chardev=monitor,mode=control".into(),
    ]);
    // No `-device vmgenid`: microvm's ACPI tables (QEMU 7.2) have no node
    // for it, so Linux never sees it. A restored guest's RNG is reseeded by
    // the agent instead, from host entropy, before any request runs.
    if let Some(fd) = fds.network {
        args.extend([
            "-netdev".into(),
            format!("socket,id=net,fd={fd}"),
            "-device".into(),
            format!(
                "virtio-net-device,netdev=net,mac={}",
                pyro_protocol::net::GUEST_MAC
            ),
        ]);
    }
    if spec.restore_from.is_some() {
        args.extend(["-incoming".into(), "defer".into()]);
    }
    match &spec.root_disk {
        Some(RootDisk::Ephemeral { .. }) => {
            // The overlay (over the base) is a descriptor: QEMU's jail has
            // no directory to make one in. Opened read-write at once
            // (`-drive` would try read-only first).
            args.extend([
                "-add-fd".into(),
                format!("fd={},set={EPHEMERAL_FDSET}", fds.ephemeral.unwrap_or(-1)),
                "-blockdev".into(),
                format!(
                    "driver=qcow2,node-name=root,discard=unmap,cache.no-flush=on,file.driver=file,file.filename=/dev/fdset/{EPHEMERAL_FDSET}"
                ),
                "-device".into(),
                "virtio-blk-device,drive=root".into(),
            ]);
        }
        Some(RootDisk::Persistent { path, format }) => args.extend([
            "-drive".into(),
            format!(
                "id=root,if=none,file={},format={},cache=writeback,discard=unmap",
                escape_option(&path.display().to_string()),
                format.as_str()
            ),
            "-device".into(),
            "virtio-blk-device,drive=root".into(),
        ]),
        None => {}
    }
    if let Some(seed) = &spec.seed_disk {
        let drive = match seed {
            SeedDisk::Empty { bytes } => {
                format!("id=seed,if=none,driver=null-co,size={bytes},read-zeroes=on,readonly=on")
            }
            SeedDisk::Image { path, .. } => format!(
                "id=seed,if=none,file={},format=raw,readonly=on",
                escape_option(&path.display().to_string())
            ),
        };
        args.extend([
            "-drive".into(),
            drive,
            "-device".into(),
            "virtio-blk-device,drive=seed".into(),
        ]);
    }
    if let Some(bytes) = spec.transfer_slot {
        args.extend([
            "-blockdev".into(),
            format!("driver=null-co,node-name={TRANSFER_ZEROS},size={bytes},read-zeroes=on"),
            "-blockdev".into(),
            format!("driver=raw,node-name={TRANSFER_NODE},file={TRANSFER_ZEROS}"),
            "-device".into(),
            // A full host disk fails the guest's write (reported) instead
            // of pausing the VM.
            format!("virtio-blk-device,drive={TRANSFER_NODE},werror=report,rerror=report"),
        ]);
    }
    args
}

/// The transfer slot's format node, whose `file` child is swapped.
pub(crate) const TRANSFER_NODE: &str = "xfer";
/// Its file child when no image is attached.
pub(crate) const TRANSFER_ZEROS: &str = "xfer-zeros";

/// The QEMU command line of `spec` with every path and descriptor left
/// out: what a saved state of it depends on (machine, CPU, devices, sizes,
/// kernel command line). A state saved from one spec restores only into a
/// spec of the same signature. The host's TSC rate is left out too: it
/// only steers a boot, and `/proc/cpuinfo` gives another one from read to
/// read under frequency scaling.
pub fn machine_signature(spec: &VmSpec) -> String {
    let mut plain = spec.clone();
    plain.kernel = "-".into();
    plain.initramfs = "-".into();
    plain.console_log = None;
    plain.restore_from = None;
    plain.ram = match plain.ram {
        GuestRam::Anonymous => GuestRam::Anonymous,
        GuestRam::File { .. } => GuestRam::File {
            path: "-".into(),
            shared: false,
        },
    };
    plain.seed_disk = plain.seed_disk.map(|seed| match seed {
        SeedDisk::Empty { bytes } | SeedDisk::Image { bytes, .. } => SeedDisk::Empty { bytes },
    });
    plain.root_disk = plain.root_disk.map(|disk| RootDisk::Persistent {
        path: "-".into(),
        format: match disk {
            RootDisk::Ephemeral { format, .. } | RootDisk::Persistent { format, .. } => format,
        },
    });
    let fds = ChannelFds {
        console: 0,
        agent: 0,
        monitor: 0,
        network: plain.network.then_some(0),
        ephemeral: None,
    };
    let args = qemu_args(&plain, &fds).join(" ");
    let words = args.split(' ').filter(|w| !w.starts_with("tsc_early_khz="));
    words.collect::<Vec<_>>().join(" ")
}

/// QEMU option values escape `,` by doubling it.
fn escape_option(value: &str) -> String {
    value.replace(',', ",,")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DiskFormat;
    use std::path::PathBuf;

    #[test]
    fn parses_cpu_mhz() {
        let cpuinfo = "processor\t: 0\ncpu MHz\t\t: 2095.076\n";
        assert_eq!(parse_cpu_khz(cpuinfo), Some(2_095_076));
        assert_eq!(parse_cpu_khz("nothing"), None);
    }

    #[test]
    fn an_ephemeral_disk_is_a_descriptor() {
        let spec = VmSpec {
            kernel: "/k".into(),
            initramfs: "/i".into(),
            root_disk: Some(RootDisk::Ephemeral {
                base: PathBuf::from("/cache/a,b.qcow2"),
                format: DiskFormat::Qcow2,
            }),
            cpus: 1,
            memory_mib: 512,
            ram: GuestRam::Anonymous,
            extra_cmdline: vec!["pyro.mode=poweroff".into()],
            accel: Accel::Tcg,
            restore_from: None,
            console_log: None,
            network: false,
            seed_disk: None,
            transfer_slot: None,
            file_size_limit: None,
            disk_roots: Vec::new(),
            layer_dir: None,
        };
        let fds = ChannelFds {
            console: 5,
            agent: 6,
            monitor: 7,
            network: None,
            ephemeral: Some(9),
        };
        let args = qemu_args(&spec, &fds).join(" ");
        assert!(!args.contains("-netdev"), "no network device unless asked");
        assert!(args.contains("-add-fd fd=9,set=1 -blockdev driver=qcow2,node-name=root,"));
        assert!(args.contains("file.filename=/dev/fdset/1 -device virtio-blk-device,drive=root"));
        assert!(args.contains("socket,id=console,fd=5"));
        assert!(args.contains("socket,id=agent,fd=6"));
        assert!(args.contains("pyro.mode=poweroff"));
        assert!(args.contains("-accel tcg"));
        assert!(args.contains("socket,id=monitor,fd=7"));
        assert!(!args.contains("-incoming"));
        assert!(args.contains("microvm,memory-backend=pyro.ram"));
        assert!(args.contains("memory-backend-ram,id=pyro.ram,size="));
    }

    #[test]
    fn paths_that_look_like_options_stay_option_values() {
        let spec = VmSpec {
            kernel: "-kernel-path".into(),
            initramfs: "-initrd-path".into(),
            root_disk: Some(RootDisk::Persistent {
                path: PathBuf::from("-disk,format=raw"),
                format: DiskFormat::Qcow2,
            }),
            cpus: 1,
            memory_mib: 512,
            ram: GuestRam::File {
                path: "/t/ram,x".into(),
                shared: false,
            },
            extra_cmdline: vec![],
            accel: Accel::Tcg,
            restore_from: None,
            console_log: None,
            network: false,
            seed_disk: None,
            transfer_slot: None,
            file_size_limit: None,
            disk_roots: Vec::new(),
            layer_dir: None,
        };
        let fds = ChannelFds {
            console: 5,
            agent: 6,
            monitor: 7,
            network: Some(8),
            ephemeral: None,
        };
        let args = qemu_args(&spec, &fds);
        assert!(args.join(" ").contains("-netdev socket,id=net,fd=8"));
        assert_eq!(args[1], "microvm,memory-backend=pyro.ram");
        assert!(args
            .join(" ")
            .contains("memory-backend-file,id=pyro.ram,size=512M,mem-path=/t/ram,,x,share=off"));
        let after = |flag: &str| {
            let at = args.iter().position(|a| a == flag).unwrap();
            args[at + 1].clone()
        };
        assert_eq!(after("-kernel"), "-kernel-path");
        assert_eq!(after("-initrd"), "-initrd-path");
        // The comma is doubled: no `format=raw` option can be smuggled in.
        assert!(after("-drive").starts_with("id=root,if=none,file=-disk,,format=raw,format=qcow2,"));
    }

    #[test]
    fn an_empty_seed_slot_and_a_seed_image_are_the_same_machine() {
        let mut spec = VmSpec {
            kernel: "/k".into(),
            initramfs: "/i".into(),
            root_disk: None,
            cpus: 1,
            memory_mib: 512,
            ram: GuestRam::Anonymous,
            extra_cmdline: vec![],
            accel: Accel::Tcg,
            restore_from: None,
            console_log: None,
            network: false,
            seed_disk: Some(SeedDisk::Empty { bytes: 1 << 33 }),
            transfer_slot: None,
            file_size_limit: None,
            disk_roots: Vec::new(),
            layer_dir: None,
        };
        let empty = machine_signature(&spec);
        let fds = ChannelFds {
            console: 5,
            agent: 6,
            monitor: 7,
            network: None,
            ephemeral: Some(9),
        };
        assert!(qemu_args(&spec, &fds)
            .join(" ")
            .contains("driver=null-co,size=8589934592,read-zeroes=on,readonly=on"));
        spec.seed_disk = Some(SeedDisk::Image {
            path: "/w/seed,x.img".into(),
            bytes: 1 << 33,
        });
        assert_eq!(machine_signature(&spec), empty);
        assert!(qemu_args(&spec, &fds)
            .join(" ")
            .contains("id=seed,if=none,file=/w/seed,,x.img,format=raw,readonly=on"));
    }
}
