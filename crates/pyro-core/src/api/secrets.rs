//! A workspace's secrets through the facade: set on create or later,
//! listed by name only, handed to a command only where its call names
//! them (`secret_env`), and never shown: see [`crate::workspace::secrets`].

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::error::Error;
use super::Pyro;
use crate::workspace::secrets::{SecretError, NAME_LIMIT, VALUE_LIMIT, VALUE_MIN};
use crate::workspace::store::WorkspaceStore;
use crate::workspace::{events, secrets, WorkspaceError};

/// Most bytes of secrets one command may be given (as JSON).
pub const ENV_LIMIT: usize = 128 * 1024;

/// A secret given on create: its value, or the host file holding it.
#[derive(Debug, Clone)]
pub enum SecretInput {
    /// A value given directly.
    Value {
        /// The secret's name.
        name: String,
        /// Its value.
        value: String,
    },
    /// A value read from a host file (one trailing newline dropped).
    File {
        /// The secret's name.
        name: String,
        /// The file.
        path: PathBuf,
    },
}

/// Checks a name and value before anything is stored.
pub fn check(name: &str, value: &str) -> Result<(), SecretError> {
    check_name(name)?;
    let name = name.to_string();
    match value.len() {
        n if n < VALUE_MIN => Err(SecretError::TooShort { name }),
        n if n > VALUE_LIMIT => Err(SecretError::TooLong { name }),
        _ if value.contains('\0') => Err(SecretError::Nul { name }),
        _ => Ok(()),
    }
}

fn check_name(name: &str) -> Result<(), SecretError> {
    let mut chars = name.chars();
    let first = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    let rest = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    match first && rest && name.len() <= NAME_LIMIT {
        true => Ok(()),
        false => Err(SecretError::BadName { name: name.into() }),
    }
}

/// Reads and checks the secrets a create was given, before anything boots.
pub(crate) fn read_inputs(inputs: &[SecretInput]) -> Result<BTreeMap<String, String>, SecretError> {
    let mut values = BTreeMap::new();
    for input in inputs {
        let (name, value) = match input {
            SecretInput::Value { name, value } => (name.clone(), value.clone()),
            SecretInput::File { name, path } => (name.clone(), read_secret_file(name, path)?),
        };
        check(&name, &value)?;
        if values.insert(name.clone(), value).is_some() {
            return Err(SecretError::Twice { name });
        }
    }
    Ok(values)
}

/// A secret file's content, without the one newline editors end it with.
pub fn read_secret_file(name: &str, path: &Path) -> Result<String, SecretError> {
    check_name(name)?;
    let failed = |reason: String| SecretError::File {
        name: name.into(),
        path: path.to_path_buf(),
        reason,
    };
    let meta = std::fs::metadata(path).map_err(|e| failed(e.to_string()))?;
    if meta.len() > VALUE_LIMIT as u64 + 2 {
        return Err(SecretError::TooLong { name: name.into() });
    }
    let bytes = std::fs::read(path).map_err(|e| failed(e.to_string()))?;
    let text = String::from_utf8(bytes).map_err(|_| SecretError::NotText { name: name.into() })?;
    Ok(without_line_end(&text).to_string())
}

/// A value as a file or a terminal gives it: without one trailing line end.
pub fn without_line_end(text: &str) -> &str {
    let text = text.strip_suffix('\n').unwrap_or(text);
    text.strip_suffix('\r').unwrap_or(text)
}

/// `NAME` or `ENVVAR=NAME` as (variable, secret).
pub(crate) fn parse_env(entry: &str) -> Result<(String, String), SecretError> {
    let (var, name) = entry.split_once('=').unwrap_or((entry, entry));
    match check_name(var).and(check_name(name)) {
        Ok(()) => Ok((var.to_string(), name.to_string())),
        Err(_) => Err(SecretError::BadEnv {
            entry: entry.into(),
        }),
    }
}

/// The variables `entries` name, with the workspace's values.
pub(crate) fn env_for(
    dir: &Path,
    workspace: &str,
    entries: &[String],
) -> Result<Vec<(String, String)>, SecretError> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let values = secrets::load(dir).map_err(SecretError::Store)?;
    let env = entries
        .iter()
        .map(|entry| {
            let (var, name) = parse_env(entry)?;
            match values.get(&name) {
                Some(value) => Ok((var, value.clone())),
                None => Err(SecretError::Unknown {
                    name,
                    workspace: workspace.into(),
                    known: known(&values),
                }),
            }
        })
        .collect::<Result<Vec<_>, _>>()?;
    // They travel in one request frame, escaped as JSON.
    let size: usize = env
        .iter()
        .map(|(var, value)| var.len() + serde_json::to_string(value).map_or(0, |v| v.len()))
        .sum();
    if size > ENV_LIMIT {
        return Err(SecretError::TooLarge {
            size,
            limit: ENV_LIMIT,
        });
    }
    Ok(env)
}

fn known(values: &BTreeMap<String, String>) -> String {
    match values.is_empty() {
        true => "none".into(),
        false => values.keys().cloned().collect::<Vec<_>>().join(", "),
    }
}

impl Pyro {
    /// Sets (or replaces) a secret; returns the workspace's secret names.
    /// Commands already running keep the environment they started with.
    pub fn workspace_secret_set(
        &self,
        query: &str,
        name: &str,
        value: &str,
    ) -> Result<Vec<String>, Error> {
        check(name, value)?;
        let record = self.store()?.resolve(query)?;
        if record
            .mode
            .as_ref()
            .is_some_and(|mode| mode.refuses_secrets())
        {
            let workspace = record.name.unwrap_or(record.id);
            return Err(SecretError::Untrusted { workspace }.into());
        }
        self.change_secrets(
            query,
            events::EventKind::SecretSet { name: name.into() },
            |values| {
                values.insert(name.to_string(), value.to_string());
                Ok(())
            },
        )
    }

    /// Removes a secret; returns the names left.
    pub fn workspace_secret_unset(&self, query: &str, name: &str) -> Result<Vec<String>, Error> {
        let workspace = query.to_string();
        let kind = events::EventKind::SecretUnset { name: name.into() };
        self.change_secrets(query, kind, |values| match values.remove(name) {
            Some(_) => Ok(()),
            None => Err(SecretError::Unknown {
                name: name.into(),
                workspace,
                known: known(values),
            }),
        })
    }

    /// The workspace's secret names (never their values).
    pub fn workspace_secret_list(&self, query: &str) -> Result<Vec<String>, Error> {
        let store = self.store()?;
        let dir = store.dir(&store.resolve(query)?.id);
        let values = secrets::load(&dir).map_err(SecretError::Store)?;
        Ok(values.into_keys().collect())
    }

    fn change_secrets(
        &self,
        query: &str,
        event: events::EventKind,
        change: impl FnOnce(&mut BTreeMap<String, String>) -> Result<(), SecretError>,
    ) -> Result<Vec<String>, Error> {
        let store = self.store()?;
        let id = store.resolve(query)?.id;
        let dir = store.dir(&id);
        let mut names = Vec::new();
        let mut failed = None;
        // Under the record's lock, so two changes cannot lose one another.
        store.update(&id, |_| {
            let result = secrets::load(&dir)
                .map_err(SecretError::Store)
                .and_then(|mut values| {
                    change(&mut values)?;
                    secrets::save(&dir, &values).map_err(SecretError::Store)?;
                    names = values.into_keys().collect();
                    Ok(())
                });
            failed = result.err();
            Ok(())
        })?;
        if let Some(error) = failed {
            return Err(error.into());
        }
        if !dir.is_dir() {
            // Deleted meanwhile: its secrets go with it.
            secrets::remove(&dir);
            return Err(WorkspaceError::Unknown {
                query: query.to_string(),
            }
            .into());
        }
        events::record(&dir, event);
        Ok(names)
    }
}

/// Stores a new workspace's secrets (its directory exists, nothing runs).
pub(crate) fn store_new(
    store: &WorkspaceStore,
    id: &str,
    values: &BTreeMap<String, String>,
) -> Result<(), Error> {
    if values.is_empty() {
        return Ok(());
    }
    secrets::save(&store.dir(id), values).map_err(|source| {
        Error::Workspace(WorkspaceError::Io {
            path: secrets::path_for(&store.dir(id)),
            source,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_values_are_checked() {
        assert!(check("TOKEN", "abcd").is_ok());
        assert!(check("_a1", "abcd").is_ok());
        for bad in ["1A", "A-B", "", "A B", &"A".repeat(65)] {
            let err = check(bad, "abcd").unwrap_err().to_string();
            assert!(err.contains("not an identifier"), "{err}");
        }
        assert!(check("T", "abc")
            .unwrap_err()
            .to_string()
            .contains("shorter"));
        assert!(check("T", "ab\0cd")
            .unwrap_err()
            .to_string()
            .contains("NUL"));
        assert!(check("T", &"x".repeat(VALUE_LIMIT + 1)).is_err());
    }

    #[test]
    fn env_entries_name_a_variable_and_a_secret() {
        assert_eq!(
            parse_env("TOKEN").unwrap(),
            ("TOKEN".into(), "TOKEN".into())
        );
        assert_eq!(
            parse_env("GH=TOKEN").unwrap(),
            ("GH".into(), "TOKEN".into())
        );
        assert!(parse_env("GH=").is_err());
        assert!(parse_env("a b=TOKEN").is_err());
    }

    #[test]
    fn create_inputs_read_files_and_refuse_twice() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "from-a-file\n").unwrap();
        let inputs = vec![
            SecretInput::File {
                name: "A".into(),
                path: file,
            },
            SecretInput::Value {
                name: "B".into(),
                value: "given".into(),
            },
        ];
        let values = read_inputs(&inputs).unwrap();
        assert_eq!(values["A"], "from-a-file");
        let missing = SecretInput::File {
            name: "C".into(),
            path: dir.path().join("nope"),
        };
        let err = read_inputs(&[missing]).unwrap_err().to_string();
        assert!(err.contains("cannot read secret `C`"), "{err}");
        let twice = [inputs[1].clone(), inputs[1].clone()];
        assert!(read_inputs(&twice)
            .unwrap_err()
            .to_string()
            .contains("twice"));
    }

    #[test]
    fn unknown_secrets_list_the_known_names_only() {
        let home = tempfile::tempdir().unwrap();
        let dir = home.path().join("workspaces").join("w1");
        std::fs::create_dir_all(&dir).unwrap();
        let values = BTreeMap::from([("TOKEN".to_string(), "s3cr3t-v".to_string())]);
        secrets::save(&dir, &values).unwrap();
        let env = env_for(&dir, "w", &["GH=TOKEN".to_string()]).unwrap();
        assert_eq!(env, vec![("GH".to_string(), "s3cr3t-v".to_string())]);
        let err = env_for(&dir, "w", &["OTHER".to_string()])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("it has: TOKEN") && !err.contains("s3cr3t"),
            "{err}"
        );
    }
}
