#!/usr/bin/env bash
# The test command of README.md (and of CI): every test of the workspace, then the mount
# suites of memfs and hello again in the other transport modes, so that the whole suite
# runs on each: the default run is `auto` (the native FUSE-over-io_uring transport when
# /sys/module/fuse/parameters/enable_uring is Y, as .ci/run sets it), then `classic`, then
# `native-percpu` (one pinned loop per CPU). Needs root and /dev/fuse.
set -euo pipefail
cd "$(dirname "$0")/.."
for mode in classic native-percpu; do
  echo "=== memfs and hello mount suites, transport mode: $mode ==="
  RINGFUSE_MEMFS_TRANSPORT=$mode cargo test --test memfs --test hello
done
echo "=== every test, default transport (auto) ==="
cargo test --workspace --all-targets
