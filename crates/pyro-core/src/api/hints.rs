//! What to do about an error, as data. The library's messages say what
//! happened; [`Error::hint`] says what the caller can do next as
//! [`Action`]s, which each front end words its own way: the CLI as
//! `pyro workspace list`, the MCP server as `workspace_list`.

use pyro_env::StoreError;

use super::error::Error;
use crate::supervisor::protocol::SessionError;
use crate::workspace::files::FilesError;
use crate::workspace::layers::SnapshotError;
use crate::workspace::WorkspaceError;

/// A next step: `lead`, then the actions (joined with "and"), then `tail`,
/// e.g. "see them with:" + [`Action::ListWorkspaces`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hint {
    /// The words before the actions ("see them with:", "start it with:").
    pub lead: &'static str,
    /// What to do, in order (usually one).
    pub actions: Vec<Action>,
    /// The words after them (", then start or delete it"), often empty.
    pub tail: &'static str,
}

impl Hint {
    fn new(lead: &'static str, action: Action) -> Self {
        Hint {
            lead,
            actions: vec![action],
            tail: "",
        }
    }

    fn then(mut self, tail: &'static str) -> Self {
        self.tail = tail;
        self
    }

    /// The hint in the words of a front end, whose `render` words each
    /// action: "see them with: pyro workspace list".
    pub fn render(&self, render: impl Fn(&Action) -> String) -> String {
        let actions: Vec<String> = self.actions.iter().map(render).collect();
        format!("{} {}{}", self.lead, actions.join(" and "), self.tail)
    }
}

/// A call a front end can name. Workspace, shell and service names are
/// as the caller gave them.
#[derive(Debug, Clone, PartialEq, Eq)]
#[allow(missing_docs)] // Each variant says what it is in its message.
pub enum Action {
    ListWorkspaces,
    StartWorkspace {
        workspace: String,
    },
    PowerOffWorkspace {
        workspace: String,
    },
    /// `workspace: None` when the error does not know which one.
    WorkspaceLogs {
        workspace: Option<String>,
    },
    WorkspaceStatus {
        workspace: Option<String>,
    },
    ListFiles {
        workspace: String,
    },
    /// Copy a host directory into the workspace.
    SyncPush {
        workspace: String,
    },
    /// Run this command in the workspace.
    Exec {
        workspace: String,
        command: &'static str,
    },
    ListSnapshots {
        workspace: String,
    },
    ListShells {
        workspace: String,
    },
    OpenShell {
        workspace: String,
    },
    CloseShell {
        workspace: String,
    },
    SignalShell {
        workspace: String,
        shell: String,
        signal: &'static str,
    },
    ListServices {
        workspace: String,
    },
    StopService {
        workspace: String,
        service: String,
    },
    /// Build (or, with `force`, rebuild) an environment.
    PullEnv {
        env: String,
        force: bool,
    },
    /// Build an environment as root.
    PullEnvAsRoot {
        env: String,
    },
    /// Something only the user who started the MCP server can do: allow
    /// another host directory.
    AllowHostPath,
}

impl Action {
    /// Whether the action is a call on one workspace.
    fn is_about_a_workspace(&self) -> bool {
        !matches!(
            self,
            Action::ListWorkspaces
                | Action::PullEnv { .. }
                | Action::PullEnvAsRoot { .. }
                | Action::AllowHostPath
        )
    }
}

impl Error {
    /// What the caller can do about this error, if pyro knows.
    pub fn hint(&self) -> Option<Hint> {
        match self {
            Error::Workspace(error) => workspace_hint(error),
            Error::Session(error) => session_hint(error),
            Error::Snapshot(SnapshotError::Unknown { workspace, .. }) => Some(Hint::new(
                "see them with:",
                Action::ListSnapshots {
                    workspace: workspace.clone(),
                },
            )),
            Error::Snapshot(SnapshotError::Store(error)) => workspace_hint(error),
            Error::Snapshot(SnapshotError::SupervisorDied { workspace, .. }) => Some(Hint::new(
                "start it again with:",
                Action::StartWorkspace {
                    workspace: workspace.clone(),
                },
            )),
            Error::Files(error) => files_hint(error),
            Error::Env(error) => env_hint(error),
            // The workspace is gone: no hint that points at it.
            Error::CreateFailed(error) | Error::ForkFailed(error) => error
                .hint()
                .filter(|hint| !hint.actions.iter().any(Action::is_about_a_workspace)),
            Error::HostPath(_) => Some(Hint::new(
                "only the user can allow more directories:",
                Action::AllowHostPath,
            )),
            _ => None,
        }
    }
}

fn workspace_hint(error: &WorkspaceError) -> Option<Hint> {
    let logs = |name: &str| Action::WorkspaceLogs {
        workspace: Some(name.to_string()),
    };
    Some(match error {
        WorkspaceError::Unknown { .. } => Hint::new("see them with:", Action::ListWorkspaces),
        WorkspaceError::Stopped { name } => Hint::new(
            "start it with:",
            Action::StartWorkspace {
                workspace: name.clone(),
            },
        ),
        WorkspaceError::ForkStopped { name } => Hint::new(
            "start it with:",
            Action::StartWorkspace {
                workspace: name.clone(),
            },
        )
        .then(", or fork one of its snapshots"),
        WorkspaceError::Crashed { name, .. } => {
            Hint::new("see", logs(name)).then(", then start or delete it")
        }
        WorkspaceError::StartFailed { name, .. } => Hint::new("see", logs(name)),
        WorkspaceError::SuspendedShape { name } | WorkspaceError::SuspendFailed { name, .. } => {
            Hint::new(
                "power it off with:",
                Action::PowerOffWorkspace {
                    workspace: name.clone(),
                },
            )
        }
        _ => return None,
    })
}

fn session_hint(error: &SessionError) -> Option<Hint> {
    let workspace_logs = Action::WorkspaceLogs { workspace: None };
    Some(match error {
        SessionError::UnknownShell { workspace, .. } => Hint::new(
            "see them with:",
            Action::ListShells {
                workspace: workspace.clone(),
            },
        ),
        SessionError::ShellGone { workspace, .. } => Hint::new(
            "open a new one with:",
            Action::OpenShell {
                workspace: workspace.clone(),
            },
        ),
        SessionError::TooManyShells { workspace, .. } => Hint::new(
            "close some with:",
            Action::CloseShell {
                workspace: workspace.clone(),
            },
        ),
        SessionError::ShellBusy {
            workspace, shell, ..
        } => Hint::new(
            "interrupt what runs with:",
            Action::SignalShell {
                workspace: workspace.clone(),
                shell: shell.clone(),
                signal: "INT",
            },
        )
        .then(", then write again"),
        SessionError::UnknownService { workspace, .. } => Hint::new(
            "see them with:",
            Action::ListServices {
                workspace: workspace.clone(),
            },
        ),
        SessionError::ServiceRunning { name, workspace } => Hint::new(
            "stop it first with:",
            Action::StopService {
                workspace: workspace.clone(),
                service: name.clone(),
            },
        ),
        SessionError::Supervisor(_) | SessionError::Internal(_) => Hint::new("see", workspace_logs),
        SessionError::VmGone(_) => Hint {
            lead: "see",
            actions: vec![Action::WorkspaceStatus { workspace: None }, workspace_logs],
            tail: "",
        },
        _ => return None,
    })
}

fn files_hint(error: &FilesError) -> Option<Hint> {
    Some(match error {
        FilesError::NotFound { workspace, .. } => Hint::new(
            "list files with:",
            Action::ListFiles {
                workspace: workspace.clone(),
            },
        ),
        FilesError::WriteTooLarge { workspace, .. } => Hint::new(
            "copy a directory that holds it with:",
            Action::SyncPush {
                workspace: workspace.clone(),
            },
        ),
        FilesError::Partial { workspace, .. } => Hint::new(
            "check the workspace (e.g.",
            Action::Exec {
                workspace: workspace.clone(),
                command: "git status",
            },
        )
        .then(")"),
        _ => return None,
    })
}

fn env_hint(error: &StoreError) -> Option<Hint> {
    let pull = |name: &str, force| Action::PullEnv {
        env: name.to_string(),
        force,
    };
    Some(match error {
        StoreError::NotPulled { name } => Hint::new("run:", pull(name, false)),
        StoreError::Corrupt { name, .. } | StoreError::BadManifest { name, .. } => {
            Hint::new("re-pull it with:", pull(name, true))
        }
        StoreError::NeedsRoot { name } => Hint::new(
            "run",
            Action::PullEnvAsRoot {
                env: name.to_string(),
            },
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hints_name_the_workspace_the_error_is_about() {
        let stopped = Error::from(WorkspaceError::Stopped { name: "api".into() });
        assert_eq!(
            stopped.hint(),
            Some(Hint::new(
                "start it with:",
                Action::StartWorkspace {
                    workspace: "api".into()
                }
            ))
        );
        let crashed = Error::from(WorkspaceError::Crashed {
            name: "api".into(),
            reason: "boom".into(),
        });
        let text = crashed
            .hint()
            .unwrap()
            .render(|action| format!("{action:?}"));
        assert!(text.starts_with("see WorkspaceLogs"), "{text}");
        assert!(text.ends_with(", then start or delete it"), "{text}");
        let busy = Error::from(SessionError::ShellBusy {
            workspace: "w".into(),
            shell: "s1".into(),
            pending: 9,
        });
        assert!(matches!(
            busy.hint().unwrap().actions.as_slice(),
            [Action::SignalShell { signal: "INT", .. }]
        ));
    }

    #[test]
    fn a_failed_create_points_at_nothing_it_deleted() {
        let failed = Error::CreateFailed(Box::new(
            WorkspaceError::StartFailed {
                name: "api".into(),
                message: "boom".into(),
            }
            .into(),
        ));
        assert_eq!(
            pyro_util::error_chain(&failed),
            "workspace 'api' did not start: boom; the workspace was deleted"
        );
        assert_eq!(failed.hint(), None);
        let env = Error::CreateFailed(Box::new(
            StoreError::NotPulled {
                name: "debian:12".into(),
            }
            .into(),
        ));
        assert!(env.hint().is_some());
    }

    #[test]
    fn messages_name_no_front_end() {
        // What happened, in words; the next step is the hint's.
        let errors: Vec<Error> = vec![
            WorkspaceError::Unknown { query: "x".into() }.into(),
            WorkspaceError::Stopped { name: "x".into() }.into(),
            SessionError::UnknownShell {
                shell: "s".into(),
                workspace: "w".into(),
            }
            .into(),
            SessionError::VmGone("closed".into()).into(),
            FilesError::NotFound {
                workspace: "w".into(),
                path: "p".into(),
            }
            .into(),
            StoreError::NotPulled {
                name: "debian:12".into(),
            }
            .into(),
        ];
        for error in errors {
            let text = pyro_util::error_chain(&error);
            assert!(!text.contains("pyro "), "{text}");
            assert!(error.hint().is_some(), "{text}");
        }
    }
}
