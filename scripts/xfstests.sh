#!/usr/bin/env bash
# xfstests against the examples, as CI runs it (README "Testing"):
#
#   scripts/xfstests.sh [memfs|passthrough|all]     (default: all; needs root and /dev/fuse)
#
# - memfs, on the native transport: the whole `generic/quick` group plus the tests of
#   tests/xfstests/memfs.extra, minus tests/xfstests/memfs.exclude (one reason per test);
# - passthrough over a tmpfs directory: tests/xfstests/passthrough.list.
# RINGFUSE_XFS_TESTS="generic/001 generic/013" runs just those instead (both filesystems).
# A failure that is not excluded fails the run; tests the filesystem cannot run ("not run":
# reflink, block devices, ...) are counted and listed, not failed.
#
# The vendored source (../shared/vendor/xfstests-*.tar.gz, or XFSTESTS_TARBALL) is built
# once in target/xfstests/ (RINGFUSE_XFS_WORK), nothing outside the clone; its build needs
#   apt-get install -y autoconf automake libtool pkg-config libaio-dev xfslibs-dev \
#     libattr1-dev libacl1-dev liburing-dev libgdbm-dev uuid-dev attr acl bc psmisc \
#     xfsprogs gawk
# (.ci/run installs them). Two copies of the tree get two edits, both in common/rc:
# `_fs_type` reports `fuse.xfs-memfs`/`fuse.xfs-passthrough` as `fuse` (what the checks
# compare with), and, in memfs's copy only, a "cycle mount" is a remount, as xfstests does
# for tmpfs: a memfs mount starts empty, by design, so unmount + mount loses the data. The
# mount helper is tests/xfstests/mount.fuse.ringfuse, linked as
# /sbin/mount.fuse.xfs-{memfs,passthrough} for the run (the servers get those subtypes).
# Everything it mounts is unmounted and every server stopped on exit, also on failure or
# Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
which=${1:-all}
case "$which" in memfs|passthrough|all) ;; *) echo "usage: $0 [memfs|passthrough|all]" >&2; exit 2 ;; esac
work=${RINGFUSE_XFS_WORK:-$root/target/xfstests}
limit=${RINGFUSE_XFS_LIMIT:-2400}   # seconds per filesystem, against a hung run

fail() { echo "xfstests: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (mount(8), /dev/fuse)"
[ -c /dev/fuse ] || fail "no /dev/fuse"

tarball=${XFSTESTS_TARBALL:-}
if [ -z "$tarball" ]; then
  for d in "$root/../shared/vendor" /work/shared/vendor; do
    for t in "$d"/xfstests-*.tar.gz; do [ -f "$t" ] && tarball=$t && break 2; done
  done
fi
[ -n "$tarball" ] && [ -f "$tarball" ] ||
  fail "the vendored xfstests tarball is missing (../shared/vendor/xfstests-*.tar.gz; or set XFSTESTS_TARBALL)"
for tool in make gcc autoconf libtoolize xfs_io getfattr setfacl bc gawk fuser; do
  command -v "$tool" >/dev/null || fail "$tool is missing: install the build dependencies listed in $0"
done

echo "=== xfstests: building the examples (release) ==="
cargo build --release --example memfs --example passthrough
bin_dir="${CARGO_TARGET_DIR:-$root/target}/release/examples"

mkdir -p "$work"
stamp="$work/src/.built-$(sha256sum "$tarball" | cut -c1-16)"
if [ ! -e "$stamp" ]; then
  echo "=== xfstests: building $(basename "$tarball") in $work/src (a few minutes) ==="
  rm -rf "$work/src" && mkdir -p "$work/src"
  tar -xzf "$tarball" -C "$work/src"
  tree=$(find "$work/src" -mindepth 1 -maxdepth 1 -type d | head -n 1)
  if ! (cd "$tree" && make -j"$(nproc)") >"$work/build.log" 2>&1; then
    tail -n 30 "$work/build.log" >&2
    fail "building xfstests failed (whole log: $work/build.log)"
  fi
  ln -sfn "$tree" "$work/src/tree"
  touch "$stamp"
fi

# ---- cleanup: every mount under $work, every server, the helper links ---------------------
helpers=(/sbin/mount.fuse.xfs-memfs /sbin/mount.fuse.xfs-passthrough)
cleanup() {
  local m dev
  for m in $(awk -v w="$work/" 'index($5, w) == 1 { print $5 }' /proc/self/mountinfo | sort -r); do
    dev=$(awk -v d="$m" '$5 == d { print $3 }' /proc/self/mountinfo | head -n 1 | cut -d: -f2)
    if [ -n "$dev" ] && [ -w "/sys/fs/fuse/connections/$dev/abort" ]; then
      echo 1 >"/sys/fs/fuse/connections/$dev/abort" || true
    fi
    umount -l "$m" 2>/dev/null || true
  done
  pkill -f "^$bin_dir/(memfs|passthrough) " 2>/dev/null || true
  sleep 1
  pkill -9 -f "^$bin_dir/(memfs|passthrough) " 2>/dev/null || true
  for h in "${helpers[@]}"; do
    if [ "$(readlink "$h" 2>/dev/null)" = "$root/tests/xfstests/mount.fuse.ringfuse" ]; then
      rm -f "$h"
    fi
  done
}
trap cleanup EXIT
trap 'exit 130' INT TERM
cleanup
for h in "${helpers[@]}"; do ln -sfn "$root/tests/xfstests/mount.fuse.ringfuse" "$h"; done
export RINGFUSE_XFS_BIN=$bin_dir

# One filesystem: a fresh copy of the tree, its config, one `check` run, the counts.
# Args: NAME, then `check`'s arguments.
status=0
run_fs() {
  local fs=$1; shift
  local tree="$work/$fs" logs="$work/$fs-logs" out="$work/$fs.log"
  rm -rf "$tree" "$logs" && mkdir -p "$logs"
  cp -a "$(readlink -f "$work/src/tree")" "$tree"
  sed -i "s|-e 's/fuse.ceph-fuse/ceph-fuse/'|&  -e 's/^fuse\\\\.xfs-$fs\$/fuse/'|" "$tree/common/rc"
  grep -q "fuse\\\\.xfs-$fs" "$tree/common/rc" || fail "common/rc: the _fs_type edit did not apply"
  if [ "$fs" = memfs ]; then
    # _scratch_cycle_mount and _test_cycle_mount: remount, as for tmpfs.
    [ "$(grep -c '^    tmpfs)$' "$tree/common/rc")" -ge 2 ] || fail "common/rc: no tmpfs) cases to extend"
    sed -i '/^_scratch_cycle_mount()/,/^}/ s/^    tmpfs)$/    tmpfs|fuse)/; /^_test_cycle_mount()/,/^}/ s/^    tmpfs)$/    tmpfs|fuse)/' \
      "$tree/common/rc"
    [ "$(grep -c '^    tmpfs|fuse)$' "$tree/common/rc")" = 2 ] || fail "common/rc: the cycle-mount edit did not apply"
  fi
  mkdir -p "$work/mnt/$fs/test" "$work/mnt/$fs/scratch"
  local test_dev scratch_dev
  if [ "$fs" = passthrough ]; then
    mkdir -p "$work/mnt/ptsrc"
    mount -t tmpfs -o size=8G ringfuse-xfs "$work/mnt/ptsrc"
    mkdir -p "$work/mnt/ptsrc/rf_pt_test" "$work/mnt/ptsrc/rf_pt_scratch"
    test_dev=rf_pt_test scratch_dev=rf_pt_scratch
    export RINGFUSE_XFS_ARGS="" RINGFUSE_XFS_PTSRC=$work/mnt/ptsrc
  else
    test_dev=rf_memfs_test scratch_dev=rf_memfs_scratch
    export RINGFUSE_XFS_ARGS="--transport native"
  fi
  export RINGFUSE_XFS_LOGS=$logs
  cat >"$tree/local.config" <<CONF
export FSTYP=fuse
export FUSE_SUBTYP=.xfs-$fs
export TEST_DEV=$test_dev
export TEST_DIR=$work/mnt/$fs/test
export SCRATCH_DEV=$scratch_dev
export SCRATCH_MNT=$work/mnt/$fs/scratch
CONF
  echo "=== xfstests: $fs: ./check $* ==="
  local started=$SECONDS rc=0
  (cd "$tree" && timeout -k 30 "$limit" ./check "$@") 2>&1 | tee "$out" || rc=$?
  local secs=$((SECONDS - started))
  cleanup_mounts_of "$fs"
  local ran notrun failed
  ran=$(sed -n 's/^Ran: //p' "$out" | wc -w)
  notrun=$(sed -n 's/^Not run: //p' "$out" | wc -w)
  failed=$(sed -n 's/^Failures: //p' "$out" | wc -w)
  echo "=== xfstests: $fs: $((ran - notrun - failed)) passed, $failed failed, $notrun not run, of $ran, in ${secs}s (log $out, servers' logs $logs) ==="
  if [ "$failed" -gt 0 ]; then
    echo "xfstests: $fs: FAILED: $(sed -n 's/^Failures: //p' "$out") (results in $tree/results/)" >&2
    status=1
  elif [ "$ran" -eq 0 ] || ! grep -q '^Passed all' "$out"; then
    echo "xfstests: $fs: FAILED: check did not finish (exit $rc, limit ${limit}s)" >&2
    status=1
  fi
}

# Unmounts what one filesystem's run left (check unmounts its own; this is for a killed run).
cleanup_mounts_of() {
  local m
  for m in "$work/mnt/$1/scratch" "$work/mnt/$1/test"; do
    if mountpoint -q "$m"; then umount -l "$m" || true; fi
  done
  if [ "$1" = passthrough ] && mountpoint -q "$work/mnt/ptsrc"; then umount -l "$work/mnt/ptsrc" || true; fi
}

list() { sed 's/#.*//' "$root/tests/xfstests/$1" | xargs; }

only=${RINGFUSE_XFS_TESTS:-}
if [ "$which" = memfs ] || [ "$which" = all ]; then
  # shellcheck disable=SC2046 # the lists are words
  if [ -n "$only" ]; then set -- $only; else set -- -g quick $(list memfs.extra); fi
  # check wants its options before the tests.
  run_fs memfs -E "$root/tests/xfstests/memfs.exclude" "$@"
fi
if [ "$which" = passthrough ] || [ "$which" = all ]; then
  # shellcheck disable=SC2046
  if [ -n "$only" ]; then set -- $only; else set -- $(list passthrough.list); fi
  run_fs passthrough -E "$root/tests/xfstests/passthrough.exclude" "$@"
fi
exit $status
