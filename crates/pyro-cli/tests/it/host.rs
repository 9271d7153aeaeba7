//! `pyro host connect|print-config|doctor|repair` against the real host CLIs,
//! each test with its own `HOME` so nothing touches the user's config.
//!
//! The host CLIs are npm packages and these tests FAIL when one is missing:
//!   npm install -g @anthropic-ai/claude-code @openai/codex opencode-ai
//! None of them needs an API key to list its MCP servers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::support::*;
use serde_json::{json, Value};

const INSTALL: &str = "npm install -g @anthropic-ai/claude-code @openai/codex opencode-ai";

/// A throwaway home directory plus the commands that run inside it.
struct TestHome {
    dir: tempfile::TempDir,
}

impl TestHome {
    fn new() -> Self {
        TestHome {
            dir: tempfile::tempdir().expect("create a temp HOME"),
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn isolate(&self, command: &mut Command) {
        command
            .env("HOME", self.path())
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("CODEX_HOME")
            .stdin(Stdio::null());
    }

    /// `pyro host ...` with the host CLIs on PATH.
    fn pyro(&self, args: &[&str]) -> Output {
        let mut command = pyro();
        self.isolate(&mut command);
        command.arg("host").args(args).output().expect("run pyro")
    }

    /// `pyro host ...` with no host CLI on PATH: the config-file path.
    fn pyro_without_clis(&self, args: &[&str]) -> Output {
        let mut command = pyro();
        self.isolate(&mut command);
        command.env("PATH", self.path().join("empty-path"));
        command.arg("host").args(args).output().expect("run pyro")
    }

    /// A host's own CLI, which must be installed.
    fn host_cli(&self, cli: &str, args: &[&str]) -> Output {
        let mut command = Command::new(require_cli(cli));
        self.isolate(&mut command);
        command.args(args).output().expect("run the host CLI")
    }

    fn file(&self, relative: &str) -> PathBuf {
        self.path().join(relative)
    }

    fn write(&self, relative: &str, text: &str) {
        let path = self.file(relative);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    fn read(&self, relative: &str) -> String {
        std::fs::read_to_string(self.file(relative)).unwrap()
    }

    fn read_json(&self, relative: &str) -> Value {
        serde_json::from_str(&self.read(relative)).unwrap()
    }
}

/// The host CLI's path; fails the test (never skips it) when it is missing.
#[track_caller]
fn require_cli(cli: &str) -> PathBuf {
    which(cli)
        .unwrap_or_else(|| panic!("`{cli}` is not on PATH; install the host CLIs with: {INSTALL}"))
}

fn which(cli: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(cli))
        .find(|path| path.is_file())
}

/// The path pyro registers: the test binary, resolved.
fn registered_pyro() -> String {
    std::fs::canonicalize(pyro_bin())
        .unwrap()
        .to_string_lossy()
        .into_owned()
}

/// Whether this build already has `pyro mcp serve` (added separately).
fn has_mcp_serve() -> bool {
    pyro()
        .args(["mcp", "serve", "--help"])
        .stdin(Stdio::null())
        .output()
        .map(|output| output.status.success())
        .unwrap_or(false)
}

#[track_caller]
fn assert_ok(output: &Output) -> String {
    assert!(
        output.status.success(),
        "failed ({}):\n{}{}",
        output.status,
        stdout(output),
        stderr(output)
    );
    stdout(output)
}

#[test]
fn connect_claude_code_shows_in_claude_mcp_list() {
    require_cli("claude");
    let home = TestHome::new();
    home.write(
        ".claude.json",
        r#"{"userID": "abc", "mcpServers": {"other": {"type": "stdio", "command": "/bin/echo", "args": [], "env": {}}}}"#,
    );
    let text = assert_ok(&home.pyro(&["connect", "claude-code"]));
    assert!(
        text.contains("via "),
        "expected the claude CLI path:\n{text}"
    );

    let list = assert_ok(&home.host_cli("claude", &["mcp", "list"]));
    let line = format!("pyro: {} mcp serve", registered_pyro());
    assert!(
        list.contains(&line),
        "claude mcp list lacks `{line}`:\n{list}"
    );
    assert!(
        list.contains("other: /bin/echo"),
        "the other server is gone:\n{list}"
    );
    if has_mcp_serve() {
        assert!(list.contains("Connected"), "pyro is not connected:\n{list}");
    }

    let again = assert_ok(&home.pyro(&["connect", "claude-code"]));
    assert!(again.contains("already registered"), "{again}");
    // Claude Code owns the file's other keys; pyro's own edits keep them
    // (see the no-CLI test), and so does `claude mcp add`.
    assert_eq!(home.read_json(".claude.json")["userID"], "abc");
}

/// Claude Code shows MCP prompts as slash commands (`/pyro:repro-fix`).
/// Its prompt menu needs a logged-in session, which these machines cannot
/// have; its own debug log says what it found on connecting, before it
/// gives up on the login.
#[test]
fn claude_code_connects_to_pyro_and_sees_its_prompts() {
    require_cli("claude");
    let home = TestHome::new();
    home.write(".claude.json", r#"{"userID": "abc"}"#);
    assert_ok(&home.pyro(&["connect", "claude-code"]));
    let _ = home.host_cli("claude", &["-p", "--debug", "hello"]);
    let log = home.read(".claude/debug/latest");
    let connected = log
        .lines()
        .find(|line| line.contains("MCP server \"pyro\": Connection established"))
        .unwrap_or_else(|| panic!("claude never connected to pyro:\n{log}"));
    assert!(connected.contains("\"hasPrompts\":true"), "{connected}");
    assert!(connected.contains("\"hasTools\":true"), "{connected}");
}

#[test]
fn connect_codex_shows_in_codex_mcp_list() {
    require_cli("codex");
    let home = TestHome::new();
    home.write(
        ".codex/config.toml",
        "# my settings\nmodel = \"o3\"\n\n[mcp_servers.other]\ncommand = \"/bin/echo\"\n",
    );
    assert_ok(&home.pyro(&["connect", "codex"]));

    let list = assert_ok(&home.host_cli("codex", &["mcp", "list", "--json"]));
    let servers: Value = serde_json::from_str(&list).expect("codex mcp list --json");
    let find = |name: &str| {
        servers
            .as_array()
            .unwrap()
            .iter()
            .find(|server| server["name"] == name)
            .unwrap_or_else(|| panic!("codex mcp list lacks {name}:\n{list}"))
            .clone()
    };
    let pyro_entry = find("pyro");
    assert_eq!(pyro_entry["enabled"], true);
    assert_eq!(pyro_entry["transport"]["command"], registered_pyro());
    assert_eq!(pyro_entry["transport"]["args"], json!(["mcp", "serve"]));
    find("other");
    let config = home.read(".codex/config.toml");
    assert!(
        config.starts_with("# my settings\nmodel = \"o3\""),
        "{config}"
    );
}

#[test]
fn connect_opencode_edits_its_config_and_opencode_lists_it() {
    require_cli("opencode");
    let home = TestHome::new();
    home.write(
        ".config/opencode/opencode.json",
        r#"{"theme": "tokyonight", "mcp": {"other": {"type": "remote", "url": "https://example.invalid/mcp", "enabled": false}}}"#,
    );
    let text = assert_ok(&home.pyro(&["connect", "opencode"]));
    assert!(text.contains("opencode.json"), "{text}");
    let config = home.read_json(".config/opencode/opencode.json");
    assert_eq!(
        config["mcp"]["pyro"],
        json!({"type": "local", "command": [registered_pyro(), "mcp", "serve"], "enabled": true})
    );
    assert_eq!(config["mcp"]["other"]["url"], "https://example.invalid/mcp");
    assert_eq!(config["theme"], "tokyonight");

    let list = home.host_cli("opencode", &["mcp", "list"]);
    let list = format!("{}{}", stdout(&list), stderr(&list));
    assert!(
        list.contains("pyro"),
        "opencode mcp list lacks pyro:\n{list}"
    );
    if has_mcp_serve() {
        assert!(list.contains("connected"), "pyro is not connected:\n{list}");
    }
}

#[test]
fn without_the_host_cli_connect_edits_the_config_file_and_keeps_other_entries() {
    let home = TestHome::new();
    home.write(
        ".claude.json",
        r#"{"userID": "abc", "mcpServers": {"other": {"command": "/bin/echo"}}}"#,
    );
    home.write(
        ".codex/config.toml",
        "model = \"o3\" # keep me\n\n[mcp_servers.other]\ncommand = \"/bin/echo\"\nargs = [\"hi\"]\n",
    );

    let output = home.pyro_without_clis(&["connect", "claude-code", "--json"]);
    let outcome: Value = serde_json::from_str(&assert_ok(&output)).unwrap();
    assert_eq!(outcome["method"]["kind"], "config-file");
    let claude = home.read_json(".claude.json");
    assert_eq!(claude["userID"], "abc");
    assert_eq!(claude["mcpServers"]["other"]["command"], "/bin/echo");
    assert_eq!(
        claude["mcpServers"]["pyro"],
        json!({"type": "stdio", "command": registered_pyro(), "args": ["mcp", "serve"], "env": {}})
    );
    assert!(home.file(".claude.json.pyro-backup").exists());

    assert_ok(&home.pyro_without_clis(&["connect", "codex"]));
    let codex = home.read(".codex/config.toml");
    let expected = format!(
        "model = \"o3\" # keep me\n\n[mcp_servers.other]\ncommand = \"/bin/echo\"\nargs = [\"hi\"]\n\n\
         [mcp_servers.pyro]\ncommand = \"{}\"\nargs = [\"mcp\", \"serve\"]\n",
        registered_pyro()
    );
    assert_eq!(codex, expected);

    // A fresh home: the file is created.
    assert_ok(&home.pyro_without_clis(&["connect", "opencode"]));
    let opencode = home.read_json(".config/opencode/opencode.json");
    assert_eq!(opencode["$schema"], "https://opencode.ai/config.json");

    // Idempotent: nothing is rewritten the second time.
    let again = home.pyro_without_clis(&["connect", "codex", "--json"]);
    let outcome: Value = serde_json::from_str(&assert_ok(&again)).unwrap();
    assert_eq!(outcome["method"]["kind"], "unchanged");
    assert_eq!(home.read(".codex/config.toml"), expected);
}

#[test]
fn print_config_prints_the_exact_snippet() {
    let home = TestHome::new();
    let pyro_path = registered_pyro();

    let claude = assert_ok(&home.pyro(&["print-config", "claude-code"]));
    let claude: Value = serde_json::from_str(&claude).expect("a JSON snippet");
    assert_eq!(
        claude,
        json!({"mcpServers": {"pyro": {"type": "stdio", "command": pyro_path, "args": ["mcp", "serve"], "env": {}}}})
    );

    let codex = home.pyro(&["print-config", "codex"]);
    assert_eq!(
        assert_ok(&codex),
        format!("[mcp_servers.pyro]\ncommand = \"{pyro_path}\"\nargs = [\"mcp\", \"serve\"]\n")
    );
    assert!(stderr(&codex).contains(&format!("codex mcp add pyro -- {pyro_path} mcp serve")));

    let opencode = assert_ok(&home.pyro(&["print-config", "opencode", "--json"]));
    let opencode: Value = serde_json::from_str(&opencode).unwrap();
    assert_eq!(opencode["format"], "json");
    let text: Value = serde_json::from_str(opencode["text"].as_str().unwrap()).unwrap();
    assert_eq!(
        text["mcp"]["pyro"]["command"],
        json!([pyro_path, "mcp", "serve"])
    );
    // Printing changes nothing.
    assert!(std::fs::read_dir(home.path()).unwrap().next().is_none());
}

#[test]
fn doctor_detects_a_stale_path_and_repair_fixes_it() {
    for cli in ["claude", "codex", "opencode"] {
        require_cli(cli);
    }
    let home = TestHome::new();
    let pyro_path = registered_pyro();
    let stale = "/nonexistent/old/pyro";
    for (host, file) in [
        ("claude-code", ".claude.json"),
        ("codex", ".codex/config.toml"),
        ("opencode", ".config/opencode/opencode.json"),
    ] {
        assert_ok(&home.pyro(&["connect", host]));
        let doctor = home.pyro(&["doctor", host]);
        let text = assert_ok(&doctor);
        assert!(
            text.contains("pyro 0.1.0") || text.contains("version"),
            "{text}"
        );

        // Age the registration: the binary it names has gone away.
        home.write(file, &home.read(file).replace(&pyro_path, stale));
        let doctor = home.pyro(&["doctor", host]);
        assert_eq!(doctor.status.code(), Some(1), "{}", stdout(&doctor));
        let text = stdout(&doctor);
        assert!(text.contains("stale registration"), "{text}");
        assert!(text.contains(&format!("pyro host repair {host}")), "{text}");

        let repair = assert_ok(&home.pyro(&["repair", host]));
        assert!(
            repair.contains(&format!("was: {stale} mcp serve")),
            "{repair}"
        );
        assert_ok(&home.pyro(&["doctor", host]));
    }
    // The hosts' own CLIs see the repaired path.
    let claude = assert_ok(&home.host_cli("claude", &["mcp", "list"]));
    assert!(
        claude.contains(&format!("pyro: {pyro_path} mcp serve")),
        "{claude}"
    );
    let codex = assert_ok(&home.host_cli("codex", &["mcp", "list"]));
    assert!(
        codex.contains(&pyro_path) && !codex.contains(stale),
        "{codex}"
    );

    let all = home.pyro(&["doctor", "--json"]);
    let reports: Value = serde_json::from_str(&assert_ok(&all)).unwrap();
    assert_eq!(reports.as_array().unwrap().len(), 3);
    assert!(reports
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["healthy"] == true));
}

#[test]
fn doctor_on_an_unregistered_host_says_how_to_connect() {
    let home = TestHome::new();
    let doctor = home.pyro_without_clis(&["doctor", "codex"]);
    assert_eq!(doctor.status.code(), Some(1));
    let text = stdout(&doctor);
    assert!(text.contains("pyro is not registered"), "{text}");
    assert!(text.contains("pyro host connect codex"), "{text}");
    assert!(text.contains("npm install -g @openai/codex"), "{text}");
}
