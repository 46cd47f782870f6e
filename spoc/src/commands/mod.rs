//! Subcommands. Each lives in its own file and is a thin shell over the library crates.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod compile;
pub mod convert;
pub mod input;
pub mod merge;
pub mod oci;
pub mod output;
pub mod record;
pub mod run;
pub mod validate;
pub mod violations;

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
  spoc validate --output json bad.yaml        machine-readable results
  spoc validate --deep selinux.yaml           also compile with secilc / apparmor_parser
  spoc convert profile.yaml -o profile.json   SeccompProfile -> OCI runtime JSON
  spoc convert selinux.yaml --name web        SelinuxProfile -> CIL (AppArmorProfile -> text)
  spoc merge child.yaml base.yaml             union (or --intersect) of profiles
  spoc compile profile.yaml                   our BPF program, disassembled, with stats
  spoc record -o ls.yaml -- ls /              record a command's syscalls with eBPF
  spoc record --container ID -t all -o c.yaml record a running container (seccomp + AppArmor)
  spoc run -p profile.yaml -- ls /            run a command confined by a profile
  spoc push r.io/p:v1 -f p.yaml --sign-key k  push a profile as an OCI artifact, signed
  spoc pull r.io/p:v1 --verify-key k.pub      pull it, checking the signature";

#[derive(Debug, Subcommand)]
enum Command {
    /// Check manifests of the security-profiles-operator.x-k8s.io/v1 API strictly: unknown or
    /// misspelled fields, wrong types and values, and every rule of each kind (--deep: also
    /// compile SELinux and AppArmor profiles with secilc and apparmor_parser).
    #[command(after_help = validate::EXAMPLES)]
    Validate(validate::ValidateArgs),
    /// Convert a profile to what its node uses: SeccompProfile -> OCI runtime JSON (--to-crd: the
    /// other way), SelinuxProfile/RawSelinuxProfile -> CIL module, AppArmorProfile -> profile text.
    #[command(after_help = convert::EXAMPLES)]
    Convert(convert::ConvertArgs),
    /// Union SeccompProfiles (or --intersect them), SelinuxProfiles or AppArmorProfiles into one;
    /// --check tells whether the others change the first.
    #[command(after_help = merge::EXAMPLES)]
    Merge(merge::MergeArgs),
    /// Compile a SeccompProfile with our cBPF compiler and print the program and its size.
    #[command(after_help = compile::EXAMPLES)]
    Compile(compile::CompileArgs),
    /// Run a command confined by a SeccompProfile (compiled and applied by spoc itself) and list
    /// what the profile blocked.
    #[command(after_help = run::EXAMPLES)]
    Run(run::RunArgs),
    /// Record a command or a container with eBPF and write its SeccompProfile (-t apparmor: an
    /// AppArmorProfile; -t all: both).
    #[command(after_help = record::EXAMPLES)]
    Record(record::RecordArgs),
    /// Push profiles to an OCI registry as the Security Profiles Operator's artifact (one layer
    /// per platform), optionally signed (cosign's format, a key pair).
    #[command(after_help = oci::PUSH_EXAMPLES)]
    Push(oci::PushArgs),
    /// Pull a profile from an OCI registry, checking its signature (cosign's format).
    #[command(after_help = oci::PULL_EXAMPLES)]
    Pull(oci::PullArgs),
}

/// The command line, with the exit-code table after every command's help (one table, so the
/// commands cannot drift apart).
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let with_codes = |help: Option<&clap::builder::StyledStr>| match help {
        Some(h) => format!("{h}\n\n{}", output::EXIT_CODES_HELP),
        None => output::EXIT_CODES_HELP.to_owned(),
    };
    let cmd = Cli::command().mut_subcommands(|sub| {
        let help = with_codes(sub.get_after_help());
        sub.after_help(help)
    });
    let help = with_codes(cmd.get_after_help());
    cmd.after_help(help)
}

/// Runs the chosen subcommand and returns the process exit code.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Convert(args) => convert::run(&args),
        Command::Merge(args) => merge::run(&args),
        Command::Compile(args) => compile::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Record(args) => record::run(&args),
        Command::Push(args) => oci::push(&args),
        Command::Pull(args) => oci::pull(&args),
    }
}
