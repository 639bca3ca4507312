//! Finding dropline's own binaries (`dropline`, `dropctl`) beside the
//! executable that needs them.

use std::path::PathBuf;

use anyhow::Context as _;

/// The workspace binary `name`, built into the same profile directory as
/// the running executable: a tool (`target/<profile>/loadtest`) finds it
/// beside itself, a test (`target/<profile>/deps/<test>`) one directory up.
pub fn binary(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe().context("the running executable's path")?;
    let candidates = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(|dir| dir.join(name))
        .collect::<Vec<_>>();
    candidates
        .iter()
        .find(|path| path.is_file())
        .cloned()
        .with_context(|| {
            format!(
                "{name} is missing beside {}: build it first (`cargo build -p {name}`, \
                 or `--release` for the tools)",
                exe.display()
            )
        })
}
