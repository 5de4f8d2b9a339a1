"""The server side: :class:`Provider`."""

from __future__ import annotations

import json
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
