#!/usr/bin/env bash
# Latency of "SeccompProfile created -> a pod confined by it Running" on the e2e node, over
# N profiles and pods (one pod per profile, each applied at once after its profile, as a
# user would: the pod waits until its profile is on the node).
#
#   e2e/node/bench-profile-pods.sh STATE_DIR [N]        (N default 50)
#
# STATE_DIR is a node started by e2e/start-node.sh. Runs the operator's manager and daemon
# as host processes (the binary from $SPO_OPERATOR_BIN, default the workspace's debug build
# in $CARGO_TARGET_DIR or target/), creates profile i and then pod i, and records for each
# i when the profile was Installed and when the pod was Running, both measured from just
# before `kubectl apply` of the profile. Prints every sample and p50/p90/p99/max; removes
# everything it created at the end.
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 STATE_DIR [N]" >&2
  exit 2
fi
state="$(cd "$1" && pwd)"
n="${2:-50}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
kc="$state/kubeconfig"
kubelet_dir="$state/node/kubelet"
bin="${SPO_OPERATOR_BIN:-${CARGO_TARGET_DIR:-$repo/target}/debug/spo-operator}"
ns=spo-e2e-bench
[ -x "$bin" ] || { echo "$bin not found (cargo build -p spo-operator, or set SPO_OPERATOR_BIN)" >&2; exit 1; }
[ -d "$kubelet_dir" ] || { echo "$kubelet_dir not found: start the node with e2e/start-node.sh $state" >&2; exit 1; }
k() { kubectl --kubeconfig "$kc" "$@"; }

work="$(mktemp -d "${TMPDIR:-/tmp}/spo-bench.XXXXXX")"
pids=()
# shellcheck disable=SC2317 # called by the EXIT trap
cleanup() {
  # Pods first (they hold their profiles), then the profiles, while the operator still runs
  # to release them; then the operator.
  k -n "$ns" delete pod --all --grace-period=1 --wait=true >/dev/null 2>&1 || true
  k delete sp -l spo-e2e-bench=1 --wait=true --timeout=60s >/dev/null 2>&1 || true
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

k apply --server-side -k "$repo/deploy/crds" >/dev/null
k wait --for=condition=Established --timeout=60s crd --all >/dev/null
k get namespace "$ns" >/dev/null 2>&1 || k create namespace "$ns" >/dev/null
# ServiceAccount admission refuses pods until the namespace's default ServiceAccount exists.
for _ in $(seq 1 100); do k -n "$ns" get serviceaccount default >/dev/null 2>&1 && break; sleep 0.1; done
export KUBECONFIG="$kc" RUST_LOG=warn
"$bin" --metrics-addr 127.0.0.1:0 manager --namespace "$ns" >"$work/manager.log" 2>&1 &
pids+=($!)
"$bin" --metrics-addr 127.0.0.1:0 daemon --namespace "$ns" --node-name localhost --kubelet-dir "$kubelet_dir" >"$work/daemon.log" 2>&1 &
pids+=($!)
until k -n "$ns" get spod spod >/dev/null 2>&1; do sleep 0.2; done

ms() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }
: >"$work/samples"
for i in $(seq 1 "$n"); do
  name="bench-$i"
  t0=$(date +%s%N)
  k apply -f - >/dev/null <<EOF
apiVersion: security-profiles-operator.x-k8s.io/v1
kind: SeccompProfile
metadata: {name: $name, labels: {spo-e2e-bench: "1"}}
spec:
  defaultAction: SCMP_ACT_ALLOW
  syscalls: [{names: [mkdir, mkdirat], action: SCMP_ACT_ERRNO, errnoRet: 1}]
EOF
  k wait --for=jsonpath='{.status.status}'=Installed --timeout=60s "sp/$name" >/dev/null
  installed=$(ms "$t0")
  k apply -f - >/dev/null <<EOF
apiVersion: v1
kind: Pod
metadata: {name: $name, namespace: $ns}
spec:
  hostNetwork: true
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  automountServiceAccountToken: false
  securityContext: {seccompProfile: {type: Localhost, localhostProfile: operator/$name.json}}
  containers:
  - {name: c, image: localhost/spo-e2e/busybox:1, imagePullPolicy: Never, command: [/bin/sh, -c, "trap 'exit 0' TERM; while :; do sleep 1; done"]}
EOF
  k -n "$ns" wait --for=jsonpath='{.status.phase}'=Running --timeout=60s "pod/$name" >/dev/null
  running=$(ms "$t0")
  echo "$i installed_ms=$installed running_ms=$running"
  echo "$installed $running" >>"$work/samples"
done

pct() { # column, percentile
  awk -v c="$1" '{ print $c }' "$work/samples" | sort -n | awk -v p="$2" '{ v[NR] = $1 } END { i = int((NR * p + 99) / 100); if (i < 1) i = 1; print v[i] }'
}
echo "n=$n  profile applied -> Installed: p50 $(pct 1 50) ms, p90 $(pct 1 90) ms, p99 $(pct 1 99) ms, max $(pct 1 100) ms"
echo "n=$n  profile applied -> confined pod Running: p50 $(pct 2 50) ms, p90 $(pct 2 90) ms, p99 $(pct 2 99) ms, max $(pct 2 100) ms"
