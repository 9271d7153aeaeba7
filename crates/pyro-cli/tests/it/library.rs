//! The crate doc example of `pyro-core`, run: the library API from a Rust
//! program, against a real VM, with the supervisor taken from the `pyro`
//! binary (`PYRO_SUPERVISOR_BIN`).

use pyro_core::{CollectOutput, CreateRequest, ExecOptions, Pyro, Seed};

use crate::support::*;

#[tokio::test(flavor = "multi_thread")]
async fn the_crate_doc_example_runs() {
    ensure_env();
    // The facade starts supervisors from the running binary unless told
    // otherwise, and this test binary is not `pyro`.
    // SAFETY: the other tests of this binary touch the environment only
    // through std (spawning `pyro`), which serialises with `set_var`; the
    // `pyro` children they start from now on inherit the variable, which
    // names the binary they already are, so nothing changes for them.
    unsafe { std::env::set_var("PYRO_SUPERVISOR_BIN", pyro_bin()) };
    let project = tempfile::tempdir().unwrap();
    std::fs::write(project.path().join("hello.txt"), "hello\n").unwrap();
    let home = tempfile::tempdir().unwrap();
    let pyro = Pyro::with_dirs(Pyro::from_env().cache_dir(), home.path());

    let mut request = CreateRequest::new(ENV);
    request.seed = Some(Seed::Path(project.path().to_path_buf()));
    let workspace = pyro.workspace_create(&request).await.unwrap();
    let test = ExecOptions {
        argv: vec![
            "sh".into(),
            "-c".into(),
            "cat hello.txt && echo bye > new.txt".into(),
        ],
        ..ExecOptions::default()
    };
    let mut output = CollectOutput::default();
    let report = pyro
        .workspace_exec(&workspace.id, &test, &mut output, std::future::pending())
        .await
        .unwrap();
    assert_eq!(report.exit_code(), 0);
    assert_eq!(output.stdout_text(), "hello\n");
    let diff = pyro.workspace_diff(&workspace.id).await.unwrap();
    assert_eq!(diff.files_changed, 1);
    assert_eq!(diff.files[0].path, "new.txt");
    pyro.workspace_delete(&workspace.id).await.unwrap();
    assert!(pyro.workspace_list(&[]).unwrap().is_empty());
}
