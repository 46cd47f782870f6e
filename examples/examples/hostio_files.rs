//! Write node files with spo-hostio as a daemon would: atomically, with an exact mode, a
//! symbolic link replaced rather than followed, a directory refused; and run a tool with a
//! deadline, killed (with everything it started) when it overruns.
//!
//! ```text
//! cargo run -p spo-examples --example hostio_files
//! ```

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use anyhow::{Result, bail};
use spo_hostio::{ToolCommand, WritePolicy, write_file};

fn main() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let policy = WritePolicy::owned_dir(0o600);

    let file = dir.path().join("profile.json");
    write_file(&file, b"{}\n", &policy)?;
    let mode = std::fs::metadata(&file)?.permissions().mode() & 0o777;
    println!("wrote {} with mode {mode:o}", file.display());

    // A link planted where a node file goes is replaced, never followed.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::write(&elsewhere, b"untouched")?;
    let planted = dir.path().join("planted.json");
    std::os::unix::fs::symlink(&elsewhere, &planted)?;
    write_file(&planted, b"{}\n", &policy)?;
    if std::fs::read(&elsewhere)? != b"untouched" || std::fs::symlink_metadata(&planted)?.file_type().is_symlink() {
        bail!("the link was followed");
    }
    println!("a symbolic link at the destination was replaced; its target is untouched");

    match write_file(dir.path(), b"{}\n", &policy) {
        Err(e) => println!("refused: {e}"),
        Ok(_) => bail!("a directory was written over"),
    }

    // A tool that overruns its deadline is killed, with its process group.
    let slow = ToolCommand::new("sh", Duration::from_millis(300)).args(["-c", "sleep 30 & sleep 30"]);
    let started = std::time::Instant::now();
    match slow.run() {
        Err(e) => println!("after {:.1?}: {e}", started.elapsed()),
        Ok(out) => bail!("the slow tool was not stopped: {}", out.status),
    }
    Ok(())
}
