#!/usr/bin/env bash
# The passthrough example over a tmpfs directory, against that tmpfs itself and against
# libfuse's passthrough_hp over the same directory: sequential read and write (1 MiB
# blocks) and 4 KiB random read (O_DIRECT, QD1, QD32, and QD32 with 2 fio jobs), every
# target in turn (A B C A B C ...), in each placement, REPS times; medians with min-max, and
# the server's CPU time per operation.
#
#   tmpfs        the backing tmpfs directly (the ceiling)
#   pt-ring      passthrough, every backing read/write submitted to the loop's ring
#   pt-kernel    passthrough with -o passthrough: the kernel reads and writes the backing
#                file itself (FUSE_PASSTHROUGH); the server sees no READ or WRITE
#   pt-percpu    passthrough --per-cpu: as pt-ring, one pinned loop per CPU the server may
#                run on (one in the "same" placement, where it may run on CPU 0 only)
#   pt-old       (only with PT_OLD_BIN set) another build of the passthrough example, the
#                same way as pt-ring: for before/after comparisons. The hand-written state
#                machine version before the AsyncFilesystem rewrite:
#                  git worktree add /tmp/pt-old c3356f2
#                  cargo build --release --example passthrough \
#                    --manifest-path /tmp/pt-old/Cargo.toml --target-dir /tmp/pt-old-target
#                  PT_OLD_BIN=/tmp/pt-old-target/release/examples/passthrough bench/passthrough.sh
#   lf-hp        (only with LIBFUSE_PASSTHROUGH_HP set) libfuse's example/passthrough_hp,
#                its defaults: kernel passthrough for READ/WRITE, a thread per busy
#                request (fuse_session_loop_mt), splice, attributes cached for a day
#   lf-hp-uring  the same with -o io_uring (the kernel's FUSE-over-io_uring)
#   lf-hp-nopt   passthrough_hp --nopassthrough: READ/WRITE served by its threads (it
#                then turns on the writeback cache, which ringfuse's passthrough does not)
#   lf-hp-nopt-uring  the same with -o io_uring
#                Build (libfuse 3.18, meson, ninja-build, liburing-dev, g++):
#                  git clone https://github.com/libfuse/libfuse /tmp/libfuse  # tag fuse-3.18.2
#                  cd /tmp/libfuse && meson setup build -Denable-io-uring=true && ninja -C build
#                  LIBFUSE_PASSTHROUGH_HP=/tmp/libfuse/build/example/passthrough_hp bench/passthrough.sh
#
# Placements (PLACEMENTS, default "unpinned"; any of unpinned same split): unpinned lets the
# scheduler choose; same puts the server and fio on CPU 0; split puts the server on CPU 1
# and fio on CPU 0 (taskset). Server CPU: user + system time of all its threads (io-wq
# workers included; kernel passthrough work is done by the reader, not the server) over
# the job, from /proc/PID/stat, divided by the operations of the job (IOPS x seconds; fio's
# ramp second counted as a second of the same rate). Clock ticks are 10 ms: a job must run
# long enough (RUNTIME >= 3) for the figure to mean something.
#
# Metadata: JOBS="getattr create" TTL=0 bench/passthrough.sh OUT_DIR runs `stat` of one file
# (attributes never cached with TTL=0: every stat is a GETATTR) and create+close+unlink of
# fresh names, each a Python loop for RUNTIME seconds (ops/s; the loop's own cost, about
# 1 µs per call, is in every target's figure alike). TTL (seconds, default the server's
# 1 s) is passed to every ringfuse passthrough target as --ttl; TTL=0 runs passthrough_hp
# with --nocache (its only other setting: a day).
#
# Needs root, /dev/fuse and fio. Usage: bench/passthrough.sh [OUT_DIR]  (default
# bench/results/passthrough); RUNTIME (seconds per job, default 5) and REPS (default 3).
# Writes OUT_DIR/results.tsv (every run) and OUT_DIR/report.md (medians).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-bench/results/passthrough}
RUNTIME=${RUNTIME:-5}
REPS=${REPS:-3}
SIZE=${SIZE:-256M}
command -v fio >/dev/null || { echo "fio is missing: apt-get install -y fio" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "run as root (mounts FUSE and tmpfs)" >&2; exit 1; }

cargo build --release --example passthrough
BIN=${CARGO_TARGET_DIR:-target}/release/examples/passthrough

WORK=$(mktemp -d /tmp/ringfuse-ptbench.XXXXXX)
SRC=$WORK/src MNT=$WORK/mnt
mkdir -p "$SRC" "$MNT" "$OUT"
SERVER=
cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true
  umount -l "$MNT" 2>/dev/null || true
  umount -l "$SRC" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
mount -t tmpfs -o size=2G none "$SRC"

SERVER_CPU= CLIENT_CPU=
place() { # placement -> SERVER_CPU, CLIENT_CPU (taskset prefixes)
  case $1 in
    unpinned) SERVER_CPU=() CLIENT_CPU=() ;;
    same) SERVER_CPU=(taskset -c 0) CLIENT_CPU=(taskset -c 0) ;;
    split) SERVER_CPU=(taskset -c 1) CLIENT_CPU=(taskset -c 0) ;;
    *) echo "unknown placement $1 (unpinned, same, split)" >&2; exit 1 ;;
  esac
}
start() { # target -> sets DIR (where fio runs) and SERVER
  local cmd=()
  case $1 in
    tmpfs) DIR=$SRC; return ;;
    pt-ring | pt-kernel | pt-percpu | pt-old)
      local opt=() bin=$BIN
      [ "$1" = pt-kernel ] && opt=(-o passthrough)
      [ "$1" = pt-percpu ] && opt=(--per-cpu)
      [ "$1" = pt-old ] && bin=$PT_OLD_BIN
      [ -n "${TTL:-}" ] && opt+=(--ttl "$TTL")
      cmd=("$bin" "$SRC" "$MNT" "${opt[@]}") ;;
    lf-hp*)
      local opt=(--foreground)
      case $1 in *nopt*) opt+=(--nopassthrough) ;; esac
      case $1 in *uring) opt+=(-o io_uring) ;; esac
      [ "${TTL:-}" = 0 ] && opt+=(--nocache)
      cmd=("$LIBFUSE_PASSTHROUGH_HP" "${opt[@]}" "$SRC" "$MNT") ;;
  esac
  # taskset execs the server: $! is the server's own pid.
  "${SERVER_CPU[@]}" "${cmd[@]}" > "$WORK/server.out" 2> "$WORK/server.err" &
  SERVER=$!
  for _ in $(seq 1 200); do mountpoint -q "$MNT" && break; sleep 0.05; done
  mountpoint -q "$MNT" || { cat "$WORK/server.err" >&2; exit 1; }
  DIR=$MNT
}
ticks() { # pid -> user + system clock ticks of all its threads (0 without a server)
  [ -n "$1" ] || { echo 0; return; }
  awk '{ sub(/.*\) /, ""); print $12 + $13 }' "/proc/$1/stat"
}
stop() {
  if [ -n "$SERVER" ]; then
    umount "$MNT"
    wait "$SERVER" || true
    SERVER=
    # The server's exit line counts the READ/WRITE requests it served.
    grep -h "passthrough-counters" "$WORK/server.out" "$WORK/server.err" 2>/dev/null | tail -n 1 || true
  fi
}

job() { # name dir -> MiB/s (read or write) and IOPS (ops/s for the metadata jobs)
  local name=$1 dir=$2 args
  case $name in
    getattr | create)
      "${CLIENT_CPU[@]}" python3 - "$name" "$dir" "$RUNTIME" <<'PY'
import os, sys, time
name, d, runtime = sys.argv[1], sys.argv[2], float(sys.argv[3])
path = os.path.join(d, "bench.dat")
n, end = 0, time.monotonic() + runtime
if name == "getattr":
    while time.monotonic() < end:
        for _ in range(1000):
            os.stat(path)
        n += 1000
else:
    while time.monotonic() < end:
        for i in range(200):
            p = os.path.join(d, "c%d" % i)
            os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o644))
            os.unlink(p)
        n += 200
print("0\t%.0f" % (n / runtime))
PY
      return ;;
    seqread-1m) args=(--rw=read --bs=1M --iodepth=1) ;;
    seqwrite-1m) args=(--rw=write --bs=1M --iodepth=1) ;;
    randread-4k-qd1) args=(--rw=randread --bs=4k --iodepth=1 --direct=1 --ioengine=io_uring) ;;
    randread-4k-qd32) args=(--rw=randread --bs=4k --iodepth=32 --direct=1 --ioengine=io_uring) ;;
    randread-4k-qd32-2j) args=(--rw=randread --bs=4k --iodepth=32 --direct=1 --ioengine=io_uring
      --numjobs=2) ;;
  esac
  "${CLIENT_CPU[@]}" fio --name="$name" --directory="$dir" --filename=bench.dat --size="$SIZE" \
    --time_based --runtime="$RUNTIME" --ramp_time=1 --group_reporting \
    --output-format=json "${args[@]}" > "$WORK/fio.json"
  python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
side = j["write"] if j["write"]["io_bytes"] > 0 else j["read"]
print("%.1f\t%.0f" % (side["bw"] / 1024, side["iops"]))' "$WORK/fio.json"
}

JOBS=${JOBS:-"seqread-1m seqwrite-1m randread-4k-qd1 randread-4k-qd32 randread-4k-qd32-2j"}
PLACEMENTS=${PLACEMENTS:-unpinned}
TARGETS=${TARGETS:-"tmpfs pt-ring pt-kernel pt-percpu"}
if [ -n "${PT_OLD_BIN:-}" ]; then TARGETS="$TARGETS pt-old"; else echo "PT_OLD_BIN unset: no pt-old target"; fi
if [ -n "${LIBFUSE_PASSTHROUGH_HP:-}" ]; then
  [ -x "$LIBFUSE_PASSTHROUGH_HP" ] || { echo "LIBFUSE_PASSTHROUGH_HP=$LIBFUSE_PASSTHROUGH_HP is not an executable" >&2; exit 1; }
  TARGETS="$TARGETS lf-hp lf-hp-uring lf-hp-nopt lf-hp-nopt-uring"
else
  echo "LIBFUSE_PASSTHROUGH_HP unset: no libfuse targets (see the header for the build)"
fi
CLK_TCK=$(getconf CLK_TCK)
printf 'rep\tplacement\ttarget\tjob\tMiB/s\tIOPS\tserver_us_per_op\n' > "$OUT/results.tsv"
# Lay the file out once on the backing tmpfs, so every target reads the same bytes.
fio --name=layout --directory="$SRC" --filename=bench.dat --size="$SIZE" --rw=write --bs=1M \
  --output-format=terse > /dev/null
for rep in $(seq 1 "$REPS"); do
  for pl in $PLACEMENTS; do
    place "$pl"
    for t in $TARGETS; do
      start "$t"
      for j in $JOBS; do
        t0=$(ticks "$SERVER")
        r=$(job "$j" "$DIR")
        t1=$(ticks "$SERVER")
        # µs of server CPU per operation: CPU seconds / (IOPS x seconds of load: RUNTIME,
        # plus fio's ramp second).
        secs=$RUNTIME; case $j in getattr | create) ;; *) secs=$((RUNTIME + 1)) ;; esac
        us=$(python3 -c 'import sys; t, w, iops, hz = map(float, sys.argv[1:]); print("%.2f" % (t / hz / (iops * w) * 1e6 if iops else 0))' \
          "$((t1 - t0))" "$secs" "$(cut -f2 <<< "$r")" "$CLK_TCK")
        printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$rep" "$pl" "$t" "$j" "$r" "$us" | tee -a "$OUT/results.tsv"
      done
      stop
    done
  done
done

python3 - "$OUT" "$(uname -r)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$RUNTIME" "$REPS" <<'PY'
import csv, os, statistics, sys
out, kernel, cpus, load, runtime, reps = sys.argv[1:]
rows = list(csv.DictReader(open(f"{out}/results.tsv"), delimiter="\t"))
jobs = list(dict.fromkeys(r["job"] for r in rows))
targets = list(dict.fromkeys(r["target"] for r in rows))
places = list(dict.fromkeys(r["placement"] for r in rows))
def key(j):
    return "MiB/s" if j.startswith("seq") else "IOPS"
def unit(j):
    return "MiB/s" if j.startswith("seq") else ("ops/s" if j in ("getattr", "create") else "IOPS")
def cell(p, t, j, k):
    v = [float(r[k]) for r in rows if r["placement"] == p and r["target"] == t and r["job"] == j]
    return (statistics.median(v), min(v), max(v)) if v else None
def best(p, j, names):
    got = [(cell(p, t, j, key(j))[0], t) for t in names if cell(p, t, j, key(j))]
    return max(got) if got else None
rf = [t for t in targets if t.startswith("pt-") and t != "pt-old"]
lf = [t for t in targets if t.startswith("lf-")]
with open(f"{out}/report.md", "w") as f:
    f.write("# passthrough over tmpfs: ringfuse's example, libfuse's passthrough_hp, tmpfs itself\n\n")
    ttl = os.environ.get("TTL")
    if ttl:
        f.write(f"ringfuse passthrough targets run with `--ttl {ttl}`"
                + (", passthrough_hp with `--nocache`" if ttl == "0" else "") + ".\n\n")
    f.write(f"Linux {kernel}, {cpus} CPUs, load average at the end {load}; {runtime} s per job, "
            f"{reps} interleaved repetitions; medians (min-max); µs = server CPU time per "
            "operation (median). Produced by `bench/passthrough.sh`.\n\n")
    if lf:
        f.write("## Summary: each side's best mode\n\n"
                "| placement | job | ringfuse best | libfuse best | ratio | server µs/op ringfuse | libfuse |"
                " pt-ring / best lf-hp-nopt* |\n|---|---|---|---|---:|---:|---:|---:|\n")
        for p in places:
            for j in jobs:
                a, b = best(p, j, rf), best(p, j, lf)
                n = best(p, j, [t for t in lf if "nopt" in t])
                ring = cell(p, "pt-ring", j, key(j))
                if not a or not b:
                    continue
                us = lambda t: cell(p, t, j, "server_us_per_op")[0]
                vs_n = f"{ring[0] / n[0]:.2f} ({n[1]})" if ring and n else "-"
                f.write(f"| {p} | {j} ({unit(j)}) | {a[0]:,.0f} ({a[1]}) | {b[0]:,.0f} ({b[1]}) | "
                        f"{a[0] / b[0]:.2f} | {us(a[1]):.2f} | {us(b[1]):.2f} | {vs_n} |\n")
        f.write("\n")
    for p in places:
        f.write(f"## Placement: {p}\n\n")
        old = "pt-old" in targets
        f.write("| job | " + " | ".join(targets) + " | pt-ring / tmpfs | pt-kernel / tmpfs |"
                + (" pt-ring / pt-old |" if old else "") + "\n")
        f.write("|---|" + "---|" * (len(targets) + 2 + old) + "\n")
        for j in jobs:
            cells, med = [], {}
            for t in targets:
                c = cell(p, t, j, key(j))
                if not c:
                    cells.append("-")
                    continue
                m, lo, hi = c
                med[t] = m
                us = cell(p, t, j, "server_us_per_op")[0]
                cells.append(f"{m:,.0f} ({lo:,.0f}-{hi:,.0f})" + (f" {us:.2f} µs" if us else ""))
            ratio = lambda t: f"{med[t] / med['tmpfs']:.2f}" if med.get("tmpfs") and med.get(t) else "-"
            vs_old = f" {med['pt-ring'] / med['pt-old']:.2f} |" if old and med.get("pt-old") else ""
            f.write(f"| {j} ({unit(j)}) | " + " | ".join(cells) + f" | {ratio('pt-ring')} | {ratio('pt-kernel')} |{vs_old}\n")
        f.write("\n")
print(open(f"{out}/report.md").read())
PY
