"""Error codes (upstream Yokan's values) and the exception classes.

Every error raised by mochi-yokan is an instance of :class:`Exception` (a
``RuntimeError``) with an integer ``.code``. Errors from client calls are
:class:`ClientException` (also ``mochi.yokan.client.Exception``); errors from
the server side, such as a bad provider configuration, are
:class:`ServerException` (also ``mochi.yokan.server.Exception``).
"""

from __future__ import annotations

from typing import Optional, Union

from mochi.yokan import _common

_builtin_exception = Exception


class Exception(RuntimeError):  # noqa: A001 - the name is the upstream API
    """A Yokan error: ``str(e)`` is the message, ``e.code`` the YOKAN_* code."""

    def __init__(self, message: Union[str, int], code: Optional[int] = None) -> None:
        if code is None and isinstance(message, int):
            code = message
            message = _MESSAGES.get(code, "Unknown error")
        super().__init__(message)
        self._code = int(code) if code is not None else _common.errors["YOKAN_ERR_OTHER"][0]

    @property
    def code(self) -> int:
        """Returns the ``YOKAN_ERR_*`` code of the error (an int, never raises)."""
        return self._code

    @property
    def name(self) -> str:
        """Returns the symbolic name of the code, e.g. ``"YOKAN_ERR_KEY_NOT_FOUND"``
        (``"YOKAN_ERR_UNKNOWN"`` for a code this build does not know); never raises."""
        return _NAMES.get(self._code, "YOKAN_ERR_UNKNOWN")


class ClientException(Exception):
    """An error raised by a client call (``mochi.yokan.client.Exception``)."""


class ServerException(Exception):
    """An error raised on the server side (``mochi.yokan.server.Exception``)."""


# The codes, set from the native table below; declared here for type checkers.
YOKAN_SUCCESS: int
YOKAN_ERR_ALLOCATION: int
YOKAN_ERR_INVALID_MID: int
YOKAN_ERR_INVALID_ARGS: int
YOKAN_ERR_INVALID_PROVIDER: int
YOKAN_ERR_INVALID_DATABASE: int
YOKAN_ERR_INVALID_BACKEND: int
YOKAN_ERR_INVALID_CONFIG: int
YOKAN_ERR_INVALID_ID: int
YOKAN_ERR_INVALID_FILTER: int
YOKAN_ERR_FROM_MERCURY: int
YOKAN_ERR_FROM_ARGOBOTS: int
YOKAN_ERR_FROM_REMI: int
YOKAN_ERR_OP_UNSUPPORTED: int
YOKAN_ERR_OP_FORBIDDEN: int
YOKAN_ERR_KEY_NOT_FOUND: int
YOKAN_ERR_BUFFER_SIZE: int
YOKAN_ERR_KEY_EXISTS: int
YOKAN_ERR_CORRUPTION: int
YOKAN_ERR_IO: int
YOKAN_ERR_INCOMPLETE: int
YOKAN_ERR_TIMEOUT: int
YOKAN_ERR_ABORTED: int
YOKAN_ERR_BUSY: int
YOKAN_ERR_EXPIRED: int
YOKAN_ERR_TRY_AGAIN: int
YOKAN_ERR_SYSTEM: int
YOKAN_ERR_CANCELED: int
YOKAN_ERR_PERMISSION: int
YOKAN_ERR_MODE: int
YOKAN_ERR_NONCONTIG: int
YOKAN_ERR_READONLY: int
YOKAN_ERR_MIGRATED: int
YOKAN_ERR_MID_NOT_LISTENING: int
YOKAN_STOP_ITERATION: int
YOKAN_ERR_OTHER: int

_NAMES = {value: name for name, (value, _msg) in _common.errors.items()}
_MESSAGES = {value: msg for _name, (value, msg) in _common.errors.items()}
globals().update({name: value for name, (value, _msg) in _common.errors.items()})


__all__ = ["Exception", "ClientException", "ServerException"] + sorted(_common.errors.keys())
