//! What the operator's two binaries share: the allocator, logging, the apiserver client and
//! the health endpoints every component starts with, and the node daemon's command line and
//! start-up. `src/main.rs` (`spo-operator`: every component) and `src/bin/spo-daemon.rs`
//! (`spo-daemon`: the node daemon alone) include this module with `#[path]`; it is not part of
//! the library. Why the daemon has a binary of its own: docs/decisions.md ("The node daemon's
//! own binary").

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::ArgAction;
use spo_operator::daemon::apparmor::{AppArmorKind, SecurityfsLoader};
use spo_operator::daemon::oci::{OciBases, OciSettings};
use spo_operator::daemon::seccomp::SeccompNode;
use spo_operator::daemon::selinux::{BatchInstaller, RawSelinuxKind, SelinuxKind, SelinuxNodeConfig};
use spo_operator::daemon::{Daemon, DaemonConfig};
use spo_operator::kubeapi;
use spo_operator::server::{self, Endpoints};

/// jemalloc instead of glibc's malloc: the daemon's live heap is a few MiB, but glibc kept
/// two to three times that resident after a burst of watch events (freed chunks between live
/// ones stay, one arena per thread). Measured side by side in docs/benchmarks.md ("Operator
/// footprint and latency"); mimalloc was tried too and kept far more resident.
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's settings, read once when it starts: one arena (the operator's few threads do
/// not contend), no thread caches, and freed pages returned to the kernel within a second (not
/// ten) of going unused, by jemalloc's own background thread: without it pages are returned
/// only while the process allocates, so an idle daemon kept its burst's peak. Thread caches
/// are off because nothing flushes an idle thread's cache: after a burst each worker kept
/// freed objects of every size class, and with them the pages they sit in (the components
/// wait on the apiserver, not on malloc; measured in docs/benchmarks.md, "Every kind on one
/// daemon").
// SAFETY: jemalloc reads this NUL-terminated string under this exact symbol name before the
// first allocation and never writes it; nothing else defines the symbol.
#[cfg(feature = "jemalloc")]
#[allow(unsafe_code)]
#[unsafe(export_name = "_rjem_malloc_conf")]
static ALLOCATOR_CONF: &[u8] = b"narenas:1,tcache:false,dirty_decay_ms:1000,muzzy_decay_ms:0,background_thread:true\0";

/// Logs to standard error at `RUST_LOG`'s levels (default `info,kube=warn`).
pub fn init_logging() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,kube=warn")),
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}

/// The flags every component takes, whichever binary runs it.
#[derive(clap::Args, Debug)]
pub struct CommonArgs {
    /// Where /metrics, /healthz and /readyz are served (port 0: any free port, logged).
    #[arg(long, global = true, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    pub metrics_addr: SocketAddr,
}

/// What every component runs with: the apiserver client and the served health and metrics
/// endpoints.
pub struct Runtime {
    pub client: kube::Client,
    pub endpoints: Arc<Endpoints>,
    server: tokio::task::JoinHandle<()>,
}

impl Runtime {
    /// Connects to the apiserver (KUBECONFIG or the in-cluster service account) and serves
    /// /metrics, /healthz and /readyz on `--metrics-addr`.
    pub async fn start(common: &CommonArgs) -> anyhow::Result<Self> {
        let config = kube::Config::infer().await.context(
            "reading the apiserver's address and credentials (KUBECONFIG or the in-cluster service account)",
        )?;
        let client = kubeapi::client(config).context("building the apiserver client")?;
        let endpoints = Arc::new(Endpoints::default());
        let (listener, _) = server::bind(common.metrics_addr).await?;
        let server = tokio::spawn(server::serve(listener, endpoints.clone()));
        Ok(Runtime {
            client,
            endpoints,
            server,
        })
    }

    /// Ends with the component's `result`: a failure marks the process dead on /healthz
    /// first.
    pub fn finish(self, result: anyhow::Result<()>) -> anyhow::Result<()> {
        if result.is_err() {
            self.endpoints.health.set_dead();
        }
        self.server.abort();
        result
    }
}

/// The node daemon's command line (`spo-operator daemon`, `spo-daemon`).
#[derive(clap::Args, Debug)]
pub struct DaemonArgs {
    /// This node's name (set from the downward API in the DaemonSet).
    #[arg(long, env = "NODE_NAME")]
    pub node_name: String,
    /// The kubelet's root directory; seccomp profiles go to its seccomp/operator/ directory.
    #[arg(long, env = "KUBELET_DIR", default_value = "/var/lib/kubelet")]
    pub kubelet_dir: PathBuf,
    /// Where the node's /proc is (for probing seccomp support).
    #[arg(long)]
    pub proc_root: Option<PathBuf>,
    /// The operator's namespace (where the SPOD lives).
    #[arg(long, env = "OPERATOR_NAMESPACE", default_value = "security-profiles-operator")]
    pub namespace: String,
    /// The SPOD object's name.
    #[arg(long, default_value = "spod")]
    pub spod_name: String,
    /// Profiles installed on the node at once (local file writes).
    #[arg(long, default_value_t = 32)]
    pub concurrency: u16,
    /// Profiles reported to the apiserver at once (finalizers, node statuses).
    #[arg(long, default_value_t = 16)]
    pub report_concurrency: u16,
    /// The profile kinds this daemon handles (the SPOD switches SELinux and AppArmor on
    /// and off within them; each needs its RBAC and host mounts, see deploy/).
    #[arg(long, value_delimiter = ',', default_value = "seccomp")]
    pub kinds: Vec<KindArg>,
    #[command(flatten)]
    pub selinux: Box<SelinuxArgs>,
    #[command(flatten)]
    pub apparmor: Box<AppArmorArgs>,
    #[command(flatten)]
    pub oci: Box<OciArgs>,
}

/// A profile kind on the command line.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum KindArg {
    /// SeccompProfile.
    Seccomp,
    /// SelinuxProfile.
    Selinux,
    /// RawSelinuxProfile.
    Rawselinux,
    /// AppArmorProfile.
    Apparmor,
}

/// Where the node's SELinux policy store is.
#[derive(clap::Args, Debug)]
pub struct SelinuxArgs {
    /// Where selinuxfs is mounted (its `enforce` file says SELinux is enabled).
    #[arg(long, default_value = spo_selinux::backend::SELINUXFS)]
    pub selinuxfs: PathBuf,
    /// semodule `-p`: an alternative policy root (tests use a private copy of the store).
    #[arg(long)]
    pub selinux_policy_root: Option<PathBuf>,
    /// semodule `-s`: the policy store.
    #[arg(long, default_value = "default")]
    pub selinux_store: String,
    /// Load the rebuilt policy into the kernel after each change (semodule without `-n`).
    #[arg(long, default_value_t = true, action = ArgAction::Set)]
    pub selinux_reload: bool,
    /// A CIL module the node needs besides our templates (such as refpolicy's container
    /// module on Debian), installed with the first profile when the store has none of its
    /// name; the module is named after the file. Repeatable.
    #[arg(long)]
    pub selinux_extra_module: Vec<PathBuf>,
    /// Milliseconds the installer waits for more profiles before one semodule transaction.
    #[arg(long, default_value_t = 300)]
    pub selinux_batch_window_ms: u64,
    /// The most profiles one semodule transaction installs.
    #[arg(long, default_value_t = 64)]
    pub selinux_batch_max: usize,
}

/// How the daemon pulls `oci://` base profiles.
#[derive(clap::Args, Debug)]
pub struct OciArgs {
    /// A CA certificate (PEM) trusted for registries besides the system's; repeatable.
    #[arg(long, value_name = "FILE")]
    pub oci_ca_file: Vec<PathBuf>,
    /// A public key (PEM, as cosign.pub) whose signatures make an OCI base profile
    /// acceptable; repeatable. Without one, only the SPOD's
    /// security.disableOciArtifactSignatureVerification lets artifacts in (keyless
    /// verification needs Sigstore's services).
    #[arg(long, value_name = "FILE")]
    pub oci_verify_key: Vec<PathBuf>,
    /// Seconds a tag's digest is trusted before it is resolved again.
    #[arg(long, default_value_t = 300, value_name = "SECONDS")]
    pub oci_tag_ttl: u64,
}

/// Where the node's AppArmor is.
#[derive(clap::Args, Debug)]
pub struct AppArmorArgs {
    /// AppArmor's securityfs directory (a stand-in directory in tests).
    #[arg(long, default_value = spo_apparmor::loader::DEFAULT_SECURITYFS)]
    pub apparmor_securityfs: PathBuf,
    /// Where profile files are written.
    #[arg(long, default_value = spo_apparmor::loader::DEFAULT_PROFILE_DIR)]
    pub apparmor_profile_dir: PathBuf,
    /// The features to compile for; default: the kernel's (read from securityfs).
    #[arg(long)]
    pub apparmor_features_file: Option<PathBuf>,
}

fn selinux_config(args: &SelinuxArgs) -> anyhow::Result<SelinuxNodeConfig> {
    let semodule = spo_selinux::Semodule::new(
        args.selinux_policy_root.clone(),
        &args.selinux_store,
        args.selinux_reload,
    )
    .context("finding semodule for the SELinux kinds")?;
    let mut extras = Vec::new();
    for path in &args.selinux_extra_module {
        let name = path
            .file_stem()
            .and_then(|s| s.to_str())
            .with_context(|| format!("naming the module of {}", path.display()))?
            .to_owned();
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading SELinux module {}", path.display()))?;
        extras.push(spo_selinux::RenderedModule {
            name,
            origin: spo_selinux::render::ModuleOrigin::Support,
            text,
            lines: Vec::new(),
            requires: Vec::new(),
        });
    }
    Ok(SelinuxNodeConfig {
        selinuxfs: args.selinuxfs.clone(),
        installer: BatchInstaller::new(
            Arc::new(semodule),
            extras,
            Duration::from_millis(args.selinux_batch_window_ms),
            args.selinux_batch_max,
        ),
    })
}

/// Runs the node daemon with `args` until SIGTERM or SIGINT.
pub async fn run_daemon(client: kube::Client, args: DaemonArgs, endpoints: Arc<Endpoints>) -> anyhow::Result<()> {
    let DaemonArgs {
        node_name,
        kubelet_dir,
        proc_root,
        namespace,
        spod_name,
        concurrency,
        report_concurrency,
        kinds,
        selinux,
        apparmor,
        oci,
    } = args;
    let config = DaemonConfig {
        node: node_name,
        namespace,
        spod_name,
        concurrency,
        report_concurrency,
    };
    let settings = OciSettings {
        ca_files: oci.oci_ca_file,
        verify_keys: oci.oci_verify_key,
        tag_ttl: Duration::from_secs(oci.oci_tag_ttl.max(1)),
        ..OciSettings::default()
    };
    let bases = OciBases::new(
        tokio::runtime::Handle::current(),
        client.clone(),
        config.namespace.clone(),
        settings,
    )
    .map_err(|e| spo_operator::OperatorError::Config(format!("--oci-verify-key: {e}")))?;
    let mut d = Daemon::new(client, config, endpoints.clone());
    if kinds.contains(&KindArg::Seccomp) {
        d = d.with_kind(SeccompNode::new(kubelet_dir, proc_root).with_oci(Arc::new(bases)));
    }
    if kinds.contains(&KindArg::Selinux) || kinds.contains(&KindArg::Rawselinux) {
        let config = selinux_config(&selinux)?;
        if kinds.contains(&KindArg::Selinux) {
            d = d.with_kind(SelinuxKind::new(&config));
        }
        if kinds.contains(&KindArg::Rawselinux) {
            d = d.with_kind(RawSelinuxKind::new(&config));
        }
    }
    if kinds.contains(&KindArg::Apparmor) {
        let loader = SecurityfsLoader {
            securityfs: apparmor.apparmor_securityfs,
            profile_dir: apparmor.apparmor_profile_dir,
            parser: spo_apparmor::validate::DEFAULT_PARSER.into(),
            features_file: apparmor.apparmor_features_file.clone(),
            timeout: spo_apparmor::DEFAULT_TIMEOUT,
        };
        d = d.with_kind(AppArmorKind::new(loader, apparmor.apparmor_features_file));
    }
    Ok(d.run(shutdown_signal()).await?)
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
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
