//! Reading what the guest's diff scripts print: the header, the raw and
//! numstat records, the patch and Git's warnings, all bounded and parsed
//! as untrusted.

use super::{ChangeStatus, ChangedFile, DiffError, MESSAGES_KEPT, SUMMARY_LIMIT};

pub(super) fn failure_message(status: i32, stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let text = text.trim();
    if text.is_empty() {
        format!("the script exited with status {status}")
    } else {
        text.to_string()
    }
}

/// The diff script's stdout, split.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Sections<'a> {
    pub(super) summary: &'a [u8],
    /// At most the cap.
    pub(super) patch: &'a [u8],
    /// The whole patch's size.
    pub(super) patch_bytes: u64,
    pub(super) messages: &'a [u8],
}

pub(super) fn split_sections(stdout: &[u8], patch_cap: u64) -> Result<Sections<'_>, DiffError> {
    let malformed = |what: &str| DiffError::Malformed { what: what.into() };
    let newline = stdout
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| malformed("no header"))?;
    let header = std::str::from_utf8(&stdout[..newline]).map_err(|_| malformed("bad header"))?;
    let sizes: Vec<u64> = match header.split_whitespace().collect::<Vec<_>>().as_slice() {
        ["pyro-diff", sizes @ ..] if sizes.len() == 3 => sizes
            .iter()
            .map(|s| s.parse::<u64>())
            .collect::<Result<_, _>>()
            .map_err(|_| malformed("bad sizes in the header"))?,
        _ => return Err(malformed("bad header")),
    };
    let (summary_len, patch_bytes, messages_len) = (sizes[0], sizes[1], sizes[2]);
    let patch_len = patch_bytes.min(patch_cap);
    if summary_len > SUMMARY_LIMIT || messages_len > SUMMARY_LIMIT {
        return Err(malformed("sections over their limits"));
    }
    let body = &stdout[newline + 1..];
    let expected = summary_len + patch_len + messages_len;
    if body.len() as u64 != expected {
        return Err(malformed(&format!(
            "{} bytes after the header, {expected} announced",
            body.len()
        )));
    }
    let (summary, rest) = body.split_at(summary_len as usize);
    let (patch, messages) = rest.split_at(patch_len as usize);
    Ok(Sections {
        summary,
        patch,
        patch_bytes,
        messages,
    })
}

/// Parses `git diff --raw --numstat -z` output: every raw record
/// (`:oldmode newmode oldsha newsha STATUS\0path\0[newpath\0]`), then
/// every numstat record (`ins\tdel\tpath\0`, or `ins\tdel\t\0old\0new\0`
/// for a rename; `-` counts for binary files), in the same order.
pub(super) fn parse_summary(bytes: &[u8]) -> Result<Vec<ChangedFile>, DiffError> {
    let malformed = |what: String| DiffError::Malformed { what };
    // Every field ends in NUL; none is empty but a rename's numstat path.
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut fields = Fields {
        fields: bytes.split(|&b| b == 0).collect(),
        at: 0,
    };
    let mut files = Vec::new();
    let mut counted = 0;
    while !fields.done() {
        let record = fields.path("record")?;
        if let Some(raw) = record.strip_prefix(':') {
            let parts: Vec<&str> = raw.split(' ').collect();
            let [old_mode, new_mode, old_sha, new_sha, status] = parts.as_slice() else {
                return Err(malformed(format!("raw record '{record}'")));
            };
            let letter = status.chars().next().unwrap_or(' ');
            let (path, old_path) = match letter {
                'R' | 'C' => {
                    let old = fields.path("rename source")?;
                    (fields.path("rename target")?, Some(old))
                }
                _ => (fields.path("path")?, None),
            };
            let mode = |m: &str| (m != "000000").then(|| m.to_string());
            let status = match letter {
                'A' | 'C' => ChangeStatus::Added,
                'D' => ChangeStatus::Deleted,
                'R' => ChangeStatus::Renamed,
                'T' => ChangeStatus::TypeChanged,
                'M' if old_sha == new_sha && old_mode != new_mode => ChangeStatus::ModeChanged,
                'M' => ChangeStatus::Modified,
                _ => return Err(malformed(format!("status '{status}'"))),
            };
            files.push(ChangedFile {
                path,
                old_path,
                status,
                old_mode: mode(old_mode),
                new_mode: mode(new_mode),
                binary: false,
                insertions: 0,
                deletions: 0,
            });
        } else {
            let file = files
                .get_mut(counted)
                .ok_or_else(|| malformed("more numstat than raw records".into()))?;
            counted += 1;
            let mut parts = record.splitn(3, '\t');
            let (Some(insertions), Some(deletions), Some(path)) =
                (parts.next(), parts.next(), parts.next())
            else {
                return Err(malformed(format!("numstat record '{record}'")));
            };
            if path.is_empty() {
                // A rename: the two paths follow.
                fields.path("rename source")?;
                fields.path("rename target")?;
            }
            if insertions == "-" && deletions == "-" {
                file.binary = true;
            } else {
                let count = |n: &str| {
                    n.parse::<u64>()
                        .map_err(|_| malformed(format!("count '{n}'")))
                };
                file.insertions = count(insertions)?;
                file.deletions = count(deletions)?;
            }
        }
    }
    if counted != files.len() {
        return Err(malformed("fewer numstat than raw records".into()));
    }
    Ok(files)
}

/// The NUL-separated fields of `-z` output, in order.
struct Fields<'a> {
    fields: Vec<&'a [u8]>,
    at: usize,
}

impl Fields<'_> {
    fn done(&self) -> bool {
        self.at == self.fields.len()
    }

    /// The next field, which must not be empty.
    fn path(&mut self, what: &str) -> Result<String, DiffError> {
        let field = self.fields.get(self.at).filter(|field| !field.is_empty());
        self.at += 1;
        field
            .map(|field| String::from_utf8_lossy(field).into_owned())
            .ok_or_else(|| DiffError::Malformed {
                what: format!("missing {what}"),
            })
    }
}

/// The patch as text, cut at its last whole line under the cap with a note
/// saying how much is missing.
pub(super) fn cut_patch(patch: &[u8], patch_bytes: u64) -> (String, bool) {
    if patch.len() as u64 >= patch_bytes {
        return (String::from_utf8_lossy(patch).into_owned(), false);
    }
    let whole_lines = patch.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let mut text = String::from_utf8_lossy(&patch[..whole_lines]).into_owned();
    text.push_str(&format!(
        "[pyro: patch truncated after {} of {} bytes; see the per-file summary or read the files]\n",
        whole_lines, patch_bytes
    ));
    (text, true)
}

/// Git's warnings and errors, one per line, without its hints and
/// duplicates, reworded where Git's advice does not apply.
pub(super) fn warnings(messages: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(&messages[..messages.len().min(MESSAGES_KEPT)]);
    let mut warnings: Vec<String> = Vec::new();
    for line in text.lines().map(str::trim) {
        let warning = if line.is_empty()
            || line.starts_with("hint:")
            || line.contains("you may want to set your diff.renameLimit")
        {
            continue;
        } else if line.contains("exhaustive rename detection was skipped") {
            "renames were not detected: too many files were added and deleted; they show as \
             deletions and additions"
                .to_string()
        } else if line.contains("does not have a commit checked out") {
            format!("{line} (a nested repository without commits: its files are not compared)")
        } else {
            line.to_string()
        };
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
    }
    warnings
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use super::*;

    /// Recorded from git 2.47 for: a.txt modified, bin.dat binary changed,
    /// del.txt deleted, link added (a symlink), old.txt renamed to
    /// new.txt, run.sh made executable.
    const SUMMARY: &[u8] = b":100644 100644 422c2b7 7be73ce M\0a.txt\0\
:100644 100644 8352675 a903574 M\0bin.dat\0\
:100644 000000 587be6b 0000000 D\0del.txt\0\
:000000 120000 0000000 8d14cbf A\0link\0\
:100644 100644 59d0607 59d0607 R100\0old.txt\0new.txt\0\
:100644 100755 b478595 b478595 M\0run.sh\0\
2\t1\ta.txt\0-\t-\tbin.dat\0\
0\t1\tdel.txt\0\
1\t0\tlink\0\
0\t0\t\0old.txt\0new.txt\0\
0\t0\trun.sh\0";

    #[test]
    fn raw_and_numstat_records_make_changed_files() {
        let files = parse_summary(SUMMARY).unwrap();
        let got: Vec<_> = files
            .iter()
            .map(|f| {
                (
                    f.path.as_str(),
                    f.old_path.as_deref(),
                    f.status.label(),
                    f.binary,
                    f.insertions,
                    f.deletions,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("a.txt", None, "modified", false, 2, 1),
                ("bin.dat", None, "modified", true, 0, 0),
                ("del.txt", None, "deleted", false, 0, 1),
                ("link", None, "added", false, 1, 0),
                ("new.txt", Some("old.txt"), "renamed", false, 0, 0),
                ("run.sh", None, "mode_changed", false, 0, 0),
            ]
        );
        assert_eq!(files[2].new_mode, None);
        assert_eq!(files[3].old_mode, None);
        assert_eq!(files[3].new_mode.as_deref(), Some("120000"));
        assert_eq!(files[5].new_mode.as_deref(), Some("100755"));
        assert_eq!(parse_summary(b"").unwrap(), []);
    }

    #[test]
    fn a_summary_that_does_not_add_up_is_malformed() {
        for bad in [
            &b":100644 100644 a b M\0x\0"[..],
            b"1\t2\tx\0",
            b":100644 100644 a b M\0x\0one\ttwo\tx\0",
            b":100644 100644 a b Z\0x\0",
            b":100644 100644 a b R100\0x\0",
            b":garbage\0x\0",
        ] {
            assert!(
                parse_summary(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn the_scripts_exit_with_the_statuses_the_host_expects() {
        assert!(PREAMBLE.contains(&format!("|| exit {NO_GIT_EXIT}\n")));
        assert!(DIFF_SCRIPT.contains(&format!("|| exit {NO_BASELINE_EXIT}\n")));
    }

    #[test]
    fn sections_split_by_the_announced_sizes() {
        let out = b"pyro-diff 3 10 2\nabc0123456789w\n";
        let sections = split_sections(out, 100).unwrap();
        assert_eq!(sections.summary, b"abc");
        assert_eq!(sections.patch, b"0123456789");
        assert_eq!(sections.messages, b"w\n");
        // A capped patch: the header gives the full size.
        let out = b"pyro-diff 0 10 0\n0123";
        let sections = split_sections(out, 4).unwrap();
        assert_eq!((sections.patch, sections.patch_bytes), (&b"0123"[..], 10));
        for bad in [
            &b""[..],
            b"nonsense\n",
            b"pyro-diff 1 2\n",
            b"pyro-diff 3 0 0\nab",
            b"pyro-diff 0 0 0\nextra",
        ] {
            assert!(split_sections(bad, 100).is_err());
        }
    }

    #[test]
    fn a_long_patch_is_cut_at_a_line_end_with_a_note() {
        let (text, truncated) = cut_patch(b"line one\nline tw", 100);
        assert!(truncated);
        assert!(text.starts_with("line one\n[pyro: patch truncated after 9 of 100 bytes"));
        assert_eq!(cut_patch(b"whole\n", 6), ("whole\n".to_string(), false));
    }

    #[test]
    fn hints_are_not_warnings() {
        let got = warnings(
            b"error: 'sub/' does not have a commit checked out\nhint: do this\n\n\
              warning: exhaustive rename detection was skipped due to too many files.\n\
              warning: you may want to set your diff.renameLimit variable to at least 5\n\
              warning: exhaustive rename detection was skipped due to too many files.\n",
        );
        assert_eq!(got.len(), 2, "{got:?}");
        assert!(got[1].starts_with("renames were not detected"));
        assert!(got[0].starts_with("error: 'sub/' does not have a commit checked out (a nested"));
    }
}
