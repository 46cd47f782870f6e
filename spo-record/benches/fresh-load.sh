#!/usr/bin/env bash
# Recorder load and attach time in a fresh process, as `spoc record` pays it: the release
# `record` example run N times (default 8) on `true`; prints each run and the range.
# Needs root (BPF). Usage: spo-record/benches/fresh-load.sh [N]
set -euo pipefail
n=${1:-8}
cd "$(dirname "$0")/../.."
cargo build -q --release -p spo-record --example record
bin=${CARGO_TARGET_DIR:-target}/release/examples/record
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); kernel.bpf_stats_enabled=$(cat /proc/sys/kernel/bpf_stats_enabled)"
loads=() attaches=()
for _ in $(seq "$n"); do
  line=$("$bin" true 2>&1 >/dev/null | grep '^load ')
  echo "$line"
  # "load 16.3ms, attach 412.1µs, exit ..." -> milliseconds
  ms() { awk -v v="$1" 'BEGIN { if (v ~ /µs$/) { sub(/µs$/, "", v); print v / 1000 } else if (v ~ /ms$/) { sub(/ms$/, "", v); print v + 0 } else { sub(/s$/, "", v); print v * 1000 } }'; }
  loads+=("$(ms "$(echo "$line" | sed -E 's/^load ([^,]+),.*/\1/')")")
  attaches+=("$(ms "$(echo "$line" | sed -E 's/.*attach ([^,]+),.*/\1/')")")
done
range() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { printf "min %.1f ms, median %.1f ms, max %.1f ms", v[1], v[int((NR + 1) / 2)], v[NR] }'; }
echo "load:   $(range "${loads[@]}")"
echo "attach: $(range "${attaches[@]}")"
