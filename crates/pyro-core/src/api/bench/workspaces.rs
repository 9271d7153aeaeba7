//! Workspace measurements: create to first exec (warm and cold), exec
//! round trip, reset, shells and services, and seeding (`seeding.rs`), in
//! a throw-away home.

use super::{run_once, BenchOptions, Samples};
use crate::api::error::Error;
use crate::api::Pyro;

/// Every workspace row, in order.
pub(super) async fn rows(
    pyro: &Pyro,
    options: &BenchOptions,
    progress: &mut (dyn FnMut(&str) + Send),
) -> Result<Vec<Samples>, Error> {
    let home = tempfile::tempdir().map_err(|e| Error::Benchmark(format!("scratch home: {e}")))?;
    let envs = [("PYRO_HOME", home.path().as_os_str())];
    let program = options.program.as_os_str();
    let pyro_cli = |args: Vec<String>| {
        let label = format!("pyro {}", args.join(" "));
        async move { run_once(&label, program, &args, &envs).await }
    };
    let words = |words: &[&str]| words.iter().map(|w| w.to_string()).collect::<Vec<_>>();
    let env = options.env.as_str();
    let runs = options.runs;

    // The warm template is made by the first create, not timed here.
    progress("making the warm template, if there is none");
    pyro_cli(words(&["workspace", "create", env, "--name", "warmup"])).await?;
    pyro_cli(words(&["workspace", "delete", "warmup"])).await?;

    progress(&format!("workspace create to first exec, {runs} runs each"));
    let mut warm = Samples::new("warm `workspace create` + first `exec -- true`");
    let mut cold = Samples::new("`workspace create --cold` + first `exec -- true`");
    for i in 0..runs {
        for (samples, flags) in [(&mut warm, &[][..]), (&mut cold, &["--cold"][..])] {
            let name = format!("tti-{i}");
            let mut create = words(&["workspace", "create", env, "--name", &name]);
            create.extend(words(flags));
            let create = pyro_cli(create).await?;
            let exec = pyro_cli(words(&["workspace", "exec", &name, "--", "true"])).await?;
            samples.push(create + exec);
            pyro_cli(words(&["workspace", "delete", &name])).await?;
        }
    }

    progress(&format!("reset of a cold-made workspace, {runs} runs"));
    pyro_cli(words(&[
        "workspace",
        "create",
        env,
        "--name",
        "cold",
        "--cold",
    ]))
    .await?;
    let mut cold_reset = Samples::new("`workspace reset` to baseline, cold-made (boots)");
    for _ in 0..runs {
        cold_reset.push(pyro_cli(words(&["workspace", "reset", "cold"])).await?);
    }
    let in_home = Pyro::with_dirs(pyro.cache_dir(), home.path());
    let mut cold_memory =
        Samples::new("unique host memory, an idle cold-made workspace (MB; value)");
    let memory = host_memory(&in_home, "cold");
    cold_memory
        .millis
        .extend(memory.map(|m| mb(m.unique_bytes)));
    pyro_cli(words(&["workspace", "delete", "cold"])).await?;

    progress("host memory of 10 idle warm workspaces");
    let idle: Vec<String> = (0..10).map(|i| format!("idle-{i}")).collect();
    for name in &idle {
        pyro_cli(words(&["workspace", "create", env, "--name", name])).await?;
    }
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let mut warm_memory =
        Samples::new("unique host memory per idle warm workspace, 10 idle (MB; value)");
    let mut warm_pss = Samples::new("PSS per idle warm workspace, 10 idle (MB; value)");
    for memory in idle.iter().filter_map(|name| host_memory(&in_home, name)) {
        warm_memory.millis.push(mb(memory.unique_bytes));
        warm_pss.millis.push(mb(memory.pss_bytes));
    }
    for name in &idle {
        pyro_cli(words(&["workspace", "delete", name])).await?;
    }

    progress(&format!("exec round trip and reset, {runs} runs"));
    pyro_cli(words(&["workspace", "create", env, "--name", "hot"])).await?;
    let mut exec = Samples::new("`workspace exec -- true` (running workspace)");
    for _ in 0..runs {
        exec.push(pyro_cli(words(&["workspace", "exec", "hot", "--", "true"])).await?);
    }
    let mut reset = Samples::new("`workspace reset` to baseline, warm-made (restores)");
    for _ in 0..runs {
        reset.push(pyro_cli(words(&["workspace", "reset", "hot"])).await?);
    }
    let sessions = super::sessions::rows(&in_home, "hot", runs, progress).await?;
    let load = super::load::rows(&in_home, "hot", progress).await?;
    pyro_cli(words(&["workspace", "delete", "hot"])).await?;

    let seeding = super::seeding::rows(options, &envs, progress).await?;
    let mut rows = vec![warm, cold, exec, reset, cold_reset];
    rows.extend([warm_memory, warm_pss, cold_memory]);
    rows.extend(sessions);
    rows.extend(load);
    rows.extend(seeding);
    Ok(rows)
}

/// The host memory of workspace `name`'s VM, as `status` measures it.
fn host_memory(pyro: &Pyro, name: &str) -> Option<crate::host::memory::HostMemory> {
    pyro.workspace_status(name).ok()?.host_memory
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}
