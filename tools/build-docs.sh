#!/usr/bin/env bash
# Builds the Python manual (docs/) as HTML with Sphinx, warnings as errors.
#
#   tools/build-docs.sh [OUTPUT_DIR]      (default: build/docs in the checkout)
#
# `mochi` must be importable (installed, or PYTHONPATH=STAGE_DIR of
# tools/dev-build.sh): the API reference is generated from its docstrings.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-$root/build/docs}"
python3 -m sphinx -W --keep-going -q -b html -d "$out/doctrees" "$root/docs" "$out/html"
echo "manual built in $out/html/index.html"
