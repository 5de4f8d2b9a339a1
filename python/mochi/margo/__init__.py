"""An Engine compatible with py-mochi-margo's ``mochi.margo.Engine``.

``Engine("tcp")`` listens on 127.0.0.1 on a free port; ``Engine("tcp://HOST:PORT")``
or ``"tcp://IFACE"`` exposes it elsewhere; ``Engine("na+sm")`` is same-host
shared memory only. A listening engine pins UCX to the network device of its
listen address; a client engine (``mode=client``) is not pinned, so that it
reaches providers on other hosts (UCX_NET_DEVICES, or the config's ``ucx``,
pins it).
``str(engine.addr())`` is what another process passes to ``lookup()`` or to
``Client.make_database_handle()``.

This is the subset of py-mochi-margo that mochi-yokan needs (no ``register``,
bulk transfers, ``on_finalize`` or logging); py-mochi-margo also installs
``mochi.margo``, so the two packages cannot share one environment.
"""

from __future__ import annotations

import json as _json
from typing import Any, Dict, Literal, Union

from mochi.yokan import _common

client = 0
server = 1

__all__ = ["Engine", "Address", "MargoException", "client", "server"]


class MargoException(RuntimeError):
    """An engine-level failure (bad address, lookup failure)."""


def _protocol_address(addr: str) -> str:
    if addr in ("tcp", "ofi+tcp", "ucx+tcp", "verbs"):
        return f"{addr}://127.0.0.1:0" if addr != "verbs" else "verbs"
    return addr


class Address:
    """A peer address; ``str()`` gives the string form."""

    def __init__(self, engine: Engine, text: str) -> None:
        self._engine = engine
        self._text = text

    def __str__(self) -> str:
        return self._text

    def __repr__(self) -> str:
        return f"Address({self._text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Address) and str(other) == self._text

    def __hash__(self) -> int:
        return hash(self._text)

    def copy(self) -> Address:
        """Returns an equal Address on the same engine; never raises."""
        return Address(self._engine, self._text)

    @property
    def hg_addr(self) -> str:
        """Compatibility with py-mochi-margo: returns the address as Yokan
        needs it (its string form); never raises."""
        return self._text

    def get_internal_hg_addr(self) -> str:
        """Returns the address as Yokan needs it (as :attr:`hg_addr`); never raises."""
        return self._text


class Engine:
    """Engine(addr, mode=server, use_progress_thread=False, num_rpc_threads=0, config="")

    ``config`` (dict or JSON string) accepts ``num_rpc_threads``,
    ``rndv_threshold`` (bytes above which values use rendezvous/RDMA),
    ``spin_us``, ``max_message_size``, ``ucx`` (raw UCX settings), ``auth``
    (``{"token": ...}`` or ``{"token_file": PATH}``, and ``allow_anonymous``),
    ``max_clients``, ``max_handshakes`` and ``handshake_timeout_ms`` (see the
    README's "Authentication and protected mode").

    Raises ``TypeError`` for an ``addr`` or ``config`` of the wrong type,
    :class:`mochi.yokan.exception.Exception` with ``YOKAN_ERR_INVALID_CONFIG``
    for a malformed config (and in protected mode: a non-loopback listen
    without ``auth``), and ``RuntimeError`` if the engine cannot start.
    """

    def __init__(
        self,
        addr: str,
        mode: int = server,
        use_progress_thread: bool = False,
        num_rpc_threads: int = 0,
        config: Union[str, Dict[str, Any]] = "",
    ) -> None:
        if isinstance(config, dict):
            config = _json.dumps(config) if config else ""
        if config and not isinstance(config, str):
            raise TypeError("config must be a dict or a JSON string")
        if not config and num_rpc_threads:
            config = _json.dumps({"num_rpc_threads": int(num_rpc_threads)})
        if not isinstance(addr, str):
            raise TypeError("addr must be a string such as 'tcp' or 'na+sm'")
        try:
            self._native = _common.Engine(_protocol_address(addr), mode == server, config)
        except Exception as e:  # noqa: BLE001 - re-raised with margo's wording
            code = getattr(e, "code", None)
            if code == 7:  # malformed config: keep the Yokan error
                raise
            raise RuntimeError(f"margo_init() returned MARGO_INSTANCE_NULL ({e})") from e
        self._finalized = False

    # -- identity ---------------------------------------------------------

    @property
    def mid(self) -> _common.Engine:
        """Returns what Yokan's Provider and Client take (the native engine);
        never raises."""
        return self._native

    def get_internal_mid(self) -> _common.Engine:
        """Returns the native engine (as :attr:`mid`); never raises."""
        return self._native

    @property
    def listening(self) -> bool:
        """Returns True if the engine accepts connections (server mode); never raises."""
        return self._native.listening

    @property
    def protocol(self) -> str:
        """Returns the transport protocol, e.g. ``"tcp"``; never raises."""
        return self._native.protocol

    @property
    def config(self) -> Dict[str, Any]:
        """Returns the engine's effective configuration as a dict; never raises."""
        config: Dict[str, Any] = _json.loads(self._native.config())
        return config

    def addr(self) -> Address:
        """Returns this engine's own address (still known after
        :meth:`finalize`); never raises."""
        return Address(self, self._native.self_address())

    @property
    def address(self) -> Address:
        """Returns this engine's own address (as :meth:`addr`); never raises."""
        return self.addr()

    def lookup(self, address: Union[str, Address]) -> Address:
        """Resolves an address string and returns it as an :class:`Address`.
        Raises :class:`MargoException` if nobody answers there."""
        try:
            self._native.lookup(str(address))
        except RuntimeError as e:
            raise MargoException(f"margo_addr_lookup() failed: {e}") from e
        return Address(self, str(address))

    # -- lifetime ---------------------------------------------------------

    def finalize(self) -> None:
        """Stops the engine: providers stop serving, pending calls fail.
        Returns None; idempotent, never raises."""
        if not self._finalized:
            self._finalized = True
            self._native.finalize()

    @property
    def finalized(self) -> bool:
        """Returns True once the engine is finalized; never raises."""
        return self._finalized or self._native.finalized

    def wait_for_finalize(self) -> None:
        """Blocks until the engine is finalized (Ctrl-C still works). Returns
        None; raises ``KeyboardInterrupt`` on Ctrl-C."""
        while not self._native.wait_for_finalize(200.0):
            pass
        self._finalized = True

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        self.finalize()
        return False

    def __del__(self) -> None:
        try:
            self.finalize()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass


MargoInstance = Engine
MargoAddress = Address
