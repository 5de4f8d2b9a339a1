"""Authentication (shared token, challenge-response) and protected mode."""

import os
import shutil
import socket
import struct
import subprocess
import sys
import threading
import uuid

import pytest
from auth_helpers import AuthServer
from mochi.margo import Engine, client
from mochi.yokan import exception
from mochi.yokan.client import Client
from test_daemon import Daemon, provider_entry, run_daemon, write_config

SECRET = "s3cr3t-" + uuid.uuid4().hex


def connect(address, engine_config, protocol="tcp"):
    """(engine, Database) of a client engine with `engine_config`."""
    engine = Engine(protocol, mode=client, config=engine_config)
    try:
        return engine, Client(engine).make_database_handle(address, 42)
    except BaseException:
        engine.finalize()
        raise


@pytest.fixture
def server():
    started = []

    def start(protocol="tcp", engine_config=None, prefix=()):
        s = AuthServer(protocol, engine_config or {}, prefix)
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


@pytest.mark.parametrize("protocol", ["tcp", "na+sm"])
def test_right_token_works(server, protocol):
    s = server(protocol, {"auth": {"token": SECRET}})
    engine, db = connect(s.address, {"auth": {"token": SECRET}}, protocol)
    try:
        db.put(b"k", b"v")
        assert db.get(b"k") == b"v"
    finally:
        del db
        engine.finalize()


@pytest.mark.parametrize("protocol", ["tcp", "na+sm"])
@pytest.mark.parametrize("client_config", [{}, {"auth": {"token": "wrong"}}])
def test_wrong_or_missing_token_is_refused_and_changes_nothing(server, protocol, client_config):
    s = server(protocol, {"auth": {"token": SECRET}})
    engine, db = connect(s.address, {"auth": {"token": SECRET}}, protocol)
    db.put(b"keep", b"me")
    with pytest.raises(exception.Exception) as info:
        connect(s.address, client_config, protocol)
    assert info.value.code == exception.YOKAN_ERR_PERMISSION
    assert "permission denied" in str(info.value)
    # Nothing of the refused peer reached the provider.
    assert db.count() == 1
    assert db.get(b"keep") == b"me"
    del db
    engine.finalize()


def test_a_client_with_a_token_refuses_a_server_without_auth(server):
    s = server("tcp", {})
    with pytest.raises(exception.Exception) as info:
        connect(s.address, {"auth": {"token": SECRET}})
    assert info.value.code == exception.YOKAN_ERR_PERMISSION


def test_config_does_not_show_the_token():
    with Engine("tcp", config={"auth": {"token": SECRET}}) as e:
        assert SECRET not in str(e.config)


class Proxy:
    """A TCP relay on 127.0.0.1 that records every byte in both directions."""

    def __init__(self, target_port):
        self.target = ("127.0.0.1", target_port)
        self.seen = bytearray()
        self.lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                a, _ = self.listener.accept()
            except OSError:
                return
            b = socket.create_connection(self.target)
            for src, dst in ((a, b), (b, a)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src, dst):
        try:
            while data := src.recv(65536):
                with self.lock:
                    self.seen += data
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.listener.close()


def test_the_token_never_crosses_the_wire_in_clear(server):
    s = server("tcp", {"auth": {"token": SECRET}})
    port = int(s.address.rsplit(":", 1)[1])
    proxy = Proxy(port)
    try:
        engine, db = connect(f"tcp://127.0.0.1:{proxy.port}", {"auth": {"token": SECRET}})
        db.put(b"k", b"v")
        assert db.get(b"k") == b"v"
        del db
        engine.finalize()
        with pytest.raises(exception.Exception):
            connect(f"tcp://127.0.0.1:{proxy.port}", {"auth": {"token": "wrong-" + SECRET}})
        with proxy.lock:
            seen = bytes(proxy.seen)
        assert len(seen) > 100  # the handshakes went through the proxy
        assert SECRET.encode() not in seen
        assert SECRET.encode().hex().encode() not in seen
    finally:
        proxy.close()


def test_token_file(server, tmp_path):
    path = tmp_path / "token"
    path.write_text(SECRET + "\n")
    path.chmod(0o600)
    s = server("tcp", {"auth": {"token_file": str(path)}})
    engine, db = connect(s.address, {"auth": {"token": SECRET}})
    db.put(b"k", b"v")
    del db
    engine.finalize()


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604])
def test_a_token_file_readable_by_others_is_refused(tmp_path, mode):
    path = tmp_path / "token"
    path.write_text(SECRET)
    path.chmod(mode)
    with pytest.raises(exception.Exception) as info:
        Engine("tcp", config={"auth": {"token_file": str(path)}})
    assert info.value.code == exception.YOKAN_ERR_INVALID_CONFIG
    assert "chmod 600" in str(info.value)


def test_a_missing_token_file_is_refused(tmp_path):
    with pytest.raises(exception.Exception) as info:
        Engine("tcp", config={"auth": {"token_file": str(tmp_path / "nope")}})
    assert info.value.code == exception.YOKAN_ERR_INVALID_CONFIG


@pytest.mark.parametrize(
    "auth", [[], {"token": ""}, {"token": 5}, {"tokn": "x"}, {"allow_anonymous": "yes"}]
)
def test_malformed_auth_configs_are_refused(auth):
    with pytest.raises(exception.Exception) as info:
        Engine("tcp", config={"auth": auth})
    assert info.value.code == exception.YOKAN_ERR_INVALID_CONFIG


def test_protected_mode_refuses_a_wildcard_listen_without_auth():
    # Refused before anything listens: no traffic can reach 0.0.0.0.
    with pytest.raises(exception.Exception) as info:
        Engine("tcp://0.0.0.0:0")
    assert info.value.code == exception.YOKAN_ERR_INVALID_CONFIG
    assert "protected mode" in str(info.value)
    assert "allow_anonymous" in str(info.value)


def test_loopback_without_auth_still_starts():
    with Engine("tcp://127.0.0.1:0") as e:
        assert str(e.addr()).startswith("tcp://127.0.0.1:")


@pytest.fixture
def netns():
    """A network namespace with loopback and a veth pair, yk0 at 10.77.0.1/24
    (both ends inside it: nothing leaves the namespace)."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        pytest.skip("creating a network namespace needs root and iproute2")
    name = "yk-auth-" + uuid.uuid4().hex[:8]
    r = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip("the kernel refused a network namespace: " + r.stderr.strip())
    try:
        for cmd in (
            "ip link set lo up",
            "ip link add yk0 type veth peer name yk1",
            "ip addr add 10.77.0.1/24 dev yk0",
            "ip link set yk0 up",
            "ip link set yk1 up",
        ):
            subprocess.run(["ip", "netns", "exec", name, *cmd.split()], check=True)
        yield name
    finally:
        subprocess.run(["ip", "netns", "del", name])


def run_in(ns, code, *args):
    return subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


START = r"""
import json, sys
import mochi.yokan.client  # noqa: F401 (registers the exception classes)
from mochi.margo import Engine
try:
    e = Engine(sys.argv[1], config=json.loads(sys.argv[2]))
except Exception as x:
    print("REFUSED", getattr(x, "code", None), x)
else:
    print("STARTED", e.addr())
    e.finalize()
"""


def test_protected_mode_in_a_network_namespace(netns):
    r = run_in(netns, START, "tcp://10.77.0.1:0", "{}")
    assert r.stdout.startswith("REFUSED 7 "), r.stdout + r.stderr
    assert "protected mode" in r.stdout
    r = run_in(netns, START, "tcp://yk0", "{}")  # by interface name, too
    assert r.stdout.startswith("REFUSED 7 "), r.stdout + r.stderr
    r = run_in(netns, START, "tcp://10.77.0.1:0", '{"auth": {"allow_anonymous": true}}')
    assert r.stdout.startswith("STARTED tcp://10.77.0.1:"), r.stdout + r.stderr
    r = run_in(netns, START, "tcp://10.77.0.1:0", '{"auth": {"token": "x"}}')
    assert r.stdout.startswith("STARTED tcp://10.77.0.1:"), r.stdout + r.stderr


def test_a_wildcard_listen_advertises_a_routable_address(netns):
    # Inside the namespace only: 0.0.0.0 there reaches lo and yk0, nothing else.
    r = run_in(netns, START, "tcp://0.0.0.0:0", '{"auth": {"token": "x"}}')
    assert r.stdout.startswith("STARTED tcp://10.77.0.1:"), r.stdout + r.stderr


def handshake_status_as(uid, sm_address):
    """Opens the bootstrap socket of `sm_address` from a forked child running
    as `uid` and returns the status byte of the server's first answer."""
    name = b"\0mochi-yokan-" + sm_address.split("://", 1)[1].encode()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: raw syscalls only, then _exit
        status = 255
        try:
            os.setgid(uid)
            os.setuid(uid)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(10)
                s.connect(name)
                s.sendall(struct.pack("!I", 0x594B4232) + bytes(32))
                answer = b""
                while len(answer) < 8:
                    chunk = s.recv(8 - len(answer))
                    if not chunk:
                        break
                    answer += chunk
                status = answer[4] if len(answer) > 4 else 254
        finally:
            os.write(w, bytes([status]))
            os._exit(0)
    os.close(w)
    try:
        return os.read(r, 1)[0]
    finally:
        os.close(r)
        os.waitpid(pid, 0)


def test_na_sm_refuses_another_uid(server):
    if os.geteuid() != 0:
        pytest.skip("switching to another uid needs root")
    s = server("na+sm", {})
    assert handshake_status_as(65534, s.address) == exception.YOKAN_ERR_PERMISSION
    assert handshake_status_as(os.geteuid(), s.address) == 0
    # Our own uid still gets in.
    engine, db = connect(s.address, {}, "na+sm")
    db.put(b"k", b"v")
    del db
    engine.finalize()


def test_yokan_server_passes_the_auth_section_to_its_engine(tmp_path):
    token = tmp_path / "token"
    token.write_text(SECRET + "\n")
    token.chmod(0o600)
    config = write_config(
        tmp_path,
        {
            "engine": {"auth": {"token_file": str(token)}},
            "providers": [provider_entry("kv", 42, {"database": {"type": "map"}})],
        },
    )
    daemon = Daemon(tmp_path, config)
    try:
        address = daemon.wait_ready()
        with pytest.raises(exception.Exception) as info:
            connect(address, {})
        assert info.value.code == exception.YOKAN_ERR_PERMISSION
        engine, db = connect(address, {"auth": {"token_file": str(token)}})
        db.put(b"k", b"v")
        assert db.get(b"k") == b"v"
        del db
        engine.finalize()
    finally:
        code, _, err = daemon.stop()
    assert code == 0, err
    assert SECRET not in err


def test_yokan_server_refuses_a_world_readable_token_file(tmp_path):
    token = tmp_path / "token"
    token.write_text(SECRET)
    token.chmod(0o644)
    config = write_config(
        tmp_path,
        {
            "engine": {"auth": {"token_file": str(token)}},
            "providers": [provider_entry("kv", 42, {"database": {"type": "map"}})],
        },
    )
    r = run_daemon(tmp_path, config)
    assert r.returncode != 0
    assert "chmod 600" in r.stderr
