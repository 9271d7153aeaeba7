//! Reading and rewriting the hosts' config files without disturbing anything
//! but pyro's own entry.
//!
//! Writes go to a temp file in the same directory that is renamed over the
//! original, so a crash leaves either the old or the new file, never half of
//! one. Before the first byte changes, the previous version is copied to
//! `<file>.pyro-backup`. The original's permissions are kept (`~/.claude.json`
//! holds credentials and is usually 0600); new files are created 0600.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value};

use crate::{Error, Host};

/// The file's text, or `None` when it does not exist yet.
pub(crate) fn read_optional(host: Host, path: &Path) -> Result<Option<String>, Error> {
    match fs_err::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io { host, source }),
    }
}

/// Replaces `path` with `new` atomically; returns the backup's path when an
/// existing file was replaced. Does nothing when the text is unchanged.
pub(crate) fn write_atomic(
    host: Host,
    path: &Path,
    old: Option<&str>,
    new: &str,
) -> Result<Option<PathBuf>, Error> {
    if old == Some(new) {
        return Ok(None);
    }
    let io = |source| Error::Io { host, source };
    let dir = path.parent().unwrap_or(Path::new("."));
    fs_err::create_dir_all(dir).map_err(io)?;
    let mode = match fs_err::metadata(path) {
        Ok(meta) => meta.permissions().mode() & 0o7777,
        Err(_) => 0o600,
    };
    let backup = if old.is_some() {
        let mut name = path.as_os_str().to_owned();
        name.push(".pyro-backup");
        let backup = PathBuf::from(name);
        fs_err::copy(path, &backup).map_err(io)?;
        Some(backup)
    } else {
        None
    };
    let mut temp = tempfile::Builder::new()
        .prefix(".pyro-host-")
        .tempfile_in(dir)
        .map_err(|err| io(with_path(err, dir)))?;
    temp.write_all(new.as_bytes())
        .and_then(|()| temp.as_file().sync_all())
        .map_err(|err| io(with_path(err, temp.path())))?;
    fs_err::set_permissions(temp.path(), std::fs::Permissions::from_mode(mode)).map_err(io)?;
    temp.persist(path)
        .map_err(|err| io(with_path(err.error, path)))?;
    Ok(backup)
}

fn with_path(err: std::io::Error, path: &Path) -> std::io::Error {
    std::io::Error::new(err.kind(), format!("{}: {err}", path.display()))
}

fn parse_error(
    host: Host,
    path: &Path,
    format: &'static str,
    source: impl std::error::Error + Send + Sync + 'static,
) -> Error {
    Error::Parse {
        host,
        path: path.to_path_buf(),
        format,
        source: Box::new(source),
    }
}

/// Parses a JSON config; an empty or missing file is an empty object.
pub(crate) fn parse_json(host: Host, path: &Path, text: Option<&str>) -> Result<Value, Error> {
    match text {
        Some(text) if !text.trim().is_empty() => {
            serde_json::from_str(text).map_err(|err| parse_error(host, path, "JSON", err))
        }
        _ => Ok(Value::Object(Map::new())),
    }
}

/// The value at `keys`, when every level on the way is an object.
pub(crate) fn json_get<'a>(value: &'a Value, keys: &[&str]) -> Option<&'a Value> {
    keys.iter().try_fold(value, |value, key| value.get(key))
}

/// The object at `keys`, creating empty objects on the way.
pub(crate) fn json_object_at<'a>(
    host: Host,
    path: &Path,
    root: &'a mut Value,
    keys: &[&str],
) -> Result<&'a mut Map<String, Value>, Error> {
    let shape = |depth: usize| Error::Shape {
        host,
        path: path.to_path_buf(),
        key: keys[..depth].join("."),
    };
    let mut current = root.as_object_mut().ok_or_else(|| shape(0))?;
    for (depth, key) in keys.iter().enumerate() {
        current = current
            .entry(key.to_string())
            .or_insert_with(|| Value::Object(Map::new()))
            .as_object_mut()
            .ok_or_else(|| shape(depth + 1))?;
    }
    Ok(current)
}

/// Serializes a JSON config the way people write them: two-space indent and
/// a trailing newline.
pub(crate) fn render_json(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("a JSON value serializes");
    text.push('\n');
    text
}

/// Parses a TOML config, keeping its comments and layout for rewriting.
pub(crate) fn parse_toml(
    host: Host,
    path: &Path,
    text: Option<&str>,
) -> Result<toml_edit::DocumentMut, Error> {
    text.unwrap_or("")
        .parse()
        .map_err(|err| parse_error(host, path, "TOML", err))
}
