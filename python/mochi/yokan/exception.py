"""Error codes (upstream Yokan's values) and the exception classes.

Every error raised by mochi-yokan is an instance of :class:`Exception` (a
``RuntimeError``) with an integer ``.code``. Errors from client calls are
:class:`ClientException` (also ``mochi.yokan.client.Exception``); errors from
the server side, such as a bad provider configuration, are
:class:`ServerException` (also ``mochi.yokan.server.Exception``).
"""

from mochi.yokan import _yokan

_builtin_exception = Exception


class Exception(RuntimeError):  # noqa: A001 - the name is the upstream API
    """A Yokan error: ``str(e)`` is the message, ``e.code`` the YOKAN_* code."""

    def __init__(self, message, code=None):
        if code is None and isinstance(message, int):
            message, code = _MESSAGES.get(message, "Unknown error"), message
        super().__init__(message)
        self._code = int(code) if code is not None else _yokan.errors["YOKAN_ERR_OTHER"][0]

    @property
    def code(self):
        return self._code

    @property
    def name(self):
        """The symbolic name of the code, e.g. ``"YOKAN_ERR_KEY_NOT_FOUND"``."""
        return _NAMES.get(self._code, "YOKAN_ERR_UNKNOWN")


class ClientException(Exception):
    """An error raised by a client call (``mochi.yokan.client.Exception``)."""


class ServerException(Exception):
    """An error raised on the server side (``mochi.yokan.server.Exception``)."""


_NAMES = {value: name for name, (value, _msg) in _yokan.errors.items()}
_MESSAGES = {value: msg for _name, (value, msg) in _yokan.errors.items()}
globals().update({name: value for name, (value, _msg) in _yokan.errors.items()})

_yokan._register_exceptions(ClientException, ServerException)

__all__ = ["Exception", "ClientException", "ServerException"] + sorted(_yokan.errors.keys())
