//! `spo-operator`: the manager (one per cluster) and the daemon (one per node).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use spo_operator::daemon::{self, DaemonConfig, seccomp::SeccompNode};
use spo_operator::manager::{self, ManagerConfig};

#[derive(Parser, Debug)]
#[command(version, about = "Security profiles operator: manager and node daemon")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs on every node: installs profiles and reports per-node statuses.
    Daemon {
        /// This node's name (set from the downward API in the DaemonSet).
        #[arg(long, env = "NODE_NAME")]
        node_name: String,
        /// The kubelet's root directory; seccomp profiles go to <dir>/seccomp/operator/.
        #[arg(long, env = "KUBELET_DIR", default_value = "/var/lib/kubelet")]
        kubelet_dir: PathBuf,
        /// Where the node's /proc is (for probing seccomp support).
        #[arg(long)]
        proc_root: Option<PathBuf>,
        /// The operator's namespace (where the SPOD lives).
        #[arg(long, env = "OPERATOR_NAMESPACE", default_value = "security-profiles-operator")]
        namespace: String,
        /// The SPOD object's name.
        #[arg(long, default_value = "spod")]
        spod_name: String,
        /// Profiles reconciled at once.
        #[arg(long, default_value_t = 8)]
        concurrency: u16,
    },
    /// Runs once per cluster: aggregates node statuses, tracks workloads, cleans up after nodes.
    Manager {
        /// The operator's namespace (where the default SPOD is created).
        #[arg(long, env = "OPERATOR_NAMESPACE", default_value = "security-profiles-operator")]
        namespace: String,
        /// The SPOD object's name.
        #[arg(long, default_value = "spod")]
        spod_name: String,
        /// Do not create the default SPOD.
        #[arg(long)]
        no_default_spod: bool,
        /// Profiles reconciled at once.
        #[arg(long, default_value_t = 8)]
        concurrency: u16,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let client = kube::Client::try_default()
        .await
        .context("connecting to the apiserver (KUBECONFIG or the in-cluster service account)")?;
    match cli.command {
        Command::Daemon {
            node_name,
            kubelet_dir,
            proc_root,
            namespace,
            spod_name,
            concurrency,
        } => {
            let config = DaemonConfig {
                node: node_name,
                namespace,
                spod_name,
                concurrency,
            };
            daemon::run(
                client,
                SeccompNode::new(kubelet_dir, proc_root),
                config,
                shutdown_signal(),
            )
            .await?;
        }
        Command::Manager {
            namespace,
            spod_name,
            no_default_spod,
            concurrency,
        } => {
            let config = ManagerConfig {
                namespace,
                spod_name,
                create_default_spod: !no_default_spod,
                concurrency,
            };
            manager::run(client, config, shutdown_signal()).await?;
        }
    }
    Ok(())
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = term => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
