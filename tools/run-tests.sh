#!/usr/bin/env bash
# Runs the whole test suite: the C++ backend conformance tests (ctest) and the
# Python tests (pytest, against the installed package). Assumes the packages of
# tools/debian-packages.txt and tools/test-packages.txt are installed and the
# Python package was installed with `pip install '.[test]'`.
set -euo pipefail
cd "$(dirname "$0")/.."
jobs=$(nproc)
cmake -S . -B build/ctest -G Ninja -DYOKAN_BUILD_TESTS=ON -DENABLE_PYTHON=OFF \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo > build-ctest.log 2>&1 || { cat build-ctest.log; exit 1; }
cmake --build build/ctest -j "$jobs" >> build-ctest.log 2>&1 || { tail -50 build-ctest.log; exit 1; }
rm -f build-ctest.log
ctest --test-dir build/ctest --output-on-failure --timeout 300 -j "$jobs"
# Import the installed package, never the source tree (it has no compiled module).
cd tests/python
python3 -m pytest -q --timeout=300 -p no:cacheprovider .
