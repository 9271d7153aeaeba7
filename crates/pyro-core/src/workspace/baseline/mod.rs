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
//! content is the seed disk's, which the guest mounts read-only at
//! `/var/lib/pyro/seed`, and a diff hashes the few it needs from there (see
//! `DIFF_SCRIPT` in `diff.rs`). The guest receives a small tar: the trees'
//! pack and the index.
//!
//! The baseline repository is configured with `core.checkStat=minimal` and
//! `core.trustctime=false`, so the guest's git trusts an entry whose size
//! and whole-second mtime match (the image keeps both) and hashes only
//! files that changed.
//!
//! Anything unexpected (no git on the host, a guest that cannot read the
//! result) falls back to recording in the guest; `create` never fails for
//! want of this shortcut.

mod index;

use std::collections::HashMap;
use std::path::Path;

use pyro_transfer::SeedEntry;

use super::diff::{self, run_script, NO_GIT_EXIT, PREAMBLE};
use super::{hostgit, transfer};
use crate::host::guest::Guest;

/// Where the guest keeps the baseline (see `PREAMBLE` in `diff.rs`).
const GUEST_DIR: &str = "/var/lib/pyro";

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

/// A baseline being built on the host from the seed's manifest, on a
/// thread of its own, while the VM boots.
pub(crate) struct HostBuild(std::thread::JoinHandle<Result<tempfile::TempDir, String>>);

impl HostBuild {
    pub(crate) fn start(seed: &Path, entries: Vec<SeedEntry>) -> Self {
        let seed = seed.to_path_buf();
        HostBuild(std::thread::spawn(move || build_on_host(&seed, &entries)))
    }
}

/// Records `/workspace`, just seeded from the seed `build` was started on,
/// as the diff baseline.
pub(crate) async fn record_from_seed(
    guest: &Guest,
    build: HostBuild,
) -> Result<(), diff::DiffError> {
    let built = tokio::task::spawn_blocking(move || build.0.join()).await;
    if let Ok(Ok(Ok(staging))) = built {
        if install(guest, staging.path()).await {
            return Ok(());
        }
    }
    // The slow way always works where diff works at all.
    diff::record_baseline(guest).await
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

/// Puts the staged baseline in the guest and checks the guest's git reads
/// it; false when anything fails (the caller records in the guest).
async fn install(guest: &Guest, staging: &Path) -> bool {
    // A warm template's guest holds the empty /workspace's baseline: the
    // staged one replaces it whole, no stale objects left beside its pack.
    let cleanup = "rm -rf /var/lib/pyro/baseline.git /var/lib/pyro/baseline.index";
    if !matches!(run_script(guest, cleanup, &[]).await, Ok(output) if output.status == 0) {
        return false;
    }
    if transfer::push_tree_into(guest, staging, GUEST_DIR)
        .await
        .is_err()
    {
        return false;
    }
    let check = [
        PREAMBLE,
        r#"git rev-parse -q --verify 'refs/pyro/baseline^{tree}' >/dev/null
GIT_INDEX_FILE="$B.index" git ls-files --stage >/dev/null
"#,
    ]
    .concat();
    match run_script(guest, &check, &[])
        .await
        .map(|output| output.status)
    {
        // No git in the guest: diff will say so; the baseline is in place
        // for an environment that gains git later.
        Ok(0 | NO_GIT_EXIT) => true,
        _ => {
            let _ = run_script(guest, cleanup, &[]).await;
            false
        }
    }
}
