#!/usr/bin/env bash
# Installs the build tree BUILD_DIR into a scratch prefix, then builds
# consumer.cpp against it twice, with find_package(yokan) and with
# pkg-config, and runs both programs.
#   check.sh BUILD_DIR SCRATCH_DIR
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
build="$1"
scratch="$2"
rm -rf "$scratch"
prefix="$scratch/prefix"
cmake --install "$build" --prefix "$prefix" >/dev/null
libdir="$(dirname "$(find "$prefix" -name 'libyokan.so' | head -1)")"

cmake -S "$here" -B "$scratch/with-cmake" -G Ninja -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_BUILD_RPATH="$libdir" >/dev/null
cmake --build "$scratch/with-cmake" >/dev/null
"$scratch/with-cmake/consumer"

export PKG_CONFIG_PATH="$libdir/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
# shellcheck disable=SC2046 # pkg-config prints several flags on purpose
c++ -std=c++17 -o "$scratch/with-pkg-config" "$here/consumer.cpp" \
  $(pkg-config --cflags --libs yokan) -Wl,-rpath,"$libdir"
"$scratch/with-pkg-config"
