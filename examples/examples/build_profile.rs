//! Build a SeccompProfile in code, validate it, and print it as a manifest.
//!
//! ```text
//! cargo run -p spo-examples --example build_profile
//! ```

use anyhow::{Result, bail};
use spo_model::seccomp::{SeccompAction, SeccompArg, SeccompOperator, SeccompSyscall};
use spo_model::{SeccompProfile, SeccompProfileSpec, SecurityProfile, SpecState};

fn main() -> Result<()> {
    let allow = |names: &[&str]| SeccompSyscall {
        names: names.iter().map(|n| (*n).to_owned()).collect(),
        action: SeccompAction::Allow,
        errno_ret: None,
        args: None,
    };
    let profile = SeccompProfile::new(
        "hello-world",
        SeccompProfileSpec {
            state: SpecState::Enabled,
            disabled: None,
            default_action: SeccompAction::Errno,
            architectures: None,
            listener_path: None,
            listener_metadata: None,
            syscalls: Some(vec![
                allow(&["brk", "execve", "exit_group", "mmap", "write"]),
                SeccompSyscall {
                    names: vec!["personality".into()],
                    action: SeccompAction::Allow,
                    errno_ret: None,
                    args: Some(vec![SeccompArg {
                        index: 0,
                        value: Some(0),
                        value_two: None,
                        op: SeccompOperator::Eq,
                    }]),
                },
            ]),
            flags: None,
            base_profile_name: None,
        },
    );
    let problems = SecurityProfile::validate(&profile);
    if problems.has_errors() {
        bail!("profile is invalid:\n{problems}");
    }
    print!("{}", serde_norway::to_string(&profile)?);
    Ok(())
}
