//! What a confined clone (one a model asked for) may reach on the host.
//!
//! Two ways out of a confinement go through git itself:
//!
//! - **A local repository's pointers.** git follows a `.git` *file*
//!   (`gitdir: /elsewhere`), a `commondir` file, `objects/info/alternates`,
//!   and, for a path that is not a repository, tries the suffixes `.git`,
//!   `/.git` and `.bundle` next to it. So a confined local clone takes only a
//!   real git directory inside the roots (lstat, no symlinks), with no
//!   `commondir` and alternates only inside the roots, and names that git
//!   directory exactly, so git probes nothing.
//! - **The host's own network identity.** A remote on loopback, a link-local
//!   address (cloud metadata) or one of the machine's own addresses reaches
//!   services of the host (`ssh localhost` with the user's key, a local git
//!   daemon). Such hosts are refused, by literal and by what the name
//!   resolves to; the user's ssh keys, agent and `~/.netrc` are not offered
//!   to any remote (see [`super::command`]).

use std::net::{IpAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use super::GitError;

/// `path` canonical, if it is a directory; `given` names it in the error.
pub(crate) fn resolve_local(path: &Path, given: &str) -> Result<PathBuf, GitError> {
    let not_a_dir = || GitError::BadUrl {
        url: given.to_string(),
        reason: "it is not an existing directory",
    };
    let canonical = std::fs::canonicalize(path).map_err(|_| not_a_dir())?;
    if canonical.is_dir() {
        Ok(canonical)
    } else {
        Err(not_a_dir())
    }
}

fn real_dir(path: &Path) -> bool {
    path.symlink_metadata().is_ok_and(|m| m.is_dir())
}

fn real_file(path: &Path) -> bool {
    path.symlink_metadata().is_ok_and(|m| m.is_file())
}

fn present(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

/// The git directory of `dir` (canonical, inside `roots`), if it is one a
/// confined clone may read: `dir/.git` or `dir` itself (bare), a real
/// directory with real `HEAD`, `objects` and `refs`, no `commondir`, no
/// nested `.git`, and alternates only inside `roots`.
pub(crate) fn git_dir(dir: &Path, roots: &[PathBuf]) -> Result<PathBuf, GitError> {
    let unsafe_repo = |reason| GitError::UnsafeRepository {
        path: dir.to_path_buf(),
        reason,
    };
    let is_repo = |git: &Path| {
        real_dir(git)
            && real_file(&git.join("HEAD"))
            && real_dir(&git.join("objects"))
            && real_dir(&git.join("refs"))
    };
    let git = if present(&dir.join(".git")) {
        if !real_dir(&dir.join(".git")) {
            return Err(unsafe_repo(
                "its .git is a file or a link, which may point anywhere",
            ));
        }
        dir.join(".git")
    } else {
        dir.to_path_buf()
    };
    if !is_repo(&git) {
        return Err(GitError::NotARepository {
            path: dir.to_path_buf(),
        });
    }
    if present(&git.join("commondir")) {
        return Err(unsafe_repo("it is a linked worktree (commondir)"));
    }
    if present(&git.join(".git")) {
        return Err(unsafe_repo("its git directory holds another .git"));
    }
    let alternates = git.join("objects/info/alternates");
    if present(&alternates) {
        if !real_file(&alternates) {
            return Err(unsafe_repo("objects/info/alternates is not a plain file"));
        }
        let text = std::fs::read_to_string(&alternates)
            .map_err(|_| unsafe_repo("objects/info/alternates is unreadable"))?;
        for line in text.lines().map(str::trim) {
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let target = git.join("objects").join(line);
            let inside = std::fs::canonicalize(&target)
                .is_ok_and(|target| roots.iter().any(|root| target.starts_with(root)));
            if !inside {
                return Err(unsafe_repo(
                    "its objects/info/alternates leads outside the allowed directories",
                ));
            }
        }
    }
    Ok(git)
}

/// Refuses a remote on this host itself: loopback, unspecified,
/// link-local, or any address of this machine's interfaces, whether
/// written as an address or resolved from a name.
pub(crate) fn check_remote_host(host: &str) -> Result<(), GitError> {
    let refused = || GitError::HostItself {
        host: host.to_string(),
    };
    let lower = host.to_ascii_lowercase();
    if lower == "localhost" || lower.ends_with(".localhost") {
        return Err(refused());
    }
    let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(address) => vec![address],
        // A name that does not resolve is left to git to report.
        Err(_) => (host, 0)
            .to_socket_addrs()
            .map(|addrs| addrs.map(|a| a.ip()).collect())
            .unwrap_or_default(),
    };
    let own = own_addresses();
    if addresses
        .iter()
        .any(|address| is_host_itself(address) || own.contains(address))
    {
        return Err(refused());
    }
    Ok(())
}

fn is_host_itself(address: &IpAddr) -> bool {
    let address = match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(*address, IpAddr::V4),
        v4 => *v4,
    };
    match address {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_unspecified() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// The addresses of this machine's interfaces.
fn own_addresses() -> Vec<IpAddr> {
    let mut list = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list` with a linked list we free below.
    if unsafe { libc::getifaddrs(&mut list) } != 0 {
        return Vec::new();
    }
    let mut addresses = Vec::new();
    let mut entry = list;
    while !entry.is_null() {
        // SAFETY: entry is a node of the list getifaddrs returned, alive
        // until freeifaddrs; ifa_addr is null or points to a sockaddr of
        // the family it names, whose size that family implies.
        unsafe {
            let addr = (*entry).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let v4 = &*(addr as *const libc::sockaddr_in);
                        let octets = v4.sin_addr.s_addr.to_ne_bytes();
                        addresses.push(IpAddr::from(octets));
                    }
                    libc::AF_INET6 => {
                        let v6 = &*(addr as *const libc::sockaddr_in6);
                        addresses.push(IpAddr::from(v6.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            entry = (*entry).ifa_next;
        }
    }
    // SAFETY: list came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(list) };
    addresses
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_itself_is_refused() {
        for host in [
            "localhost",
            "api.localhost",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "0.0.0.0",
            "169.254.169.254",
            "fe80::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(check_remote_host(host).is_err(), "{host}");
        }
        for address in own_addresses() {
            assert!(
                check_remote_host(&address.to_string()).is_err(),
                "{address}"
            );
        }
        for host in ["192.0.2.10", "2001:db8::1", "10.1.2.3"] {
            assert_eq!(check_remote_host(host), Ok(()), "{host}");
        }
    }

    fn init(dir: &Path, bare: bool) {
        let mut git = std::process::Command::new("git");
        git.args(["init", "-q"])
            .env("GIT_CONFIG_GLOBAL", "/dev/null");
        if bare {
            git.arg("--bare");
        }
        assert!(git.arg(dir).status().unwrap().success());
    }

    #[test]
    fn only_real_git_directories_inside_the_roots_are_read() {
        let root = tempfile::tempdir().unwrap();
        let root = std::fs::canonicalize(root.path()).unwrap();
        let roots = [root.clone()];
        let outside = tempfile::tempdir().unwrap();
        init(outside.path(), false);

        let work = root.join("work");
        init(&work, false);
        assert_eq!(git_dir(&work, &roots).unwrap(), work.join(".git"));
        let bare = root.join("bare.git");
        init(&bare, true);
        assert_eq!(git_dir(&bare, &roots).unwrap(), bare);

        // A .git file that points outside, a link, a linked worktree.
        let pointer = root.join("pointer");
        std::fs::create_dir(&pointer).unwrap();
        let target = outside.path().join(".git");
        std::fs::write(
            pointer.join(".git"),
            format!("gitdir: {}\n", target.display()),
        )
        .unwrap();
        assert!(matches!(
            git_dir(&pointer, &roots),
            Err(GitError::UnsafeRepository { .. })
        ));
        let linked = root.join("linked");
        std::fs::create_dir(&linked).unwrap();
        std::os::unix::fs::symlink(&target, linked.join(".git")).unwrap();
        assert!(git_dir(&linked, &roots).is_err());
        std::fs::write(work.join(".git/commondir"), target.display().to_string()).unwrap();
        assert!(git_dir(&work, &roots).is_err());
        std::fs::remove_file(work.join(".git/commondir")).unwrap();

        // Alternates: inside is fine, outside is not.
        let alternates = work.join(".git/objects/info/alternates");
        std::fs::write(&alternates, format!("{}\n", bare.join("objects").display())).unwrap();
        assert!(git_dir(&work, &roots).is_ok());
        std::fs::write(
            &alternates,
            format!("{}\n", target.join("objects").display()),
        )
        .unwrap();
        assert!(git_dir(&work, &roots).is_err());

        // Not a repository: git would probe `plain.git` beside it.
        let plain = root.join("plain");
        std::fs::create_dir(&plain).unwrap();
        assert!(matches!(
            git_dir(&plain, &roots),
            Err(GitError::NotARepository { .. })
        ));
    }
}
