//! Totals for summaries: files changed, lines inserted and deleted.

use std::fmt;
use std::ops::AddAssign;

use crate::patch::{FilePatch, LineKind, Patch};

/// What `git diff --shortstat` prints, as numbers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DiffStat {
    pub files_changed: usize,
    pub insertions: usize,
    pub deletions: usize,
}

impl DiffStat {
    /// Totals for a whole patch; a binary or mode-only file counts as
    /// changed with no lines.
    pub fn of(patch: &Patch) -> Self {
        let mut stat = Self::default();
        for file in &patch.files {
            stat += Self::of_file(file);
        }
        stat
    }

    /// Totals for one file patch.
    pub fn of_file(file: &FilePatch) -> Self {
        let lines = file.hunks.iter().flat_map(|h| &h.lines);
        let (mut insertions, mut deletions) = (0, 0);
        for line in lines {
            match line.kind {
                LineKind::Add => insertions += 1,
                LineKind::Remove => deletions += 1,
                LineKind::Context => {}
            }
        }
        Self {
            files_changed: 1,
            insertions,
            deletions,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.files_changed == 0
    }
}

impl AddAssign for DiffStat {
    fn add_assign(&mut self, other: Self) {
        self.files_changed += other.files_changed;
        self.insertions += other.insertions;
        self.deletions += other.deletions;
    }
}

/// Git's wording: `2 files changed, 3 insertions(+), 1 deletion(-)`; a zero
/// count is left out unless both are zero.
impl fmt::Display for DiffStat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural =
            |n: usize, one: &'static str, many: &'static str| if n == 1 { one } else { many };
        write!(
            f,
            "{} {} changed",
            self.files_changed,
            plural(self.files_changed, "file", "files")
        )?;
        if self.insertions > 0 || self.deletions == 0 {
            let word = plural(self.insertions, "insertion", "insertions");
            write!(f, ", {} {word}(+)", self.insertions)?;
        }
        if self.deletions > 0 || self.insertions == 0 {
            let word = plural(self.deletions, "deletion", "deletions");
            write!(f, ", {} {word}(-)", self.deletions)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parse;

    #[test]
    fn counts_lines_and_files() {
        let text = b"--- a/x\n+++ b/x\n@@ -1,2 +1,2 @@\n-a\n+b\n c\n--- a/y\n+++ b/y\n@@ -1 +1,2 @@\n y\n+z\n";
        let stat = DiffStat::of(&parse(text).unwrap());
        assert_eq!(
            stat,
            DiffStat {
                files_changed: 2,
                insertions: 2,
                deletions: 1
            }
        );
        assert_eq!(
            stat.to_string(),
            "2 files changed, 2 insertions(+), 1 deletion(-)"
        );
    }

    #[test]
    fn display_matches_git() {
        let only_mode = DiffStat {
            files_changed: 1,
            ..DiffStat::default()
        };
        assert_eq!(
            only_mode.to_string(),
            "1 file changed, 0 insertions(+), 0 deletions(-)"
        );
        let only_add = DiffStat {
            files_changed: 1,
            insertions: 1,
            deletions: 0,
        };
        assert_eq!(only_add.to_string(), "1 file changed, 1 insertion(+)");
    }
}
