//! `spoc`: security profiles on one machine, without Kubernetes.

use std::process::ExitCode;

use clap::Parser;

mod commands;

fn main() -> ExitCode {
    let cli = commands::Cli::parse();
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("spoc: error: {e:#}");
            ExitCode::from(2)
        }
    }
}
