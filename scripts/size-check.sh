#!/usr/bin/env bash
# Static binaries: size budgets, static linking, the libc-free hello, idle memory.
#
#   scripts/size-check.sh          # everything (mounts need root and /dev/fuse)
#
# 1. Builds every example as a static musl binary with the `release-small` profile and
#    checks each is statically linked (no ELF interpreter, no NEEDED entry; `file`, `ldd`).
# 2. Builds `hello` and `memfs` again with std rebuilt for size (`release-min`: -Zbuild-std
#    and panic=immediate-abort, on stable through RUSTC_BOOTSTRAP=1 as the no_std CI step).
# 3. Builds examples/hello-nolibc (its own workspace) and checks that it links no libc: no
#    undefined symbol, and no libc symbol among those it defines.
# 4. Mounts the static `hello`, the `release-min` `hello`, `hello-nolibc` and the static
#    `memfs` once each in a fresh temporary directory: reads the file back, records the
#    buffer memory the server reports and its idle resident memory (VmRSS), unmounts and
#    expects exit status 0. Needs root and /dev/fuse: fails loudly without them unless
#    RINGFUSE_SKIP_MOUNT_TESTS=1.
# 5. Checks the budgets below and prints a table of what it measured.
#
# CARGO_TARGET_DIR is honoured (default: target/ at the repository root, which the
# hello-nolibc crate then shares). SIZE_CHECK_BUILD_STD=0 skips step 2 (and its budget).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target}"
case "$CARGO_TARGET_DIR" in /*) ;; *) CARGO_TARGET_DIR="$root/$CARGO_TARGET_DIR" ;; esac
triple=x86_64-unknown-linux-musl
out="$CARGO_TARGET_DIR/$triple"

# Budgets, in KiB. The 300 KiB `hello` budget is checked on the `release-min` build: with
# the prebuilt std of a stable toolchain, every static binary carries std's panic and
# backtrace machinery (gimli, addr2line, libunwind, rustc-demangle, miniz: about 215 KiB
# of hello's 561), which no profile setting removes; that build is held to STD_HELLO_KIB.
# Mounting for every user (fusermount3 through std::process, the auto-unmount watcher, the
# mount.fuse.NAME helper and their error texts) added about 85 KiB to each std binary
# (hello 477 -> 561, memfs 569 -> 665, hello release-min 143 -> 207); the budgets were
# raised with it, from 512 and 600.
HELLO_KIB=300
STD_HELLO_KIB=600
MEMFS_KIB=704
NOLIBC_KIB=128
IDLE_RSS_KIB=2048

fail=0
failed() {
  echo "FAIL: $*" >&2
  fail=1
}
kib() { echo $((($(stat -c %s "$1") + 1023) / 1024)); }
rows=()

# ---------------------------------------------------------------------------------------
# Static linking

# Fails unless $1 is a static executable: no PT_INTERP, no dynamic NEEDED entries.
check_static() {
  local bin=$1 name
  name=$(basename "$bin")
  if readelf -lW "$bin" | grep -q 'INTERP'; then
    failed "$name has an ELF interpreter (dynamically linked)"
  fi
  if readelf -dW "$bin" 2>/dev/null | grep -q '(NEEDED)'; then
    failed "$name needs shared libraries: $(readelf -dW "$bin" | grep NEEDED)"
  fi
  local f l
  f=$(file -b "$bin" 2>/dev/null || echo "(no file command)")
  l=$(ldd "$bin" 2>&1 || true)
  case "$f" in
    *"statically linked"* | *"static-pie linked"* | "(no file command)") ;;
    *) failed "$name: file says: $f" ;;
  esac
  case "$l" in
    *"not a dynamic executable"* | *"statically linked"*) ;;
    *) failed "$name: ldd says: $l" ;;
  esac
  printf '  %-14s %7s KiB  %s | ldd: %s\n' "$name" "$(kib "$bin")" "${f%%, BuildID*}" \
    "$(echo "$l" | tr -d '\t')"
}

echo "--- static musl examples (profile release-small)"
mkdir -p "$CARGO_TARGET_DIR"
json="$CARGO_TARGET_DIR/size-check-examples.json"
cargo build --profile release-small --target "$triple" --examples \
  --message-format=json-render-diagnostics >"$json"
mapfile -t examples < <(sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' "$json")
rm -f "$json"
[ "${#examples[@]}" -gt 0 ] || failed "cargo built no example"
for bin in "${examples[@]}"; do
  check_static "$bin"
done
hello="$out/release-small/examples/hello"
memfs="$out/release-small/examples/memfs"

hello_min= memfs_min=
if [ "${SIZE_CHECK_BUILD_STD:-1}" != 0 ]; then
  echo "--- hello and memfs with std rebuilt for size (profile release-min)"
  RUSTC_BOOTSTRAP=1 RUSTFLAGS="-Zunstable-options -Cpanic=immediate-abort" \
    cargo build -Zbuild-std=std,panic_abort --profile release-min --target "$triple" \
    --example hello --example memfs
  hello_min="$out/release-min/examples/hello"
  memfs_min="$out/release-min/examples/memfs"
  check_static "$hello_min"
  check_static "$memfs_min"
fi

echo "--- hello-nolibc (examples/hello-nolibc, its own workspace)"
(
  cd examples/hello-nolibc
  cargo build --locked --profile release-small
  cargo build --locked --profile release-small-syms
)
nolibc="$out/release-small/hello-nolibc"
nolibc_syms="$out/release-small-syms/hello-nolibc"
check_static "$nolibc"
if readelf -SW "$nolibc" | grep -q '\.dynamic'; then
  failed "hello-nolibc has a .dynamic section"
fi
undefined=$(nm -u "$nolibc_syms")
if [ -n "$undefined" ]; then
  failed "hello-nolibc has undefined symbols (something expects a libc): $undefined"
fi
# The C-named symbols it defines: origin's entry point and memcpy family, nothing of libc's.
c_symbols=$(nm -g --defined-only "$nolibc_syms" | awk '{print $3}' | grep -v '^_ZN\|^_R' |
  sort | tr '\n' ' ')
echo "  C-named global symbols: $c_symbols"
libc_names='^(__libc_|__init_libc|__stdio|__syscall|__errno|__environ|__dls|_dl_|pthread_)'
libc_names+='|^(environ|errno|malloc|free|printf|puts|write|open|mount)$'
libc_hits=$(echo "$c_symbols" | tr ' ' '\n' | grep -E "$libc_names" || true)
if [ -n "$libc_hits" ]; then
  failed "hello-nolibc defines libc symbols: $libc_hits"
fi

# ---------------------------------------------------------------------------------------
# Mounting: content, buffer memory, idle RSS

can_mount=1
if [ "$(id -u)" != 0 ] || [ ! -e /dev/fuse ]; then
  why="not root, or no /dev/fuse"
  echo "!!!!! size-check mount checks NOT RUN: $why !!!!!" >&2
  if [ "${RINGFUSE_SKIP_MOUNT_TESTS:-}" = 1 ]; then
    echo "(skipped because RINGFUSE_SKIP_MOUNT_TESTS=1)" >&2
    can_mount=0
  else
    echo "FAIL: cannot mount: $why; run as root, or set RINGFUSE_SKIP_MOUNT_TESTS=1" >&2
    exit 1
  fi
fi

scratch=$(mktemp -d /tmp/ringfuse-size-XXXXXX)
server_pid=
# Stops the current server, if any: lazy unmount, then SIGTERM, then SIGKILL, and reaps it.
stop_server() {
  local mnt=$1 i
  umount -l "$mnt" 2>/dev/null || true
  if [ -n "$server_pid" ]; then
    kill -TERM "$server_pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do
      kill -0 "$server_pid" 2>/dev/null || break
      sleep 0.1
    done
    kill -KILL "$server_pid" 2>/dev/null || true
    wait "$server_pid" 2>/dev/null || true
    server_pid=
  fi
}
cleanup() {
  local m
  for m in "$scratch"/*/mnt; do
    [ -d "$m" ] && stop_server "$m"
  done
  rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mounted() { awk -v m="$1" '$5 == m { found = 1 } END { exit !found }' /proc/self/mountinfo; }

# serve NAME BIN CHECK: mounts BIN on a fresh directory, runs CHECK (a shell snippet run in
# the mount point), records its buffer memory line and idle RSS, unmounts, and expects exit
# status 0. Sets $rss (KiB, empty if unknown).
serve() {
  local name=$1 bin=$2 check=$3 dir mnt i status buffers
  dir="$scratch/$name"
  mnt="$dir/mnt"
  rss=
  mkdir -p "$mnt"
  "$bin" "$mnt" >"$dir/stdout" 2>"$dir/stderr" &
  server_pid=$!
  for ((i = 0; i < 150; i++)); do
    mounted "$mnt" && break
    kill -0 "$server_pid" 2>/dev/null || break
    sleep 0.1
  done
  if ! mounted "$mnt"; then
    failed "$name did not mount (it exited, or 15 s passed); stderr: $(cat "$dir/stderr")"
    stop_server "$mnt"
    return
  fi
  if ! (cd "$mnt" && timeout 10 sh -ec "$check") >"$dir/check" 2>&1; then
    failed "$name: check failed: $check: $(cat "$dir/check")"
  fi
  sleep 1 # idle
  rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$server_pid/status" 2>/dev/null || true)
  buffers=$(grep -m1 'buffer memory' "$dir/stdout" || echo "(no buffer memory line)")
  echo "  $name: idle VmRSS ${rss:-?} KiB; says: $buffers"
  if ! timeout 10 umount "$mnt"; then
    failed "$name: umount failed"
    stop_server "$mnt"
    return
  fi
  status=
  for ((i = 0; i < 100; i++)); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
      wait "$server_pid" && status=0 || status=$?
      server_pid=
      break
    fi
    sleep 0.1
  done
  [ "$status" = 0 ] || failed "$name: exit status ${status:-(still running 10 s after umount)}"
  stop_server "$mnt"
}

hello_check='test "$(cat hello.txt)" = "Hello, world!"; test "$(ls)" = hello.txt'
memfs_check='mkdir d; echo data > d/f; test "$(cat d/f)" = data; test "$(ls d)" = f'

rss_hello=- rss_hello_min=- rss_nolibc=- rss_memfs=-
if [ "$can_mount" = 1 ]; then
  echo "--- mounting each once (idle VmRSS is read 1 s after the check)"
  serve hello "$hello" "$hello_check"
  rss_hello=${rss:--}
  if [ -n "$hello_min" ]; then
    serve hello-min "$hello_min" "$hello_check"
    rss_hello_min=${rss:--}
  fi
  serve hello-nolibc "$nolibc" "$hello_check"
  rss_nolibc=${rss:--}
  serve memfs "$memfs" "$memfs_check"
  rss_memfs=${rss:--}
  if [ "$rss_hello" != - ] && [ "$rss_hello" -gt "$IDLE_RSS_KIB" ]; then
    failed "idle hello uses $rss_hello KiB resident, over $IDLE_RSS_KIB KiB"
  fi
fi

# ---------------------------------------------------------------------------------------
# Budgets and the table

budget() { # NAME BIN LIMIT_KIB RSS
  local size
  size=$(kib "$2")
  local rss=$4
  [ "$rss" = - ] || rss="$rss KiB"
  rows+=("$(printf '| %-44s | %7s KiB | %7s KiB | %9s |' "$1" "$size" "$3" "$rss")")
  [ "$size" -le "$3" ] || failed "$1 is $size KiB, over its $3 KiB budget"
}
budget "hello (release-small)" "$hello" "$STD_HELLO_KIB" "$rss_hello"
budget "memfs (release-small)" "$memfs" "$MEMFS_KIB" "$rss_memfs"
if [ -n "$hello_min" ]; then
  budget "hello (release-min, std rebuilt)" "$hello_min" "$HELLO_KIB" "$rss_hello_min"
  budget "memfs (release-min, std rebuilt)" "$memfs_min" "$MEMFS_KIB" -
fi
budget "hello-nolibc (release-small)" "$nolibc" "$NOLIBC_KIB" "$rss_nolibc"

echo
printf '| %-44s | %11s | %11s | %9s |\n' "binary (static, $triple)" size budget "idle RSS"
echo "|----------------------------------------------|-------------|-------------|-----------|"
printf '%s\n' "${rows[@]}"
if [ "$fail" != 0 ]; then
  echo "size-check: FAILED" >&2
  exit 1
fi
echo "size-check: ok"
