"""The examples in examples/ run as written."""

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
STANDALONE = [
    "quickstart",
    "client_basic",
    "batch_operations",
    "buffer_protocol",
    "list_operations",
    "modes_example",
    "error_handling",
    "context_manager",
    "numpy_example",
    "higher_level_api",
    "documents",
    "rebalance",
    "snapshot",
    "migrate",
]


def copied_out(name, tmp_path):
    """The example alone in an empty directory, as a user who copies one file has it."""
    target = tmp_path / f"{name}.py"
    shutil.copy(EXAMPLES / f"{name}.py", target)
    return target


def run(name, tmp_path, *args, timeout=120):
    script = copied_out(name, tmp_path)
    return subprocess.run(
        [sys.executable, str(script), *args],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("name", STANDALONE)
def test_example_runs(name, tmp_path):
    r = run(name, tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout


def test_quickstart_output(tmp_path):
    assert "hello, yokan" in run("quickstart", tmp_path).stdout


def test_every_example_is_listed():
    on_disk = {p.stem for p in EXAMPLES.glob("*.py")} - {"server_example", "zarr_array"}
    assert on_disk == set(STANDALONE)


@pytest.mark.parametrize("backend", ["map", "rocksdb"])
def test_zarr_example_writes_and_reads_back(backend, tmp_path):
    # 1 GiB by default; 16 MiB here (16 chunks of 1 MiB) keeps the suite fast.
    pytest.importorskip("zarr", minversion="3.1", reason="zarr-python 3.1+ is not installed")
    from mochi.yokan.backends import available_backends

    if backend not in available_backends:
        pytest.skip(f"{backend} is not compiled into this build")
    files = ["--path", "db"] if backend != "map" else []
    r = run("zarr_array", tmp_path, "--size-mib", "16", "--backend", backend, *files)
    assert r.returncode == 0, r.stderr
    assert "wrote 16 MiB as 16 chunks" in r.stdout
    assert "read back and checked 16 MiB" in r.stdout


@pytest.mark.parametrize("protocol", ["tcp", "na+sm"])
def test_server_example_with_remote_clients(protocol, tmp_path):
    server = subprocess.Popen(
        [sys.executable, str(copied_out("server_example", tmp_path)), protocol],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        address = server.stdout.readline().strip()
        assert address.startswith(protocol + "://"), server.stderr.read()
        for name in (
            "client_basic",
            "batch_operations",
            "buffer_protocol",
            "list_operations",
            "modes_example",
            "numpy_example",
            "higher_level_api",
            "documents",
        ):
            r = run(name, tmp_path, address)
            assert r.returncode == 0, r.stderr
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert "stopped" in err
