"""Network namespaces for the cross-host tests: a client namespace joined to
each of N server namespaces by a veth pair, with private 10.x addresses that
exist only inside the namespaces the test creates (nothing is routed to or
from the host's own network).

    with star(2) as net:
        net.run(net.servers[0], [...])   # a process in server namespace 0
        net.server_ip(0)                 # its address, reachable from the client namespace
        net.run(net.client, [...])       # a process in the client namespace
"""

import contextlib
import os
import subprocess

import pytest


def _ip(*args):
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True, timeout=30)


def netns_unavailable():
    """Why network namespaces cannot be made here, or None if they can."""
    name = f"ykprobe{os.getpid()}"
    try:
        _ip("netns", "add", name)
    except FileNotFoundError:
        return "the ip command (iproute2) is not installed"
    except subprocess.CalledProcessError as e:
        return f"cannot create a network namespace: {e.stderr.strip()}"
    _ip("netns", "del", name)
    return None


class Star:
    def __init__(self, tag, leaves):
        self.client = f"yk{tag}c"
        self.servers = [f"yk{tag}s{i}" for i in range(leaves)]
        self._tag = tag

    def server_ip(self, i):
        return f"10.{200 + i}.0.1"

    def client_ip(self, i):
        return f"10.{200 + i}.0.2"

    def _create(self):
        for ns in [self.client, *self.servers]:
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        for i, ns in enumerate(self.servers):
            a, b = f"yk{self._tag}a{i}", f"yk{self._tag}b{i}"
            _ip("link", "add", a, "type", "veth", "peer", "name", b)
            _ip("link", "set", a, "netns", ns)
            _ip("link", "set", b, "netns", self.client)
            _ip("-n", ns, "addr", "add", f"{self.server_ip(i)}/30", "dev", a)
            _ip("-n", self.client, "addr", "add", f"{self.client_ip(i)}/30", "dev", b)
            _ip("-n", ns, "link", "set", a, "up")
            _ip("-n", self.client, "link", "set", b, "up")

    def delete(self):
        for ns in [self.client, *self.servers]:
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("netns", "del", ns)  # its veth ends go with it

    def argv(self, ns, argv):
        """`argv` run inside namespace `ns` (same environment, same files)."""
        return ["ip", "netns", "exec", ns, *argv]


@contextlib.contextmanager
def star(leaves):
    """A client namespace and `leaves` server namespaces; deleted at the end
    (stop the processes in them first). Skips the test where the kernel or
    the user cannot make network namespaces."""
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)
    net = Star(os.getpid() % 100000, leaves)
    try:
        net._create()
        yield net
    finally:
        net.delete()
