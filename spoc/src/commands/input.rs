//! Reading inputs and writing outputs, shared by the subcommands.

use std::io::Read;
use std::path::Path;

use anyhow::{Context, Result};
use spo_model::document::MAX_SOURCE_BYTES;

/// Reads a file, or standard input for `-`, refusing anything longer than the model's limit.
/// At most one byte past the limit is read, so a huge or endless input is refused without
/// being read whole.
pub fn read_input(path: &Path) -> Result<Vec<u8>> {
    let limit = (MAX_SOURCE_BYTES + 1) as u64;
    let mut buf = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .lock()
            .take(limit)
            .read_to_end(&mut buf)
            .context("reading standard input")?;
    } else {
        let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
        file.take(limit)
            .read_to_end(&mut buf)
            .with_context(|| format!("reading {}", path.display()))?;
    }
    Ok(buf)
}

/// Mode of files spoc writes.
pub const OUTPUT_MODE: u32 = 0o644;

/// Writes `bytes` to `path` atomically (temporary file, fsync, rename, directory fsync), so
/// readers see the old file or the new one, never half of it.
pub fn write_output(path: &Path, bytes: &[u8]) -> Result<()> {
    spo_seccomp::node::write_file_atomic(path, bytes, OUTPUT_MODE)
        .with_context(|| format!("writing {}", path.display()))
}
