#!/usr/bin/env bash
# Builds the checkout into a private staging tree that Python can import
# without `pip install`, so that several checkouts (git worktrees) can be
# built and tested side by side on one machine without touching
# site-packages.
#
#   tools/dev-build.sh STAGE_DIR [extra cmake -D options...]
#   PYTHONPATH=STAGE_DIR python3 -m pytest -q tests/python/test_basic.py
#
# The build directory is STAGE_DIR/build; the compiled modules go to
# STAGE_DIR/mochi/yokan and the pure-Python files are linked there from the
# checkout (edits to them need no rebuild).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
stage="$(mkdir -p "$1" && cd "$1" && pwd)"
shift
cmake -S "$root" -B "$stage/build" -G Ninja -DCMAKE_INSTALL_PREFIX="$stage" \
  -DPython3_EXECUTABLE="$(command -v python3)" \
  -Dpybind11_DIR="$(python3 -m pybind11 --cmakedir)" \
  -DYOKAN_WHEEL=ON -DENABLE_PYTHON=ON -DCMAKE_BUILD_TYPE=Release "$@" >"$stage/cmake.log"
cmake --build "$stage/build" -j "$(nproc)"
# Compiled modules left by an older layout of the bindings would still import.
rm -f "$stage"/mochi/yokan/_*.so
cmake --install "$stage/build" >/dev/null
for pkg in yokan margo; do
  mkdir -p "$stage/mochi/$pkg"
  for f in "$root/python/mochi/$pkg"/*; do
    ln -sfn "$f" "$stage/mochi/$pkg/$(basename "$f")"
  done
done
echo "staged in $stage (use PYTHONPATH=$stage)"
