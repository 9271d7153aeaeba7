//! Repository URLs and refs, checked before git sees them.
//!
//! Parsing is lexical: it never touches the file system, so the answer
//! for a path outside what a caller may use cannot tell whether that path
//! exists ([`RepoUrl::Local`] is resolved only after confinement).

use std::path::PathBuf;

use super::GitError;

/// URL schemes git may use for a remote repository.
const REMOTE_SCHEMES: &[&str] = &["https", "ssh", "git", "git+ssh", "ssh+git"];

/// A repository to clone, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RepoUrl {
    /// `https://`, `ssh://`, `git://` or scp-like `user@host:path`; `host`
    /// without brackets or port.
    Remote { url: String, host: String },
    /// A path on this host (given as a path or `file:///path`), as given:
    /// not resolved yet.
    Local(PathBuf),
}

impl RepoUrl {
    /// Accepts a URL of an allowed scheme, an scp-like ssh address, or a
    /// path; refuses anything git could read as an option (a leading `-`,
    /// also in the user, host or port), a transport that runs commands
    /// (`ext::`, `fd::`), plain http, and `file://` with a host.
    pub fn parse(url: &str) -> Result<RepoUrl, GitError> {
        let bad = |reason| GitError::BadUrl {
            url: url.to_string(),
            reason,
        };
        if url.is_empty() {
            return Err(bad("it is empty"));
        }
        if url.starts_with('-') {
            return Err(bad("it starts with '-'"));
        }
        if url.chars().any(char::is_control) {
            return Err(bad("it holds control characters"));
        }
        if is_transport_helper(url) {
            return Err(bad(
                "git transport helpers (`name::address`) are not allowed",
            ));
        }
        if let Some((scheme, rest)) = url.split_once("://") {
            let scheme = scheme.to_ascii_lowercase();
            if scheme == "file" {
                // git reads file://localhost/p as /p, like file:///p.
                let path = rest.strip_prefix("localhost").unwrap_or(rest);
                if !path.starts_with('/') {
                    return Err(bad("a file URL must be file:///absolute/path"));
                }
                return Ok(RepoUrl::Local(PathBuf::from(path)));
            }
            if scheme == "http" {
                return Err(bad("plain http is not allowed; use https"));
            }
            if !REMOTE_SCHEMES.contains(&scheme.as_str()) {
                return Err(bad("use an https, ssh or git URL, or a local directory"));
            }
            let authority = rest.split('/').next().unwrap_or_default();
            let host = checked_host(authority, true).map_err(bad)?;
            return Ok(RepoUrl::Remote {
                url: url.to_string(),
                host,
            });
        }
        // As git does: a colon before any slash makes `[user@]host:path` ssh.
        if let Some(colon) = scp_colon(url) {
            let host = checked_host(&url[..colon], false).map_err(bad)?;
            return Ok(RepoUrl::Remote {
                url: url.to_string(),
                host,
            });
        }
        Ok(RepoUrl::Local(PathBuf::from(url)))
    }
}

/// `name::address`, git's syntax for a remote helper (`ext::sh -c …`).
fn is_transport_helper(url: &str) -> bool {
    url.split_once("::").is_some_and(|(name, _)| {
        !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-'))
    })
}

/// Where an scp-like address's host part ends: its first colon, if no
/// slash comes before it (a bracketed host may hold colons).
fn scp_colon(url: &str) -> Option<usize> {
    let first_colon = url.find(':')?;
    let search_from = match url.find('[') {
        // `[host:port]:path`, `user@[::1]:path`
        Some(bracket) if bracket < first_colon => url[bracket..].find(']')? + bracket + 1,
        _ => 0,
    };
    let colon = search_from + url[search_from..].find(':')?;
    (!url[..colon].contains('/')).then_some(colon)
}

/// The host of `[user@]host[:port]` in a URL (`url_form`: an IPv6 host in
/// brackets), or of an scp-like address's `[user@]host` or
/// `[user@host:port]`, refusing a user, host or port that git or ssh could
/// read as an option.
fn checked_host(authority: &str, url_form: bool) -> Result<String, &'static str> {
    fn split_user(text: &str) -> (Option<&str>, &str) {
        match text.rsplit_once('@') {
            Some((user, rest)) => (Some(user), rest),
            None => (None, text),
        }
    }
    let (user, host, port) = if !url_form && authority.starts_with('[') {
        let inner = authority
            .strip_prefix('[')
            .and_then(|a| a.strip_suffix(']'))
            .ok_or("its host has an unclosed '['")?;
        let (user, rest) = split_user(inner);
        match rest.parse::<std::net::Ipv6Addr>() {
            Ok(_) => (user, rest, None),
            Err(_) => match rest.rsplit_once(':') {
                Some((host, port)) => (user, host, Some(port)),
                None => (user, rest, None),
            },
        }
    } else {
        let (user, rest) = split_user(authority);
        if let Some(inner) = rest.strip_prefix('[') {
            let (host, after) = inner
                .split_once(']')
                .ok_or("its host has an unclosed '['")?;
            (user, host, after.strip_prefix(':'))
        } else if url_form {
            match rest.split_once(':') {
                Some((host, port)) => (user, host, Some(port)),
                None => (user, rest, None),
            }
        } else {
            (user, rest, None)
        }
    };
    let dash = |part: Option<&str>| part.is_some_and(|p| p.starts_with('-'));
    if host.is_empty() {
        return Err("its host is missing");
    }
    if dash(Some(host)) || dash(user) || dash(port) {
        return Err("its user, host or port starts with '-'");
    }
    Ok(host.to_string())
}

/// Refuses a ref git could read as an option (or that is no ref at all).
pub fn check_ref(reference: &str) -> Result<(), GitError> {
    let bad = |reason| GitError::BadRef {
        reference: reference.to_string(),
        reason,
    };
    if reference.is_empty() {
        return Err(bad("it is empty"));
    }
    if reference.starts_with('-') {
        return Err(bad("it starts with '-'"));
    }
    if reference.chars().any(|c| c.is_control() || c == ' ') {
        return Err(bad("it holds spaces or control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(url: &str) -> String {
        match RepoUrl::parse(url) {
            Ok(RepoUrl::Remote { host, .. }) => host,
            other => panic!("{url}: {other:?}"),
        }
    }

    #[test]
    fn urls_that_git_would_read_as_options_or_helpers_are_refused() {
        for url in [
            "--upload-pack=touch /tmp/x",
            "-u/bin/sh",
            "ext::sh -c touch% /tmp/x",
            "fd::3",
            "http://example.org/r.git",
            "ftp://example.org/r.git",
            "ssh://-oProxyCommand=x/r",
            "ssh://-oProxyCommand=touch${IFS}/tmp/x@example.org/r",
            "ssh://-u@h/r",
            "ssh://h:-p/r",
            "-oProxyCommand=x:r",
            "[-oProxyCommand=x]:r",
            "git@-host:r",
            "https://ex\nample.org/",
            "https:///r",
            "file://otherhost/r",
            "",
        ] {
            assert!(RepoUrl::parse(url).is_err(), "{url:?} was accepted");
        }
    }

    #[test]
    fn remote_urls_are_accepted_with_their_host() {
        assert_eq!(host("https://github.com/pallets/flask.git"), "github.com");
        assert_eq!(host("ssh://git@example.org:2222/r.git"), "example.org");
        assert_eq!(host("git://example.org/r"), "example.org");
        assert_eq!(host("git@github.com:pallets/flask.git"), "github.com");
        assert_eq!(host("https://[::1]/r"), "::1");
        assert_eq!(host("https://[fe80::1]:8443/r"), "fe80::1");
        assert_eq!(host("[git@example.org:22]:r"), "example.org");
        assert_eq!(host("[::1]:r"), "::1");
        assert_eq!(host("git@[::1]:r"), "::1");
        // An '@' in the path is not the user.
        assert_eq!(host("ssh://h/r@-x"), "h");
    }

    #[test]
    fn paths_are_local_and_not_looked_at() {
        for (url, path) in [
            ("/no/such/dir", "/no/such/dir"),
            ("./a:b", "./a:b"),
            ("relative/dir", "relative/dir"),
            ("file:///srv/repo", "/srv/repo"),
            ("file://localhost/srv/repo", "/srv/repo"),
        ] {
            assert_eq!(
                RepoUrl::parse(url),
                Ok(RepoUrl::Local(path.into())),
                "{url}"
            );
        }
    }

    #[test]
    fn refs_that_start_with_a_dash_are_refused() {
        for reference in ["--pathspec-from-file=/etc/shadow", "-b", "", "a b", "x\n"] {
            assert!(check_ref(reference).is_err(), "{reference:?}");
        }
        for reference in ["main", "v1.2.3", "feature/x", "0123abcd", "HEAD~1"] {
            assert_eq!(check_ref(reference), Ok(()));
        }
    }
}
