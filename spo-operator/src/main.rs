//! `spo-operator`: the manager (one per cluster) and the daemon (one per node).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{ArgAction, Parser, Subcommand};
use spo_operator::leader::{Elector, LeaseConfig, run_while_leading};
use spo_operator::manager::{self, ManagerConfig};

#[path = "cli/mod.rs"]
mod cli;

use cli::{Runtime, shutdown_signal};

#[derive(Parser, Debug)]
#[command(version, about = "Security profiles operator: manager and node daemon")]
struct Cli {
    #[command(flatten)]
    common: cli::CommonArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs on every node: installs profiles and reports per-node statuses (also the
    /// `spo-daemon` binary, which holds the daemon alone).
    Daemon(Box<cli::DaemonArgs>),
    /// Runs on every node where pods are recorded: records the containers the ProfileRecording
    /// webhook marked with the eBPF recorder, and writes their profiles when their pods end.
    /// Needs root (CAP_BPF, CAP_PERFMON) and the kubelet directory.
    #[cfg(feature = "node-recorder")]
    Recorder {
        /// This node's name (set from the downward API in the DaemonSet).
        #[arg(long, env = "NODE_NAME")]
        node_name: String,
        /// The kubelet's root directory; the recording filter goes to
        /// <dir>/seccomp/spo-recording/filter.json.
        #[arg(long, env = "KUBELET_DIR", default_value = "/var/lib/kubelet")]
        kubelet_dir: PathBuf,
        /// The operator's namespace (where the SPOD is).
        #[arg(long, env = "OPERATOR_NAMESPACE", default_value = "security-profiles-operator")]
        namespace: String,
        /// The SPOD object's name: its `spec.enricher.enableBpfRecorder` switches recording.
        #[arg(long, default_value = "spod")]
        spod_name: String,
    },
    /// Runs on every node where audit records are enriched: the log enricher and the JSON
    /// enricher of the SPOD's `spec.enricher`, reading auditd's log or the kernel log once
    /// for both. Enriched lines go to standard output.
    Enricher {
        /// This node's name (set from the downward API in the DaemonSet).
        #[arg(long, env = "NODE_NAME")]
        node_name: String,
        /// The operator's namespace (where the SPOD is).
        #[arg(long, env = "OPERATOR_NAMESPACE", default_value = "security-profiles-operator")]
        namespace: String,
        /// The SPOD object's name.
        #[arg(long, default_value = "spod")]
        spod_name: String,
        /// auditd's log.
        #[arg(long, default_value = spo_enrich::source::AUDITD_LOG)]
        audit_log: PathBuf,
        /// The kernel log device (read when there is no auditd log, or with
        /// `logEnricherSource: Bpf`).
        #[arg(long, default_value = spo_enrich::source::KERNEL_LOG)]
        kernel_log: PathBuf,
        /// The node's /proc (the SPOD's hostProcVolumePath, mounted in the pod).
        #[arg(long, default_value = "/proc")]
        proc_root: PathBuf,
        /// Where the reader's place in auditd's log is kept, to resume after a restart
        /// without repeats or gaps (default: start at the log's end).
        #[arg(long)]
        checkpoint: Option<PathBuf>,
        /// Milliseconds the reader sleeps when nothing arrived.
        #[arg(long, default_value_t = 100)]
        poll_ms: u64,
        /// Seconds a deleted pod's containers stay known, for records read after it went.
        #[arg(long, default_value_t = 60)]
        pod_grace: u64,
        /// Milliseconds a record of a container no pod names yet waits for the pod's status
        /// (a container's first records come before the kubelet reports its id).
        #[arg(long, default_value_t = 5000)]
        hold_ms: u64,
        /// Remember exiting processes with eBPF (needs CAP_BPF and CAP_PERFMON), so that
        /// records of processes gone before they were read are still attributed to their
        /// containers. Without it (or when it cannot load) those name the node only.
        #[arg(long, default_value_t = true, action = ArgAction::Set)]
        exit_log: bool,
    },
    /// The admission webhooks (ProfileBinding, ProfileRecording) over HTTPS.
    Webhook {
        /// The operator's namespace (certificate Secret, SPOD, Service).
        #[arg(long, env = "OPERATOR_NAMESPACE", default_value = "security-profiles-operator")]
        namespace: String,
        /// The SPOD object's name (its `webhook` settings shape the configuration).
        #[arg(long, default_value = "spod")]
        spod_name: String,
        /// Where HTTPS is served.
        #[arg(long, default_value = "0.0.0.0:9443")]
        listen: SocketAddr,
        /// The Secret holding the certificates (`tls.crt`, `tls.key`, `ca.crt`).
        #[arg(long, default_value = "webhook-server-cert")]
        secret_name: String,
        /// `self`: make and renew a CA and serving certificate; `secret`: only read the
        /// Secret (filled by cert-manager).
        #[arg(long, value_enum, default_value = "self")]
        certs: CertsArg,
        /// Names for the serving certificate (DNS names or IP addresses); default: the
        /// Service's names in --namespace.
        #[arg(long, value_delimiter = ',')]
        cert_names: Vec<String>,
        /// Seconds a serving certificate is valid (renewed with a third left).
        #[arg(long, default_value_t = 365 * 86_400)]
        cert_validity: i64,
        /// Seconds the CA is valid.
        #[arg(long, default_value_t = 10 * 365 * 86_400)]
        ca_validity: i64,
        /// The lowest TLS version served: 1.2 or 1.3.
        #[arg(long, default_value = "1.2")]
        tls_min_version: String,
        /// How the apiserver reaches the webhooks: `service` (webhook-service in
        /// --namespace, port 443), a URL base such as `https://127.0.0.1:9443`, or `none`
        /// (the MutatingWebhookConfiguration is managed elsewhere).
        #[arg(long, default_value = "service")]
        endpoint: String,
        /// Seconds between reads of the Secret and the SPOD besides the watches.
        #[arg(long, default_value_t = 30)]
        resync: u64,
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
        #[command(flatten)]
        nodes: Box<NodeArgs>,
    },
}

/// How the manager deploys the node pods (`--node-daemonsets`).
#[derive(clap::Args, Debug)]
struct NodeArgs {
    /// Render the node DaemonSets (`spod`, `spod-recorder`, `spod-enricher`) from the SPOD and
    /// report their rollout in its status, as upstream's manager does.
    #[arg(long)]
    node_daemonsets: bool,
    /// The image of the node pods (default: the manager's own, read from its pod POD_NAME).
    #[arg(long)]
    node_image: Option<String>,
    /// The node pods' image pull policy (default: the manager's own).
    #[arg(long)]
    node_image_pull_policy: Option<String>,
    /// The kubelet's root directory on the nodes.
    #[arg(long, default_value = "/var/lib/kubelet")]
    node_kubelet_dir: String,
    /// Run node pods in the host network (clusters without a pod network).
    #[arg(long)]
    node_host_network: bool,
    /// NAME=VALUE added to every node container's environment (repeatable), such as the
    /// apiserver's address where there is no service network.
    #[arg(long, value_parser = parse_env)]
    node_env: Vec<(String, String)>,
    /// The ConfigMap (in the operator's namespace) whose `cosign.pub` the daemon checks
    /// `oci://` base profiles with (deploy/components/oci).
    #[arg(long)]
    node_oci_trust: Option<String>,
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    let (k, v) = s.split_once('=').ok_or_else(|| format!("{s:?} is not NAME=VALUE"))?;
    let valid = !k.is_empty()
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !k.starts_with(|c: char| c.is_ascii_digit());
    if !valid {
        return Err(format!("{k:?} is not an environment variable name"));
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// Who issues the webhook's certificates.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
enum CertsArg {
    /// The webhook itself (a CA of its own, kept in the Secret).
    #[value(name = "self")]
    SelfManaged,
    /// cert-manager or another issuer fills the Secret.
    Secret,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    cli::init_logging();
    let cli = Cli::parse();
    let rt = Runtime::start(&cli.common).await?;
    let client = rt.client.clone();
    let endpoints = rt.endpoints.clone();
    let result: anyhow::Result<()> = match cli.command {
        Command::Daemon(args) => cli::run_daemon(rt.client.clone(), *args, rt.endpoints.clone()).await,
        #[cfg(feature = "node-recorder")]
        Command::Recorder {
            node_name,
            kubelet_dir,
            namespace,
            spod_name,
        } => {
            let config = spo_operator::recorder::RecorderConfig {
                node: node_name,
                kubelet_dir,
                namespace,
                spod_name,
            };
            Ok(spo_operator::recorder::run(client, config, shutdown_signal()).await?)
        }
        Command::Enricher {
            node_name,
            namespace,
            spod_name,
            audit_log,
            kernel_log,
            proc_root,
            checkpoint,
            poll_ms,
            pod_grace,
            hold_ms,
            exit_log,
        } => {
            let config = spo_operator::enricher::EnricherConfig {
                node: node_name,
                namespace,
                spod_name,
                audit_log,
                kernel_log,
                proc_root,
                checkpoint,
                poll: Duration::from_millis(poll_ms.max(1)),
                pod_grace: Duration::from_secs(pod_grace),
                hold: Duration::from_millis(hold_ms),
                exit_log,
            };
            Ok(spo_operator::enricher::run(client, config, endpoints.clone(), shutdown_signal()).await?)
        }
        Command::Webhook {
            namespace,
            spod_name,
            listen,
            secret_name,
            certs,
            cert_names,
            cert_validity,
            ca_validity,
            tls_min_version,
            endpoint,
            resync,
        } => {
            use spo_operator::webhook::{self, CertSource, TlsMin, WebhookConfig, certs::Lifetimes, config::Endpoint};
            let tls_min = match tls_min_version.as_str() {
                "1.2" => TlsMin::V12,
                "1.3" => TlsMin::V13,
                other => anyhow::bail!("--tls-min-version {other:?}: use 1.2 or 1.3"),
            };
            if cert_validity <= 0 || ca_validity < 2 * cert_validity {
                anyhow::bail!("--ca-validity must be at least twice --cert-validity, both positive");
            }
            let sans = if cert_names.is_empty() {
                vec![
                    format!("{}.{namespace}.svc", webhook::config::SERVICE_NAME),
                    format!("{}.{namespace}.svc.cluster.local", webhook::config::SERVICE_NAME),
                ]
            } else {
                cert_names
            };
            let endpoint = match endpoint.as_str() {
                "none" => None,
                "service" => Some(Endpoint::Service {
                    namespace: namespace.clone(),
                    port: 443,
                }),
                url if url.starts_with("https://") => Some(Endpoint::Url(url.to_owned())),
                other => anyhow::bail!("--endpoint {other:?}: use service, none or an https:// URL base"),
            };
            let config = WebhookConfig {
                namespace,
                spod_name,
                listen,
                secret_name,
                cert_source: match certs {
                    CertsArg::SelfManaged => CertSource::SelfManaged,
                    CertsArg::Secret => CertSource::Secret,
                },
                sans,
                lifetimes: Lifetimes {
                    ca: ca_validity,
                    cert: cert_validity,
                },
                tls_min,
                endpoint,
                resync: Duration::from_secs(resync.max(1)),
            };
            Ok(webhook::run(client, config, endpoints.clone(), shutdown_signal()).await?)
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
            nodes,
        } => {
            let node_sets = nodes.node_daemonsets.then(|| manager::nodeset::NodeSetConfig {
                namespace: namespace.clone(),
                spod_name: spod_name.clone(),
                shape: manager::nodeset::NodeShape {
                    image: nodes.node_image.clone(),
                    pull_policy: nodes.node_image_pull_policy.clone(),
                    kubelet_dir: nodes.node_kubelet_dir.clone(),
                    host_network: nodes.node_host_network,
                    env: nodes.node_env.clone(),
                    oci_trust: nodes.node_oci_trust.clone(),
                },
                own_pod: std::env::var("POD_NAME").ok().filter(|s| !s.is_empty()),
            });
            let config = ManagerConfig {
                namespace: namespace.clone(),
                spod_name,
                create_default_spod: !no_default_spod,
                concurrency,
                node_sets,
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
                Ok(result?)
            } else {
                Ok(manager::run(client, config, endpoints.clone(), shutdown_signal()).await?)
            }
        }
    };
    rt.finish(result)
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
