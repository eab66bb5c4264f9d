#!/usr/bin/env bash
# The passthrough example over a tmpfs directory, against that tmpfs itself (issue 7):
# sequential read and write (1 MiB blocks) and 4 KiB random read (O_DIRECT, QD1 and QD32),
# for three targets, interleaved (A B C A B C ...), REPS times; medians with min-max.
#
#   tmpfs        the backing tmpfs directly (the ceiling)
#   pt-ring      passthrough, every backing read/write submitted to the loop's ring
#   pt-kernel    passthrough with -o passthrough: the kernel reads and writes the backing
#                file itself (FUSE_PASSTHROUGH); the server sees no READ or WRITE
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
    pt-ring | pt-kernel)
      local opt=()
      [ "$1" = pt-kernel ] && opt=(-o passthrough)
      "$BIN" "$SRC" "$MNT" "${opt[@]}" > "$WORK/server.out" 2> "$WORK/server.err" &
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

job() { # name dir -> MiB/s (read or write)
  local name=$1 dir=$2 args
  case $name in
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

JOBS="seqread-1m seqwrite-1m randread-4k-qd1 randread-4k-qd32"
TARGETS="tmpfs pt-ring pt-kernel"
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
import csv, statistics, sys
out, kernel, cpus, load, runtime, reps = sys.argv[1:]
rows = list(csv.DictReader(open(f"{out}/results.tsv"), delimiter="\t"))
jobs = list(dict.fromkeys(r["job"] for r in rows))
targets = list(dict.fromkeys(r["target"] for r in rows))
def cell(t, j, key):
    v = [float(r[key]) for r in rows if r["target"] == t and r["job"] == j]
    return statistics.median(v), min(v), max(v)
with open(f"{out}/report.md", "w") as f:
    f.write("# passthrough over tmpfs, against tmpfs\n\n")
    f.write(f"Linux {kernel}, {cpus} CPUs, load average at the end {load}; fio {runtime} s per job, "
            f"{reps} interleaved repetitions; medians (min-max). Produced by `bench/passthrough.sh`.\n\n")
    f.write("| job | " + " | ".join(targets) + " | pt-ring / tmpfs | pt-kernel / tmpfs |\n")
    f.write("|---|" + "---|" * (len(targets) + 2) + "\n")
    for j in jobs:
        key = "MiB/s" if j.startswith("seq") else "IOPS"
        unit = "MiB/s" if key == "MiB/s" else "IOPS"
        cells, med = [], {}
        for t in targets:
            m, lo, hi = cell(t, j, key)
            med[t] = m
            cells.append(f"{m:,.0f} ({lo:,.0f}-{hi:,.0f})")
        ratio = lambda t: f"{med[t] / med['tmpfs']:.2f}" if med.get("tmpfs") else "-"
        f.write(f"| {j} ({unit}) | " + " | ".join(cells) + f" | {ratio('pt-ring')} | {ratio('pt-kernel')} |\n")
print(open(f"{out}/report.md").read())
PY
