//! The guest's boot modules: which `.ko` files the agent loads, in which
//! order, packed as a cpio fragment.
//!
//! Debian's kernel builds its virtio and ext4 drivers as modules, and the
//! package's `modules.dep` is generated at install time (by `depmod`), so it
//! is not in the `.deb`. Each module carries its own dependency list in the
//! `depends=` string of its `.modinfo` ELF section; we read that directly, take
//! the closure of the boot set, and order it dependencies first.
//!
//! The fragment holds `pyro/modules/<name>.ko` for each module,
//! `pyro/modules.order` (file names, one per line, in load order) that the
//! agent loads at every boot with `finit_module`, and
//! `pyro/modules.on-demand.order`: modules packed but loaded only when a
//! feature needs them (the network drivers), because every module costs boot
//! time (tens of milliseconds each under TCG).

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::cpio::{CpioError, CpioWriter};

/// Modules the guest needs to boot, in the order we would like them.
/// `crc32c_generic` is here because ext4 needs a crc32c implementation at
/// mount time but only names it as a soft dependency (`crypto-crc32c`).
pub const BOOT_MODULES: &[&str] = &[
    "virtio_ring",
    "virtio",
    "virtio_mmio",
    "virtio_console",
    "virtio_blk",
    "crc16",
    "mbcache",
    "jbd2",
    "crc32c_generic",
    "ext4",
    // /workspace over a seed disk (see pyro-agent's seed.rs).
    "overlay",
    "virtio_net",
    "net_failover",
    "failover",
];

/// Loaded when the kernel has them; their absence is not an error.
pub const OPTIONAL_MODULES: &[&str] = &["virtio_rng"];

/// Packed, but not loaded at boot: listed in `modules.on-demand.order` for
/// the agent to load when a feature (networking) asks for them.
pub const ON_DEMAND_MODULES: &[&str] = &["failover", "net_failover", "virtio_net", "virtio_rng"];

/// Ordering constraints the modules do not declare: (module, must load after).
const EXTRA_DEPENDENCIES: &[(&str, &str)] = &[("ext4", "crc32c_generic")];

/// Why the module set could not be read or ordered.
#[derive(Debug, thiserror::Error)]
pub enum ModulesError {
    #[error("{path} is not a 64-bit little-endian ELF file ({reason})")]
    NotElf { path: PathBuf, reason: &'static str },
    #[error("{path} has no .modinfo section; is it a kernel module?")]
    NoModinfo { path: PathBuf },
    #[error("kernel module {name} is missing from the kernel package (needed by {needed_by}); this kernel cannot boot pyro guests")]
    Missing { name: String, needed_by: String },
    #[error("kernel modules depend on each other in a cycle: {cycle}")]
    Cycle { cycle: String },
    #[error(
        "kernel module {path} is compressed in a format pyro does not read (only .ko and .ko.xz)"
    )]
    UnsupportedCompression { path: PathBuf },
    #[error("could not read kernel module {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("could not list kernel modules")]
    Walk(#[source] std::io::Error),
    #[error("could not pack the kernel modules")]
    Cpio(#[source] CpioError),
}

/// Parses the `.modinfo` section of a kernel module: NUL-separated
/// `key=value` strings. Keys may repeat (`alias=`), so this returns pairs.
pub fn parse_modinfo(elf: &[u8], path: &Path) -> Result<Vec<(String, String)>, ModulesError> {
    let section = modinfo_section(elf).map_err(|reason| match reason {
        None => ModulesError::NoModinfo {
            path: path.to_owned(),
        },
        Some(reason) => ModulesError::NotElf {
            path: path.to_owned(),
            reason,
        },
    })?;
    Ok(section
        .split(|&b| b == 0)
        .filter(|s| !s.is_empty())
        .filter_map(|s| {
            let s = String::from_utf8_lossy(s);
            let (key, value) = s.split_once('=')?;
            Some((key.to_owned(), value.to_owned()))
        })
        .collect())
}

/// The `depends=` list of a module (empty when it has none).
pub fn depends(modinfo: &[(String, String)]) -> Vec<String> {
    modinfo
        .iter()
        .filter(|(key, _)| key == "depends")
        .flat_map(|(_, value)| value.split(','))
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(normalize)
        .collect()
}

/// Finds the `.modinfo` section bytes. `Err(None)` means a valid ELF without
/// the section; `Err(Some(reason))` means not a usable ELF at all.
fn modinfo_section(elf: &[u8]) -> Result<&[u8], Option<&'static str>> {
    fn u16_at(b: &[u8], off: usize) -> Option<u16> {
        Some(u16::from_le_bytes(b.get(off..off + 2)?.try_into().ok()?))
    }
    fn u32_at(b: &[u8], off: usize) -> Option<u32> {
        Some(u32::from_le_bytes(b.get(off..off + 4)?.try_into().ok()?))
    }
    fn u64_at(b: &[u8], off: usize) -> Option<usize> {
        usize::try_from(u64::from_le_bytes(b.get(off..off + 8)?.try_into().ok()?)).ok()
    }
    const TRUNCATED: Option<&str> = Some("truncated headers");

    if elf.get(..4) != Some(b"\x7fELF") {
        return Err(Some("bad magic"));
    }
    if elf.get(4) != Some(&2) || elf.get(5) != Some(&1) {
        return Err(Some("not ELFCLASS64/ELFDATA2LSB"));
    }
    let shoff = u64_at(elf, 0x28).ok_or(TRUNCATED)?;
    let shentsize = usize::from(u16_at(elf, 0x3a).ok_or(TRUNCATED)?);
    let shnum = usize::from(u16_at(elf, 0x3c).ok_or(TRUNCATED)?);
    let shstrndx = usize::from(u16_at(elf, 0x3e).ok_or(TRUNCATED)?);
    if shentsize < 64 || shstrndx >= shnum {
        return Err(Some("bad section header table"));
    }
    let section = |index: usize| -> Option<(u32, &[u8])> {
        let header = shoff.checked_add(index.checked_mul(shentsize)?)?;
        let name = u32_at(elf, header)?;
        let offset = u64_at(elf, header + 24)?;
        let size = u64_at(elf, header + 32)?;
        Some((name, elf.get(offset..offset.checked_add(size)?)?))
    };
    let (_, names) = section(shstrndx).ok_or(TRUNCATED)?;
    for index in 0..shnum {
        let (name_offset, data) = section(index).ok_or(TRUNCATED)?;
        let name = names
            .get(name_offset as usize..)
            .and_then(|rest| rest.split(|&b| b == 0).next())
            .unwrap_or_default();
        if name == b".modinfo" {
            return Ok(data);
        }
    }
    Err(None)
}

/// Module names use `_` internally; file names may use `-` (`virtio-rng.ko`).
fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// Orders `wanted` and everything it depends on, dependencies first.
/// `deps_of` returns a module's dependencies or `None` if it does not exist.
/// Among independent modules the order of `wanted` is kept.
pub fn load_order<F>(wanted: &[String], mut deps_of: F) -> Result<Vec<String>, ModulesError>
where
    F: FnMut(&str) -> Option<Vec<String>>,
{
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit<F: FnMut(&str) -> Option<Vec<String>>>(
        name: &str,
        needed_by: &str,
        deps_of: &mut F,
        marks: &mut HashMap<String, Mark>,
        stack: &mut Vec<String>,
        order: &mut Vec<String>,
    ) -> Result<(), ModulesError> {
        match marks.get(name) {
            Some(Mark::Done) => return Ok(()),
            Some(Mark::Visiting) => {
                let start = stack.iter().position(|n| n == name).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(name.to_owned());
                return Err(ModulesError::Cycle {
                    cycle: cycle.join(" -> "),
                });
            }
            None => {}
        }
        let mut deps = deps_of(name).ok_or_else(|| ModulesError::Missing {
            name: name.to_owned(),
            needed_by: needed_by.to_owned(),
        })?;
        for (module, after) in EXTRA_DEPENDENCIES {
            if *module == name && !deps.iter().any(|d| d == after) {
                deps.push((*after).to_owned());
            }
        }
        marks.insert(name.to_owned(), Mark::Visiting);
        stack.push(name.to_owned());
        for dep in &deps {
            visit(dep, name, deps_of, marks, stack, order)?;
        }
        stack.pop();
        marks.insert(name.to_owned(), Mark::Done);
        order.push(name.to_owned());
        Ok(())
    }

    let mut marks = HashMap::new();
    let mut order = Vec::new();
    let mut stack = Vec::new();
    for name in wanted {
        visit(
            name,
            "the pyro boot set",
            &mut deps_of,
            &mut marks,
            &mut stack,
            &mut order,
        )?;
    }
    Ok(order)
}

/// A kernel module found in an unpacked kernel package.
#[derive(Debug)]
struct FoundModule {
    elf: Vec<u8>,
    depends: Vec<String>,
}

/// The ordered boot module set of one kernel, ready to pack.
#[derive(Debug)]
pub struct ModuleSet {
    /// Module names in load order.
    pub order: Vec<String>,
    modules: BTreeMap<String, Vec<u8>>,
}

impl ModuleSet {
    /// Reads the boot set from `modules_dir` (`lib/modules/<release>`).
    pub fn from_dir(modules_dir: &Path) -> Result<Self, ModulesError> {
        let mut paths = BTreeMap::new();
        collect_module_paths(modules_dir, &mut paths).map_err(ModulesError::Walk)?;
        let mut cache: HashMap<String, FoundModule> = HashMap::new();
        let mut load_error = None;
        let mut wanted: Vec<String> = BOOT_MODULES.iter().map(|s| (*s).to_owned()).collect();
        wanted.extend(
            OPTIONAL_MODULES
                .iter()
                .filter(|name| paths.contains_key(**name))
                .map(|s| (*s).to_owned()),
        );
        let order = load_order(&wanted, |name| {
            if let Some(found) = cache.get(name) {
                return Some(found.depends.clone());
            }
            let path: &PathBuf = paths.get(name)?;
            match read_module(path) {
                Ok(found) => {
                    let deps = found.depends.clone();
                    cache.insert(name.to_owned(), found);
                    Some(deps)
                }
                Err(err) => {
                    load_error.get_or_insert(err);
                    Some(Vec::new())
                }
            }
        });
        if let Some(err) = load_error {
            return Err(err);
        }
        let order = order?;
        let modules = order
            .iter()
            .filter_map(|name| Some((name.clone(), cache.remove(name)?.elf)))
            .collect();
        Ok(Self { order, modules })
    }

    /// Packs the set as a cpio fragment (no `/init`; see [`crate::cpio`]).
    pub fn to_cpio(&self) -> Result<Vec<u8>, ModulesError> {
        let mut cpio = CpioWriter::new();
        cpio.dir("pyro", 0o755).map_err(ModulesError::Cpio)?;
        cpio.dir("pyro/modules", 0o755)
            .map_err(ModulesError::Cpio)?;
        let mut boot_order = String::new();
        let mut on_demand_order = String::new();
        for name in &self.order {
            let file = format!("{name}.ko");
            let elf = &self.modules[name];
            cpio.file(&format!("pyro/modules/{file}"), 0o644, elf)
                .map_err(ModulesError::Cpio)?;
            // Partitioning keeps the dependency order within each list; the
            // on-demand modules depend only on boot modules or each other.
            let list = if ON_DEMAND_MODULES.contains(&name.as_str()) {
                &mut on_demand_order
            } else {
                &mut boot_order
            };
            list.push_str(&file);
            list.push('\n');
        }
        cpio.file("pyro/modules.order", 0o644, boot_order.as_bytes())
            .map_err(ModulesError::Cpio)?;
        cpio.file(
            "pyro/modules.on-demand.order",
            0o644,
            on_demand_order.as_bytes(),
        )
        .map_err(ModulesError::Cpio)?;
        Ok(cpio.finish())
    }
}

fn read_module(path: &Path) -> Result<FoundModule, ModulesError> {
    let raw = fs_err::read(path).map_err(|source| ModulesError::Read {
        path: path.to_owned(),
        source,
    })?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let elf = if name.ends_with(".ko.xz") {
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut xz2::read::XzDecoder::new(&raw[..]), &mut out).map_err(
            |source| ModulesError::Read {
                path: path.to_owned(),
                source,
            },
        )?;
        out
    } else if name.ends_with(".ko") {
        raw
    } else {
        return Err(ModulesError::UnsupportedCompression {
            path: path.to_owned(),
        });
    };
    let modinfo = parse_modinfo(&elf, path)?;
    Ok(FoundModule {
        depends: depends(&modinfo),
        elf,
    })
}

/// Maps module name to path for every `*.ko*` under `dir`.
fn collect_module_paths(dir: &Path, out: &mut BTreeMap<String, PathBuf>) -> std::io::Result<()> {
    for entry in fs_err::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if entry.file_type()?.is_dir() {
            collect_module_paths(&path, out)?;
            continue;
        }
        let file = entry.file_name().to_string_lossy().into_owned();
        if let Some(index) = file.find(".ko") {
            out.entry(normalize(&file[..index])).or_insert(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(edges: &[(&str, &[&str])]) -> HashMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(n, d)| ((*n).to_owned(), d.iter().map(|s| (*s).to_owned()).collect()))
            .collect()
    }

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn orders_dependencies_first_and_adds_crc32c_before_ext4() {
        let g = graph(&[
            ("ext4", &["jbd2", "mbcache", "crc16"]),
            ("jbd2", &[]),
            ("mbcache", &[]),
            ("crc16", &[]),
            ("crc32c_generic", &[]),
            ("virtio_blk", &["virtio", "virtio_ring"]),
            ("virtio", &["virtio_ring"]),
            ("virtio_ring", &[]),
        ]);
        let order = load_order(&names(&["ext4", "virtio_blk"]), |n| g.get(n).cloned()).unwrap();
        assert_eq!(
            order,
            names(&[
                "jbd2",
                "mbcache",
                "crc16",
                "crc32c_generic",
                "ext4",
                "virtio_ring",
                "virtio",
                "virtio_blk"
            ])
        );
    }

    #[test]
    fn pulls_in_undeclared_dependencies_and_reports_missing_ones() {
        let g = graph(&[("a", &["b"]), ("b", &["c"])]);
        let err = load_order(&names(&["a"]), |n| g.get(n).cloned()).unwrap_err();
        assert_eq!(
            err.to_string(),
            "kernel module c is missing from the kernel package (needed by b); this kernel cannot boot pyro guests"
        );
    }

    #[test]
    fn detects_cycles() {
        let g = graph(&[("a", &["b"]), ("b", &["a"])]);
        let err = load_order(&names(&["a"]), |n| g.get(n).cloned()).unwrap_err();
        assert!(err.to_string().contains("a -> b -> a"), "{err}");
    }

    /// Builds a minimal ELF64 with a `.shstrtab` and a `.modinfo` section.
    fn tiny_module(modinfo: &[u8]) -> Vec<u8> {
        let shstrtab = b"\0.shstrtab\0.modinfo\0";
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        let strtab_off = elf.len();
        elf.extend_from_slice(shstrtab);
        let modinfo_off = elf.len();
        elf.extend_from_slice(modinfo);
        while !elf.len().is_multiple_of(8) {
            elf.push(0);
        }
        let shoff = elf.len();
        let mut section = |name: u32, off: usize, size: usize| {
            let mut h = [0u8; 64];
            h[..4].copy_from_slice(&name.to_le_bytes());
            h[24..32].copy_from_slice(&(off as u64).to_le_bytes());
            h[32..40].copy_from_slice(&(size as u64).to_le_bytes());
            elf.extend_from_slice(&h);
        };
        section(0, 0, 0);
        section(1, strtab_off, shstrtab.len());
        section(11, modinfo_off, modinfo.len());
        elf[0x28..0x30].copy_from_slice(&(shoff as u64).to_le_bytes());
        elf[0x3a..0x3c].copy_from_slice(&64u16.to_le_bytes());
        elf[0x3c..0x3e].copy_from_slice(&3u16.to_le_bytes());
        elf[0x3e..0x40].copy_from_slice(&1u16.to_le_bytes());
        elf
    }

    #[test]
    fn parses_synthetic_modinfo() {
        let elf = tiny_module(b"license=GPL\0depends=virtio,virtio-ring\0name=virtio_blk\0\0");
        let info = parse_modinfo(&elf, Path::new("x.ko")).unwrap();
        assert_eq!(depends(&info), names(&["virtio", "virtio_ring"]));
        assert!(info.contains(&("name".to_owned(), "virtio_blk".to_owned())));
        let empty = tiny_module(b"depends=\0");
        assert!(depends(&parse_modinfo(&empty, Path::new("y.ko")).unwrap()).is_empty());
        assert!(matches!(
            parse_modinfo(b"not an elf", Path::new("z.ko")),
            Err(ModulesError::NotElf { .. })
        ));
    }

    /// Uses a real Debian module when one was unpacked at /tmp/k (skips otherwise).
    #[test]
    fn parses_real_ext4_module_if_present() {
        let path = Path::new("/tmp/k/x/lib/modules/6.1.0-56-amd64/kernel/fs/ext4/ext4.ko");
        let Ok(elf) = std::fs::read(path) else {
            eprintln!("skipping: {} not present", path.display());
            return;
        };
        let info = parse_modinfo(&elf, path).unwrap();
        assert_eq!(depends(&info), names(&["jbd2", "mbcache", "crc16"]));
        let set = ModuleSet::from_dir(Path::new("/tmp/k/x/lib/modules/6.1.0-56-amd64")).unwrap();
        let pos = |n: &str| set.order.iter().position(|m| m == n).unwrap();
        assert!(pos("crc32c_generic") < pos("ext4"));
        assert!(pos("jbd2") < pos("ext4"));
        assert!(pos("virtio_ring") < pos("virtio_mmio"));
        assert!(pos("failover") < pos("net_failover") && pos("net_failover") < pos("virtio_net"));
        assert!(set.order.contains(&"virtio_rng".to_owned()));
        assert!(!set.to_cpio().unwrap().is_empty());
    }
}
