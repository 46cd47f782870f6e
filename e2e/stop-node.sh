#!/usr/bin/env bash
# Stop the single-node cluster started by e2e/start-node.sh STATE_DIR and remove what it
# made on this machine: every pod's containers (through containerd), the kubelet,
# scheduler, controller-manager, containerd and its shims, the node's mount namespace,
# the node's own cgroups, then the apiserver (e2e/stop-apiserver.sh).
#
#   e2e/stop-node.sh STATE_DIR
#
# Idempotent: succeeds when nothing is running. Only processes this node started are
# signalled, each by the PID recorded in STATE_DIR/node (checked against its command line,
# so a recycled PID is left alone) or, for containerd shims, found by this node's own
# containerd socket on their command line. Only the cgroups listed in
# STATE_DIR/node/cgroups are removed, and only when empty.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 STATE_DIR" >&2
  exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
if [ ! -d "$1" ]; then
  echo "node not running (no $1)"
  exit 0
fi
state="$(cd "$1" && pwd)"
node="$state/node"
ctrd_sock="$node/containerd/containerd.sock"
cache="${SPO_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/spo-rs}"
status=0

# mounts_under DIR: this machine's mounts at or below DIR (mount namespace of the caller).
mounts_under() { awk -v d="$1" '$5 == d || index($5, d "/") == 1 { print $5 }' /proc/self/mountinfo; }
alive() { [ -r "/proc/$1/stat" ] && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null; }
cmdline() { { tr '\0' ' ' <"/proc/$1/cmdline"; } 2>/dev/null || true; }

# stop NAME PATTERN: TERM the process in NAME.pid (if its command line contains PATTERN),
# KILL after 10 s.
stop() {
  local name="$1" pattern="$2" pidfile="$node/$1.pid" pid
  [ -s "$pidfile" ] || return 0
  pid="$(cat "$pidfile")"
  if ! alive "$pid" || [[ "$(cmdline "$pid")" != *"$pattern"* ]]; then
    rm -f "$pidfile"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 100); do alive "$pid" || break; sleep 0.1; done
  if alive "$pid"; then
    echo "stop-node: $name (pid $pid) still alive after 10s, sending KILL" >&2
    kill -KILL "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
  fi
  rm -f "$pidfile"
  echo "stop-node: $name stopped (pid $pid)" >&2
}

# containerd shims of this node: their command line names this node's containerd socket.
shims() {
  local p
  for p in /proc/[0-9]*; do
    p="${p#/proc/}"
    case "$(cmdline "$p")" in
      *containerd-shim*"$ctrd_sock"*) echo "$p" ;;
    esac
  done
}

if [ -d "$node" ]; then
  # 1. The kubelet first, so it does not restart what is stopped below.
  stop kubelet "kubelet"
  stop scheduler "kube-scheduler"
  stop controller-manager "kube-controller-manager"

  # 2. Every container and sandbox of this node, through its containerd, so the shims
  #    end and runc removes the containers' cgroups.
  ns_pid="$(cat "$node/ns.pid" 2>/dev/null || true)"
  ctrd_pid="$(cat "$node/containerd.pid" 2>/dev/null || true)"
  if [ -n "$ns_pid" ] && alive "$ns_pid" && [ -n "$ctrd_pid" ] && alive "$ctrd_pid" && [ -S "$ctrd_sock" ]; then
    ctr() { timeout 10 nsenter --target "$ns_pid" --mount -- "$cache/containerd/ctr" --address "$ctrd_sock" --namespace k8s.io "$@"; }
    tasks="$(ctr tasks ls -q 2>/dev/null || true)"
    for t in $tasks; do ctr tasks kill --signal SIGKILL "$t" >/dev/null 2>&1 || true; done
    for t in $tasks; do
      for _ in $(seq 1 50); do
        ctr tasks delete "$t" >/dev/null 2>&1 && break
        sleep 0.1
      done
    done
  fi
  stop containerd "$node/containerd/config.toml"

  # 3. Shims left over (containerd was down or crashed): KILL them. Their containers may
  #    outlive them; those are killed through this node's cgroups next.
  for p in $(shims); do
    echo "stop-node: killing leftover containerd shim $p" >&2
    kill -KILL "$p" 2>/dev/null || true
  done

  # 4. Processes still in this node's cgroups are containers of this node: KILL them.
  if [ -s "$node/cgroups" ]; then
    for _ in 1 2 3; do
      left=0
      while read -r cg; do
        [ -d "$cg" ] || continue
        while read -r p; do
          [ -n "$p" ] || continue
          left=1
          kill -KILL "$p" 2>/dev/null || true
        done < <(find "$cg" -name cgroup.procs -exec cat {} + 2>/dev/null)
      done <"$node/cgroups"
      [ "$left" = 0 ] && break
      sleep 0.2
    done
  fi

  # 5. The node's mount namespace: its holder is the last process in it, so every mount
  #    made in it (overlay snapshots, pod volumes, the /proc/sys bind mounts) goes away.
  stop ns "$cache/pause"

  # 6. The node's cgroups, deepest first, only the ones start-node.sh created.
  if [ -s "$node/cgroups" ]; then
    remaining=()
    while read -r cg; do
      [ -d "$cg" ] || continue
      for _ in $(seq 1 50); do
        find "$cg" -depth -type d -exec rmdir {} \; 2>/dev/null || true
        [ -d "$cg" ] || break
        sleep 0.1
      done
      if [ -d "$cg" ]; then remaining+=("$cg"); fi
    done <"$node/cgroups"
    if [ ${#remaining[@]} -gt 0 ]; then
      echo "stop-node: could not remove cgroups (still busy): ${remaining[*]}" >&2
      status=1
    else
      rm -f "$node/cgroups"
    fi
  fi

  if mounts_under "$node" | grep -q .; then
    echo "stop-node: mounts under $node remain on this machine:" >&2
    mounts_under "$node" >&2
    status=1
  fi
fi

"$here/stop-apiserver.sh" "$state" >&2 || status=1
if [ "$status" = 0 ]; then
  echo "node stopped ($state)"
fi
exit "$status"
