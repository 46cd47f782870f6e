#!/usr/bin/env bash
# Stop the registry started by e2e/start-registry.sh STATE_DIR (TERM, then KILL after 10 s).
# Idempotent: succeeds when nothing is running.
set -euo pipefail

if [ $# -ne 1 ]; then
  echo "usage: $0 STATE_DIR" >&2
  exit 2
fi
pidfile="$1/registry.pid"
if [ ! -s "$pidfile" ]; then
  echo "registry not running (no $pidfile)"
  exit 0
fi
pid="$(cat "$pidfile")"
# alive = exists and is not a zombie
alive() { [ -r "/proc/$1/stat" ] && ! grep -q '^[0-9]* (.*) Z' "/proc/$1/stat" 2>/dev/null; }
# Only signal our own process: guard against a recycled PID.
if ! alive "$pid" || ! tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- 'docker-registry'; then
  echo "registry not running (stale pid $pid)"
  rm -f "$pidfile"
  exit 0
fi
kill -TERM "$pid" 2>/dev/null || true
for _ in $(seq 1 100); do
  alive "$pid" || break
  sleep 0.1
done
if alive "$pid"; then
  echo "registry (pid $pid) still alive after 10s, sending KILL" >&2
  kill -KILL "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do alive "$pid" || break; sleep 0.1; done
fi
rm -f "$pidfile"
echo "registry stopped (pid $pid)"
