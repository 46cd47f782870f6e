//! `spo-operator`: the manager (one per cluster) and the daemon (one per node).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{ArgAction, Parser, Subcommand};
use spo_operator::daemon::{self, DaemonConfig, seccomp::SeccompNode};
use spo_operator::leader::{Elector, LeaseConfig, run_while_leading};
use spo_operator::manager::{self, ManagerConfig};
use spo_operator::server::{self, Endpoints};

#[derive(Parser, Debug)]
#[command(version, about = "Security profiles operator: manager and node daemon")]
struct Cli {
    /// Where /metrics, /healthz and /readyz are served (port 0: any free port, logged).
    #[arg(long, global = true, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
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
        /// Profiles installed on the node at once (local file writes).
        #[arg(long, default_value_t = 32)]
        concurrency: u16,
        /// Profiles reported to the apiserver at once (finalizers, node statuses).
        #[arg(long, default_value_t = 16)]
        report_concurrency: u16,
    },
    /// Runs once per cluster: aggregates node statuses, tracks workloads, cleans up after nodes.
    Manager {
        /// The operator's namespace (where the default SPOD and the leader Lease live).
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
        /// Elect a leader among the replicas through a Lease; only the leader acts.
        #[arg(long, default_value_t = true, action = ArgAction::Set)]
        leader_elect: bool,
        /// The Lease's name (in --namespace).
        #[arg(long, default_value = "spo-manager")]
        lease_name: String,
        /// This replica's identity in the Lease (default: POD_NAME or the host name, plus a
        /// random suffix).
        #[arg(long, env = "LEADER_IDENTITY")]
        leader_identity: Option<String>,
        /// Seconds a lease stays valid without renewal (a standby takes over after this).
        #[arg(long, default_value_t = 15)]
        lease_duration: u64,
        /// Seconds the leader keeps acting without a successful renewal (< --lease-duration).
        #[arg(long, default_value_t = 10)]
        renew_deadline: u64,
        /// Seconds between renewals (and between a standby's looks at the lease).
        #[arg(long, default_value_t = 2)]
        retry_period: u64,
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
    let endpoints = Arc::new(Endpoints::default());
    let (listener, _) = server::bind(cli.metrics_addr).await?;
    let endpoints_task = tokio::spawn(server::serve(listener, endpoints.clone()));
    let result = match cli.command {
        Command::Daemon {
            node_name,
            kubelet_dir,
            proc_root,
            namespace,
            spod_name,
            concurrency,
            report_concurrency,
        } => {
            let config = DaemonConfig {
                node: node_name,
                namespace,
                spod_name,
                concurrency,
                report_concurrency,
            };
            daemon::run(
                client,
                SeccompNode::new(kubelet_dir, proc_root),
                config,
                endpoints.clone(),
                shutdown_signal(),
            )
            .await
        }
        Command::Manager {
            namespace,
            spod_name,
            no_default_spod,
            concurrency,
            leader_elect,
            lease_name,
            leader_identity,
            lease_duration,
            renew_deadline,
            retry_period,
        } => {
            let config = ManagerConfig {
                namespace: namespace.clone(),
                spod_name,
                create_default_spod: !no_default_spod,
                concurrency,
            };
            if leader_elect {
                let lease = LeaseConfig {
                    namespace,
                    name: lease_name,
                    identity: leader_identity.unwrap_or_else(default_identity),
                    lease_duration: Duration::from_secs(lease_duration),
                    renew_deadline: Duration::from_secs(renew_deadline),
                    retry_period: Duration::from_secs(retry_period),
                };
                lease.validate().map_err(spo_operator::OperatorError::Config)?;
                tracing::info!(identity = %lease.identity, lease = %lease.name, "campaigning for the leader lease");
                let elector = Elector::start(client.clone(), lease, endpoints.clone());
                let result = run_while_leading(elector.leading(), shutdown_signal(), |stop| {
                    manager::run(client.clone(), config.clone(), endpoints.clone(), stop)
                })
                .await;
                elector.release().await;
                result
            } else {
                manager::run(client, config, endpoints.clone(), shutdown_signal()).await
            }
        }
    };
    if result.is_err() {
        endpoints.health.set_dead();
    }
    endpoints_task.abort();
    Ok(result?)
}

/// `POD_NAME` (or the host name) plus a random suffix: unique even when a replica restarts
/// under the same name while its old lease record is still there.
fn default_identity() -> String {
    use std::hash::{BuildHasher, Hasher};
    let base = std::env::var("POD_NAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "spo-manager".to_owned());
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    format!("{base}_{:08x}", hasher.finish() as u32)
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
