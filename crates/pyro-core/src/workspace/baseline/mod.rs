//! The diff baseline of a seeded workspace, built on the host.
//!
//! Recording `/workspace` as a commit inside the guest (`diff.rs`) costs
//! about a millisecond per file under TCG: some 10 s for a 10,000-file
//! repository, most of `create`. The seed is on the host, though, and the
//! host's own git builds the same commit from it at native speed: the same
//! `.gitignore` rules, modes and links, with the user's git configuration
//! shut out (the hardened git of [`hostgit`]). The guest then receives one pack (with its pack index) and
//! the git index, as a small tar into `/var/lib/pyro`, instead of writing
//! thousands of loose objects.
//!
//! The git index carries the host's stat data. The baseline repository is
//! configured with `core.checkStat=minimal` and `core.trustctime=false`, so
//! the guest's git trusts an entry whose size and whole-second mtime match
//! (tar keeps both) and hashes only files that changed.
//!
//! Anything unexpected (no git on the host, a seed the host's git refuses,
//! a guest that cannot read the result) falls back to recording in the
//! guest; `create` never fails for want of this shortcut.

use std::path::Path;

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

/// A baseline being built on the host from the seed, on a thread of its
/// own, while the VM boots and the seed is copied in.
pub(crate) struct HostBuild(std::thread::JoinHandle<Result<tempfile::TempDir, String>>);

impl HostBuild {
    pub(crate) fn start(seed: &Path) -> Self {
        let seed = seed.to_path_buf();
        HostBuild(std::thread::spawn(move || build_on_host(&seed)))
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

/// Builds `baseline.git` (one pack) and `baseline.index` for `seed` in a
/// fresh staging directory laid out like the guest's `/var/lib/pyro`.
fn build_on_host(seed: &Path) -> Result<tempfile::TempDir, String> {
    let staging = tempfile::tempdir().map_err(|e| e.to_string())?;
    let git_dir = staging.path().join("baseline.git");
    let git = |args: &[&str]| -> Result<String, String> {
        let output = hostgit::command(false, None)
            .args(args)
            .env("GIT_DIR", &git_dir)
            .env("GIT_WORK_TREE", seed)
            .env("GIT_INDEX_FILE", staging.path().join("baseline.index"))
            .env("GIT_AUTHOR_NAME", "pyro")
            .env("GIT_AUTHOR_EMAIL", "pyro@localhost")
            .env("GIT_COMMITTER_NAME", "pyro")
            .env("GIT_COMMITTER_EMAIL", "pyro@localhost")
            .current_dir(seed)
            .output()
            .map_err(|e| format!("git: {e}"))?;
        // `add --ignore-errors` exits 1 for paths it skipped (warnings).
        let warnings_only = args.first() == Some(&"add") && output.status.code() == Some(1);
        if output.status.success() || warnings_only {
            Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
        } else {
            Err(format!(
                "git {}: {}",
                args.first().unwrap_or(&""),
                String::from_utf8_lossy(&output.stderr).trim()
            ))
        }
    };
    git(&["init", "-q", "--template="])?;
    let config = git_dir.join("config");
    let mut text = std::fs::read_to_string(&config).map_err(|e| e.to_string())?;
    text.push_str(CONFIG);
    std::fs::write(&config, text).map_err(|e| e.to_string())?;
    if git(&["rev-parse", "--show-object-format"])? != "sha1" {
        return Err("the host's git does not make SHA-1 repositories".into());
    }
    git(&["add", "-A", "--ignore-errors"])?;
    let tree = git(&["write-tree"])?;
    let commit = git(&["commit-tree", &tree, "-m", "pyro baseline"])?;
    git(&["update-ref", "refs/pyro/baseline", &commit])?;
    git(&["repack", "-a", "-d", "-q"])?;
    Ok(staging)
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
