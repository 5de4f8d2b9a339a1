"""Zarr is an optional extra: the base package never imports it, and the
project declares it as the extra `zarr` (and in `test`, so that CI runs the
store's tests)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

IMPORT_ALL = """
import sys
import mochi.margo
import mochi.yokan
from mochi.yokan import arrays, backends, client, collection, connect, daemon
from mochi.yokan import exception, group, mapping, mode, server
from mochi.yokan.connect import database
with database() as db:
    db.put("k", b"v")
    assert db.get("k") == b"v"
loaded = sorted(m for m in sys.modules if m == "zarr" or m.startswith(("zarr.", "numcodecs")))
print(loaded)
"""


def test_the_base_package_does_not_import_zarr(tmp_path):
    r = subprocess.run(
        [sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True, cwd=tmp_path, timeout=60
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip().splitlines()[-1] == "[]"


def test_zarr_is_an_extra_and_a_test_dependency():
    tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11+")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "zarr" not in " ".join(project["dependencies"])
    extras = project["optional-dependencies"]
    assert any(req.startswith("zarr>=3.1") for req in extras["zarr"])
    assert any(req.startswith("zarr>=3.1") for req in extras["test"])
    assert any(req.startswith("pytest-asyncio") for req in extras["test"])
