//! The host side of the boundary, through the real front ends: values a
//! model (or a pasted command) chooses can neither make the host's git
//! read host files nor name host paths outside what the user allowed.
//!
//! Reproduces the hole of the security issue (`--repo-ref=
//! --pathspec-from-file=FILE` printed FILE's lines inside git's error;
//! `--repo-url=--upload-pack=CMD` ran CMD; MCP's `seed_path` read any host
//! directory). Run alone with:
//!
//! ```text
//! cargo test -p pyro-cli --test it host_boundary:: -- --nocapture
//! ```

use std::path::Path;

use crate::support::mcp::*;
use crate::support::*;
use serde_json::json;

const SECRET: &str = "host-secret-line-XYZ";

/// A repository with a default branch `main`, a branch `side` and a tag.
fn repo() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    git(dir.path(), &["init", "-q", "-b", "main"]);
    std::fs::write(dir.path().join("app.txt"), "main\n").unwrap();
    git(dir.path(), &["add", "-A"]);
    git(dir.path(), &["commit", "-qm", "first"]);
    git(dir.path(), &["checkout", "-q", "-b", "side"]);
    std::fs::write(dir.path().join("app.txt"), "side\n").unwrap();
    git(dir.path(), &["commit", "-qam", "side"]);
    git(dir.path(), &["checkout", "-q", "main"]);
    dir
}

/// A host file whose content must never appear in any output.
fn secret_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("secret.txt");
    std::fs::write(&path, format!("{SECRET}\nsecond-{SECRET}\n")).unwrap();
    path
}

/// The cache dir the tests' environments were pulled into.
fn cache_dir() -> std::path::PathBuf {
    if let Some(dir) = std::env::var_os("PYRO_CACHE_DIR") {
        return dir.into();
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| Path::new(&std::env::var_os("HOME").unwrap()).join(".cache"));
    cache.join("pyro")
}

fn no_workspaces(home: &TestHome) {
    let listed = json(&ok(home.run(&["workspace", "list", "--json"]), "list"));
    assert_eq!(listed.as_array().map(Vec::len), Some(0), "{listed}");
}

#[test]
fn injected_git_options_are_refused_before_git_runs() {
    let home = TestHome::new();
    let source = repo();
    let scratch = tempfile::tempdir().unwrap();
    let secret = secret_file(scratch.path());
    let marker = scratch.path().join("upload-pack-ran");
    let url = source.path().to_str().unwrap();

    let pathspec = format!("--repo-ref=--pathspec-from-file={}", secret.display());
    let refused = home.run(&["workspace", "create", ENV, "--repo-url", url, &pathspec]);
    assert_eq!(refused.status.code(), Some(125));
    let text = format!("{}{}", stdout(&refused), stderr(&refused));
    assert!(text.contains("it starts with '-'"), "{text}");
    assert!(!text.contains(SECRET), "host file content leaked: {text}");

    let upload_pack = format!("--repo-url=--upload-pack=touch {}", marker.display());
    let refused = home.run(&["workspace", "create", ENV, &upload_pack]);
    assert_eq!(refused.status.code(), Some(125));
    assert!(
        stderr(&refused).contains("it starts with '-'"),
        "{}",
        stderr(&refused)
    );

    let helper = format!("ext::sh -c touch% {}", marker.display());
    let refused = home.run(&["workspace", "create", ENV, "--repo-url", &helper]);
    assert!(
        stderr(&refused).contains("transport helpers"),
        "{}",
        stderr(&refused)
    );
    let plain_http = home.run(&[
        "workspace",
        "create",
        ENV,
        "--repo-url",
        "http://example.org/r",
    ]);
    assert!(
        stderr(&plain_http).contains("use https"),
        "{}",
        stderr(&plain_http)
    );
    let unknown_ref = home.run(&[
        "workspace",
        "create",
        ENV,
        "--repo-url",
        url,
        "--repo-ref",
        "nope",
    ]);
    assert!(
        stderr(&unknown_ref).contains("'nope' is not a branch, tag or commit of"),
        "{}",
        stderr(&unknown_ref)
    );

    assert!(!marker.exists(), "an injected command ran on the host");
    no_workspaces(&home);
}

#[test]
fn the_host_git_ignores_user_config_hooks_filters_and_git_env() {
    let home = TestHome::new();
    let source = repo();
    let scratch = tempfile::tempdir().unwrap();
    let markers = scratch.path().join("markers");
    std::fs::create_dir(&markers).unwrap();
    // A user configuration that would run commands on checkout: a smudge
    // filter the repository asks for, a hooks directory, an fsmonitor.
    let hooks = scratch.path().join("hooks");
    std::fs::create_dir(&hooks).unwrap();
    let hook = hooks.join("post-checkout");
    std::fs::write(
        &hook,
        format!("#!/bin/sh\ntouch {}/hook\n", markers.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o755)).unwrap();
    let user_home = scratch.path().join("home");
    std::fs::create_dir(&user_home).unwrap();
    std::fs::write(
        user_home.join(".gitconfig"),
        format!(
            "[filter \"evil\"]\n\tsmudge = \"sh -c 'touch {m}/filter; cat'\"\n\trequired = true\n\
             [core]\n\thooksPath = {h}\n",
            m = markers.display(),
            h = hooks.display()
        ),
    )
    .unwrap();
    // And the cloned repository asks for the filter and has a hook of its own.
    std::fs::write(source.path().join(".gitattributes"), "*.txt filter=evil\n").unwrap();
    git(source.path(), &["checkout", "-q", "side"]);
    git(source.path(), &["add", ".gitattributes"]);
    git(source.path(), &["commit", "-qm", "attributes"]);
    git(source.path(), &["checkout", "-q", "main"]);
    // (clone copies no hooks; this guards a seeding path that ever would.)
    let repo_hook = source.path().join(".git/hooks/post-checkout");
    std::fs::write(
        &repo_hook,
        format!("#!/bin/sh\ntouch {}/repo-hook\n", markers.display()),
    )
    .unwrap();
    std::fs::set_permissions(&repo_hook, std::fs::Permissions::from_mode(0o755)).unwrap();

    let created = home
        .pyro()
        .args(["workspace", "create", ENV, "--id-only", "--repo-url"])
        .arg(source.path())
        .args(["--repo-ref", "side"])
        // The environments stay where they are; only git's HOME moves.
        .env("PYRO_CACHE_DIR", cache_dir())
        .env("HOME", &user_home)
        .env("GIT_CONFIG_COUNT", "1")
        .env("GIT_CONFIG_KEY_0", "core.fsmonitor")
        .env(
            "GIT_CONFIG_VALUE_0",
            format!("touch {}/fsmonitor; false", markers.display()),
        )
        .output()
        .unwrap();
    let id = stdout(&ok(created, "create from a hostile config"))
        .trim()
        .to_string();
    let names: Vec<_> = std::fs::read_dir(&markers)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(names.is_empty(), "host git ran something: {names:?}");
    // A branch other than the remote's HEAD is checked out as a branch.
    let inside = home.sh(&id, "cat app.txt; git rev-parse --abbrev-ref HEAD");
    assert_eq!(stdout(&inside), "side\nside\n", "{}", stderr(&inside));
    ok(home.run(&["workspace", "delete", &id]), "delete");
}

#[tokio::test(flavor = "multi_thread")]
async fn mcp_host_paths_stay_inside_the_project_and_the_allowed_directories() {
    let home = TestHome::new();
    let project = repo();
    std::fs::create_dir(project.path().join("sub")).unwrap();
    std::fs::write(project.path().join("sub/inner.txt"), "inner\n").unwrap();
    let allowed = tempfile::tempdir().unwrap();
    std::fs::write(allowed.path().join("shared.txt"), "shared\n").unwrap();
    let outside = tempfile::tempdir().unwrap();
    let secret = secret_file(outside.path());
    let elsewhere = repo();
    // An allowed directory that is no repository, beside an outside
    // `NAME.git` that git would probe for it.
    let parent = tempfile::tempdir().unwrap();
    let probed = parent.path().join("probed");
    std::fs::create_dir(&probed).unwrap();
    git(parent.path(), &["init", "-q", "--bare", "probed.git"]);
    let allow = allowed.path().to_str().unwrap();
    let allow_probed = probed.to_str().unwrap();
    let client = serve(
        home.path(),
        project.path(),
        &[
            "--profile",
            "workspace-full",
            "--allow-host-path",
            allow,
            "--allow-host-path",
            allow_probed,
        ],
    )
    .await;

    let refusals = [
        json!({"seed_path": "/etc"}),
        json!({"seed_path": outside.path()}),
        json!({"seed_path": project.path().join("sub/../..")}),
        json!({"repo_url": elsewhere.path()}),
        json!({"repo_url": format!("file://{}", elsewhere.path().display())}),
    ];
    for arguments in refusals {
        let refused = call(&client, "workspace_create", arguments.clone()).await;
        assert_eq!(refused.is_error, Some(true), "{arguments}");
        let text = text(&refused);
        assert!(text.contains("is outside the host directories"), "{text}");
        assert!(text.contains("--allow-host-path DIR"), "{text}");
    }
    let pwned = outside.path().join("upload-pack-ran");
    let injected = [
        json!({"repo_url": format!("--upload-pack=touch {}", pwned.display())}),
        json!({"repo_url": project.path(), "repo_ref": format!("--pathspec-from-file={}", secret.display())}),
    ];
    for arguments in injected {
        let refused = call(&client, "workspace_create", arguments.clone()).await;
        assert_eq!(refused.is_error, Some(true), "{arguments}");
        assert!(
            text(&refused).contains("starts with '-'"),
            "{}",
            text(&refused)
        );
        assert!(!text(&refused).contains(SECRET), "{}", text(&refused));
    }
    assert!(!pwned.exists(), "an injected command ran on the host");

    // Through git's own pointers: a `.git` file in the project that leads
    // out (as an export could have planted before git metadata was left
    // out), a plain directory whose sibling `NAME.git` git would probe,
    // and remotes on this machine itself (ssh localhost with the user's key).
    let pointer = project.path().join("pointer");
    std::fs::create_dir(&pointer).unwrap();
    let outside_git = elsewhere.path().join(".git");
    std::fs::write(
        pointer.join(".git"),
        format!("gitdir: {}\n", outside_git.display()),
    )
    .unwrap();
    let sneaky = [
        (json!({"repo_url": pointer}), "cannot be cloned here"),
        (json!({"repo_url": probed}), "is not a git repository"),
        (
            json!({"repo_url": "git://127.0.0.1:9418/r"}),
            "is this machine itself",
        ),
        (
            json!({"repo_url": "ssh://localhost/srv/r.git"}),
            "is this machine itself",
        ),
        (json!({"repo_url": "git@[::1]:r"}), "is this machine itself"),
    ];
    for (arguments, expected) in sneaky {
        let refused = call(&client, "workspace_create", arguments.clone()).await;
        assert_eq!(refused.is_error, Some(true), "{arguments}");
        assert!(
            text(&refused).contains(expected),
            "{arguments}: {}",
            text(&refused)
        );
    }
    let listed = tool_ok(&client, "workspace_list", json!({})).await;
    assert_eq!(listed["workspaces"], json!([]));

    // Inside the project: works.
    let created = tool_ok(&client, "workspace_create", json!({"seed_path": "sub"})).await;
    let id = created["id"].as_str().unwrap().to_string();
    let read = tool_ok(
        &client,
        "workspace_file_read",
        json!({"workspace": id, "path": "inner.txt"}),
    )
    .await;
    assert_eq!(read["content"], "inner\n");

    // --allow-host-path widens it; anything else stays refused.
    let synced = tool_ok(
        &client,
        "workspace_sync_push",
        json!({"workspace": id, "source": allowed.path(), "dest": "shared"}),
    )
    .await;
    assert_eq!(synced["files"], 1);
    let refused = call(
        &client,
        "workspace_sync_push",
        json!({"workspace": id, "source": outside.path()}),
    )
    .await;
    assert_eq!(refused.is_error, Some(true));

    // Export: never outside, not through a link that leads out either.
    std::os::unix::fs::symlink(outside.path(), project.path().join("out-link")).unwrap();
    let bashrc_like = outside.path().join(".bashrc");
    for output in [
        bashrc_like.clone(),
        project.path().join("out-link/inner.txt"),
        project.path().join("missing/../../escape.txt"),
        // A hook runs on the user's next commit; a root itself would have
        // the unpacker stage beside it, outside.
        project.path().join(".git/hooks/pre-commit"),
        allowed.path().to_path_buf(),
    ] {
        let refused = call(
            &client,
            "workspace_export",
            json!({"workspace": id, "path": "inner.txt", "output": output}),
        )
        .await;
        assert_eq!(refused.is_error, Some(true), "{}", output.display());
        assert!(
            text(&refused).contains("export output"),
            "{}",
            text(&refused)
        );
    }
    assert!(!bashrc_like.exists());
    assert!(!outside.path().join("inner.txt").exists());
    for output in [
        project.path().join("exported.txt"),
        allowed.path().join("exported.txt"),
    ] {
        tool_ok(
            &client,
            "workspace_export",
            json!({"workspace": id, "path": "inner.txt", "output": output}),
        )
        .await;
        assert_eq!(std::fs::read_to_string(&output).unwrap(), "inner\n");
    }
    assert!(!project.path().join(".git/hooks/pre-commit").exists());
    // A tree with git metadata arrives without it, and says so.
    let planted = "mkdir -p tree/.git/hooks tree/lib/.git && printf '#!/bin/sh\\n' > tree/.git/hooks/pre-commit \
                   && echo 'gitdir: /root/.ssh' > tree/lib/.git/x && echo kept > tree/lib/f";
    let made = tool_ok(
        &client,
        "workspace_exec",
        json!({"workspace": id, "command": planted}),
    )
    .await;
    assert_eq!(made["exit_code"], 0, "{made}");
    let tree_out = project.path().join("tree-out");
    let exported = tool_ok(
        &client,
        "workspace_export",
        json!({"workspace": id, "path": "tree", "output": tree_out}),
    )
    .await;
    assert_eq!(
        std::fs::read_to_string(tree_out.join("lib/f")).unwrap(),
        "kept\n"
    );
    assert!(!tree_out.join(".git").exists() && !tree_out.join("lib/.git").exists());
    let left_out = exported["left_out"].as_array().unwrap();
    assert!(
        left_out
            .iter()
            .any(|l| l.as_str().unwrap().contains("git metadata")),
        "{exported}"
    );
    tool_ok(&client, "workspace_delete", json!({"workspace": id})).await;
    client.cancel().await.unwrap();
}

#[test]
fn mcp_serve_refuses_bad_start_options_at_once() {
    let home = tempfile::tempdir().unwrap();
    let serve = |args: &[&str]| {
        pyro()
            .args(["mcp", "serve"])
            .args(args)
            .env("PYRO_HOME", home.path())
            .output()
            .unwrap()
    };
    let missing = serve(&["--allow-host-path", "/no/such/dir"]);
    assert!(!missing.status.success());
    assert!(
        stderr(&missing).contains("/no/such/dir"),
        "{}",
        stderr(&missing)
    );
    let injected = serve(&["--repo-url=--upload-pack=touch /tmp/pyro-pwned"]);
    assert!(!injected.status.success());
    assert!(
        stderr(&injected).contains("starts with '-'"),
        "{}",
        stderr(&injected)
    );
}
