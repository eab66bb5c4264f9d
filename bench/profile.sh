#!/usr/bin/env bash
# Profiles the server and the client of one benchmark point with `perf record -e cpu-clock`
# (the development VMs have no PMU), both on CPU 0, and prints where each thread spends its
# time in µs per operation (inclusive, per kernel or user function).
#
#   bench/profile.sh WORKLOAD TARGET... [-- OUTDIR]
#
# e.g. bench/profile.sh getattr fuser1-null rf-classic-null
# Needs root, perf (Debian: linux-perf), python3 and a release build of ringfuse-bench.
# Each target runs 8 s; perf records 3 s of it at 10 kHz on CPU 0. Run it on an idle machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release/ringfuse-bench
[ -x "$bin" ] || { echo "build first: cargo build --release -p ringfuse-bench" >&2; exit 2; }
command -v perf >/dev/null || { echo "perf not found (apt-get install linux-perf)" >&2; exit 2; }
w=$1; shift
targets=(); out=/tmp/ringfuse-profile
while [ $# -gt 0 ]; do
  if [ "$1" = "--" ]; then out=$2; break; fi
  targets+=("$1"); shift
done
mkdir -p "$out"
for t in "${targets[@]}"; do
  "$bin" run --profile quick --targets "$t" --workloads "$w" --placements shared --reps 1 \
    --secs 8 --no-count --out "$out/run-$w-$t" > "$out/$w-$t.log" 2>&1 &
  run=$!
  sleep 4
  perf record -e cpu-clock -F 10000 -a -C 0 -g -o "$out/$w-$t.data" -- sleep 3 > /dev/null 2>&1
  wait $run
  ops=$(grep -o '[0-9]* ops/s' "$out/$w-$t.log" | head -1 | cut -d' ' -f1)
  echo "== $w $t: $ops ops/s over the run (3 s recorded)"
  perf script -F tid,comm,ip,sym -i "$out/$w-$t.data" 2>/dev/null \
    | python3 bench/perf-fold.py "$((ops * 3))" 60 | tee "$out/$w-$t.txt"
done
