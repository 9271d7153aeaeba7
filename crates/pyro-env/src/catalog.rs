//! The curated environments pyro can build.
//!
//! The catalog is code, not data: an environment's recipe (suite, packages)
//! changes only with a release of pyro, and [`CatalogEntry::revision`] is
//! bumped when it does, so `pyro env list` can say an installed copy is older
//! than the recipe.

use serde::Serialize;

/// One environment pyro knows how to build.
#[derive(Debug, Clone, Serialize)]
pub struct CatalogEntry {
    /// What users type: `debian:12`.
    pub name: &'static str,
    /// One line for `pyro env list`.
    pub description: &'static str,
    /// Debian suite the root filesystem is built from.
    pub suite: &'static str,
    /// Packages added to the `minbase` variant.
    pub packages: &'static [&'static str],
    /// Bumped whenever the recipe changes.
    pub revision: u32,
    /// Rough size in the store after a pull (kernel + modules + qcow2).
    pub approx_size_bytes: u64,
}

const MIB: u64 = 1 << 20;

static CATALOG: &[CatalogEntry] = &[
    CatalogEntry {
        name: "debian:12",
        description: "Debian 12 (bookworm) with git, Python 3, curl and build tools",
        suite: "bookworm",
        packages: &[
            "ca-certificates",
            "git",
            "python3",
            "python3-pip",
            "python3-venv",
            "curl",
            "build-essential",
            "procps",
            "iproute2",
            "less",
            "xz-utils",
            "unzip",
            "file",
            "patch",
            "openssh-client",
        ],
        revision: 2,
        approx_size_bytes: 600 * MIB,
    },
    CatalogEntry {
        name: "debian:12-base",
        description: "Debian 12 (bookworm) minimal: minbase and CA certificates",
        suite: "bookworm",
        packages: &["ca-certificates"],
        revision: 2,
        approx_size_bytes: 190 * MIB,
    },
];

/// Every environment, in display order.
pub fn entries() -> &'static [CatalogEntry] {
    CATALOG
}

/// The entry named `name`, if any.
pub fn find(name: &str) -> Option<&'static CatalogEntry> {
    CATALOG.iter().find(|entry| entry.name == name)
}

/// The names users can type, for error messages.
pub fn names() -> Vec<String> {
    CATALOG.iter().map(|e| e.name.to_owned()).collect()
}

/// The file-name form of an environment name: `debian:12` → `debian_12`.
pub fn safe_name(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_safe_names_differ() {
        let mut safe: Vec<_> = CATALOG.iter().map(|e| safe_name(e.name)).collect();
        safe.sort();
        safe.dedup();
        assert_eq!(safe.len(), CATALOG.len());
        assert_eq!(safe_name("debian:12"), "debian_12");
        assert!(find("debian:12-base").is_some());
        assert!(find("ubuntu:24.04").is_none());
    }
}
