#!/usr/bin/env bash
# Restart one long-running part of a running e2e node (e2e/start-node.sh STATE_DIR), as a
# crash or an upgrade of it would: the process found by its PID file (checked against its
# command line) gets TERM (KILL after 10 s), then STATE_DIR/node/run-PART.sh starts it
# again the way start-node did; this waits until it answers again.
#
#   e2e/node/restart.sh STATE_DIR kubelet|containerd
#
# Containers keep running meanwhile (their shims are separate processes), as on a real node.
# Prints `restarted PART (pid N) in M ms`.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 STATE_DIR kubelet|containerd" >&2
  exit 2
fi
state="$(cd "$1" && pwd)"
part="$2"
node="$state/node"
case "$part" in
  kubelet) pattern="kubelet-config.yaml" ;;
  containerd) pattern="$node/containerd/config.toml" ;;
  *) echo "restart.sh: unknown part $part (kubelet or containerd)" >&2; exit 2 ;;
esac
alive() { [ -r "/proc/$1/stat" ] && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null; }
cmdline() { { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null || true; }
ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

[ -x "$node/run-$part.sh" ] || { echo "restart.sh: $node/run-$part.sh missing (node started by an older start-node.sh?)" >&2; exit 1; }
pid="$(cat "$node/$part.pid" 2>/dev/null || true)"
if [ -z "$pid" ] || ! alive "$pid" || [[ "$(cmdline "$pid")" != *"$pattern"* ]]; then
  echo "restart.sh: $part of $state is not running (pid file: ${pid:-none})" >&2
  exit 1
fi
t0=$(date +%s%N)
kill -TERM "$pid"
for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
if alive "$pid"; then
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
fi
echo "--- restarted by e2e/node/restart.sh at $(date -u +%FT%TZ)" >>"$node/log/$part.log"
"$node/run-$part.sh" </dev/null >>"$node/log/$part.log" 2>&1 &
new=$!
echo "$new" >"$node/$part.pid"

# Ready again: containerd answers on its socket; the kubelet's healthz says ok.
cache="${SPO_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spo-rs}"
healthz_port="$(awk '$1 == "healthzPort:" { print $2 }' "$node/kubelet-config.yaml")"
ready=0
for _ in $(seq 1 300); do
  alive "$new" || { echo "restart.sh: $part exited; last log lines:" >&2; tail -n 20 "$node/log/$part.log" >&2; exit 1; }
  case "$part" in
    containerd) "$cache/containerd/ctr" --address "$node/containerd/containerd.sock" version >/dev/null 2>&1 && ready=1 ;;
    kubelet) [ "$(curl -fsS "http://127.0.0.1:$healthz_port/healthz" 2>/dev/null || true)" = ok ] && ready=1 ;;
  esac
  [ "$ready" = 1 ] && break
  sleep 0.1
done
[ "$ready" = 1 ] || { echo "restart.sh: $part not answering 30 s after its restart" >&2; exit 1; }
echo "restarted $part (pid $new) in $(ms_since "$t0") ms"
