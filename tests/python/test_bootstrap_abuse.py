"""The bootstrap port under abuse: malformed handshakes, idle sockets, a full
server. None of it may kill the provider or keep other clients out."""

import resource
import signal
import socket
import struct
import time

import pytest
from auth_helpers import AuthServer
from mochi.margo import Engine, client
from mochi.yokan import exception
from mochi.yokan.client import Client
from ucx_raw import AM_HELLO, AM_REQUEST, RawPeer, wire_header

MAGIC = struct.pack("!I", 0x594B4232)  # "YKB2"


@pytest.fixture
def server():
    started = []

    def start(protocol="tcp", engine_config=None):
        s = AuthServer(protocol, engine_config or {})
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def stop(s):
    """Stops a server and returns what it wrote to stderr."""
    s.proc.send_signal(signal.SIGTERM)
    log = s.proc.stderr.read()
    s.proc.wait(timeout=20)
    return log


def port_of(address):
    return int(address.rsplit(":", 1)[1])


def use(address, protocol="tcp", config=None):
    """Connects a fresh client engine, writes and reads a key."""
    with Engine(protocol, mode=client, config=config or {}) as e:
        db = Client(e).make_database_handle(address, 42)
        db.put(b"alive", b"yes")
        assert db.get(b"alive") == b"yes"
        del db


def card(worker, worker_net=b"", place=b""):
    """An engine card (src/engine/net_place.cpp): "YKC1", then the worker
    address, the network-only worker address and the network place, each
    after its length (u32, host order). No place means "same as yours"."""
    return b"YKC1" + b"".join(struct.pack("=I", len(p)) + p for p in (worker, worker_net, place))


def worker_of(card_bytes):
    """The full worker address in a card the server answered with."""
    assert card_bytes[:4] == b"YKC1", card_bytes[:16]
    (n,) = struct.unpack("=I", card_bytes[4:8])
    return card_bytes[8 : 8 + n]


def raw_handshake(port, worker_address, token=0x1234, timeout=5.0, raw=False):
    """Runs the unauthenticated handshake by hand with `worker_address` as
    ours (in a card, unless `raw`); returns the server's final answer
    (status byte, payload: the server's card on success)."""
    offer = worker_address if raw else card(worker_address)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(MAGIC + bytes(32))
        challenge = recv_exact(s, 72)
        assert challenge[:4] == MAGIC
        s.sendall(bytes(32) + struct.pack("!QI", token, len(offer)) + offer)
        head = recv_exact(s, 12)
        (length,) = struct.unpack("!I", head[8:12])
        return head[4], recv_exact(s, length)


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


MALFORMED_ADDRESSES = [
    # The byte that made UCX assert (addr_version == V2) and abort the
    # provider: a version nibble of 8, for each high nibble.
    *[bytes([(b & 0xF0) | 8]) + bytes(63) for b in range(0, 256, 16)],
    b"\x00" * 300,
    b"\xff" * 300,
    b"x",  # too short
    b"\x08" * 20000,  # too long
]


def test_malformed_worker_addresses_never_kill_the_provider(server):
    s = server("tcp", {})
    port = port_of(s.address)
    for addr in MALFORMED_ADDRESSES:
        status, payload = raw_handshake(port, addr)
        assert status == exception.YOKAN_ERR_INVALID_ARGS, (addr[:4], payload)
        assert b"malformed worker address" in payload
    assert s.proc.poll() is None
    use(s.address)


MALFORMED_CARDS = [
    b"",
    b"YKC1",
    b"YKC0" + card(b"\x08" * 64)[4:],  # wrong magic
    card(b""),  # no worker address
    card(b"\x08" * 64)[:-1],  # truncated
    card(b"\x08" * 64) + b"x",  # trailing byte
    b"YKC1" + struct.pack("=I", 0xFFFFFFFF) + bytes(16),  # a length past the end
    # another network place, and no network-only address to use there
    card(bytes(64), b"", b"another-boot/4026531999"),
    # another place: the network-only address is the one checked
    card(bytes(64), b"\x08" + bytes(63), b"another-boot/4026531999"),
]


def test_malformed_cards_never_kill_the_provider(server):
    s = server("tcp", {})
    port = port_of(s.address)
    for offer in MALFORMED_CARDS:
        status, payload = raw_handshake(port, offer, raw=True)
        assert status != 0, (offer[:12], payload)
        assert payload, offer[:12]
    assert s.proc.poll() is None
    use(s.address)


GARBAGE = [
    b"",
    b"GET / HTTP/1.0\r\n\r\n",
    MAGIC,  # then silence
    MAGIC + bytes(32) + b"\xff" * 100,  # a proof section with a huge address length
    struct.pack("!I", 0x594B4231) + bytes(8),  # the old protocol
    bytes(range(256)) * 8,
]


def test_garbage_on_the_bootstrap_port_never_kills_the_provider(server):
    s = server("tcp", {"handshake_timeout_ms": 500})
    port = port_of(s.address)
    for data in GARBAGE:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(data)
            c.settimeout(2)
            try:
                while c.recv(4096):
                    pass
            except (TimeoutError, ConnectionResetError):
                pass
    assert s.proc.poll() is None
    use(s.address)


def test_failed_handshakes_are_logged_rate_limited(server):
    s = server("tcp", {})
    port = port_of(s.address)
    for _ in range(200):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
            c.sendall(b"nonsense" * 8)
            c.settimeout(2)
            try:
                c.recv(16)
            except (TimeoutError, ConnectionResetError):
                pass
    use(s.address)
    log = stop(s)
    lines = [ln for ln in log.splitlines() if "not a mochi-yokan handshake" in ln]
    assert 1 <= len(lines) <= 20, log[-2000:]


def hold_idle_sockets(port, n):
    socks = []
    for _ in range(n):
        socks.append(socket.create_connection(("127.0.0.1", port), timeout=5))
    return socks


def test_idle_sockets_do_not_keep_a_new_client_out(server):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1500:
        pytest.skip(f"needs 1500 file descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1500), hard))
    s = server("tcp", {"handshake_timeout_ms": 60000})
    socks = hold_idle_sockets(port_of(s.address), 1000)
    try:
        start = time.monotonic()
        use(s.address)
        elapsed = time.monotonic() - start
        print(f"new client connected in {elapsed * 1000:.0f} ms with 1000 idle sockets held")
        # Liveness bound with a generous margin (it was ~100 s per 50 before).
        assert elapsed < 10
    finally:
        for c in socks:
            c.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_max_clients_full_gives_a_clear_error(server):
    s = server("tcp", {"max_clients": 2})
    engines = [Engine("tcp", mode=client) for _ in range(3)]
    try:
        dbs = [Client(e).make_database_handle(s.address, 42) for e in engines[:2]]
        with pytest.raises(exception.Exception) as info:
            Client(engines[2]).make_database_handle(s.address, 42)
        assert info.value.code == exception.YOKAN_ERR_BUSY
        assert "max_clients=2" in str(info.value)
        dbs[0].put(b"k", b"v")  # the admitted ones are unaffected
        # A client leaving makes room.
        del dbs[1]
        engines[1].finalize()
        deadline = time.monotonic() + 10
        while True:
            try:
                Client(engines[2]).make_database_handle(s.address, 42)
                break
            except exception.Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
    finally:
        for e in engines:
            e.finalize()


def test_raw_hellos_never_kill_the_provider(server):
    """HELLO active messages sent straight to the server's UCX worker, with
    the meta that used to reach ucp_ep_create (a worker address whose version
    nibble is 8 made UCX assert and abort the provider)."""
    s = server("tcp", {})
    peer = RawPeer()
    try:
        known = 0x5EED
        status, server_card = raw_handshake(port_of(s.address), peer.address(), token=known)
        assert status == 0, server_card
        peer.connect(worker_of(server_card))
        for token in (known, 0xBAD, 0):
            for b in range(0, 256, 16):
                bad = bytes([(b & 0xF0) | 8]) + bytes(63)
                meta = struct.pack("=Q", token) + bad
                assert peer.send(AM_HELLO, wire_header(token=token, meta_len=len(meta)) + meta)
            # Malformed headers too: short, wrong magic, lengths that do not add up.
            assert peer.send(AM_HELLO, b"\x08" * 12)
            assert peer.send(AM_HELLO, wire_header(token=token, meta_len=1000))
        peer.progress(0.5)
        assert s.proc.poll() is None
        use(s.address)
    finally:
        peer.close()
    assert s.proc.poll() is None
    # They did arrive, and were dropped (and said so, rate-limited).
    assert "dropped a HELLO from a peer that did not complete the handshake" in stop(s)


def test_requests_of_a_token_that_did_not_handshake_never_reach_a_provider(server):
    s = server("tcp", {})
    with Engine("tcp", mode=client) as e:
        db = Client(e).make_database_handle(s.address, 42)
        db.put(b"keep", b"me")
        peer = RawPeer()
        try:
            status, server_card = raw_handshake(port_of(s.address), peer.address(), token=0x5EED)
            assert status == 0
            peer.connect(worker_of(server_card))
            # An erase of everything (prefix "" matches all keys) under a
            # token nobody registered, with every RPC id a provider might use.
            for rpc in range(64):
                h = wire_header(rpc=rpc, provider=42, token=0xBAD, meta_len=16)
                assert peer.send(AM_REQUEST, h + bytes(16))
            peer.progress(0.5)
        finally:
            peer.close()
        assert db.count() == 1
        assert db.get(b"keep") == b"me"
        del db
    assert "dropped a request from an unknown peer" in stop(s)


def closed_by_server(sock, timeout):
    """True if the server closes `sock` (reads EOF or a reset) within `timeout`."""
    sock.settimeout(timeout)
    try:
        while sock.recv(4096):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_an_idle_connection_is_dropped_at_its_deadline(server):
    s = server("tcp", {"handshake_timeout_ms": 300})
    with socket.create_connection(("127.0.0.1", port_of(s.address)), timeout=5) as idle:
        start = time.monotonic()
        assert closed_by_server(idle, 10)
        print(f"idle connection dropped after {(time.monotonic() - start) * 1000:.0f} ms")


def test_when_handshakes_are_full_the_oldest_makes_room(server):
    s = server("tcp", {"max_handshakes": 8, "handshake_timeout_ms": 60000})
    socks = hold_idle_sockets(port_of(s.address), 100)
    try:
        use(s.address)  # a real client still gets in
        # The oldest idle ones were dropped to make room; the newest are held.
        assert closed_by_server(socks[0], 10)
        assert not closed_by_server(socks[-1], 0.2)
    finally:
        for c in socks:
            c.close()
