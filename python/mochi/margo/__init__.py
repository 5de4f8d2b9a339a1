"""An Engine compatible with py-mochi-margo's ``mochi.margo.Engine``.

``Engine("tcp")`` listens on 127.0.0.1 on a free port; ``Engine("tcp://HOST:PORT")``
or ``"tcp://IFACE"`` exposes it elsewhere; ``Engine("na+sm")`` is same-host
shared memory only. UCX is pinned to the network device of the listen address.
``str(engine.addr())`` is what another process passes to ``lookup()`` or to
``Client.make_database_handle()``.
"""

import json as _json

from mochi.yokan import _yokan

client = 0
server = 1

__all__ = ["Engine", "Address", "MargoException", "client", "server"]


class MargoException(RuntimeError):
    """An engine-level failure (bad address, lookup failure)."""


def _protocol_address(addr):
    if addr in ("tcp", "ofi+tcp", "ucx+tcp", "verbs"):
        return f"{addr}://127.0.0.1:0" if addr != "verbs" else "verbs"
    return addr


class Address:
    """A peer address; ``str()`` gives the string form."""

    def __init__(self, engine, text):
        self._engine = engine
        self._text = text

    def __str__(self):
        return self._text

    def __repr__(self):
        return f"Address({self._text!r})"

    def __eq__(self, other):
        return isinstance(other, Address) and str(other) == self._text

    def __hash__(self):
        return hash(self._text)

    def copy(self):
        return Address(self._engine, self._text)

    @property
    def hg_addr(self):
        """Compatibility with py-mochi-margo: the address as Yokan needs it."""
        return self._text

    def get_internal_hg_addr(self):
        return self._text


class Engine:
    """Engine(addr, mode=server, use_progress_thread=False, num_rpc_threads=0, config="")

    ``config`` (dict or JSON string) accepts ``num_rpc_threads``,
    ``rndv_threshold`` (bytes above which values use rendezvous/RDMA),
    ``spin_us``, ``max_message_size`` and ``ucx`` (raw UCX settings).
    """

    def __init__(self, addr, mode=server, use_progress_thread=False, num_rpc_threads=0, config=""):
        if isinstance(config, dict):
            config = _json.dumps(config) if config else ""
        if config and not isinstance(config, str):
            raise TypeError("config must be a dict or a JSON string")
        if not config and num_rpc_threads:
            config = _json.dumps({"num_rpc_threads": int(num_rpc_threads)})
        if not isinstance(addr, str):
            raise TypeError("addr must be a string such as 'tcp' or 'na+sm'")
        try:
            self._native = _yokan.Engine(_protocol_address(addr), mode == server, config)
        except Exception as e:  # noqa: BLE001 - re-raised with margo's wording
            code = getattr(e, "code", None)
            if code == 7:  # malformed config: keep the Yokan error
                raise
            raise RuntimeError(f"margo_init() returned MARGO_INSTANCE_NULL ({e})") from e
        self._finalized = False

    # -- identity ---------------------------------------------------------

    @property
    def mid(self):
        """What Yokan's Provider and Client take (the native engine)."""
        return self._native

    def get_internal_mid(self):
        return self._native

    @property
    def listening(self):
        return self._native.listening

    @property
    def protocol(self):
        return self._native.protocol

    @property
    def config(self):
        return _json.loads(self._native.config())

    def addr(self):
        """This engine's own address."""
        return Address(self, self._native.self_address())

    @property
    def address(self):
        return self.addr()

    def lookup(self, address):
        """Resolves an address string; raises MargoException if nobody answers."""
        try:
            self._native.lookup(str(address))
        except RuntimeError as e:
            raise MargoException(f"margo_addr_lookup() failed: {e}") from e
        return Address(self, str(address))

    # -- lifetime ---------------------------------------------------------

    def finalize(self):
        """Stops the engine: providers stop serving, pending calls fail."""
        if not self._finalized:
            self._finalized = True
            self._native.finalize()

    @property
    def finalized(self):
        return self._finalized or self._native.finalized

    def wait_for_finalize(self):
        """Blocks until the engine is finalized (Ctrl-C still works)."""
        while not self._native.wait_for_finalize(200.0):
            pass
        self._finalized = True

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.finalize()
        return False

    def __del__(self):
        try:
            self.finalize()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


MargoInstance = Engine
MargoAddress = Address
