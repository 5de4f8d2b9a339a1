#!/usr/bin/env bash
# Builds the wire fuzzer (tests/fuzz; YOKAN_FUZZ=ON builds the library and the
# harness with AddressSanitizer + UBSan at -O1) and runs it for SECONDS.
#
#   tools/fuzz.sh SECONDS [fuzz_wire options...]
#   tools/fuzz.sh 600 --no-hello --seed 42
#
# fuzz_wire options: --seed S (default random, printed), --no-hello (no
# mutated HELLOs at all), --no-hello-address (mutated HELLOs, but their worker
# address intact), --out DIR (where the messages leading to each crash are
# saved; default BUILD/out, emptied at the start of each run).
#
# The build directory is kept between runs so that only the first run pays
# for the sanitizer build: $YOKAN_FUZZ_BUILD if set, else a directory in the
# system temp dir named after this checkout. Only the harness and the library
# are built, with the in-memory backends, the log store, LMDB (the harness's
# persistent provider) and Lua: the other storage libraries are not what the
# fuzzer exercises (request decoding happens above the backends).
#
# Prints the requests sent and the unique crash count; exits 0 only when the
# run had no crash, sanitizer report, hang or liveness failure. The server's
# notices about each dropped message go to BUILD/server.log.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
if [[ $# -lt 1 || ! "$1" =~ ^[0-9]+$ ]]; then
  echo "usage: tools/fuzz.sh SECONDS [fuzz_wire options...]" >&2
  exit 2
fi
seconds="$1"
shift
tag="$(printf '%s' "$root" | cksum | cut -d' ' -f1)"
build="${YOKAN_FUZZ_BUILD:-${TMPDIR:-/tmp}/yokan-fuzz-$(id -u)-$tag}"
mkdir -p "$build"
start=$(date +%s)
if [[ ! -f "$build/CMakeCache.txt" ]]; then
  cmake -S "$root" -B "$build" -G Ninja -DYOKAN_FUZZ=ON -DENABLE_PYTHON=OFF \
    -DENABLE_LMDB=AUTO -DENABLE_LUA=AUTO -DENABLE_ROCKSDB=OFF -DENABLE_LEVELDB=OFF \
    -DENABLE_BERKELEYDB=OFF -DENABLE_GDBM=OFF -DENABLE_TKRZW=OFF \
    -DCMAKE_BUILD_TYPE=Debug -DCMAKE_CXX_FLAGS_DEBUG="-O1 -g" >"$build/cmake.log" 2>&1 ||
    { cat "$build/cmake.log"; exit 1; }
fi
cmake --build "$build" -j "$(nproc)" --target fuzz_wire >"$build/build.log" 2>&1 ||
  { tail -50 "$build/build.log"; exit 1; }
echo "fuzz: build ready in $(($(date +%s) - start)) s ($build)"
# The server logs a line per dropped message on stderr, which would drown the
# sanitizers' reports: those lines go to server.log only. The fuzzer's own
# lines (stdout) are shown last, once every report has been printed.
set +e
rm -rf "$build/out"
"$build/tests/fuzz/fuzz_wire" --seconds "$seconds" --out "$build/out" "$@" >"$build/fuzz.out" \
  2> >(tee "$build/server.log" | grep -v '^\[mochi-yokan\] dropped' >&2)
status=$?
wait
cat "$build/fuzz.out"
exit "$status"
