//! Where pyro keeps its files.

use std::path::PathBuf;

/// The cache dir: environments, the assembled initramfs, probe verdicts.
/// `$PYRO_CACHE_DIR`, else `$XDG_CACHE_HOME/pyro`, else `~/.cache/pyro`.
pub fn default_cache_dir() -> PathBuf {
    if let Some(dir) = non_empty_env("PYRO_CACHE_DIR") {
        return dir;
    }
    if let Some(xdg) = non_empty_env("XDG_CACHE_HOME") {
        return xdg.join("pyro");
    }
    match non_empty_env("HOME") {
        Some(home) => home.join(".cache").join("pyro"),
        None => PathBuf::from("/var/tmp/pyro-cache"),
    }
}

fn non_empty_env(name: &str) -> Option<PathBuf> {
    std::env::var_os(name)
        .filter(|value| !value.is_empty())
        .map(PathBuf::from)
}

/// The state dir: workspaces and their disks. `$PYRO_HOME`, else
/// `$XDG_DATA_HOME/pyro`, else `~/.local/share/pyro`.
pub fn default_home() -> PathBuf {
    if let Some(dir) = non_empty_env("PYRO_HOME") {
        return dir;
    }
    if let Some(xdg) = non_empty_env("XDG_DATA_HOME") {
        return xdg.join("pyro");
    }
    match non_empty_env("HOME") {
        Some(home) => home.join(".local").join("share").join("pyro"),
        None => PathBuf::from("/var/tmp/pyro-home"),
    }
}
