//! Record a command's syscalls with spo-record (eBPF, as root) and print the SeccompProfile
//! spo-seccomp builds from them: what `spoc record` does, through the libraries only.
//!
//! ```text
//! sudo cargo run -p spo-examples --example record_profile -- ls /
//! ```

use anyhow::{Context, Result, bail};
use spo_model::SeccompProfile;
use spo_record::{Recorder, into_recording};
use spo_seccomp::backend::spec_from_recording;

fn main() -> Result<()> {
    let mut argv: Vec<String> = std::env::args().skip(1).collect();
    if argv.is_empty() {
        argv = vec!["ls".into(), "/".into()];
    }
    let mut recorder = Recorder::load().context("loading the eBPF recorder (needs root)")?;
    let raw = recorder
        .record_command(&argv)
        .with_context(|| format!("recording {argv:?}"))?;
    if !raw.succeeded() {
        bail!("{argv:?} did not succeed: {:?}", raw.exit_status());
    }
    let named = into_recording(&raw, |arch, nr| spo_seccomp::syscalls::table(arch)?.name(nr));
    let profile = SeccompProfile::new("recorded", spec_from_recording(&named.recording));
    let calls: usize = named.recording.syscalls.values().map(|s| s.len()).sum();
    eprintln!("{calls} syscalls recorded");
    if calls == 0 {
        bail!("nothing was recorded");
    }
    print!("{}", serde_norway::to_string(&profile)?);
    Ok(())
}
