"""The server side: :class:`Provider`."""

from __future__ import annotations

import json
import os
from typing import Any, Dict, Literal, Optional, Union

from mochi.yokan import _common, _server
from mochi.yokan.exception import ServerException as Exception  # noqa: A004

__all__ = ["Provider", "Exception"]


def _native_engine(engine: Any) -> _common.Engine:
    """Accepts a mochi.margo.Engine, anything with a ``mid``, or the native engine."""
    if isinstance(engine, _common.Engine):
        return engine
    mid = getattr(engine, "mid", None)
    if callable(mid):
        mid = mid()
    if isinstance(mid, _common.Engine):
        return mid
    raise TypeError(f"engine must be a mochi.margo.Engine, not {type(engine).__name__}")


def _engine_or_mid(engine: Any, mid: Any) -> Any:
    """The engine given as ``engine=`` or, upstream's name, ``mid=`` (exactly one)."""
    if (engine is None) == (mid is None):
        raise TypeError("give the engine once: as engine= or as mid= (engine.mid)")
    return engine if mid is None else mid


class Provider:
    """Serves one database under ``provider_id`` on ``engine``.

    ``config`` is a JSON string (or a dict), e.g.
    ``'{"database": {"type": "map", "config": {}}}'``. Raises
    :class:`mochi.yokan.server.Exception` with ``YOKAN_ERR_INVALID_CONFIG`` for a
    malformed config or an unknown backend, ``YOKAN_ERR_INVALID_PROVIDER`` when
    the id is taken on this engine.

    Destroying the provider (``del``, ``close()``, leaving a ``with`` block or
    finalizing the engine) stops serving; it never deletes persistent data.
    """

    def __init__(
        self,
        engine: Any = None,
        provider_id: Optional[int] = None,
        config: Union[str, Dict[str, Any], None] = None,
        *,
        mid: Any = None,
    ) -> None:
        engine = _engine_or_mid(engine, mid)
        if provider_id is None:
            raise TypeError("Provider() needs a provider_id")
        if isinstance(config, dict):
            config = json.dumps(config)
        if config is None:
            config = ""
        if not isinstance(config, str):
            raise TypeError("config must be a JSON string or a dict")
        if not isinstance(provider_id, int) or not 0 <= provider_id <= 0xFFFF:
            raise Exception("provider_id must be an integer in [0, 65535]", 3)
        self._native: _server.Provider = _server.Provider(
            _native_engine(engine), provider_id, config
        )

    @property
    def provider_id(self) -> int:
        """Returns the provider id this provider serves under. Raises
        ``AttributeError`` after :meth:`close`."""
        return self._native.provider_id

    @property
    def config(self) -> Dict[str, Any]:
        """Returns the complete configuration, backend defaults filled in, as a
        dict. Raises ``AttributeError`` after :meth:`close`."""
        config: Dict[str, Any] = json.loads(self._native.config())
        return config

    def snapshot(self, dest_path: str, remove_source: bool = False) -> None:
        """Writes a consistent copy of the database to ``dest_path`` (upstream's
        layout: ``yokan-snapshot.json`` and ``data/``). The provider keeps
        serving; backends without a consistent-copy facility of their own hold
        writers (and gets) back while they are dumped (see docs/snapshot.rst).
        With ``remove_source``, the database is then detached and its files
        deleted, after success only; later calls answer
        ``YOKAN_ERR_INVALID_DATABASE``. Returns None. Raises
        :class:`mochi.yokan.server.Exception`: ``YOKAN_ERR_INVALID_ARGS`` (empty
        path, or one that already holds a snapshot), ``YOKAN_ERR_INVALID_DATABASE``
        (no database), ``YOKAN_ERR_PERMISSION`` (``remove_source`` on a
        read-only provider), ``YOKAN_ERR_IO``."""
        self._native.snapshot(os.fspath(dest_path), bool(remove_source))

    def restore(
        self,
        src_path: str,
        new_root: str,
        extra_config: Union[str, Dict[str, Any], None] = None,
    ) -> None:
        """Restores the snapshot at ``src_path``: copies its data into
        ``new_root`` (required; absent or empty), opens it and serves it. A
        database already served is replaced only once the new one opened, so a
        failed restore leaves it serving. ``extra_config`` (a dict or JSON
        text) is merged into the snapshot's backend config, its values winning.
        Returns None. Raises :class:`mochi.yokan.server.Exception`:
        ``YOKAN_ERR_INVALID_ARGS`` (no ``new_root`` or manifest, ``new_root`` not
        empty), ``YOKAN_ERR_INVALID_CONFIG`` (bad manifest or ``extra_config``),
        ``YOKAN_ERR_INVALID_BACKEND`` (backend not compiled in),
        ``YOKAN_ERR_CORRUPTION`` (data missing or damaged), ``YOKAN_ERR_IO``."""
        if new_root is None or new_root == "":
            raise Exception("restore() needs a new_root", 3)
        if isinstance(extra_config, dict):
            extra_config = json.dumps(extra_config)
        self._native.restore(os.fspath(src_path), os.fspath(new_root), extra_config or "")

    def migrate(
        self,
        dest_address: Any,
        dest_provider_id: int,
        new_root: Optional[str] = None,
        extra_config: Union[str, Dict[str, Any], None] = None,
    ) -> None:
        """Moves the database to the provider ``dest_provider_id`` at
        ``dest_address`` (an address or its string), which must have none
        (started with config ``"{}"``); any backend, to the same backend type.
        The data goes over the engine in chunks; a chunk whose reply is lost is
        sent again. Writes are refused with ``YOKAN_ERR_BUSY`` while it runs;
        reads go on. On success this provider answers ``YOKAN_ERR_MIGRATED``
        with a message naming the destination (see
        :func:`mochi.yokan.client.migration_target`) and its files are
        deleted; on failure it serves again. ``new_root`` is where the
        destination puts the data (required for persistent backends; absent
        or empty). Returns None. Raises :class:`mochi.yokan.server.Exception`:
        ``YOKAN_ERR_INVALID_DATABASE`` (no database here, or one there),
        ``YOKAN_ERR_INVALID_BACKEND``, ``YOKAN_ERR_INVALID_ARGS``,
        ``YOKAN_ERR_FROM_MERCURY`` / ``YOKAN_ERR_TIMEOUT`` (destination
        unreachable or dead), ``YOKAN_ERR_IO``."""
        if isinstance(extra_config, dict):
            extra_config = json.dumps(extra_config)
        self._native.migrate(
            str(dest_address),
            int(dest_provider_id),
            os.fspath(new_root) if new_root else "",
            extra_config or "",
        )

    def close(self) -> None:
        """Stops serving now (idempotent). Returns None; never raises."""
        # Dropping the last reference destroys the native provider; its
        # accessors then raise AttributeError, which is what close() promises.
        self._native = None  # type: ignore[assignment]

    def __enter__(self) -> Provider:
        return self

    def __exit__(self, *exc: object) -> Literal[False]:
        self.close()
        return False


if __name__ == "__main__":  # python -m mochi.yokan.server ADDRESS -c CONFIG
    import sys

    from mochi.yokan.daemon import main

    sys.exit(main())
