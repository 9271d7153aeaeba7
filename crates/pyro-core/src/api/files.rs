//! Files under /workspace: list, read, write, and patch apply (see the
//! workspace's `files` module for how each crosses the guest channel).

use std::collections::BTreeSet;
use std::io::Read;
use std::time::Instant;

use pyro_patch::{Change, DiffStat, MemoryTree};
use pyro_protocol::Message;

use super::error::Error;
use super::params::InvalidRequest;
use super::Pyro;
use crate::workspace::events::EventKind;
use crate::workspace::files::{
    git_mode, FileKind, Files, FilesError, HunkOffset, Listing, PatchReport, PatchedFile,
    WriteReport, DEFAULT_READ_LIMIT, LIST_LIMIT, MAX_PATCH_BYTES, PATCH_READ_LIMIT,
    PATCH_TREE_LIMIT,
};

impl Pyro {
    /// Lists `path` (relative to /workspace; empty or `.` for the root),
    /// walking subdirectories when `recursive` (never through symlinks).
    pub async fn workspace_file_list(
        &self,
        query: &str,
        path: &str,
        recursive: bool,
    ) -> Result<Listing, Error> {
        let files = Files::new(self.connect_workspace(query).await?, query);
        let path = if path.is_empty() { "." } else { path };
        let mut request = files
            .open(&Message::ListDir {
                path: path.to_string(),
                recursive,
                max_entries: LIST_LIMIT,
                root: None,
            })
            .await?;
        let mut listing = Listing {
            path: path.to_string(),
            entries: Vec::new(),
            truncated: false,
        };
        loop {
            match files.next_message(&mut request, path).await? {
                Message::DirEntries { entries, truncated } => {
                    listing.entries.extend(entries);
                    listing.truncated |= truncated;
                }
                Message::Done { .. } => return Ok(listing),
                _ => {}
            }
        }
    }

    /// The content of one file; refused (with the agent's advice) when it
    /// is over `max_bytes`, [`DEFAULT_READ_LIMIT`] when `None`.
    pub async fn workspace_file_read(
        &self,
        query: &str,
        path: &str,
        max_bytes: Option<u64>,
    ) -> Result<Vec<u8>, Error> {
        let files = Files::new(self.connect_workspace(query).await?, query);
        let mut content = Vec::new();
        files
            .read(path, max_bytes.unwrap_or(DEFAULT_READ_LIMIT), &mut content)
            .await?;
        Ok(content)
    }

    /// Replaces (or creates, with its parent directories) one file with
    /// what `content` yields, atomically. `mode` is the permission bits
    /// (e.g. `0o755`); when `None` an existing file keeps its own and a new
    /// one gets 0o644. The source is read one chunk at a time, on the
    /// calling task.
    pub async fn workspace_file_write(
        &self,
        query: &str,
        path: &str,
        content: &mut (dyn Read + Send),
        mode: Option<u32>,
    ) -> Result<WriteReport, Error> {
        let started = Instant::now();
        if let Some(mode) = mode.filter(|mode| *mode > 0o7777) {
            return Err(InvalidRequest::BadMode { mode }.into());
        }
        let files = Files::new(self.connect_workspace(query).await?, query);
        let bytes = files.write(path, content, mode).await?;
        self.record_activity(query);
        let event = EventKind::FileWrite {
            path: path.to_string(),
            bytes,
        };
        self.record_event(query, event);
        Ok(WriteReport {
            workspace: query.to_string(),
            path: path.to_string(),
            bytes,
            duration_ms: elapsed_ms(started),
        })
    }

    /// Applies a unified diff (plain or git-style, several files) to
    /// /workspace, all or nothing: if any hunk of any file fails, nothing is
    /// written and [`FilesError::Rejected`] lists every failing hunk.
    pub async fn workspace_patch_apply(
        &self,
        query: &str,
        patch_text: &[u8],
    ) -> Result<PatchReport, Error> {
        let started = Instant::now();
        if patch_text.len() as u64 > MAX_PATCH_BYTES {
            return Err(FilesError::PatchTooLarge {
                limit: pyro_util::human_bytes(MAX_PATCH_BYTES),
            }
            .into());
        }
        let patch = pyro_patch::parse(patch_text).map_err(FilesError::Parse)?;
        let files = Files::new(self.connect_workspace(query).await?, query);

        // Every path the patch names, as the workspace has it now.
        let mut tree = MemoryTree::new();
        let mut tree_bytes: u64 = 0;
        let paths: BTreeSet<&str> = patch
            .files
            .iter()
            .flat_map(|file| [file.old_path.as_deref(), file.new_path.as_deref()])
            .flatten()
            // `apply` reports unsafe paths itself; never send them.
            .filter(|path| pyro_patch::check_path(path).is_ok())
            .collect();
        for path in paths {
            let Some(info) = files.stat(path).await? else {
                continue;
            };
            match info.kind {
                FileKind::File => {}
                FileKind::Symlink => return Err(FilesError::Symlink { path: path.into() }.into()),
                _ => return Err(FilesError::NotAFile { path: path.into() }.into()),
            }
            // Counted on the bytes read: the sizes are the guest's word.
            if tree_bytes.saturating_add(info.size) > PATCH_TREE_LIMIT {
                return Err(FilesError::PatchTreeTooLarge {
                    limit: pyro_util::human_bytes(PATCH_TREE_LIMIT),
                }
                .into());
            }
            let mut content = Vec::new();
            let room = PATCH_READ_LIMIT.min(PATCH_TREE_LIMIT - tree_bytes);
            files.read(path, room, &mut content).await?;
            tree_bytes += content.len() as u64;
            tree.insert(path, content, git_mode(info.mode));
        }

        let applied = pyro_patch::apply(&patch, &tree);
        let named = || patch.files.iter().map(|file| file.display_path());
        if applied.is_err() {
            self.record_event(query, EventKind::patch(named(), false));
        }
        let applied = applied.map_err(|error| match error {
            pyro_patch::ApplyError::Rejected(failures) => FilesError::Rejected { failures },
            // The tree is in memory: reads cannot fail.
            other => FilesError::Agent {
                message: other.to_string(),
            },
        })?;
        for change in &applied.changes {
            if let Change::Write {
                path,
                mode: Some(mode),
                ..
            } = change
            {
                if mode & 0o170000 != 0o100000 {
                    return Err(FilesError::UnsupportedMode {
                        path: path.clone(),
                        mode: *mode,
                    }
                    .into());
                }
            }
        }

        // Deletes first (a file may give way to a directory), all at once.
        let deletes: Vec<&str> = applied
            .changes
            .iter()
            .filter_map(|change| match change {
                Change::Delete { path } => Some(path.as_str()),
                Change::Write { .. } => None,
            })
            .collect();
        if !deletes.is_empty() {
            // Each was stat'ed above as a regular file beneath /workspace.
            files.remove(&deletes).await?;
        }
        let mut done_paths: Vec<String> = deletes.iter().map(|p| format!("deleted {p}")).collect();
        for change in &applied.changes {
            let Change::Write {
                path,
                content,
                mode,
            } = change
            else {
                continue;
            };
            let mut source: &[u8] = content;
            let written = files
                .write(path, &mut source, mode.map(|mode| mode & 0o7777))
                .await;
            if let Err(error) = written {
                self.record_activity(query);
                return Err(FilesError::Partial {
                    workspace: query.to_string(),
                    done: if done_paths.is_empty() {
                        "nothing".to_string()
                    } else {
                        done_paths.join(", ")
                    },
                    path: path.clone(),
                    source: Box::new(error),
                }
                .into());
            }
            done_paths.push(format!("wrote {path}"));
        }
        self.record_activity(query);
        self.record_event(query, EventKind::patch(named(), true));

        let stat = DiffStat::of(&patch);
        Ok(PatchReport {
            workspace: query.to_string(),
            files: patch
                .files
                .iter()
                .map(|file| {
                    let file_stat = DiffStat::of_file(file);
                    let (action, from) = match file.kind {
                        pyro_patch::FileKind::Modify => ("modified", None),
                        pyro_patch::FileKind::Create => ("created", None),
                        pyro_patch::FileKind::Delete => ("deleted", None),
                        pyro_patch::FileKind::Rename => ("renamed", file.old_path.clone()),
                        pyro_patch::FileKind::Copy => ("copied", file.old_path.clone()),
                    };
                    PatchedFile {
                        path: file.display_path().to_string(),
                        action,
                        from,
                        insertions: file_stat.insertions,
                        deletions: file_stat.deletions,
                    }
                })
                .collect(),
            stat: stat.to_string(),
            files_changed: stat.files_changed,
            insertions: stat.insertions,
            deletions: stat.deletions,
            hunks_applied: patch.files.iter().map(|file| file.hunks.len()).sum(),
            offsets: applied
                .offsets
                .into_iter()
                .map(|offset| HunkOffset {
                    path: offset.path,
                    hunk: offset.hunk,
                    offset: offset.offset,
                })
                .collect(),
            duration_ms: elapsed_ms(started),
        })
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    started.elapsed().as_millis() as u64
}
