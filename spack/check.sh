#!/usr/bin/env bash
# Offline check of the mochi-yokan Spack recipe: static checks, concretization, a fake
# install, then real builds of this source tree with its tests, and a put/get through
# `spack load`. Every dependency is a Debian package declared as a Spack external.
#
#   spack/check.sh [--no-build] SPACK_ROOT SPACK_PACKAGES [SCRATCH]
#
#   SPACK_ROOT      a Spack 1.x checkout (tested with v1.1.0)
#   SPACK_PACKAGES  a spack-packages checkout (tested with v2025.11.0)
#   SCRATCH         where all Spack state goes (config, caches, installs, venvs);
#                   default: a new temporary directory. Reusing one skips the pip steps.
#   --no-build      stop after the fake install (static checks and concretization only)
#
# Environment: YOKAN_CHECK_PYTHON, the Python to build against (default /usr/bin/python3);
# MOCHI_SPACK_PACKAGES, a checkout of Mochi's package repo (mochi-spack-packages): if set,
# also check that both mochi-yokan recipes resolve with that repo added next to this one.
# Nothing outside SCRATCH is written: not the Spack checkouts, not ~/.spack, not this tree.
set -euo pipefail

build=1
if [ "${1:-}" = --no-build ]; then
  build=0
  shift
fi
if [ $# -lt 2 ] || [ $# -gt 3 ]; then
  sed -n '6,14s/^# \{0,1\}//p' "$0" >&2
  exit 2
fi
spack_root=$(cd "$1" && pwd)
spack_packages=$(cd "$2" && pwd)
scratch=${3:-$(mktemp -d "${TMPDIR:-/tmp}/yokan-spack-check.XXXXXX")}
mkdir -p "$scratch"
scratch=$(cd "$scratch" && pwd)
project=$(cd "$(dirname "$0")/.." && pwd)
repo=$project/spack/spack_repo/mochi_yokan
syspy=${YOKAN_CHECK_PYTHON:-/usr/bin/python3}
full_spec="mochi-yokan@main+python+rocksdb+lmdb+leveldb"
# The real builds: between them, every variant is built (and its tests run) once.
other_spec="mochi-yokan@main+lua+berkeleydb+gdbm+tkrzw"
default_spec="mochi-yokan@main"

[ -x "$spack_root/bin/spack" ] || { echo "no Spack checkout at $spack_root" >&2; exit 2; }
[ -d "$spack_packages/repos/spack_repo/builtin" ] || {
  echo "no spack-packages checkout at $spack_packages" >&2
  exit 2
}

step() { printf '\n=== %s\n' "$*"; }

# --- Isolation: every Spack scope we write is under $scratch.
# SPACK_DISABLE_LOCAL_CONFIG must be unset, not empty: if it exists at all, Spack drops
# the user scope and the only writable scope left is inside the Spack checkout.
unset SPACK_DISABLE_LOCAL_CONFIG SPACK_ENV SPACK_ENV_VIEW
export SPACK_USER_CONFIG_PATH=$scratch/config
export SPACK_SYSTEM_CONFIG_PATH=$scratch/system-config
export SPACK_USER_CACHE_PATH=$scratch/cache
mkdir -p "$SPACK_USER_CONFIG_PATH" "$SPACK_SYSTEM_CONFIG_PATH" "$SPACK_USER_CACHE_PATH"

# --- Python tools. Spack's interpreter needs clingo (otherwise it bootstraps it from
# GitHub); the style tools are the ones spack-packages uses. pip's cache is in $scratch too.
export PIP_CACHE_DIR=$scratch/pip-cache
step "python tools (clingo, flake8, black, isort, mypy) and build modules (pybind11, numpy)"
if [ ! -f "$scratch/tools/.complete" ]; then
  rm -rf "$scratch/tools"
  "$syspy" -m venv "$scratch/tools"
  "$scratch/tools/bin/pip" install -q --disable-pip-version-check clingo flake8 black isort mypy \
    >"$scratch/tools.log" 2>&1 || { cat "$scratch/tools.log" >&2; exit 1; }
  touch "$scratch/tools/.complete"
fi
"$scratch/tools/bin/python" -c 'import clingo' ||
  { echo "clingo is not importable" >&2; exit 1; }
# pybind11 and numpy for the build Python, as one external prefix ($scratch/pydeps). Spack
# puts <prefix>/<site dir> on PYTHONPATH for Python externals, with the site dir taken
# from the interpreter's sysconfig relative to its base (Debian's python3 says
# local/lib/python3.X/dist-packages), so the modules go exactly there. The system Python
# itself stays untouched.
site_rel=$("$syspy" -c 'import os, sysconfig as s
print(os.path.relpath(s.get_paths()["platlib"], s.get_config_var("platbase")))')
pydeps_site=$scratch/pydeps/$site_rel
if [ ! -f "$scratch/pydeps/.complete" ]; then
  rm -rf "$scratch/pydeps"
  "$scratch/tools/bin/pip" install -q --disable-pip-version-check --target "$pydeps_site" \
    pybind11 numpy >"$scratch/pydeps.log" 2>&1 || { cat "$scratch/pydeps.log" >&2; exit 1; }
  touch "$scratch/pydeps/.complete"
fi
pyver() { PYTHONPATH=$pydeps_site "$syspy" -c "import $1; print($1.__version__)"; }
export SPACK_PYTHON=$scratch/tools/bin/python
export PATH=$scratch/tools/bin:$PATH # style tools for `spack style`
spack() { "$spack_root/bin/spack" "$@"; }

# --- Configuration (user scope = $SPACK_USER_CONFIG_PATH).
cfg=$SPACK_USER_CONFIG_PATH
printf 'bootstrap:\n  enable: false\n' >"$cfg/bootstrap.yaml"
printf 'mirrors:: {}\n' >"$cfg/mirrors.yaml"
# `repos::` replaces the default builtin entry, which would clone spack-packages from GitHub.
cat >"$cfg/repos.yaml" <<EOF
repos::
  mochi_yokan: $repo
  builtin: $spack_packages/repos/spack_repo/builtin
EOF
# develop_stage_link is absolute so that dev builds leave no build-* link in the source tree.
cat >"$cfg/config.yaml" <<EOF
config:
  install_tree:
    root: $scratch/opt
  build_stage: [$scratch/stage]
  test_stage: $scratch/test-stage
  source_cache: $scratch/source-cache
  misc_cache: $scratch/cache/misc
  build_jobs: 2
  develop_stage_link: $scratch/dev-links/build-{name}-{hash:7}
EOF
mkdir -p "$scratch/dev-links"

# Externals. Versions come from dpkg (epoch and Debian revision removed) or pip.
deb_version() { dpkg-query -W -f='${Version}' "$1" | sed -E 's/^[0-9]+://; s/[-+~].*//'; }
external() { # spec prefix [python-spec, for a Python package]
  printf '  %s:\n    buildable: false\n    externals:\n    - spec: %s\n      prefix: %s\n' \
    "${1%%[@+~ ]*}" "$1" "$2"
  if [ $# -eq 3 ]; then # explicit, or Spack 1.1 attaches it itself with a deprecation warning
    printf '      dependencies:\n      - spec: %s\n        deptypes: [build, link, run]\n' "$3"
  fi
}
python_version=$("$syspy" -c 'import platform; print(platform.python_version())')
python_prefix=$("$syspy" -c 'import sys; print(sys.base_prefix)')
{
  echo "packages:"
  # Anything not declared below must not be built: it could not be downloaded anyway.
  printf '  all:\n    buildable: false\n'
  for p in mochi-yokan python-venv compiler-wrapper gcc-runtime; do
    printf '  %s:\n    buildable: true\n' "$p"
  done
  external "python@$python_version" "$python_prefix"
  external "py-pybind11@$(pyver pybind11)" "$scratch/pydeps" "python@$python_version"
  external "py-numpy@$(pyver numpy)" "$scratch/pydeps" "python@$python_version"
  external "ucx@$(deb_version libucx-dev)" /usr
  external "nlohmann-json@$(deb_version nlohmann-json3-dev)" /usr
  external "abseil-cpp@$(deb_version libabsl-dev)" /usr
  external "googletest@$(deb_version libgtest-dev)" /usr
  external "rocksdb@$(deb_version librocksdb-dev)" /usr
  external "leveldb@$(deb_version libleveldb-dev)" /usr
  external "lmdb@$(deb_version liblmdb-dev)" /usr
  external "berkeley-db@$(deb_version libdb5.3++-dev)+cxx" /usr
  external "gdbm@$(deb_version libgdbm-dev)" /usr
  external "tkrzw@$(deb_version libtkrzw-dev)" /usr
  external "lua@$(deb_version liblua5.4-dev)" /usr
  external "openssl@$(deb_version libssl-dev)" /usr
  external "cmake@$(deb_version cmake)" /usr
  external "gmake@$(deb_version make)" /usr
  external "pkgconf@$(deb_version pkgconf)" /usr
} >"$cfg/packages.yaml"

step "spack $(spack --version), compilers"
# Without this, the first concretization writes the detected gcc into the Spack checkout.
spack compiler find --scope user >/dev/null
spack compiler list
spack audit configs
spack repo list

# --- Static checks of the recipe.
pkgdir=$repo/packages
step "spack audit packages mochi-yokan"
spack audit packages mochi-yokan
step "spack style (import order and formatting)"
# `spack style` applies Spack core's flake8 and mypy settings to any file, and those reject
# the `from spack.package import *` that every recipe uses, so flake8 runs below with the
# settings of spack-packages instead.
spack style --skip flake8,mypy "$pkgdir/mochi_yokan/package.py"
step "flake8, black, isort with spack-packages' settings"
# (Given as flags: spack-packages' .flake8 loads a formatter plugin that lives in Spack.)
# (Run from $pkgdir: flake8 resolves the per-file pattern against the current directory.)
(cd "$pkgdir" && flake8 --isolated --max-line-length=99 --extend-ignore=E731,E203 \
  --per-file-ignores='*/package.py:F403,F405,F821' .)
black --check --line-length 99 --skip-magic-trailing-comma "$pkgdir"
isort --check-only --diff --profile black --line-length 99 -p spack "$pkgdir"
echo "flake8, black, isort: clean"
spack info mochi-yokan

# --- Concretize several variant sets, each on its own (unify: false; `spack spec a b` would
# unify them), and fake-install them into a throw-away tree: fake installs of
# compiler-wrapper, gcc-runtime and python-venv are empty and would break a real build.
step "concretize and install --fake: default, +python, the two built sets, every variant"
cenv=$scratch/env-fake
mkdir -p "$cenv"
cat >"$cenv/spack.yaml" <<EOF
spack:
  view: false
  concretizer:
    unify: false
  config:
    install_tree:
      root: $scratch/opt-fake
  specs:
  - $default_spec
  - mochi-yokan@main+python
  - $full_spec
  - $other_spec
  - mochi-yokan@main+python+lua+rocksdb+leveldb+lmdb+berkeleydb+gdbm+tkrzw
EOF
spack -e "$cenv" concretize --fresh --force >"$scratch/concretize.log"
spack -e "$cenv" install --fake >"$scratch/install-fake.log"
spack -e "$cenv" find -v -L mochi-yokan

# --- Next to Mochi's own package repo (namespace `mochi`, upstream Yokan 0.x with
# +bedrock): whichever repo comes first shadows the other's mochi-yokan, so the other one
# must be named with its namespace. Ours comes first here, as after `spack repo add`.
if [ -n "${MOCHI_SPACK_PACKAGES:-}" ]; then
  mochi_repo=$(cd "$MOCHI_SPACK_PACKAGES" && pwd)/spack_repo/mochi
  step "next to Mochi's package repo: both mochi-yokan recipes resolve by namespace"
  menv=$scratch/env-mochi
  mkdir -p "$menv"
  # Mochi's packages are only concretized, so anything may be "buildable" here.
  cat >"$menv/spack.yaml" <<EOF
spack:
  view: false
  repos::
    mochi_yokan: $repo
    mochi: $mochi_repo
    builtin: $spack_packages/repos/spack_repo/builtin
  packages:
    all:
      buildable: true
EOF
  if spack -e "$menv" spec mofka >"$scratch/mofka-unqualified.log" 2>&1; then
    echo "unexpected: 'spack spec mofka' resolved with ours shadowing mochi's mochi-yokan" >&2
    exit 1
  fi
  grep "No such variant 'bedrock'" "$scratch/mofka-unqualified.log"
  spack -e "$menv" spec -N mofka ^mochi.mochi-yokan | grep -E 'mochi\.(mofka|mochi-yokan)@'
  spack -e "$menv" spec -N mochi_yokan.mochi-yokan+python | grep -E 'mochi_yokan\.mochi-yokan@'
fi

if [ "$build" = 0 ]; then
  step "--no-build: stopping before the real builds"
  exit 0
fi

# --- Real builds from this working tree (uncommitted files included): an environment
# whose mochi-yokan is a develop spec with dev_path = the project root.
step "install --test=root from $project"
ienv=$scratch/env-install
rm -rf "$ienv"
mkdir -p "$ienv"
cat >"$ienv/spack.yaml" <<EOF
spack:
  view: false
  concretizer:
    unify: false
  specs:
  - $full_spec
  - $other_spec
  develop:
    mochi-yokan:
      spec: mochi-yokan@main
      path: $project
EOF
spack -e "$ienv" concretize --fresh --test root # --test: include the test dependencies
spack -e "$ienv" install --test=root -p 1 --show-log-on-error
spack -e "$ienv" find -v -l mochi-yokan

step "spack test run (stand-alone tests of both installs)"
# A reused SCRATCH keeps the previous run's suite, and an alias must be new.
spack test remove -y yokan-check >/dev/null 2>&1 || true
spack -e "$ienv" test run --alias yokan-check mochi-yokan
spack -e "$ienv" test results -l yokan-check

step "spack load $full_spec; put/get"
(
  eval "$(spack -e "$ienv" load --sh "$full_spec")"
  echo "PYTHONPATH=$PYTHONPATH"
  "$syspy" - <<'EOF'
import numpy  # a run dependency: `spack load` must make it importable too
import mochi.yokan
from mochi.margo import Engine
from mochi.yokan.server import Provider
from mochi.yokan.client import Client
with Engine("tcp") as e:
    p = Provider(engine=e, provider_id=42, config='{"database":{"type":"map"}}')
    db = Client(e).make_database_handle(e.addr(), 42)
    db.put("k", "v"); assert db.get("k") == b"v"
    del db, p
print("put/get through `spack load`: ok, mochi.yokan from", mochi.yokan.__path__[0])
EOF
)
step "spack install mochi-yokan+python without a checkout: fails, pointing at spack develop"
if spack install mochi-yokan+python >"$scratch/plain-install.log" 2>&1; then
  echo "unexpected: installed mochi-yokan from the placeholder URL" >&2
  exit 1
fi
grep -A1 "cannot fetch the sources of mochi-yokan" "$scratch/plain-install.log"
grep -q "spack develop" "$scratch/plain-install.log"

step "all checks passed (scratch: $scratch)"
