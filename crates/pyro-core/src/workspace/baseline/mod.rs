//! The diff baseline of a seeded workspace, built on the host.
//!
//! Recording `/workspace` as a commit inside the guest (`diff.rs`) costs
//! about a millisecond per file under TCG. The seed's image was built on
//! the host, though, and hashed every file as a Git blob while it copied it
//! ([`pyro_transfer::SeedEntry`]). So the host writes the baseline's git
//! index from that manifest (`index.rs`: mode, blob, size, mtime), and its
//! own git, hardened ([`hostgit`]), decides which paths the tree's
//! `.gitignore` files leave out (`ls-files -o --exclude-standard`) and
//! writes the trees and the commit. The blobs are not copied anywhere: their
//! content is the seed disk's tree, which the guest mounts read-only under
//! `/var/lib/pyro/seed`, and a diff hashes the few it needs from there (see
//! `DIFF_SCRIPT` in `diff.rs`). The trees' pack and the index go on the
//! seed disk itself (its `extra/`), and the guest agent copies them into
//! `/var/lib/pyro` when it first mounts the disk: a seeded create writes
//! nothing to the root disk, so a warm one's baseline is its template's
//! layer, frozen before the VM starts, as an unseeded one's is.
//!
//! The baseline repository is configured with `core.checkStat=minimal` and
//! `core.trustctime=false`, so the guest's git trusts an entry whose size
//! and whole-second mtime match (the image keeps both) and hashes only
//! files that changed.
//!
//! Anything unexpected (no git on the host, a `.gitattributes` whose
//! filters change blobs) falls back to recording in the guest; `create`
//! never fails for want of this shortcut.

mod index;

use std::collections::HashMap;
use std::path::Path;

use pyro_transfer::{ExtraFile, SeedEntry};

use super::hostgit;

/// Configuration of the baseline repository, host-built or not.
const CONFIG: &str = "[core]
\tfileMode = true
\tsymlinks = true
\tignoreCase = false
\tautocrlf = false
\tquotePath = false
\tlooseCompression = 0
\tcheckStat = minimal
\ttrustctime = false
[pack]
\tcompression = 1
[gc]
\tauto = 0
[advice]
\taddEmbeddedRepo = false
";

/// The seed's diff baseline as files for the seed disk's `extra/`
/// (`baseline.git/…`, `baseline.index`, an empty `baseline.warnings`),
/// built from the image's manifest. None when the host cannot build it
/// (no git, a `.gitattributes`): the guest then records the baseline.
///
/// The index's mtime is `stat_taken` (whole seconds), when the walk took
/// the stat data it holds: git rechecks the content of entries modified in
/// that second or later (racily clean), so a change in the guest in the
/// same second as a file's seeded mtime, keeping its size, is still seen.
pub(crate) fn extras(
    seed: &Path,
    entries: &[SeedEntry],
    stat_taken: std::time::SystemTime,
) -> Vec<ExtraFile> {
    let built = build_on_host(seed, entries).and_then(|staging| {
        std::fs::write(staging.path().join("baseline.warnings"), "").map_err(|e| e.to_string())?;
        read_files(staging.path(), &mut Vec::new()).map_err(|e| e.to_string())
    });
    let mut files = built.unwrap_or_default();
    let taken = stat_taken
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    for file in &mut files {
        if file.path == b"baseline.index" {
            file.mtime = (taken, 0);
        }
    }
    files
}

/// Every file under `dir`, as extra files named relative to it.
fn read_files(dir: &Path, prefix: &mut Vec<u8>) -> std::io::Result<Vec<ExtraFile>> {
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        let len = prefix.len();
        if !prefix.is_empty() {
            prefix.push(b'/');
        }
        prefix.extend_from_slice(entry.file_name().as_bytes());
        if meta.is_dir() {
            files.extend(read_files(&entry.path(), prefix)?);
        } else {
            files.push(ExtraFile {
                path: prefix.clone(),
                data: std::fs::read(entry.path())?,
                mode: (meta.permissions().mode() & 0o777) as u16,
                mtime: (meta.mtime(), meta.mtime_nsec() as u32),
            });
        }
        prefix.truncate(len);
    }
    Ok(files)
}

/// Builds `baseline.git` (the trees and the commit, in one pack) and
/// `baseline.index` for the seed at `seed`, whose image holds `entries`, in
/// a fresh staging directory laid out like the guest's `/var/lib/pyro`.
fn build_on_host(seed: &Path, entries: &[SeedEntry]) -> Result<tempfile::TempDir, String> {
    let staging = tempfile::tempdir().map_err(|e| e.to_string())?;
    let git_dir = staging.path().join("baseline.git");
    let index_file = staging.path().join("baseline.index");
    let git = |args: &[&str], dir: &Path| -> Result<Vec<u8>, String> {
        let output = hostgit::command(false, None)
            .args(args)
            .env("GIT_DIR", &git_dir)
            .env("GIT_WORK_TREE", seed)
            .env("GIT_INDEX_FILE", &index_file)
            .env("GIT_AUTHOR_NAME", "pyro")
            .env("GIT_AUTHOR_EMAIL", "pyro@localhost")
            .env("GIT_COMMITTER_NAME", "pyro")
            .env("GIT_COMMITTER_EMAIL", "pyro@localhost")
            .current_dir(dir)
            .output()
            .map_err(|e| format!("git: {e}"))?;
        match output.status.success() {
            true => Ok(output.stdout),
            false => Err(format!(
                "git {}: {}",
                args.first().unwrap_or(&""),
                String::from_utf8_lossy(&output.stderr).trim()
            )),
        }
    };
    let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).trim().to_string();
    // Attributes (eol, ident, encodings) make git's blob differ from the
    // bytes hashed: such a tree is recorded in the guest, by git itself.
    let attributes = |p: &[u8]| p == b".gitattributes" || p.ends_with(b"/.gitattributes");
    if entries.iter().any(|e| attributes(&e.path)) {
        return Err("the seed has .gitattributes".into());
    }
    git(&["init", "-q", "--template="], seed)?;
    let config = git_dir.join("config");
    let mut config_text = std::fs::read_to_string(&config).map_err(|e| e.to_string())?;
    config_text.push_str(CONFIG);
    std::fs::write(&config, config_text).map_err(|e| e.to_string())?;
    if text(git(&["rev-parse", "--show-object-format"], seed)?) != "sha1" {
        return Err("the host's git does not make SHA-1 repositories".into());
    }
    // What `git add -A` would take: every path the .gitignore files let
    // through; a nested repository is one entry (`dir/`), its commit.
    let listed = git(&["ls-files", "-o", "--exclude-standard", "-z"], seed)?;
    let by_path: HashMap<&[u8], &SeedEntry> =
        entries.iter().map(|e| (e.path.as_slice(), e)).collect();
    let mut index = Vec::new();
    for path in listed.split(|&b| b == 0).filter(|p| !p.is_empty()) {
        if let Some(repo) = path.strip_suffix(b"/") {
            if let Some(commit) = nested_commit(seed, repo) {
                index.push(index::IndexEntry {
                    path: repo.to_vec(),
                    mode: 0o160000,
                    id: commit,
                    size: 0,
                    mtime: (0, 0),
                });
            }
            continue;
        }
        if let Some(entry) = by_path.get(path) {
            index.push(index::IndexEntry {
                path: entry.path.clone(),
                mode: entry.mode,
                id: entry.blob,
                size: entry.size,
                mtime: entry.mtime,
            });
        }
    }
    index.sort_by(|a, b| a.path.cmp(&b.path));
    std::fs::write(&index_file, index::encode(&index)).map_err(|e| e.to_string())?;
    let tree = text(git(&["write-tree", "--missing-ok"], seed)?);
    let commit = text(git(&["commit-tree", &tree, "-m", "pyro baseline"], seed)?);
    git(&["update-ref", "refs/pyro/baseline", &commit], seed)?;
    // One pack of the trees and the commit: `repack` would walk into the
    // blobs, which are not here.
    let objects = git(
        &[
            "cat-file",
            "--batch-all-objects",
            "--batch-check=%(objectname)",
        ],
        seed,
    )?;
    let mut pack = hostgit::command(false, None)
        .args(["pack-objects", "-q"])
        .arg(git_dir.join("objects/pack/pack"))
        .env("GIT_DIR", &git_dir)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .map_err(|e| format!("git pack-objects: {e}"))?;
    {
        use std::io::Write;
        let mut stdin = pack.stdin.take().expect("piped");
        stdin.write_all(&objects).map_err(|e| e.to_string())?;
    }
    if !pack.wait().map_err(|e| e.to_string())?.success() {
        return Err("git pack-objects failed".into());
    }
    git(&["prune-packed", "-q"], seed)?;
    Ok(staging)
}

/// The checked-out commit of the nested repository at `seed/repo`, as
/// `git add` records it; none when it has no commit.
fn nested_commit(seed: &Path, repo: &[u8]) -> Option<[u8; 20]> {
    use std::os::unix::ffi::OsStrExt;
    let dir = seed.join(std::ffi::OsStr::from_bytes(repo));
    let output = hostgit::command(false, None)
        .args([
            "-c",
            "safe.directory=*",
            "rev-parse",
            "-q",
            "--verify",
            "HEAD^{commit}",
        ])
        .current_dir(&dir)
        .output()
        .ok()?;
    output.status.success().then_some(())?;
    let hex = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let mut id = [0u8; 20];
    for (byte, pair) in id.iter_mut().zip(hex.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    (hex.len() == 40).then_some(id)
}
