//! The facade's hints in the words of this CLI: `pyro workspace list`.

use pyro_core::{Action, Hint};

/// `hint` with each action as the `pyro` command to run.
pub fn render(hint: &Hint) -> String {
    hint.render(command)
}

/// The `pyro` command for one action.
fn command(action: &Action) -> String {
    let quoted = pyro_util::shell_quote;
    let or_id = |workspace: &Option<String>| workspace.as_deref().map(quoted);
    match action {
        Action::ListWorkspaces => "pyro workspace list".into(),
        Action::StartWorkspace { workspace } => {
            format!("pyro workspace start {}", quoted(workspace))
        }
        Action::PowerOffWorkspace { workspace } => {
            format!("pyro workspace stop --power-off {}", quoted(workspace))
        }
        Action::WorkspaceLogs { workspace } => match or_id(workspace) {
            Some(workspace) => format!("pyro workspace logs {workspace}"),
            None => "pyro workspace logs".into(),
        },
        Action::WorkspaceStatus { workspace } => match or_id(workspace) {
            Some(workspace) => format!("pyro workspace status {workspace}"),
            None => "pyro workspace status".into(),
        },
        Action::ListFiles { workspace } => {
            format!("pyro workspace file list {}", quoted(workspace))
        }
        Action::SyncPush { workspace } => {
            format!("pyro workspace sync push {} DIR", quoted(workspace))
        }
        Action::Exec { workspace, command } => {
            format!("pyro workspace exec {} -- {command}", quoted(workspace))
        }
        Action::ListSnapshots { workspace } => {
            format!("pyro workspace snapshot list {}", quoted(workspace))
        }
        Action::ListShells { workspace } => {
            format!("pyro workspace shell list {}", quoted(workspace))
        }
        Action::OpenShell { workspace } => {
            format!("pyro workspace shell open {}", quoted(workspace))
        }
        Action::CloseShell { workspace } => {
            format!("pyro workspace shell close {} SHELL", quoted(workspace))
        }
        Action::SignalShell {
            workspace,
            shell,
            signal,
        } => format!(
            "pyro workspace shell signal {} {} {signal}",
            quoted(workspace),
            quoted(shell)
        ),
        Action::ListServices { workspace } => {
            format!("pyro workspace service list {}", quoted(workspace))
        }
        Action::StopService { workspace, service } => format!(
            "pyro workspace service stop {} {}",
            quoted(workspace),
            quoted(service)
        ),
        Action::PullEnv { env, force: false } => format!("pyro env pull {env}"),
        Action::PullEnv { env, force: true } => format!("pyro env pull {env} --force"),
        Action::PullEnvAsRoot { env } => format!("`sudo pyro env pull {env}`"),
        Action::AllowHostPath => "pyro mcp serve --allow-host-path DIR".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_read_as_before_with_their_commands() {
        let cases: Vec<(pyro_core::Error, &str)> = vec![
            (
                pyro_core::WorkspaceError::Unknown { query: "x".into() }.into(),
                "no workspace 'x'; see them with: pyro workspace list",
            ),
            (
                pyro_core::WorkspaceError::Crashed {
                    name: "api".into(),
                    reason: "boom".into(),
                }
                .into(),
                "workspace 'api' crashed: boom; see pyro workspace logs api, then start or delete it",
            ),
            (
                pyro_core::FilesError::NotFound {
                    workspace: "ws".into(),
                    path: "x".into(),
                }
                .into(),
                "no such file in /workspace: x; list files with: pyro workspace file list ws",
            ),
            (
                pyro_core::StoreError::NotPulled {
                    name: "debian:12".into(),
                }
                .into(),
                "environment debian:12 is not pulled; run: pyro env pull debian:12",
            ),
        ];
        for (error, expected) in cases {
            let hint = error.hint().expect("a hint");
            assert_eq!(format!("{error}; {}", render(&hint)), expected);
        }
    }
}
