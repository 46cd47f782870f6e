//! Records a command's syscalls and prints them with the recorder's timings:
//! `cargo run -p spo-record --example record -- sh -c 'ls /'` (as root).

use std::time::Instant;

use anyhow::Context;
use spo_record::{Recorder, into_recording};

fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let started = Instant::now();
    let mut recorder = Recorder::load()?;
    let loaded = started.elapsed();
    let raw = recorder
        .record_command(&argv)
        .with_context(|| format!("recording {argv:?}"))?;
    let named = into_recording(&raw, |arch, nr| spo_seccomp::syscalls::table(arch)?.name(nr));
    for (arch, names) in &named.recording.syscalls {
        println!(
            "{arch}: {} syscalls: {}",
            names.len(),
            names.iter().cloned().collect::<Vec<_>>().join(" ")
        );
    }
    if !named.unnamed.is_empty() {
        println!("unnamed numbers: {:?}", named.unnamed);
    }
    eprintln!(
        "load {loaded:?}, attach {:?}, exit {:?}",
        raw.attach_time,
        raw.exit_status()
    );
    Ok(())
}
