"""Shared helpers of the fault tests: providers in child processes that can
be stopped, killed and restarted on the same address."""

import contextlib
import json
import pathlib
import signal
import socket
import subprocess
import sys
import time

SERVER = pathlib.Path(__file__).with_name("fault_server.py")


def free_tcp_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """A provider process; `prefix` (e.g. ["ip", "netns", "exec", NS]) wraps it."""

    def __init__(self, address, engine_config=None, prefix=()):
        self.proc = subprocess.Popen(
            [*prefix, sys.executable, str(SERVER), address, json.dumps(engine_config or {})],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline().strip()
        if not line:
            raise RuntimeError("server did not start: " + self.proc.stderr.read())
        self.address = line

    def stop(self, sig=signal.SIGTERM):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for f in (self.proc.stdout, self.proc.stderr):
            f.close()


def process_state(pid):
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0]


@contextlib.contextmanager
def stopped(server):
    """The provider stopped (SIGSTOP) for the block, then resumed."""
    server.proc.send_signal(signal.SIGSTOP)
    deadline = time.monotonic() + 10
    while process_state(server.proc.pid) != "T" and time.monotonic() < deadline:
        time.sleep(0.01)
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
