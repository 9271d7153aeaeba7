//! How much host memory a workspace's VM holds, from the kernel's
//! accounting of its QEMU process (`/proc/PID/smaps_rollup`).

use serde::Serialize;

/// A VM's host memory. Pages shared with other VMs (a warm template's
/// RAM image, mapped copy-on-write by all of them) count in `rss_bytes`,
/// in `pss_bytes` divided among the sharers, and not in `unique_bytes`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct HostMemory {
    /// The QEMU process.
    pub qemu_pid: u32,
    /// Resident pages, shared ones whole.
    pub rss_bytes: u64,
    /// Proportional set size: shared pages divided among their users.
    pub pss_bytes: u64,
    /// Pages only this VM holds (USS): what deleting it gives back.
    pub unique_bytes: u64,
}

impl HostMemory {
    /// `38.0 MiB unique, 95.0 MiB proportional, 160.0 MiB resident`.
    pub fn line(&self) -> String {
        use pyro_util::human_bytes;
        format!(
            "{} unique, {} proportional, {} resident",
            human_bytes(self.unique_bytes),
            human_bytes(self.pss_bytes),
            human_bytes(self.rss_bytes)
        )
    }
}

/// The memory of the QEMU process that `supervisor` started, if it runs.
pub(crate) fn of_vm(supervisor: u32) -> Option<HostMemory> {
    let qemu_pid = qemu_child(supervisor)?;
    let rollup = std::fs::read_to_string(format!("/proc/{qemu_pid}/smaps_rollup")).ok()?;
    let mut memory = parse_rollup(&rollup)?;
    memory.qemu_pid = qemu_pid;
    Some(memory)
}

/// The supervisor's child whose command is QEMU.
fn qemu_child(supervisor: u32) -> Option<u32> {
    let tasks = std::fs::read_dir(format!("/proc/{supervisor}/task")).ok()?;
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|children| {
            children
                .split_whitespace()
                .filter_map(|p| p.parse::<u32>().ok())
                .collect::<Vec<_>>()
        })
        .find(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.starts_with("qemu-system"))
        })
}

fn parse_rollup(text: &str) -> Option<HostMemory> {
    let field = |name: &str| -> Option<u64> {
        let line = text.lines().find(|l| l.starts_with(name))?;
        let kib: u64 = line[name.len()..].split_whitespace().next()?.parse().ok()?;
        Some(kib * 1024)
    };
    Some(HostMemory {
        qemu_pid: 0,
        rss_bytes: field("Rss:")?,
        pss_bytes: field("Pss:")?,
        unique_bytes: field("Private_Clean:")? + field("Private_Dirty:")?,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_rollup() {
        let text = "55d0-7ffe ---p 00000000 00:00 0 [rollup]\nRss:  163840 kB\nPss:   97280 kB\n\
                    Pss_Anon: 1 kB\nShared_Clean: 122880 kB\nPrivate_Clean: 1024 kB\nPrivate_Dirty: 38912 kB\n";
        let memory = super::parse_rollup(text).unwrap();
        assert_eq!(memory.rss_bytes, 163_840 * 1024);
        assert_eq!(memory.pss_bytes, 97_280 * 1024);
        assert_eq!(memory.unique_bytes, (1024 + 38_912) * 1024);
        assert_eq!(super::parse_rollup("nothing"), None);
    }
}
