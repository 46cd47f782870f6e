//! `spoc`: security profiles on one machine, without Kubernetes.

use std::process::ExitCode;

mod commands;

fn main() -> ExitCode {
    let parsed = commands::command()
        .try_get_matches()
        .and_then(|m| <commands::Cli as clap::FromArgMatches>::from_arg_matches(&m));
    let cli = match parsed {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not failures; a usage error is spoc's own (125).
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(commands::output::exit::SPOC_FAILED)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            // The message may quote input (file names, profile names): escaped like all output.
            eprintln!("spoc: error: {}", commands::output::clean(&format!("{e:#}")));
            ExitCode::from(commands::output::exit::SPOC_FAILED)
        }
    }
}
