#!/usr/bin/env bash
# Start a real kube-apiserver (+ embedded etcd) on 127.0.0.1 for e2e tests.
#
#   e2e/start-apiserver.sh STATE_DIR [extra kube-apiserver flags...]
#
# Builds e2e/apiserver into $SPO_E2E_BIN (default ${XDG_CACHE_HOME:-$HOME/.cache}/spo-rs/e2e-apiserver)
# when the binary is missing or its sources changed, starts it in the background
# (log: STATE_DIR/apiserver.log, pid: STATE_DIR/apiserver.pid), waits up to
# $SPO_E2E_READY_TIMEOUT seconds (default 180) for READY and prints
#   apiserver ready: kubeconfig=STATE_DIR/kubeconfig
# Env: SPO_E2E_PORT (secure port, default: a free one), SPO_E2E_REBUILD=1 (force a build),
# SPO_E2E_KEEP_DATA=1 (restart the cluster of a previous run in STATE_DIR: same etcd data,
# certificates, ports and kubeconfig; default: a new, empty cluster on every start),
# SPO_E2E_SERVICE_ACCOUNTS=1 (ServiceAccount admission on: pods get their ServiceAccount's
# token; only where a controller-manager creates each namespace's default ServiceAccount,
# as e2e/start-node.sh runs it).
set -euo pipefail

if [ $# -lt 1 ]; then
  echo "usage: $0 STATE_DIR [extra kube-apiserver flags...]" >&2
  exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$here/apiserver"
mkdir -p "$1"
state="$(cd "$1" && pwd)"
shift
bin="${SPO_E2E_BIN:-${XDG_CACHE_HOME:-$HOME/.cache}/spo-rs/e2e-apiserver}"
timeout="${SPO_E2E_READY_TIMEOUT:-180}"
log="$state/apiserver.log"
pidfile="$state/apiserver.pid"

# alive = exists and is not a zombie (a killed apiserver may wait a moment to be reaped)
alive() { [ -r "/proc/$1/stat" ] && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null; }
if [ -s "$pidfile" ] && alive "$(cat "$pidfile")"; then
  echo "apiserver already running for $state (pid $(cat "$pidfile")); run e2e/stop-apiserver.sh $state first" >&2
  exit 1
fi

# Rebuild when the sources (or this script's build recipe) changed since the last
# build; a content hash, not mtimes, so a fresh clone reuses a cached binary.
stamp="$(cat "$src"/go.mod "$src"/go.sum "$src"/*.go "${BASH_SOURCE[0]}" | sha256sum | cut -d' ' -f1)"
need_build=0
if [ "${SPO_E2E_REBUILD:-0}" = 1 ] || [ ! -x "$bin" ] || [ "$(cat "$bin.stamp" 2>/dev/null)" != "$stamp" ]; then
  need_build=1
fi
if [ "$need_build" = 1 ]; then
  command -v go >/dev/null || { echo "go toolchain not found (need go >= 1.26)" >&2; exit 1; }
  mkdir -p "$(dirname "$bin")"
  echo "building $bin (first build takes minutes) ..." >&2
  started=$(date +%s)
  (
    cd "$src"
    kver="$(go list -m -f '{{.Version}}' k8s.io/kubernetes)"   # e.g. v1.37.2
    major="${kver#v}"; major="${major%%.*}"
    minor="${kver#v*.}"; minor="${minor%%.*}"
    vpkg=k8s.io/component-base/version
    # Same version stamping as the upstream build (hack/lib/version.sh), so
    # /version and `kubectl version` report the real release.
    nice -n 10 go build -trimpath -buildvcs=false -o "$bin.tmp.$$" \
      -ldflags "-s -w -X $vpkg.gitVersion=$kver -X $vpkg.gitMajor=$major -X $vpkg.gitMinor=$minor -X $vpkg.gitTreeState=clean -X $vpkg.buildDate=1970-01-01T00:00:00Z" \
      .
  )
  mv -f "$bin.tmp.$$" "$bin"
  echo "$stamp" >"$bin.stamp"
  echo "built in $(( $(date +%s) - started ))s" >&2
fi

port_args=()
if [ -n "${SPO_E2E_PORT:-}" ]; then port_args=(--port "$SPO_E2E_PORT"); fi
if [ "${SPO_E2E_SERVICE_ACCOUNTS:-0}" = 1 ]; then
  port_args+=(--service-accounts)
fi
if [ "${SPO_E2E_KEEP_DATA:-0}" = 1 ]; then
  port_args+=(--keep-data)
else
  rm -f "$state/kubeconfig"
fi
start=$(date +%s)
"$bin" --state-dir "$state" --kubeconfig "$state/kubeconfig" "${port_args[@]}" -- "$@" </dev/null >"$log" 2>&1 &
pid=$!
echo "$pid" >"$pidfile"

while :; do
  if grep -q '^READY ' "$log" 2>/dev/null && [ -s "$state/kubeconfig" ]; then
    echo "apiserver ready: kubeconfig=$state/kubeconfig"
    echo "(pid $pid, $(( $(date +%s) - start ))s to ready, log $log)" >&2
    exit 0
  fi
  if ! alive "$pid"; then
    echo "apiserver exited before it was ready; last log lines:" >&2
    tail -n 40 "$log" >&2
    rm -f "$pidfile"
    exit 1
  fi
  if [ $(( $(date +%s) - start )) -ge "$timeout" ]; then
    echo "apiserver not ready after ${timeout}s; last log lines:" >&2
    tail -n 40 "$log" >&2
    "$here/stop-apiserver.sh" "$state" >&2 || true
    exit 1
  fi
  sleep 0.5
done
