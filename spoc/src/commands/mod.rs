//! Subcommands. Each lives in its own file and is a thin shell over the library crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod validate;

/// Security profiles (seccomp, SELinux, AppArmor) on one machine, without Kubernetes.
#[derive(Debug, Parser)]
#[command(name = "spoc", version, about, long_about = None, after_help = EXAMPLES)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

const EXAMPLES: &str = "\
Examples:
  spoc validate examples/manifests/           check every manifest in a directory
  spoc validate profile.yaml other.json       check files (multi-document YAML or JSON)
  kubectl get sp -o yaml | spoc validate -    check what a cluster holds
  spoc validate --output json bad.yaml        machine-readable results";

#[derive(Debug, Subcommand)]
enum Command {
    /// Check manifests of the security-profiles-operator.x-k8s.io/v1 API strictly: unknown or
    /// misspelled fields, wrong types and values, and every rule of each kind.
    #[command(after_help = validate::EXAMPLES)]
    Validate(validate::ValidateArgs),
}

/// Runs the chosen subcommand and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate(args) => validate::run(&args),
    }
}
