//! Seeding rows: create with a generated tree (and without a seed, in the
//! same runs), the throughput that gives, create seeded from a real Git
//! checkout when one is named, and `sync push` and `export` of the tree.

use std::ffi::OsStr;
use std::path::Path;

use super::{run_once, BenchOptions, Samples};
use crate::api::error::Error;

/// Runs of each seeding measurement (they move hundreds of MB).
const SEED_RUNS: usize = 3;

pub(super) async fn rows(
    options: &BenchOptions,
    envs: &[(&str, &OsStr)],
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Vec<Samples>, Error> {
    let program = options.program.as_os_str();
    let pyro_cli = |args: Vec<String>| {
        let label = format!("pyro {}", args.join(" "));
        async move { run_once(&label, program, &args, envs).await }
    };
    let words = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    let env = options.env.as_str();
    let runs = options.runs.min(SEED_RUNS);
    let mb = options.seed_mb;
    progress(&format!("seeding {mb} MB in 10k files, {runs} runs"));
    let tree = tempfile::tempdir().map_err(|e| Error::Benchmark(format!("scratch tree: {e}")))?;
    let root = tree.path().to_path_buf();
    let bytes = tokio::task::spawn_blocking(move || generate_tree(&root, mb))
        .await
        .map_err(|e| Error::Benchmark(e.to_string()))?
        .map_err(|e| Error::Benchmark(format!("generating the seed tree: {e}")))?;
    let tree_path = tree.path().to_string_lossy().into_owned();
    let mut seed_create = Samples::new("create with --seed-path (tree)");
    let mut bare_create = Samples::new("create without a seed");
    let mut checkout_create = options.checkout.as_ref().map(|dir| {
        let size = dir_bytes(dir);
        Samples::new(format!(
            "create with --seed-path (Git checkout, {} MB)",
            size / 1_000_000
        ))
    });
    for i in 0..runs {
        let name = format!("seed-{i}");
        let create = words(&["workspace", "create", env, "--name", &name, "--seed-path"]);
        seed_create.push(pyro_cli([create.clone(), vec![tree_path.clone()]].concat()).await?);
        pyro_cli(words(&["workspace", "delete", &name])).await?;
        bare_create.push(pyro_cli(words(&["workspace", "create", env, "--name", &name])).await?);
        pyro_cli(words(&["workspace", "delete", &name])).await?;
        if let (Some(samples), Some(dir)) = (&mut checkout_create, &options.checkout) {
            let dir = dir.to_string_lossy().into_owned();
            samples.push(pyro_cli([create, vec![dir]].concat()).await?);
            pyro_cli(words(&["workspace", "delete", &name])).await?;
        }
    }
    let seconds = (seed_create.median() - bare_create.median()) / 1000.0;
    let mut throughput = Samples::new(format!(
        "seeding throughput, MB/s ({mb} MB, 10k files; value, not ms)"
    ));
    throughput
        .millis
        .push(bytes as f64 / 1e6 / seconds.max(0.001));

    progress(&format!("sync push and export of {mb} MB, 1 run each"));
    pyro_cli(words(&["workspace", "create", env, "--name", "moves"])).await?;
    let mut push = Samples::new(format!("`sync push` of the {mb} MB tree"));
    push.push(
        pyro_cli(
            [
                words(&["workspace", "sync", "push", "moves"]),
                vec![tree_path],
            ]
            .concat(),
        )
        .await?,
    );
    let out = tempfile::tempdir().map_err(|e| Error::Benchmark(format!("scratch output: {e}")))?;
    let output = out.path().join("export").to_string_lossy().into_owned();
    let mut export = Samples::new(format!("`export` of the {mb} MB tree"));
    export.push(
        pyro_cli(words(&[
            "workspace",
            "export",
            "moves",
            ".",
            "--output",
            &output,
        ]))
        .await?,
    );
    pyro_cli(words(&["workspace", "delete", "moves"])).await?;

    let mut rows = vec![bare_create, seed_create, throughput];
    rows.extend(checkout_create);
    rows.extend([push, export]);
    Ok(rows)
}

/// Bytes of the regular files under `dir`, `.git` included.
fn dir_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            match entry.metadata() {
                Ok(meta) if meta.is_dir() => pending.push(entry.path()),
                Ok(meta) if meta.is_file() => total += meta.len(),
                _ => {}
            }
        }
    }
    total
}

/// Writes `mb` megabytes of incompressible data as 100 x 100 files.
fn generate_tree(root: &Path, mb: u64) -> std::io::Result<u64> {
    let per_file = (mb * 1_000_000 / 10_000).max(1) as usize;
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut total = 0u64;
    for d in 0..100 {
        let dir = root.join(format!("d{d}"));
        std::fs::create_dir(&dir)?;
        for f in 0..100 {
            let mut data = vec![0u8; per_file];
            for byte in data.iter_mut() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *byte = state as u8;
            }
            std::fs::write(dir.join(format!("f{f}.txt")), &data)?;
            total += per_file as u64;
        }
    }
    Ok(total)
}
