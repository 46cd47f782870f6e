#!/usr/bin/env bash
# Start a real single-node Kubernetes cluster on 127.0.0.1 for e2e tests: the apiserver
# (e2e/start-apiserver.sh), kube-controller-manager, kube-scheduler, containerd (runc) and a
# kubelet named `localhost`. Only hostNetwork pods run (there is no pod network).
#
#   e2e/start-node.sh STATE_DIR
#
# Prints `node ready: kubeconfig=STATE_DIR/kubeconfig` once the Node is Ready. Everything
# of the node lives under STATE_DIR/node (see e2e/README.md); stop it with
# e2e/stop-node.sh STATE_DIR. Running it again while the node is up prints the same line.
#
# containerd, its shims, runc and the kubelet run in a mount namespace of their own
# (`unshare -m --propagation private`, held by STATE_DIR/node/ns.pid), where the kernel
# settings the kubelet insists on are regular files bind-mounted over /proc/sys: the
# machine's settings are never written (checked before and after). Containers go under
# the cgroup /spo-e2e-<hash of STATE_DIR>, which this script creates and stop-node removes.
#
# Env: SPO_E2E_NODE_READY_TIMEOUT (s, default 120), SPO_E2E_REBUILD=1 (rebuild everything),
# SPO_E2E_KUBELET_V (kubelet log verbosity, default 2), SPO_E2E_CACHE (binary cache dir).
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 STATE_DIR" >&2
  exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
mkdir -p "$1"
state="$(cd "$1" && pwd)"
node="$state/node"
timeout="${SPO_E2E_NODE_READY_TIMEOUT:-120}"
kubeconfig="$state/kubeconfig"
t0=$(date +%s%N)
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

die() { echo "start-node: $*" >&2; exit 1; }

# alive PID: exists and is not a zombie.
# mounts_under DIR: this machine's mounts at or below DIR (mount namespace of the caller).
mounts_under() { awk -v d="$1" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo; }
alive() { [ -r "/proc/$1/stat" ] && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null; }
pid_of() { cat "$node/$1.pid" 2>/dev/null || true; }
components=(ns containerd kubelet controller-manager scheduler)

# --- already running? -------------------------------------------------------------------
running=() stopped=()
for c in "${components[@]}"; do
  p="$(pid_of "$c")"
  if [ -n "$p" ] && alive "$p"; then running+=("$c"); else stopped+=("$c"); fi
done
apiserver_pid="$(cat "$state/apiserver.pid" 2>/dev/null || true)"
if [ ${#running[@]} -eq ${#components[@]} ] && [ -n "$apiserver_pid" ] && alive "$apiserver_pid"; then
  echo "node already running for $state" >&2
  echo "node ready: kubeconfig=$kubeconfig"
  exit 0
fi
if [ ${#running[@]} -gt 0 ]; then
  die "a node for $state is partly running (${running[*]} up, ${stopped[*]} down); run e2e/stop-node.sh $state first"
fi

# --- prerequisites ----------------------------------------------------------------------
[ "$(id -u)" = 0 ] || die "must run as root (containerd, runc, cgroups and mounts)"
for tool in unshare nsenter runc kubectl sha256sum jq; do
  command -v "$tool" >/dev/null || die "$tool not found (scripts/setup installs it)"
done
case "$state/" in
  /etc/* | /opt/* | /run/* | /var/run/* | /var/lib/* | /var/log/*)
    die "STATE_DIR $state is below a directory the node overlays (/etc /opt /run /var/lib /var/log); use one under /tmp" ;;
esac
cni_bin=/usr/lib/cni
[ -x "$cni_bin/loopback" ] || die "$cni_bin/loopback not found (apt-get install containernetworking-plugins)"
grep -qw overlay /proc/filesystems || die "the kernel has no overlay filesystem (containerd's overlayfs snapshotter needs it)"

# --- binaries and images ----------------------------------------------------------------
cache="$("$here/node/build.sh" all | tail -n 1)"
kube="$cache/e2e-kube"
ctrd="$cache/containerd"
t_built=$(date +%s%N)

# --- the machine's kernel settings the kubelet wants (must never change) ----------------
# name -> the value the kubelet requires (pkg/kubelet/cm setupKernelTunables)
sysctls=(vm/overcommit_memory=1 vm/panic_on_oom=0 kernel/panic=10 kernel/panic_on_oops=1
  kernel/keys/root_maxkeys=1000000 kernel/keys/root_maxbytes=25000000)
host_sysctls() { local s; for s in "${sysctls[@]}"; do printf '%s=%s ' "${s%%=*}" "$(cat "/proc/sys/${s%%=*}")"; done; }
sysctl_before="$(host_sysctls)"

# --- fresh state ------------------------------------------------------------------------
# Nothing of a previous node may still be mounted or running (stop-node.sh removes it).
if mounts_under "$node" | grep -q .; then
  die "$node still has mounts on this machine; run e2e/stop-node.sh $state first"
fi
rm -rf "$node"
mkdir -p "$node"/{containerd,kubelet,cni,sysctl,pod-logs,container-logs,log}
ctrd_sock="$node/containerd/containerd.sock"
# containerd names each shim's socket <socket_dir>/<64 hex digits>; a unix socket path has
# at most 107 bytes.
if [ $(( ${#node} + 16 + 64 )) -gt 107 ]; then
  die "STATE_DIR $state is too long for containerd's shim sockets (at most 22 characters, e.g. mktemp -d /tmp/spo-node.XXXXXX)"
fi

# If anything below fails, stop what was started so far.
ok=0
on_exit() {
  if [ "$ok" != 1 ]; then
    echo "start-node: failed; logs in $node/log; stopping what was started" >&2
    # Let a background apiserver start finish (it records its PID) so stop-node stops it.
    if [ -n "${api_start_pid:-}" ]; then wait "$api_start_pid" 2>/dev/null || true; fi
    "$here/stop-node.sh" "$state" >&2 || true
  fi
}
trap on_exit EXIT

# The cgroup every pod goes under, created in each hierarchy of this machine (cgroup v1
# controllers plus the unified cgroup2), and recorded so stop-node.sh removes exactly these.
cgroup_name="spo-e2e-$(printf '%s' "$state" | sha256sum | cut -c1-12)"
: >"$node/cgroups"
while read -r mnt; do
  d="$mnt/$cgroup_name"
  if [ -d "$d" ]; then
    die "cgroup $d already exists (a node of $state left behind?); run e2e/stop-node.sh $state"
  fi
  mkdir "$d"
  echo "$d" >>"$node/cgroups"
done < <(awk '$9 == "cgroup" || $9 == "cgroup2" { print $5 }' /proc/self/mountinfo | sort -u)
[ -s "$node/cgroups" ] || die "no cgroup hierarchy mounted"

# --- apiserver (in the background: containerd starts meanwhile) ---------------------------
SPO_E2E_SERVICE_ACCOUNTS=1 "$here/start-apiserver.sh" "$state" >"$node/log/start-apiserver.log" 2>&1 &
api_start_pid=$!
pki="$state/pki"

# --- the node's mount namespace -------------------------------------------------------
# A holder process (our pause binary) keeps a private mount namespace alive; containerd and
# the kubelet join it with nsenter. In it, each kernel setting the kubelet checks is a
# regular file with the value it wants, bind-mounted over /proc/sys/..., so the kubelet
# neither fails nor writes the machine's real settings. Mounts made in it (overlay
# snapshots, pod volumes) are invisible outside and vanish with it.
binds=""
for s in "${sysctls[@]}"; do
  name="${s%%=*}" value="${s#*=}"
  f="$node/sysctl/${name//\//.}"
  printf '%s\n' "$value" >"$f"
  binds+="mount --bind '$f' '/proc/sys/$name' && "
done
# The machine's system directories are overlays in the node's namespace: the node reads
# them as they are, and whatever it writes there (the kubelet's hard-coded
# /var/lib/kubelet/device-plugins socket, /var/log/containers links, runtime state under
# /run) lands in STATE_DIR/node/host/<dir>/upper instead.
overlays=""
for d in /etc /opt /run /var/lib /var/log; do
  if [ ! -d "$d" ] || [ -L "$d" ]; then continue; fi
  o="$node/host/${d//\//_}"
  mkdir -p "$o/upper" "$o/work"
  overlays+="mount -t overlay overlay -o 'lowerdir=$d,upperdir=$o/upper,workdir=$o/work' '$d' && "
done
unshare -m --propagation private -- sh -c "${binds}${overlays}exec '$cache/pause'" \
  </dev/null >"$node/log/ns.log" 2>&1 &
echo $! >"$node/ns.pid"
ns_pid=$!
for _ in $(seq 1 100); do
  # The holder execs pause only after every mount succeeded.
  if [ "$(readlink "/proc/$ns_pid/exe" 2>/dev/null)" = "$cache/pause" ]; then
    break
  fi
  alive "$ns_pid" || die "the node's mount namespace did not start: $(cat "$node/log/ns.log")"
  sleep 0.05
done
in_ns() { nsenter --target "$ns_pid" --mount -- "$@"; }
for s in "${sysctls[@]}"; do
  [ "$(in_ns cat "/proc/sys/${s%%=*}")" = "${s#*=}" ] || die "bind mount over /proc/sys/${s%%=*} not in place"
done

# --- containerd -------------------------------------------------------------------------
cat >"$node/cni/10-loopback.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "spo-e2e-loopback", "plugins": [{"type": "loopback"}]}
EOF
cat >"$node/containerd/config.toml" <<EOF
# containerd for the spo-rs e2e node (written by e2e/start-node.sh); everything under $node.
version = 4
root = '$node/containerd/root'
state = '$node/containerd/state'
imports = []
disabled_plugins = ['io.containerd.nri.v1.nri', 'io.containerd.internal.v1.opt',
  'io.containerd.snapshotter.v1.btrfs', 'io.containerd.snapshotter.v1.zfs',
  'io.containerd.snapshotter.v1.devmapper', 'io.containerd.snapshotter.v1.blockfile',
  'io.containerd.snapshotter.v1.erofs', 'io.containerd.image-verifier.v1.bindir',
  'io.containerd.tracing.processor.v1.otlp', 'io.containerd.internal.v1.tracing']

[plugins.'io.containerd.server.v1.grpc']
  address = '$ctrd_sock'
[plugins.'io.containerd.server.v1.ttrpc']
  address = '$ctrd_sock.ttrpc'
[plugins.'io.containerd.server.v1.debug']
  address = ''
[plugins.'io.containerd.server.v1.metrics']
  address = ''

[plugins.'io.containerd.shim.v1.manager']
  socket_dir = '$node/containerd/s'

[plugins.'io.containerd.cri.v1.images']
  snapshotter = 'overlayfs'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = 'localhost/spo-e2e/pause:1'

[plugins.'io.containerd.cri.v1.runtime']
  # Nothing on this machine may lower its OOM score; without this every sandbox fails
  # with "can't get final child's PID from pipe".
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  cdi_spec_dirs = []
  enable_criu = false
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = '$(command -v runc)'
        Root = '$node/containerd/runc'
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['$cni_bin']
    conf_dir = '$node/cni'

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
EOF
# Nothing of this containerd may land in the machine's /run or /var/lib: check the
# effective config before starting it.
"$ctrd/containerd" --config "$node/containerd/config.toml" config dump >"$node/containerd/effective.toml" 2>"$node/log/containerd-config.log" \
  || die "containerd rejects its config: $(cat "$node/log/containerd-config.log")"
for want in "Root = '$node/containerd/runc'" "address = '$ctrd_sock'" "root = '$node/containerd/root'" "state = '$node/containerd/state'" "socket_dir = '$node/containerd/s'"; do
  grep -qF "$want" "$node/containerd/effective.toml" || die "containerd config: effective config lacks $want (see $node/containerd/effective.toml)"
done
if grep -E "^\s*(address|socket_path|path|root_path) = '/(run|var|opt|etc)/" "$node/containerd/effective.toml" | grep -v "^\s*#" >"$node/log/containerd-host-paths.log"; then
  die "containerd config: host paths in use: $(cat "$node/log/containerd-host-paths.log")"
fi
# Each long-running node part starts from a script of its own, so e2e/node/restart.sh can
# start it again the same way (a kubelet or containerd restart is one of the faults tested).
cat >"$node/run-containerd.sh" <<EOF
#!/usr/bin/env bash
# Written by e2e/start-node.sh: this node's containerd, in the node's mount namespace.
PATH="$ctrd:\$PATH" exec nsenter --target "$ns_pid" --mount -- "$ctrd/containerd" --config "$node/containerd/config.toml" --log-level warn
EOF
chmod +x "$node/run-containerd.sh"
"$node/run-containerd.sh" </dev/null >"$node/log/containerd.log" 2>&1 &
echo $! >"$node/containerd.pid"
ctrd_pid=$!
ctr() { in_ns "$ctrd/ctr" --address "$ctrd_sock" --namespace k8s.io "$@"; }
for _ in $(seq 1 200); do
  [ -S "$ctrd_sock" ] && ctr version >/dev/null 2>&1 && break
  alive "$ctrd_pid" || die "containerd exited: $(tail -n 20 "$node/log/containerd.log")"
  sleep 0.05
done
ctr version >/dev/null 2>&1 || die "containerd not answering on $ctrd_sock: $(tail -n 20 "$node/log/containerd.log")"
for img in pause busybox; do
  ctr images import --snapshotter overlayfs "$cache/images/$img.tar" >"$node/log/import-$img.log" 2>&1 \
    || die "importing $cache/images/$img.tar failed: $(cat "$node/log/import-$img.log")"
done
t_ctrd=$(date +%s%N)  # containerd up, images imported (the apiserver may still be starting)

if ! wait "$api_start_pid"; then
  die "e2e/start-apiserver.sh failed: $(cat "$node/log/start-apiserver.log")"
fi
t_api=$(date +%s%N)

# --- controller-manager and scheduler (plain host processes; admin kubeconfig) -----------
"$kube" kube-controller-manager --kubeconfig="$kubeconfig" --leader-elect=false \
  --bind-address=127.0.0.1 --secure-port=0 --use-service-account-credentials=false \
  --service-account-private-key-file="$pki/sa.key" --root-ca-file="$pki/ca.crt" \
  --cluster-name=spo-e2e --controllers='*,-bootstrapsigner,-tokencleaner' --v=1 \
  </dev/null >"$node/log/controller-manager.log" 2>&1 &
echo $! >"$node/controller-manager.pid"
"$kube" kube-scheduler --kubeconfig="$kubeconfig" --leader-elect=false \
  --bind-address=127.0.0.1 --secure-port=0 --v=1 \
  </dev/null >"$node/log/scheduler.log" 2>&1 &
echo $! >"$node/scheduler.pid"

# --- kubelet ------------------------------------------------------------------------------
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
kubelet_port="$(free_port)"
healthz_port="$(free_port)"
resolv=/etc/resolv.conf
[ -e "$resolv" ] || resolv=""
cat >"$node/kubelet-config.yaml" <<EOF
# KubeletConfiguration of the spo-rs e2e node (written by e2e/start-node.sh).
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: $kubelet_port
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $healthz_port
# kubectl logs/exec: the apiserver calls the kubelet without a client certificate.
authentication:
  anonymous: {enabled: true}
  webhook: {enabled: false}
authorization: {mode: AlwaysAllow}
containerRuntimeEndpoint: unix://$ctrd_sock
# The machine's cgroups are v1 (cgroup2 at /sys/fs/cgroup/unified).
failCgroupV1: false
cgroupDriver: cgroupfs
# Pods go to /$cgroup_name/kubepods/... (the kubelet makes the QoS cgroups below it).
cgroupsPerQOS: true
cgroupRoot: /$cgroup_name
enforceNodeAllocatable: []
failSwapOn: false
# Fail rather than write the machine's kernel settings (they are bind-mounted files here).
protectKernelDefaults: true
makeIPTablesUtilChains: false
oomScoreAdj: 0
podLogsDir: $node/pod-logs
volumePluginDir: $node/kubelet/volume-plugins
resolvConf: "$resolv"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: {memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1%}
nodeStatusReportFrequency: 10s
serializeImagePulls: false
EOF
cat >"$node/run-kubelet.sh" <<EOF
#!/usr/bin/env bash
# Written by e2e/start-node.sh: this node's kubelet, in the node's mount namespace.
SPO_E2E_CONTAINER_LOGS_DIR="$node/container-logs" exec nsenter --target "$ns_pid" --mount -- "$kube" kubelet \\
  --config="$node/kubelet-config.yaml" --kubeconfig="$kubeconfig" \\
  --root-dir="$node/kubelet" --cert-dir="$node/kubelet/pki" \\
  --hostname-override=localhost --v="${SPO_E2E_KUBELET_V:-2}"
EOF
chmod +x "$node/run-kubelet.sh"
"$node/run-kubelet.sh" </dev/null >"$node/log/kubelet.log" 2>&1 &
echo $! >"$node/kubelet.pid"
kubelet_pid=$!

# --- wait for the Node --------------------------------------------------------------------
kctl() { kubectl --kubeconfig "$kubeconfig" "$@"; }
start=$(date +%s)
while :; do
  ready="$(kctl get node localhost -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null || true)"
  [ "$ready" = True ] && break
  for c in kubelet containerd controller-manager scheduler; do
    alive "$(pid_of "$c")" || die "$c exited; last log lines:
$(tail -n 30 "$node/log/$c.log")"
  done
  if [ $(( $(date +%s) - start )) -ge "$timeout" ]; then
    die "node not Ready after ${timeout}s (Ready=$ready); last kubelet log lines:
$(tail -n 30 "$node/log/kubelet.log")"
  fi
  sleep 0.2
done
t_ready=$(date +%s%N)

sysctl_after="$(host_sysctls)"
if [ "$sysctl_before" != "$sysctl_after" ]; then
  die "the machine's kernel settings changed while the node started: before: $sysctl_before after: $sysctl_after"
fi

# What e2e/tests/node.rs reads (`set -a; . STATE_DIR/node/env; set +a`), and more.
cat >"$node/env" <<EOF
SPO_E2E_NODE_KUBECONFIG=$kubeconfig
SPO_E2E_NODE_KUBELET_DIR=$node/kubelet
SPO_E2E_NODE_NAME=localhost
SPO_E2E_NODE_CONTAINERD_SOCK=$ctrd_sock
SPO_E2E_NODE_CGROUP=/$cgroup_name
SPO_E2E_NODE_BUSYBOX_IMAGE=localhost/spo-e2e/busybox:1
SPO_E2E_NODE_CTR=$ctrd/ctr
EOF
ok=1
echo "(build check $(( (t_built - t0) / 1000000 )) ms, then in parallel: containerd + images ready after $(( (t_ctrd - t_built) / 1000000 )) ms, apiserver after $(( (t_api - t_built) / 1000000 )) ms; then Node Ready $(( (t_ready - t_api) / 1000000 )) ms later; total $(ms_since "$t0") ms; kubelet pid $kubelet_pid, logs $node/log)" >&2
echo "node ready: kubeconfig=$kubeconfig"
