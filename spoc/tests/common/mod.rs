//! What every `spoc` CLI test needs: the real binary, run with arguments and optional input.

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs the `spoc` binary built for this test with `args`, feeding `stdin` when given (the
/// pipe is closed either way, so a command reading input sees end of file).
pub fn spoc(args: &[&str], stdin: Option<&[u8]>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_spoc"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn spoc");
    let mut pipe = child.stdin.take().expect("stdin");
    if let Some(input) = stdin {
        pipe.write_all(input).expect("write stdin");
    }
    drop(pipe);
    child.wait_with_output().expect("wait spoc")
}
