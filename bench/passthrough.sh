#!/usr/bin/env bash
# The passthrough example over a tmpfs directory, against that tmpfs itself (issue 7):
# sequential read and write (1 MiB blocks) and 4 KiB random read (O_DIRECT, QD1 and QD32),
# for three targets, interleaved (A B C A B C ...), REPS times; medians with min-max.
#
#   tmpfs        the backing tmpfs directly (the ceiling)
#   pt-ring      passthrough, every backing read/write submitted to the loop's ring
#   pt-kernel    passthrough with -o passthrough: the kernel reads and writes the backing
#                file itself (FUSE_PASSTHROUGH); the server sees no READ or WRITE
#   pt-old       (only with PT_OLD_BIN set) another build of the passthrough example, the
#                same way as pt-ring: for before/after comparisons. The hand-written state
#                machine version before the AsyncFilesystem rewrite:
#                  git worktree add /tmp/pt-old c3356f2
#                  cargo build --release --example passthrough \
#                    --manifest-path /tmp/pt-old/Cargo.toml --target-dir /tmp/pt-old-target
#                  PT_OLD_BIN=/tmp/pt-old-target/release/examples/passthrough bench/passthrough.sh
#
# Metadata: JOBS="getattr create" TTL=0 bench/passthrough.sh OUT_DIR runs `stat` of one file
# (attributes never cached with TTL=0: every stat is a GETATTR) and create+close+unlink of
# fresh names, each a Python loop for RUNTIME seconds (ops/s; the loop's own cost, about
# 1 µs per call, is in every target's figure alike). TTL (seconds, default the server's
# 1 s) is passed to every passthrough target as --ttl.
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

start() { # target -> sets DIR (where fio runs)
  case $1 in
    tmpfs) DIR=$SRC ;;
    pt-ring | pt-kernel | pt-old)
      local opt=() bin=$BIN
      [ "$1" = pt-kernel ] && opt=(-o passthrough)
      [ "$1" = pt-old ] && bin=$PT_OLD_BIN
      [ -n "${TTL:-}" ] && opt+=(--ttl "$TTL")
      "$bin" "$SRC" "$MNT" "${opt[@]}" > "$WORK/server.out" 2> "$WORK/server.err" &
      SERVER=$!
      for _ in $(seq 1 200); do mountpoint -q "$MNT" && break; sleep 0.05; done
      mountpoint -q "$MNT" || { cat "$WORK/server.err" >&2; exit 1; }
      DIR=$MNT ;;
  esac
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
      python3 - "$name" "$dir" "$RUNTIME" <<'PY'
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
  esac
  fio --name="$name" --directory="$dir" --filename=bench.dat --size="$SIZE" \
    --time_based --runtime="$RUNTIME" --ramp_time=1 --group_reporting \
    --output-format=json "${args[@]}" > "$WORK/fio.json"
  python3 -c '
import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
side = j["write"] if j["write"]["io_bytes"] > 0 else j["read"]
print("%.1f\t%.0f" % (side["bw"] / 1024, side["iops"]))' "$WORK/fio.json"
}

JOBS=${JOBS:-"seqread-1m seqwrite-1m randread-4k-qd1 randread-4k-qd32"}
TARGETS="tmpfs pt-ring pt-kernel"
if [ -n "${PT_OLD_BIN:-}" ]; then TARGETS="$TARGETS pt-old"; else echo "PT_OLD_BIN unset: no pt-old target"; fi
printf 'rep\ttarget\tjob\tMiB/s\tIOPS\n' > "$OUT/results.tsv"
# Lay the file out once on the backing tmpfs, so every target reads the same bytes.
fio --name=layout --directory="$SRC" --filename=bench.dat --size="$SIZE" --rw=write --bs=1M \
  --output-format=terse > /dev/null
for rep in $(seq 1 "$REPS"); do
  for t in $TARGETS; do
    start "$t"
    for j in $JOBS; do
      r=$(job "$j" "$DIR")
      printf '%s\t%s\t%s\t%s\n' "$rep" "$t" "$j" "$r" | tee -a "$OUT/results.tsv"
    done
    stop
  done
done

python3 - "$OUT" "$(uname -r)" "$(nproc)" "$(cut -d' ' -f1-3 /proc/loadavg)" "$RUNTIME" "$REPS" <<'PY'
import csv, os, statistics, sys
out, kernel, cpus, load, runtime, reps = sys.argv[1:]
rows = list(csv.DictReader(open(f"{out}/results.tsv"), delimiter="\t"))
jobs = list(dict.fromkeys(r["job"] for r in rows))
targets = list(dict.fromkeys(r["target"] for r in rows))
def cell(t, j, key):
    v = [float(r[key]) for r in rows if r["target"] == t and r["job"] == j]
    return statistics.median(v), min(v), max(v)
with open(f"{out}/report.md", "w") as f:
    f.write("# passthrough over tmpfs, against tmpfs\n\n")
    ttl = os.environ.get("TTL")
    if ttl:
        f.write(f"Passthrough targets run with `--ttl {ttl}`.\n\n")
    f.write(f"Linux {kernel}, {cpus} CPUs, load average at the end {load}; fio {runtime} s per job, "
            f"{reps} interleaved repetitions; medians (min-max). Produced by `bench/passthrough.sh`.\n\n")
    old = "pt-old" in targets
    f.write("| job | " + " | ".join(targets) + " | pt-ring / tmpfs | pt-kernel / tmpfs |"
            + (" pt-ring / pt-old |" if old else "") + "\n")
    f.write("|---|" + "---|" * (len(targets) + 2 + old) + "\n")
    for j in jobs:
        key = "MiB/s" if j.startswith("seq") else "IOPS"
        unit = "MiB/s" if key == "MiB/s" else ("ops/s" if j in ("getattr", "create") else "IOPS")
        cells, med = [], {}
        for t in targets:
            m, lo, hi = cell(t, j, key)
            med[t] = m
            cells.append(f"{m:,.0f} ({lo:,.0f}-{hi:,.0f})")
        ratio = lambda t: f"{med[t] / med['tmpfs']:.2f}" if med.get("tmpfs") else "-"
        vs_old = f" {med['pt-ring'] / med['pt-old']:.2f} |" if old and med.get("pt-old") else ""
        f.write(f"| {j} ({unit}) | " + " | ".join(cells) + f" | {ratio('pt-ring')} | {ratio('pt-kernel')} |{vs_old}\n")
print(open(f"{out}/report.md").read())
PY
