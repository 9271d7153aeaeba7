//! A workspace's secrets: named values kept on the host, 0600, in
//! `PYRO_HOME/secrets/<id>.json`, outside the workspace's own directory,
//! so no disk, snapshot, export or state file holds them. A command gets a
//! value only where its call names it (`--secret-env`), and every value
//! is redacted ([`redact`]) from what pyro shows and stores.

pub(crate) mod redact;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use pyro_util::fsutil::{write_atomic, Owner};

pub(crate) use redact::{Redactor, Secrets};

/// Longest secret name.
pub const NAME_LIMIT: usize = 64;
/// Shortest value: a shorter one would hide ordinary output everywhere.
pub const VALUE_MIN: usize = 4;
/// Longest value.
pub const VALUE_LIMIT: usize = 64 * 1024;

/// Why a secret call was refused. Messages never carry a value.
#[derive(Debug, thiserror::Error)]
#[allow(missing_docs)] // Each variant says what it is in its message.
pub enum SecretError {
    #[error("secret name `{name}` is not an identifier; use letters, digits and `_`, not starting with a digit, at most {NAME_LIMIT} long")]
    BadName { name: String },
    #[error("secret `{name}` is shorter than {VALUE_MIN} characters; so short a value would be hidden all through ordinary output")]
    TooShort { name: String },
    #[error("secret `{name}` is longer than {VALUE_LIMIT} bytes")]
    TooLong { name: String },
    #[error("secret `{name}` holds a NUL byte, which no environment variable can carry")]
    Nul { name: String },
    #[error("secret `{name}` is not valid UTF-8")]
    NotText { name: String },
    #[error("secret `{name}` is given twice")]
    Twice { name: String },
    #[error("cannot read secret `{name}` from {}: {reason}", .path.display())]
    File {
        name: String,
        path: PathBuf,
        reason: String,
    },
    #[error("no secret `{name}` in workspace '{workspace}' (it has: {known}); set it with `pyro workspace secret set` or MCP workspace_secret_set")]
    Unknown {
        name: String,
        workspace: String,
        known: String,
    },
    #[error("workspace '{workspace}' was made in untrusted mode, which takes no secrets; give secrets to a workspace made without that mode")]
    Untrusted { workspace: String },
    #[error("the secrets named come to {size} bytes, more than the {limit} one command can be given; name fewer")]
    TooLarge { size: usize, limit: usize },
    #[error("`{entry}` is not NAME or ENVVAR=NAME (ENVVAR a variable name, NAME a secret's)")]
    BadEnv { entry: String },
    #[error("cannot keep the workspace's secrets")]
    Store(#[source] std::io::Error),
}

/// The directory of secret files, in the pyro home.
const DIR: &str = "secrets";

/// Where the secrets of the workspace whose directory is `dir`
/// (`HOME/workspaces/ID`) live.
pub(crate) fn path_for(dir: &Path) -> PathBuf {
    let id = dir.file_name().unwrap_or_default().to_string_lossy();
    let home = dir.parent().and_then(Path::parent).unwrap_or(dir);
    home.join(DIR).join(format!("{id}.json"))
}

/// The named values of the workspace in `dir`; none when it has no file.
pub(crate) fn load(dir: &Path) -> std::io::Result<BTreeMap<String, String>> {
    read(&path_for(dir))
}

fn read(file: &Path) -> std::io::Result<BTreeMap<String, String>> {
    match std::fs::read(file) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(e),
    }
}

/// What redacts the workspace's values. A file that cannot be read gives
/// no values: it then gave none to any command either.
pub(crate) fn secrets(dir: &Path) -> Secrets {
    Secrets::new(&load(dir).unwrap_or_default())
}

/// A stream redactor that follows the workspace's secrets as they change:
/// for commands, shells and services, which may outlive a `secret set`.
#[derive(Debug, Clone)]
pub(crate) struct LiveRedactor {
    file: PathBuf,
    stamp: Option<std::time::SystemTime>,
    redactor: Redactor,
}

impl LiveRedactor {
    pub(crate) fn new(dir: &Path) -> LiveRedactor {
        let file = path_for(dir);
        let stamp = modified(&file);
        LiveRedactor {
            redactor: secrets(dir).stream(),
            file,
            stamp,
        }
    }

    /// [`Redactor::push`], with the values read again if they changed.
    pub(crate) fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let stamp = modified(&self.file);
        if stamp != self.stamp {
            self.stamp = stamp;
            let values = read(&self.file).unwrap_or_default();
            self.redactor.replace(Secrets::new(&values));
        }
        self.redactor.push(chunk)
    }

    /// The values it redacts with now.
    pub(crate) fn secrets(&self) -> &Secrets {
        self.redactor.secrets()
    }

    pub(crate) fn finish(&mut self) -> Vec<u8> {
        self.redactor.finish()
    }
}

fn modified(file: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(file).and_then(|m| m.modified()).ok()
}

/// Writes the workspace's values (0600, in a 0700 directory); none
/// removes the file.
pub(crate) fn save(dir: &Path, values: &BTreeMap<String, String>) -> std::io::Result<()> {
    let path = path_for(dir);
    if values.is_empty() {
        return match std::fs::remove_file(&path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        };
    }
    let parent = path.parent().unwrap_or(Path::new("."));
    let owner = Owner::for_store_at(parent);
    if !parent.is_dir() {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)?;
        owner.adopt(parent)?;
    }
    let json = serde_json::to_vec(values).expect("secrets serialise");
    write_atomic(&path, &json, 0o600, owner)
}

/// Removes the workspace's secrets with it.
pub(crate) fn remove(dir: &Path) {
    let _ = std::fs::remove_file(path_for(dir));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_live_outside_the_workspace_dir_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("workspaces").join("abc123");
        std::fs::create_dir_all(&dir).unwrap();
        let path = path_for(&dir);
        assert_eq!(path, home.path().join("secrets").join("abc123.json"));
        assert!(load(&dir).unwrap().is_empty());
        let values = BTreeMap::from([("TOKEN".to_string(), "s3cr3t".to_string())]);
        save(&dir, &values).unwrap();
        assert_eq!(load(&dir).unwrap(), values);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
        assert_eq!(secrets(&dir).redact("x s3cr3t"), "x [secret:TOKEN]");
        save(&dir, &BTreeMap::new()).unwrap();
        assert!(!path.exists());
    }
}
