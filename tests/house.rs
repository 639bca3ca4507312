//! House rules that a reviewer should not have to check by eye: the layout
//! ARCHITECTURE.md draws is the layout on disk, and no source file grows
//! past what one person can hold in mind. `just lint` runs these.

use std::path::{Path, PathBuf};

/// Longest source file, in lines: beyond it a module has more than one job.
const SOURCE_LINES_MAX: usize = 700;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The crate directories named in ARCHITECTURE.md's layout block: the lines
/// `  <name>/` directly under `crates/`.
fn crates_in_architecture() -> Vec<String> {
    let text = std::fs::read_to_string(root().join("ARCHITECTURE.md")).expect("ARCHITECTURE.md");
    let block = text
        .split("```")
        .find(|block| block.trim_start().starts_with("crates/"))
        .expect("a layout block starting with crates/");
    let mut names: Vec<String> = block
        .lines()
        .filter_map(|line| line.strip_prefix("  "))
        .filter(|line| !line.starts_with(' '))
        .filter_map(|line| line.split_whitespace().next())
        .filter_map(|word| word.strip_suffix('/'))
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

fn crates_on_disk() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(root().join("crates"))
        .expect("crates/")
        .filter_map(Result::ok)
        .filter(|entry| entry.path().join("Cargo.toml").is_file())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn architecture_names_exactly_the_crates_in_crates() {
    assert_eq!(crates_in_architecture(), crates_on_disk());
}

fn rust_sources(dir: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir)
        .expect("a source directory")
        .flatten()
    {
        let path = entry.path();
        if path.is_dir() && entry.file_name() != "target" && entry.file_name() != ".git" {
            rust_sources(&path, found);
        } else if path.extension().is_some_and(|e| e == "rs") {
            found.push(path);
        }
    }
}

#[test]
fn no_source_file_is_longer_than_the_house_limit() {
    let mut sources = Vec::new();
    for dir in ["crates", "tests"] {
        rust_sources(&root().join(dir), &mut sources);
    }
    assert!(sources.len() > 50, "found only {} sources", sources.len());
    let too_long: Vec<String> = sources
        .iter()
        .filter_map(|path| {
            let lines = std::fs::read_to_string(path).ok()?.lines().count();
            (lines > SOURCE_LINES_MAX).then(|| format!("{} ({lines} lines)", path.display()))
        })
        .collect();
    assert!(
        too_long.is_empty(),
        "source files over {SOURCE_LINES_MAX} lines: {too_long:#?}"
    );
}
