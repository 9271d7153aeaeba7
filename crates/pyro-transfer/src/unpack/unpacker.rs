//! The state of one unpack and the dispatch of each raw tar header: caps,
//! long names and PAX records, name checks. Placing members on disk is in
//! `members.rs`.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::Permissions;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tar::Entry;

use super::{Limits, OutputKind, UnpackError, UnpackReport, MAX_WARNINGS};
use crate::dirfd::Dir;
use crate::names::{self, human_bytes, shown, shown_path, BadName, PaxRecords};

/// The most bytes a long-name or PAX header may hold.
const MAX_META_BYTES: u64 = 1 << 20;
/// Long-name and PAX headers allowed in front of one member.
const MAX_META_HEADERS: u32 = 8;
/// The mask every unpacked mode goes through, the output directory's too.
pub(super) const UMASK: u32 = 0o022;
pub(super) const COPY_BUFFER: usize = 128 * 1024;

/// Long names and PAX records waiting for the member they describe.
#[derive(Default)]
pub(super) struct Pending {
    pub(super) long_name: Option<Vec<u8>>,
    pub(super) long_link: Option<Vec<u8>>,
    pub(super) pax: Option<PaxRecords>,
    pub(super) headers: u32,
}

pub(super) struct Unpacker {
    pub(super) root: Dir,
    pub(super) root_path: PathBuf,
    pub(super) limits: Limits,
    pub(super) skip_git_metadata: bool,
    /// Bytes read so far, charged against `max_total_bytes`.
    pub(super) consumed: u64,
    /// Members seen, including the root `./` entry.
    pub(super) members: u64,
    pub(super) saw_root_entry: bool,
    pub(super) root_files: Vec<PathBuf>,
    pub(super) pending: Pending,
    /// Symlinks left out; nothing may be placed under or over them.
    pub(super) skipped_links: HashSet<PathBuf>,
    /// Directory mtimes, applied last because creating children changes them.
    pub(super) dir_times: Vec<(Option<PathBuf>, u64)>,
    /// The parent directory of the last member, as siblings come together.
    pub(super) parent_cache: Option<(PathBuf, Dir)>,
    pub(super) report: UnpackReport,
    pub(super) warnings_dropped: u64,
    pub(super) buffer: Vec<u8>,
}

impl Unpacker {
    pub(super) fn new(
        root: Dir,
        root_path: PathBuf,
        limits: Limits,
        skip_git_metadata: bool,
    ) -> Self {
        Unpacker {
            root,
            root_path,
            limits,
            skip_git_metadata,
            consumed: 0,
            members: 0,
            saw_root_entry: false,
            root_files: Vec::new(),
            pending: Pending::default(),
            skipped_links: HashSet::new(),
            dir_times: Vec::new(),
            parent_cache: None,
            report: UnpackReport {
                output: OutputKind::Dir,
                files: 0,
                dirs: 0,
                symlinks: 0,
                hard_links: 0,
                bytes: 0,
                skipped_special: 0,
                skipped_git: 0,
                skipped_symlinks: 0,
                warnings: Vec::new(),
            },
            warnings_dropped: 0,
            buffer: vec![0; COPY_BUFFER],
        }
    }

    pub(super) fn charge(&mut self, bytes: u64) -> Result<(), UnpackError> {
        self.consumed = self.consumed.saturating_add(bytes);
        if self.consumed > self.limits.max_total_bytes {
            return Err(UnpackError::TooLarge {
                limit: human_bytes(self.limits.max_total_bytes),
            });
        }
        Ok(())
    }

    pub(super) fn warn(&mut self, warning: String) {
        if self.report.warnings.len() < MAX_WARNINGS {
            self.report.warnings.push(warning);
        } else {
            self.warnings_dropped += 1;
        }
    }

    /// Reads a long-name or PAX payload, capped in size.
    pub(super) fn read_meta<R: Read>(
        &mut self,
        entry: &mut Entry<'_, R>,
    ) -> Result<Vec<u8>, UnpackError> {
        let size = entry.header().entry_size().map_err(UnpackError::Read)?;
        if size > MAX_META_BYTES {
            return Err(UnpackError::Corrupt {
                reason: format!("a long-name or pax header of {} bytes", size),
            });
        }
        self.charge(size)?;
        let mut data = Vec::with_capacity(size as usize);
        entry.read_to_end(&mut data).map_err(UnpackError::Read)?;
        if (data.len() as u64) < size {
            return Err(UnpackError::StreamEnded);
        }
        Ok(data)
    }

    /// Handles one raw header of the stream.
    pub(super) fn member<R: Read>(&mut self, mut entry: Entry<'_, R>) -> Result<(), UnpackError> {
        let kind = entry.header().entry_type();
        if kind.is_gnu_longname()
            || kind.is_gnu_longlink()
            || kind.is_pax_local_extensions()
            || kind.is_pax_global_extensions()
        {
            self.pending.headers += 1;
            if self.pending.headers > MAX_META_HEADERS {
                return Err(UnpackError::Corrupt {
                    reason: format!("more than {MAX_META_HEADERS} extension headers in a row"),
                });
            }
            let data = self.read_meta(&mut entry)?;
            if kind.is_gnu_longname() {
                self.pending.long_name = Some(names::until_nul(data));
            } else if kind.is_gnu_longlink() {
                self.pending.long_link = Some(names::until_nul(data));
            } else if kind.is_pax_local_extensions() {
                let records = names::parse_pax(&data).ok_or_else(|| UnpackError::Corrupt {
                    reason: "a malformed pax header".into(),
                })?;
                self.pending.pax = Some(records);
            }
            return Ok(());
        }

        let pending = std::mem::take(&mut self.pending);
        self.members += 1;
        if self.members > self.limits.max_entries {
            return Err(UnpackError::TooManyEntries {
                limit: self.limits.max_entries,
            });
        }
        let header = entry.header();
        let size = header.entry_size().map_err(UnpackError::Read)?;
        let mtime = header.mtime().unwrap_or(0);
        // Permission bits only, under the umask 0022: nothing the guest
        // sends becomes writable by other users on the host.
        let mode = header.mode().unwrap_or(0o644) & 0o777 & !UMASK;
        let pax = pending.pax.unwrap_or_default();
        let raw_name = pending
            .long_name
            .or(pax.path)
            .unwrap_or_else(|| header.path_bytes().into_owned());
        let raw_link = pending
            .long_link
            .or(pax.linkpath)
            .or_else(|| header.link_name_bytes().map(|link| link.into_owned()));
        if pax.sparse || kind.is_gnu_sparse() {
            return Err(UnpackError::Unsupported {
                name: shown(&raw_name),
                kind: "sparse file",
            });
        }
        if pax.size.is_some_and(|pax_size| pax_size != size) {
            return Err(UnpackError::Unsupported {
                name: shown(&raw_name),
                kind: "member whose pax size overrides its header",
            });
        }
        let name = match names::normalise(&raw_name) {
            Ok(Some(name)) => name,
            Ok(None) if kind.is_dir() => {
                self.saw_root_entry = true;
                let root = self.root.as_file();
                let io = |source| UnpackError::Io {
                    path: self.root_path.clone(),
                    source,
                };
                root.set_permissions(Permissions::from_mode(mode | 0o700))
                    .map_err(io)?;
                self.dir_times.push((None, mtime));
                return Ok(());
            }
            Ok(None) => {
                return Err(UnpackError::Corrupt {
                    reason: format!("a {kind:?} member with an empty name"),
                })
            }
            Err(bad) => {
                return Err(UnpackError::Escapes {
                    name: shown(&raw_name),
                    how: match bad {
                        BadName::Absolute => "is an absolute path",
                        BadName::ParentDir => "contains '..'",
                    },
                })
            }
        };
        if name.as_os_str().len() > self.limits.max_path_len {
            return Err(UnpackError::PathTooLong {
                name: shown_path(&name),
                limit: self.limits.max_path_len,
            });
        }
        if self.skipped_links.contains(&name) {
            return Err(UnpackError::Duplicate {
                name: shown_path(&name),
            });
        }
        if self.skip_git_metadata && name.components().any(|c| c.as_os_str() == ".git") {
            self.charge(size)?;
            // A hard link to it later is refused like one to a skipped link.
            self.skipped_links.insert(name.clone());
            self.report.skipped_git += 1;
            self.warn(format!(
                "skipped '{}': git metadata is not exported here",
                shown_path(&name)
            ));
            return Ok(());
        }
        if kind.is_file() || kind.is_contiguous() {
            self.file(&mut entry, &name, size, mode, mtime)
        } else if kind.is_dir() {
            self.charge(size)?;
            self.dir(&name, mode, mtime)
        } else if kind.is_symlink() {
            self.charge(size)?;
            self.symlink(&name, raw_link)
        } else if kind.is_hard_link() {
            self.charge(size)?;
            self.hard_link(&name, raw_link)
        } else if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            self.charge(size)?;
            self.report.skipped_special += 1;
            self.warn(format!(
                "skipped '{}': device nodes and fifos are not exported",
                shown_path(&name)
            ));
            Ok(())
        } else {
            Err(UnpackError::Unsupported {
                name: shown_path(&name),
                kind: "member of an unknown type",
            })
        }
    }

    pub(super) fn io_at(&self, name: &Path) -> impl FnOnce(io::Error) -> UnpackError {
        let path = self.root_path.join(name);
        move |source| UnpackError::Io { path, source }
    }

    pub(super) fn leaf(name: &Path) -> &OsStr {
        name.file_name()
            .expect("normalised names end in a normal component")
    }

    /// The only regular file at the archive root, and whether it is the only
    /// member at all (no `./` entry either).
    pub(super) fn single_root_file(&self) -> Option<(PathBuf, bool)> {
        let members_besides_root = self.members - u64::from(self.saw_root_entry);
        match self.root_files.as_slice() {
            [only] if members_besides_root == 1 => Some((only.clone(), !self.saw_root_entry)),
            _ => None,
        }
    }

    pub(super) fn finish(mut self) -> UnpackReport {
        if self.warnings_dropped > 0 {
            let more = format!("… and {} more members left out", self.warnings_dropped);
            self.report.warnings.push(more);
        }
        self.report
    }
}

pub(super) fn time(mtime: u64) -> SystemTime {
    UNIX_EPOCH
        .checked_add(Duration::from_secs(mtime))
        .unwrap_or(UNIX_EPOCH)
}
