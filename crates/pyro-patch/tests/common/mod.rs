//! Test data shared by the integration tests: a fixed-seed generator of
//! old/new tree pairs and the diff between them.

use std::collections::BTreeMap;

use pyro_patch::{diff_files, MODE_EXECUTABLE, MODE_FILE};

/// xorshift64*: small, deterministic, good enough for test data.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

/// A line from a small vocabulary, so that context repeats and hunks can
/// match in more than one place.
fn line(rng: &mut Rng) -> Vec<u8> {
    const WORDS: [&str; 8] = [
        "",
        "{",
        "}",
        "return x;",
        "let a = 1;",
        "// note",
        "  indented",
        "x",
    ];
    let mut text = WORDS[rng.below(WORDS.len())].as_bytes().to_vec();
    if rng.chance(30) {
        text.extend_from_slice(format!(" {}", rng.below(1000)).as_bytes());
    }
    let ending: &[u8] = match rng.below(10) {
        0 => b"\r\n",
        _ => b"\n",
    };
    text.extend_from_slice(ending);
    text
}

fn content(rng: &mut Rng) -> Vec<u8> {
    let count = match rng.below(10) {
        0 => 0,
        1 => 1,
        _ => rng.below(60),
    };
    let mut out: Vec<u8> = (0..count).flat_map(|_| line(rng)).collect();
    if rng.chance(25) && out.ends_with(b"\n") {
        out.pop();
    }
    out
}

/// A variation of `old`: some lines inserted, deleted or replaced, and maybe
/// the final newline toggled.
fn mutate(rng: &mut Rng, old: &[u8]) -> Vec<u8> {
    let mut lines: Vec<Vec<u8>> = old
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    for _ in 0..rng.below(6) {
        let at = rng.below(lines.len() + 1);
        match rng.below(3) {
            0 => lines.insert(at, line(rng)),
            1 if at < lines.len() => drop(lines.remove(at)),
            _ if at < lines.len() => lines[at] = line(rng),
            _ => {}
        }
    }
    let mut out = lines.concat();
    if rng.chance(15) {
        if out.ends_with(b"\n") {
            out.pop();
        } else {
            out.push(b'\n');
        }
    }
    out
}

fn mode(rng: &mut Rng) -> u32 {
    if rng.chance(20) {
        MODE_EXECUTABLE
    } else {
        MODE_FILE
    }
}

pub type Files = BTreeMap<String, (Vec<u8>, u32)>;

/// A pair of trees and the diff between them, built file by file with 0 to
/// 4 lines of context.
pub fn case(rng: &mut Rng) -> (Files, Files, String) {
    let context = rng.below(5);
    case_with_context(rng, context)
}

/// Like [`case`] with a given context size (`git apply` wants at least 1
/// unless told `--unidiff-zero`).
pub fn case_with_context(rng: &mut Rng, context: usize) -> (Files, Files, String) {
    let (mut old, mut new) = (Files::new(), Files::new());
    let mut text = String::new();
    for index in 0..1 + rng.below(4) {
        let path = format!("dir{}/file {index}.txt", rng.below(2));
        let before = content(rng);
        let before_mode = mode(rng);
        match rng.below(10) {
            0 => {
                let after_mode = mode(rng);
                text += &diff_files(
                    &path,
                    None,
                    &path,
                    Some(&before),
                    None,
                    Some(after_mode),
                    context,
                );
                new.insert(path, (before, after_mode));
            }
            1 => {
                text += &diff_files(
                    &path,
                    Some(&before),
                    &path,
                    None,
                    Some(before_mode),
                    None,
                    context,
                );
                old.insert(path, (before, before_mode));
            }
            2 => {
                let renamed = format!("moved/{index}.txt");
                let after = if rng.chance(50) {
                    mutate(rng, &before)
                } else {
                    before.clone()
                };
                text += &diff_files(
                    &path,
                    Some(&before),
                    &renamed,
                    Some(&after),
                    None,
                    None,
                    context,
                );
                old.insert(path, (before, before_mode));
                new.insert(renamed, (after, before_mode));
            }
            _ => {
                let after = mutate(rng, &before);
                let after_mode = if rng.chance(10) {
                    mode(rng)
                } else {
                    before_mode
                };
                text += &diff_files(
                    &path,
                    Some(&before),
                    &path,
                    Some(&after),
                    Some(before_mode),
                    Some(after_mode),
                    context,
                );
                old.insert(path.clone(), (before, before_mode));
                new.insert(path, (after, after_mode));
            }
        }
    }
    (old, new, text)
}
