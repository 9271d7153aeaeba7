//! Which host directories a caller may name: what keeps a model from
//! reading `~/.ssh` into a guest or writing `~/.bashrc` out of one.
//!
//! A user at the CLI names their own paths and may use any ([`HostPaths::Any`]).
//! The MCP server acts for a model, so it confines every host path a call
//! names ([`HostPaths::Within`]): the seed directory, a local repository
//! URL, the source of `sync push` and the output of `export` must lie, after
//! symlinks are resolved, inside the server's project or a directory the
//! operator allowed when starting it. The seed the operator gave the server
//! (`--repo-url`, `--project-path`) is the user's own and is not confined.
//!
//! An export may not write git metadata into a root: a `.git` component in
//! its output is refused and `.git` members of the archive are left out,
//! since a hook planted in `.git/hooks` runs on the user's next commit.

use std::path::{Component, Path, PathBuf};

use crate::workspace::hostgit::{RepoUrl, Trust};
use crate::workspace::Seed;

/// The host directories calls may read from and write to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HostPaths {
    /// Any path the user running pyro can reach (the CLI).
    #[default]
    Any,
    /// Only paths inside `roots` (canonical); `operator_seed` is the seed
    /// the operator named when starting the server, used as the user's own.
    Within {
        /// The directories paths must lie in (canonical).
        roots: Vec<PathBuf>,
        /// The seed the operator named when starting the server.
        operator_seed: Option<Seed>,
    },
}

/// What a confined path was for, to name it in the error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPathUse {
    /// A seed directory.
    Seed,
    /// A local repository to clone.
    Repository,
    /// The source of a sync push.
    SyncSource,
    /// The output of an export.
    ExportOutput,
    /// An export output under a `.git` directory.
    GitMetadata,
}

impl HostPathUse {
    /// The words errors use for it, e.g. "seed path".
    pub fn describe(self) -> &'static str {
        match self {
            HostPathUse::Seed => "seed path",
            HostPathUse::Repository => "local repository",
            HostPathUse::SyncSource => "sync source",
            HostPathUse::ExportOutput => "export output",
            HostPathUse::GitMetadata => "export output inside git metadata",
        }
    }
}

/// A host path outside what the caller may use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{} {} is outside the host directories this caller may use ({})",
    .role.describe(),
    .path.display(),
    describe_roots(.allowed)
)]
pub struct HostPathError {
    /// What the path was for.
    pub role: HostPathUse,
    /// The path as the caller gave it.
    pub path: PathBuf,
    /// The directories it could have been in.
    pub allowed: Vec<PathBuf>,
}

fn describe_roots(roots: &[PathBuf]) -> String {
    if roots.is_empty() {
        return "none".into();
    }
    let roots: Vec<_> = roots.iter().map(|r| r.display().to_string()).collect();
    roots.join(", ")
}

impl HostPaths {
    /// The confinement of a server started for a project: the project
    /// directory of `default_seed` (a path, or a local repository), plus
    /// `extra` (directories the operator allowed). Each is canonicalised;
    /// one that does not exist is an error naming it.
    pub fn for_server(default_seed: Option<&Seed>, extra: &[PathBuf]) -> std::io::Result<Self> {
        let mut roots = Vec::new();
        let project = match default_seed {
            Some(Seed::Path(path)) => Some(path.clone()),
            Some(Seed::Repo { url, .. }) => match RepoUrl::parse(url) {
                Ok(RepoUrl::Local(path)) => Some(path),
                _ => None,
            },
            None => None,
        };
        for dir in project.iter().chain(extra) {
            let canonical = std::fs::canonicalize(dir).map_err(pyro_util::fsutil::naming(dir))?;
            if !canonical.is_dir() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::NotADirectory,
                    format!("{} is not a directory", dir.display()),
                ));
            }
            if !roots.contains(&canonical) {
                roots.push(canonical);
            }
        }
        Ok(HostPaths::Within {
            roots,
            operator_seed: default_seed.cloned(),
        })
    }

    /// How far a clone or seed of `seed` is trusted: the user's own at the
    /// CLI and for the operator's seed, confined otherwise.
    pub(crate) fn trust_for(&self, seed: &Seed) -> Trust<'_> {
        match self {
            HostPaths::Any => Trust::User,
            HostPaths::Within { operator_seed, .. } if operator_seed.as_ref() == Some(seed) => {
                Trust::User
            }
            HostPaths::Within { roots, .. } => Trust::Confined(roots),
        }
    }

    /// Whether exports must leave git metadata out.
    pub(crate) fn is_confined(&self) -> bool {
        matches!(self, HostPaths::Within { .. })
    }

    /// Where an export may write `output`: [`HostPaths::check`], then, when
    /// confined, strictly inside a root (the unpacker stages beside the
    /// output, so that must be inside too) and never under a `.git`.
    pub fn check_export(&self, output: &Path) -> Result<PathBuf, HostPathError> {
        let resolved = self.check(HostPathUse::ExportOutput, output)?;
        if let HostPaths::Within { roots, .. } = self {
            let refused = || HostPathError {
                role: HostPathUse::ExportOutput,
                path: output.to_path_buf(),
                allowed: roots.clone(),
            };
            if roots.contains(&resolved) {
                return Err(refused());
            }
            if resolved.components().any(|c| c.as_os_str() == ".git") {
                return Err(HostPathError {
                    role: HostPathUse::GitMetadata,
                    ..refused()
                });
            }
        }
        Ok(resolved)
    }

    /// `path` as the caller may use it: unchanged under [`HostPaths::Any`];
    /// under [`HostPaths::Within`], resolved (symlinks and `..`) through its
    /// deepest existing ancestor, since it may not exist yet (an export's
    /// output), and refused unless inside a root. The part that does not
    /// exist yet may hold no `..`.
    pub fn check(&self, role: HostPathUse, path: &Path) -> Result<PathBuf, HostPathError> {
        let refused = || HostPathError {
            role,
            path: path.to_path_buf(),
            allowed: self.roots().to_vec(),
        };
        let HostPaths::Within { roots, .. } = self else {
            return Ok(path.to_path_buf());
        };
        let absolute = std::path::absolute(path).map_err(|_| refused())?;
        let mut existing = absolute.as_path();
        let mut missing = Vec::new();
        let base = loop {
            // symlink_metadata: a dangling link must not count as missing.
            if existing.symlink_metadata().is_ok() {
                break std::fs::canonicalize(existing).map_err(|_| refused())?;
            }
            let name = existing.file_name().ok_or_else(refused)?;
            missing.push(name.to_os_string());
            existing = existing.parent().ok_or_else(refused)?;
        };
        let mut resolved = base;
        for name in missing.iter().rev() {
            if Path::new(name)
                .components()
                .any(|c| !matches!(c, Component::Normal(_)))
            {
                return Err(refused());
            }
            resolved.push(name);
        }
        inside(roots, &resolved)
            .then_some(resolved)
            .ok_or_else(refused)
    }

    fn roots(&self) -> &[PathBuf] {
        match self {
            HostPaths::Any => &[],
            HostPaths::Within { roots, .. } => roots,
        }
    }
}

fn inside(roots: &[PathBuf], canonical: &Path) -> bool {
    roots.iter().any(|root| canonical.starts_with(root))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn confined(dir: &Path) -> HostPaths {
        HostPaths::for_server(Some(&Seed::Path(dir.to_path_buf())), &[]).unwrap()
    }

    #[test]
    fn any_allows_everything() {
        let any = HostPaths::Any;
        assert_eq!(
            any.check(HostPathUse::Seed, Path::new("/etc")).unwrap(),
            Path::new("/etc")
        );
        assert!(any
            .check(HostPathUse::ExportOutput, Path::new("/root/.bashrc"))
            .is_ok());
    }

    #[test]
    fn within_allows_only_the_roots() {
        let project = tempfile::tempdir().unwrap();
        std::fs::create_dir(project.path().join("src")).unwrap();
        let paths = confined(project.path());
        assert!(paths
            .check(HostPathUse::Seed, &project.path().join("src"))
            .is_ok());
        assert!(paths.check(HostPathUse::Seed, project.path()).is_ok());
        let error = paths
            .check(HostPathUse::Seed, Path::new("/etc"))
            .unwrap_err();
        assert_eq!(error.role, HostPathUse::Seed);
        assert!(
            error.to_string().starts_with("seed path /etc is outside"),
            "{error}"
        );
        // `..` is judged by where it really leads; a missing path inside
        // passes (the call then says it is missing).
        let escape = project.path().join("src/../../");
        assert!(paths.check(HostPathUse::Seed, &escape).is_err());
        assert!(paths
            .check(HostPathUse::Seed, &project.path().join("nope"))
            .is_ok());
    }

    #[test]
    fn symlinks_out_of_a_root_are_refused() {
        let project = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(outside.path(), project.path().join("link")).unwrap();
        let paths = confined(project.path());
        let link = project.path().join("link");
        assert!(paths.check(HostPathUse::Seed, &link).is_err());
        assert!(paths
            .check(HostPathUse::ExportOutput, &link.join("out.txt"))
            .is_err());
        // A dangling link is where it points, not a new name.
        std::os::unix::fs::symlink("/etc/nope", project.path().join("dangling")).unwrap();
        assert!(paths
            .check(HostPathUse::ExportOutput, &project.path().join("dangling"))
            .is_err());
    }

    #[test]
    fn new_paths_resolve_through_their_existing_ancestor() {
        let project = tempfile::tempdir().unwrap();
        let paths = confined(project.path());
        let canonical = std::fs::canonicalize(project.path()).unwrap();
        assert_eq!(
            paths
                .check(HostPathUse::ExportOutput, &project.path().join("out/a.txt"))
                .unwrap(),
            canonical.join("out/a.txt")
        );
        for bad in ["/root/.bashrc", "/tmp/../root/x"] {
            assert!(paths
                .check(HostPathUse::ExportOutput, Path::new(bad))
                .is_err());
        }
        let climbing = project.path().join("missing/../../x");
        assert!(paths.check(HostPathUse::ExportOutput, &climbing).is_err());
    }

    #[test]
    fn server_roots_are_the_project_and_the_allowed_directories() {
        let project = tempfile::tempdir().unwrap();
        let extra = tempfile::tempdir().unwrap();
        let paths = HostPaths::for_server(
            Some(&Seed::Path(project.path().to_path_buf())),
            &[extra.path().to_path_buf()],
        )
        .unwrap();
        assert_eq!(
            paths.roots(),
            [
                std::fs::canonicalize(project.path()).unwrap(),
                std::fs::canonicalize(extra.path()).unwrap(),
            ]
        );
        assert!(HostPaths::for_server(None, &[PathBuf::from("/no/such/dir")]).is_err());
        assert!(HostPaths::for_server(None, &[]).unwrap().roots().is_empty());
        let remote = Seed::Repo {
            url: "https://example.org/r.git".into(),
            reference: None,
        };
        let served = HostPaths::for_server(Some(&remote), &[]).unwrap();
        assert!(served.roots().is_empty());
        // The operator's own seed is the user's; anything else is confined.
        assert!(matches!(served.trust_for(&remote), Trust::User));
        let other = Seed::Repo {
            url: "https://example.org/other.git".into(),
            reference: None,
        };
        assert!(matches!(served.trust_for(&other), Trust::Confined(_)));
        assert!(matches!(HostPaths::Any.trust_for(&other), Trust::User));
    }

    #[test]
    fn exports_stay_strictly_inside_and_out_of_git_metadata() {
        let project = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(project.path().join(".git/hooks")).unwrap();
        let paths = confined(project.path());
        for bad in [
            project.path().to_path_buf(),
            project.path().join(".git/hooks/pre-commit"),
            project.path().join("sub/.git/config"),
        ] {
            assert!(paths.check_export(&bad).is_err(), "{}", bad.display());
        }
        let error = paths
            .check_export(&project.path().join(".git/hooks/pre-commit"))
            .unwrap_err();
        assert_eq!(error.role, HostPathUse::GitMetadata);
        assert!(paths.check_export(&project.path().join("out.txt")).is_ok());
        assert!(HostPaths::Any.check_export(project.path()).is_ok());
    }
}
