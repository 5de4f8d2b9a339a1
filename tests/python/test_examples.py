"""The examples in examples/ run as written."""

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
]


def run(name, *args, timeout=120):
    return subprocess.run(
        [sys.executable, str(EXAMPLES / f"{name}.py"), *args],
        cwd=EXAMPLES,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("name", STANDALONE)
def test_example_runs(name):
    r = run(name)
    assert r.returncode == 0, r.stderr
    assert r.stdout


def test_quickstart_output():
    assert "hello, yokan" in run("quickstart").stdout


@pytest.mark.parametrize("protocol", ["tcp", "na+sm"])
def test_server_example_with_remote_clients(protocol):
    server = subprocess.Popen(
        [sys.executable, str(EXAMPLES / "server_example.py"), protocol],
        cwd=EXAMPLES,
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
            r = run(name, address)
            assert r.returncode == 0, r.stderr
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert "stopped" in err
