"""Shared helpers of the fault tests: providers in child processes that can
be stopped, killed and restarted on the same address."""

import contextlib
import json
import pathlib
import signal
import socket
import sys
import time

from conftest import ChildServer, wait_stopped

SERVER = pathlib.Path(__file__).with_name("fault_server.py")


def free_tcp_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server(ChildServer):
    """A provider process; `prefix` (e.g. ["ip", "netns", "exec", NS]) wraps it."""

    def __init__(self, address, engine_config=None, prefix=()):
        super().__init__(
            [*prefix, sys.executable, str(SERVER), address, json.dumps(engine_config or {})]
        )


@contextlib.contextmanager
def stopped(server):
    """The provider stopped (SIGSTOP) for the block, then resumed."""
    server.proc.send_signal(signal.SIGSTOP)
    wait_stopped(server.proc.pid)
    try:
        yield
    finally:
        server.proc.send_signal(signal.SIGCONT)


def timed(action):
    """(exception or None, seconds) of running `action()`."""
    start = time.monotonic()
    try:
        action()
    except Exception as e:  # noqa: BLE001 - the caller inspects it
        return e, time.monotonic() - start
    return None, time.monotonic() - start
