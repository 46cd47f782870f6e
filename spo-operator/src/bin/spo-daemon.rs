//! `spo-daemon`: the node daemon alone, as `spo-operator daemon` runs it.
//!
//! The DaemonSet runs this binary: a process maps the pages of its binary's code that it runs
//! and, through the kernel's fault-around, their neighbours, so the node daemon in the
//! all-components binary kept most of the manager's, webhooks', recorder's and enricher's code
//! resident too. Measured in docs/benchmarks.md ("Every kind on one daemon").

use clap::Parser;

#[path = "../cli/mod.rs"]
mod cli;

#[derive(Parser, Debug)]
#[command(
    version,
    about = "Security profiles operator's node daemon: installs profiles and reports per-node statuses"
)]
struct Cli {
    #[command(flatten)]
    common: cli::CommonArgs,
    #[command(flatten)]
    daemon: cli::DaemonArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cli::init_logging();
    let cli = Cli::parse();
    let rt = cli::Runtime::start(&cli.common).await?;
    let result = cli::run_daemon(rt.client.clone(), cli.daemon, rt.endpoints.clone()).await;
    rt.finish(result)
}
