//! Pure checks on the names an untrusted archive presents: member names,
//! symlink targets, PAX records. No I/O here, so every rule is unit-tested.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Why a member name cannot be unpacked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BadName {
    Absolute,
    ParentDir,
}

/// Normalises a member name: drops empty and `.` components, rejects absolute
/// names and any `..`. `Ok(None)` means the name is the archive root (`./`).
pub(crate) fn normalise(raw: &[u8]) -> Result<Option<PathBuf>, BadName> {
    if raw.first() == Some(&b'/') {
        return Err(BadName::Absolute);
    }
    let mut out = PathBuf::new();
    for component in raw.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => return Err(BadName::ParentDir),
            normal => out.push(OsStr::from_bytes(normal)),
        }
    }
    Ok(if out.as_os_str().is_empty() {
        None
    } else {
        Some(out)
    })
}

/// Whether a symlink at `link` (a normalised member name) with `target` stays
/// inside the output when the kernel follows it.
///
/// Lexical resolution alone is not enough: with `d/x -> ..` in place,
/// `y -> d/x/..` looks like it resolves to `d` but really climbs out through
/// `d/x`. So a target may climb (`..`) only before its first normal
/// component, where every `..` steps through a real directory of the output
/// (the link's parents are real directories; we never create an entry under a
/// symlink), and never further up than the link's depth. What follows the
/// climb only descends, and by induction every symlink it meets obeys the
/// same rule.
pub(crate) fn symlink_stays_inside(link: &Path, target: &[u8]) -> bool {
    if target.is_empty() || target.first() == Some(&b'/') {
        return false;
    }
    let depth = link.components().count().saturating_sub(1);
    let mut climbs = 0usize;
    let mut descended = false;
    for component in target.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." if descended => return false,
            b".." => {
                climbs += 1;
                if climbs > depth {
                    return false;
                }
            }
            _ => descended = true,
        }
    }
    true
}

/// What a PAX extended header (`x`) says about the next member.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct PaxRecords {
    pub path: Option<Vec<u8>>,
    pub linkpath: Option<Vec<u8>>,
    pub size: Option<u64>,
    pub sparse: bool,
}

/// Parses PAX records (`"<len> <key>=<value>\n"` repeated). `None` if the
/// data is malformed.
pub(crate) fn parse_pax(mut data: &[u8]) -> Option<PaxRecords> {
    let mut records = PaxRecords::default();
    while !data.is_empty() {
        let space = data.iter().position(|&b| b == b' ')?;
        let len: usize = std::str::from_utf8(&data[..space]).ok()?.parse().ok()?;
        if len <= space + 1 || len > data.len() || data[len - 1] != b'\n' {
            return None;
        }
        let record = &data[space + 1..len - 1];
        let equals = record.iter().position(|&b| b == b'=')?;
        let (key, value) = (&record[..equals], &record[equals + 1..]);
        match key {
            b"path" => records.path = Some(value.to_vec()),
            b"linkpath" => records.linkpath = Some(value.to_vec()),
            b"size" => records.size = Some(std::str::from_utf8(value).ok()?.parse().ok()?),
            key if key.starts_with(b"GNU.sparse.") => records.sparse = true,
            _ => {}
        }
        data = &data[len..];
    }
    Some(records)
}

/// Cuts a GNU long-name payload at its NUL terminator.
pub(crate) fn until_nul(mut data: Vec<u8>) -> Vec<u8> {
    if let Some(nul) = data.iter().position(|&b| b == 0) {
        data.truncate(nul);
    }
    data
}

/// An untrusted name made safe to print: lossy UTF-8, control characters
/// escaped, long names shortened.
pub(crate) fn shown(raw: &[u8]) -> String {
    const MAX_CHARS: usize = 200;
    let text = String::from_utf8_lossy(raw);
    let mut out: String = text.chars().take(MAX_CHARS).collect();
    if text.chars().nth(MAX_CHARS).is_some() {
        out.push('…');
    }
    pyro_util::text::visible(&out).into_owned()
}

/// A path made safe to print; see [`shown`].
pub(crate) fn shown_path(path: &Path) -> String {
    shown(path.as_os_str().as_bytes())
}

/// Bytes in binary units, as limits are written: `2 GiB`, `1.5 MiB`.
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut unit = 0;
    let mut scaled = bytes as f64;
    while scaled >= 1024.0 && unit + 1 < UNITS.len() {
        scaled /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else if scaled.fract() == 0.0 {
        format!("{scaled:.0} {}", UNITS[unit])
    } else {
        format!("{scaled:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(raw: &str) -> Result<Option<String>, BadName> {
        normalise(raw.as_bytes()).map(|p| p.map(|p| p.to_string_lossy().into_owned()))
    }

    #[test]
    fn names_are_normalised_or_rejected() {
        assert_eq!(norm("./a/./b//c/"), Ok(Some("a/b/c".into())));
        assert_eq!(norm("./"), Ok(None));
        assert_eq!(norm("."), Ok(None));
        assert_eq!(norm("/etc/passwd"), Err(BadName::Absolute));
        assert_eq!(norm("../evil"), Err(BadName::ParentDir));
        assert_eq!(norm("a/../../evil"), Err(BadName::ParentDir));
        assert_eq!(norm("a/.."), Err(BadName::ParentDir));
        assert_eq!(norm("a/..b"), Ok(Some("a/..b".into())));
    }

    #[test]
    fn symlink_targets_must_stay_inside() {
        let inside =
            |link: &str, target: &str| symlink_stays_inside(Path::new(link), target.as_bytes());
        assert!(inside("a/b/l", "../../x"));
        assert!(inside("a/l", "b/c"));
        assert!(inside("l", "."));
        assert!(inside("a/l", "./../x/./y"));
        assert!(!inside("a/l", "../../x"));
        assert!(!inside("l", ".."));
        assert!(!inside("l", "/etc"));
        assert!(!inside("l", ""));
        assert!(
            !inside("d/y", "x/../.."),
            "climbing after descending is never trusted"
        );
        assert!(
            !inside("y", "d/x/.."),
            "a `..` after a normal component may cross a symlink"
        );
    }

    #[test]
    fn pax_records_parse() {
        let data = b"30 path=a/very/long/name/here\n19 linkpath=target\n11 size=42\n";
        let records = parse_pax(data).expect("valid records");
        assert_eq!(records.path.as_deref(), Some(&b"a/very/long/name/here"[..]));
        assert_eq!(records.linkpath.as_deref(), Some(&b"target"[..]));
        assert_eq!(records.size, Some(42));
        assert!(parse_pax(b"99 path=x\n").is_none());
        assert!(parse_pax(b"x path=x\n").is_none());
        assert!(parse_pax(b"22 GNU.sparse.major=1\n").expect("valid").sparse);
    }

    #[test]
    fn untrusted_names_print_safely() {
        assert_eq!(shown(b"a\x1b[31mb"), "a\\u{1b}[31mb");
        assert_eq!(shown(&[b'x'; 300]).chars().count(), 201);
        assert_eq!(human_bytes(2 << 30), "2 GiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
        assert_eq!(human_bytes(12), "12 bytes");
    }
}
