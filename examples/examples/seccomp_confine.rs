//! Compile a SeccompProfile with spo-seccomp and run a command under it: `mkdir` is refused
//! with EPERM, everything else runs. No root needed (the filter is installed with
//! `no_new_privs`, in the child only).
//!
//! ```text
//! cargo run -p spo-examples --example seccomp_confine
//! ```

use anyhow::{Context, Result, bail};
use spo_model::seccomp::{SeccompAction, SeccompSyscall};
use spo_model::{SeccompProfileSpec, SpecState};
use spo_seccomp::apply::confine_command;
use spo_seccomp::compile::{CompileOptions, compile};

fn main() -> Result<()> {
    // Everything runs but the two mkdir calls, which fail with EPERM.
    let spec = SeccompProfileSpec {
        state: SpecState::Enabled,
        disabled: None,
        default_action: SeccompAction::Allow,
        architectures: None,
        listener_path: None,
        listener_metadata: None,
        syscalls: Some(vec![SeccompSyscall {
            names: vec!["mkdir".into(), "mkdirat".into()],
            action: SeccompAction::Errno,
            errno_ret: Some(1),
            args: None,
        }]),
        flags: None,
        base_profile_name: None,
    };
    let program = compile(&spec, &CompileOptions::default()).context("compiling the profile")?;
    println!("compiled to {} instructions", program.insns.len());

    let dir = tempfile::tempdir()?;
    let target = dir.path().join("refused");
    let mut cmd = std::process::Command::new("mkdir");
    cmd.arg(&target);
    confine_command(&mut cmd, program, 0).context("confining mkdir")?;
    let out = cmd.output().context("running mkdir")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("confined mkdir: {} ({})", out.status, stderr.trim());
    if out.status.success() || target.exists() || !stderr.contains("Operation not permitted") {
        bail!("mkdir was not refused with EPERM");
    }

    // The same command without the filter succeeds.
    let ok = std::process::Command::new("mkdir").arg(&target).status()?;
    if !ok.success() || !target.is_dir() {
        bail!("mkdir without the filter failed");
    }
    println!("unconfined mkdir: {ok}");
    Ok(())
}
