//! Seeding `/workspace` from a disk image (see docs/seeding.md).
//!
//! The seed directory becomes a read-only ext4 image on the host
//! ([`pyro_transfer::build_image`]), made before anything is created, so a
//! seed that cannot be read or does not fit fails with nothing left. The
//! image is the workspace's second disk; the guest agent lays an overlay
//! over it at `/workspace` whose writes go to the root disk.

use std::path::Path;

use pyro_transfer::{ImageOptions, ImageReport};

use super::{baseline, SeedSummary};

use super::diff::run_script;
use super::transfer::TransferError;
use crate::host::guest::Guest;
use crate::host::template::SEED_SLOT_BYTES;

/// Named paths a [`SeedSummary`] keeps of each kind.
const NAMES_KEPT: usize = 20;

/// A seed image made and not yet in its workspace (deleted if dropped).
pub(crate) struct SeedImage {
    pub(crate) file: tempfile::TempPath,
    pub(crate) summary: SeedSummary,
    /// It carries the diff baseline (else the guest must record one).
    pub(crate) baseline: bool,
}

/// The summary of an image's report.
fn summary_of(report: &ImageReport, image_ms: u64) -> SeedSummary {
    let first = |names: &[String]| names.iter().take(NAMES_KEPT).cloned().collect();
    SeedSummary {
        files: report.files,
        dirs: report.dirs,
        symlinks: report.symlinks,
        bytes: report.bytes,
        excluded: report.excluded,
        excluded_bytes: report.excluded_bytes,
        skipped: report.skipped,
        skipped_names: first(&report.skipped_names),
        changed: first(&report.changed),
        image_ms,
    }
}

/// How old a stray image (of a create killed while imaging) must be
/// before another create removes it.
const STRAY_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Builds the image of `dir`, leaving out `exclude` and what `.pyroignore`
/// names, in a temporary file under `scratch` (on the workspaces' disk),
/// the seed slot's size.
pub(crate) async fn build_image(
    dir: &Path,
    exclude: &[String],
    scratch: &Path,
) -> Result<SeedImage, TransferError> {
    let started = std::time::Instant::now();
    remove_strays(scratch);
    let file = tempfile::Builder::new()
        .prefix(".seed-")
        .make_in(scratch, |path| {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(path)
        })
        .map_err(|e| TransferError::Image(e.to_string()))?
        .into_temp_path();
    let options = ImageOptions {
        exclude: exclude.to_vec(),
        use_ignore_file: true,
        max_bytes: SEED_SLOT_BYTES,
    };
    let dir = dir.to_path_buf();
    // The temporary path goes along: a create dropped while this runs
    // still has the image removed once it is written.
    let built = tokio::task::spawn_blocking(move || {
        // build_image makes the file itself.
        let _ = std::fs::remove_file(&file);
        let mut with_baseline = false;
        let walk_started = std::time::SystemTime::now();
        let report = pyro_transfer::build_image(&dir, &file, &options, |entries| {
            let extras = baseline::extras(&dir, entries, walk_started);
            with_baseline = !extras.is_empty();
            extras
        });
        report.map(|report| (file, report, with_baseline))
    })
    .await
    .map_err(|_| TransferError::Image("the image builder panicked".into()))?;
    let (file, report, baseline) =
        built.map_err(|error| TransferError::Image(error.to_string()))?;
    let summary = summary_of(&report, started.elapsed().as_millis() as u64);
    Ok(SeedImage {
        file,
        summary,
        baseline,
    })
}

/// Removes images a create killed while imaging left in `scratch`.
fn remove_strays(scratch: &Path) {
    let Ok(entries) = std::fs::read_dir(scratch) else {
        return;
    };
    for entry in entries.flatten() {
        let stray = entry.file_name().as_encoded_bytes().starts_with(b".seed-");
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|modified| modified.elapsed().ok())
            .is_some_and(|age| age > STRAY_AGE);
        if stray && old {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Puts the seed disk under `/workspace` in a guest restored from a warm
/// template (whose boot saw an empty slot), copying its baseline into
/// place; a booted guest's agent did so already, and says so.
pub(crate) async fn mount(guest: &Guest) -> Result<(), TransferError> {
    let script = r#"exec /proc/1/exe --mount-seed "$1""#;
    let output = run_script(guest, script, &[pyro_protocol::seed::DEVICE.to_string()])
        .await
        .map_err(|error| TransferError::SeedMount(error.to_string()))?;
    match output.status {
        0 if output.stdout.starts_with(b"Now") || output.stdout.starts_with(b"Already") => Ok(()),
        _ => Err(TransferError::SeedMount(format!(
            "{} {}",
            String::from_utf8_lossy(&output.stdout).trim(),
            String::from_utf8_lossy(&output.stderr).trim()
        ))),
    }
}
