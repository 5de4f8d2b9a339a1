"""Document collections: :class:`Collection`.

A collection is a named sequence of documents in a database, with ids 0, 1,
2, ... allocated per collection and never reused. Documents are ``str``
(stored as UTF-8), any bytes-like object, or, for convenience, a ``dict`` or
``list`` stored as JSON. :meth:`Collection.find` runs a MongoDB-style query on
the provider, as a Lua document filter.
"""

from __future__ import annotations

import json
import math
from itertools import chain
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Iterable,
    Iterator,
    List,
    Optional,
    Tuple,
    Union,
)

from mochi.yokan import _client, _mode
from mochi.yokan._types import Buffer, Data
from mochi.yokan.exception import (
    YOKAN_ERR_BUFFER_SIZE,
    YOKAN_ERR_INVALID_ID,
    YOKAN_ERR_KEY_NOT_FOUND,
)
from mochi.yokan.exception import ClientException as Exception  # noqa: A004

if TYPE_CHECKING:
    from mochi.yokan.client import Database

__all__ = ["Collection"]

#: A document: str, a buffer, or a dict / list stored as JSON.
Document = Union[Data, Dict[str, Any], List[Any]]
#: ``callback(index, id, doc)`` of :meth:`Collection.iter` / ``fetch*``.
DocCallback = Callable[[int, int, Optional[memoryview]], Any]

_MODES = dict(_mode.modes)
_LUA_FILTER = _MODES["LUA_FILTER"]

_UINT64_MAX = 2**64 - 1


def _doc(document: Document) -> Data:
    """A document as the native layer takes it (str or bytes-like)."""
    if isinstance(document, (dict, list)):
        return json.dumps(document, separators=(",", ":"))
    return document


def _id(doc_id: int) -> int:
    if isinstance(doc_id, bool) or not isinstance(doc_id, int):
        raise TypeError(f"document ids are ints, not {type(doc_id).__name__}")
    if not 0 <= doc_id <= _UINT64_MAX:
        raise Exception("Invalid document id", YOKAN_ERR_INVALID_ID)
    return doc_id


def _split(buffer: Data, sizes: Iterable[int]) -> List[memoryview]:
    view = memoryview(buffer.encode() if isinstance(buffer, str) else buffer).cast("B")  # type: ignore[arg-type]  # ndarray: see _types.Buffer
    sizes = [int(s) for s in sizes]
    if any(s < 0 for s in sizes):
        raise ValueError("doc_sizes must not be negative")
    if sum(sizes) > len(view):
        raise ValueError("documents buffer is smaller than the sum of doc_sizes")
    out, offset = [], 0
    for s in sizes:
        out.append(view[offset : offset + s])
        offset += s
    return out


def _json_objects(found: Iterable[Tuple[int, bytes]]) -> List[Tuple[int, Dict[str, Any]]]:
    """The (id, document) pairs of a query's matches that are JSON objects:
    other JSON, or no JSON at all, is no document to query (find() on the
    blocking and the asyncio collection)."""
    out = []
    for doc_id, data in found:
        try:
            doc = json.loads(data)
        except ValueError:
            continue
        if isinstance(doc, dict):
            out.append((doc_id, doc))
    return out


class Collection:
    """The collection ``name`` of ``database`` (no RPC is made to create this
    object; see ``Database.create_collection``)."""

    def __init__(self, name: str, database: Database, /) -> None:
        if not isinstance(name, str):
            raise TypeError("a collection name is a str")
        self._name = name
        self._database = database
        self._native = _client.Collection(database._db, name)

    @property
    def name(self) -> str:
        """Returns the collection's name; never raises."""
        return self._name

    @property
    def database(self) -> Database:
        """Returns the :class:`~mochi.yokan.client.Database` it lives in; never raises."""
        return self._database

    def __repr__(self) -> str:
        return f"Collection({self._name!r})"

    # -- collection level (used by Database) --------------------------------

    def _create(self, mode: int = 0, timeout_ms: float = 0.0) -> None:
        self._native.create(int(mode), timeout_ms)

    def _drop(self, mode: int = 0, timeout_ms: float = 0.0) -> None:
        self._native.drop(int(mode), timeout_ms)

    def _exists(self, mode: int = 0, timeout_ms: float = 0.0) -> bool:
        return self._native.exists(int(mode), timeout_ms)

    def size(self, mode: int = 0, timeout_ms: float = 0.0) -> int:
        """Returns the number of live documents.
        Raises :class:`~mochi.yokan.client.Exception` if the call fails (e.g.
        ``YOKAN_ERR_KEY_NOT_FOUND`` if the collection does not exist,
        ``YOKAN_ERR_TIMEOUT``)."""
        return self._native.info(int(mode), timeout_ms)[0]

    def last_id(self, mode: int = 0, timeout_ms: float = 0.0) -> int:
        """Returns the id of the last document allocated (next id - 1); -1 when
        no id was ever allocated.
        Raises :class:`~mochi.yokan.client.Exception` if the call fails (e.g.
        ``YOKAN_ERR_KEY_NOT_FOUND`` if the collection does not exist,
        ``YOKAN_ERR_TIMEOUT``)."""
        return self._native.info(int(mode), timeout_ms)[1] - 1

    # -- store / update --------------------------------------------------------

    def store(self, document: Document, mode: int = 0, timeout_ms: float = 0.0) -> int:
        """Stores ``document`` and returns its new id.
        Raises :class:`~mochi.yokan.client.Exception` if the call fails (e.g.
        ``YOKAN_ERR_KEY_NOT_FOUND`` if the collection does not exist,
        ``YOKAN_ERR_TIMEOUT``)."""
        return self._native.store((_doc(document),), int(mode), timeout_ms)[0]

    def store_multi(
        self, documents: Iterable[Document], mode: int = 0, timeout_ms: float = 0.0
    ) -> List[int]:
        """Stores the documents under consecutive ids; returns the list of ids.
        Raises :class:`~mochi.yokan.client.Exception` if the call fails (e.g.
        ``YOKAN_ERR_KEY_NOT_FOUND`` if the collection does not exist,
        ``YOKAN_ERR_TIMEOUT``)."""
        return self._native.store([_doc(d) for d in documents], int(mode), timeout_ms)

    def store_packed(
        self, documents: Data, doc_sizes: Iterable[int], mode: int = 0, timeout_ms: float = 0.0
    ) -> List[int]:
        """Stores documents packed back to back in one buffer; returns the ids.
        Raises ``ValueError`` if the sizes are negative or overrun the buffer.
        Raises :class:`~mochi.yokan.client.Exception` if the call fails (e.g.
        ``YOKAN_ERR_KEY_NOT_FOUND`` if the collection does not exist,
        ``YOKAN_ERR_TIMEOUT``)."""
        return self._native.store(_split(documents, doc_sizes), int(mode), timeout_ms)

    def update(self, id: int, document: Document, mode: int = 0, timeout_ms: float = 0.0) -> None:
        """Replaces document ``id``; returns None. An erased id comes back; an
        id that was never allocated raises ``YOKAN_ERR_INVALID_ID`` unless
        ``mode`` has UPDATE_NEW (32768). Also raises
        ``TypeError`` for an id that is not an int, ``YOKAN_ERR_INVALID_ID``
        for one outside the uint64 range.
        Raises :class:`~mochi.yokan.client.Exception` if the call fails (e.g.
        ``YOKAN_ERR_KEY_NOT_FOUND`` if the collection does not exist,
        ``YOKAN_ERR_TIMEOUT``)."""
        self._native.update((_id(id),), (_doc(document),), int(mode), timeout_ms)

    def update_multi(
        self,
        ids: Iterable[int],
        documents: Iterable[Document],
        mode: int = 0,
        timeout_ms: float = 0.0,
    ) -> None:
        """Replaces the documents ``ids`` as :meth:`update`; returns None.
        Raises ``ValueError`` if the two lists differ in length, and as
        :meth:`update` does."""
        ids = [_id(i) for i in ids]
        documents = [_doc(d) for d in documents]
        if len(ids) != len(documents):
            raise ValueError("ids and documents should have the same length")
        self._native.update(ids, documents, int(mode), timeout_ms)

    def update_packed(
        self,
        ids: List[int],
        documents: Data,
        doc_sizes: List[int],
        mode: int = 0,
        timeout_ms: float = 0.0,
    ) -> List[int]:
        """Like update_multi with the documents packed in one buffer; returns
        ``ids``. Raises ``ValueError`` for mismatched lengths or sizes, and as
        :meth:`update` does."""
        if len(ids) != len(doc_sizes):
            raise ValueError("ids and doc_sizes should have the same length")
        self._native.update(
            [_id(i) for i in ids], _split(documents, doc_sizes), int(mode), timeout_ms
        )
        return ids

    # -- load ------------------------------------------------------------------

    def load(
        self, id: int, buffer: Optional[Buffer] = None, mode: int = 0, timeout_ms: float = 0.0
    ) -> Any:
        """Returns document ``id``: as ``bytes`` without ``buffer``; with a
        writable ``buffer``, written there and its size (an int) returned.
        Raises :class:`~mochi.yokan.client.Exception` with
        ``YOKAN_ERR_KEY_NOT_FOUND`` if absent, ``YOKAN_ERR_BUFFER_SIZE`` if the
        buffer is too small; and
        ``TypeError`` for an id that is not an int, ``YOKAN_ERR_INVALID_ID``
        for one outside the uint64 range."""
        if buffer is None:
            (size,), (doc,) = self._native.load((_id(id),), 2, None, int(mode), timeout_ms)
        else:
            (size,), _ = self._native.load((_id(id),), 0, (buffer,), int(mode), timeout_ms)
        if size is None:
            raise Exception("Key not found", YOKAN_ERR_KEY_NOT_FOUND)
        if size == -1:
            raise Exception("Buffer too small", YOKAN_ERR_BUFFER_SIZE)
        return doc if buffer is None else size

    def load_json(self, id: int, mode: int = 0, timeout_ms: float = 0.0) -> Any:
        """Returns document ``id`` parsed as JSON. Raises as :meth:`load`, and
        ``ValueError`` if the document is not JSON."""
        return json.loads(self.load(id, None, mode, timeout_ms))

    def load_multi(
        self,
        ids: Iterable[int],
        buffers: Optional[Iterable[Buffer]] = None,
        mode: int = 0,
        timeout_ms: float = 0.0,
    ) -> List[Any]:
        """With ``buffers``: fills them and returns sizes (None: absent, -1: too
        small). Without: returns a list of ``bytes`` or None. Raises
        ``ValueError`` if ``ids`` and ``buffers`` differ in length;
        ``TypeError`` for an id that is not an int, ``YOKAN_ERR_INVALID_ID``
        for one outside the uint64 range.
        Raises :class:`~mochi.yokan.client.Exception` if the call fails (e.g.
        ``YOKAN_ERR_KEY_NOT_FOUND`` if the collection does not exist,
        ``YOKAN_ERR_TIMEOUT``)."""
        ids = [_id(i) for i in ids]
        if buffers is None:
            _, docs = self._native.load(ids, 2, None, int(mode), timeout_ms)
            return docs
        buffers = list(buffers)
        if len(ids) != len(buffers):
            raise ValueError("ids and buffers should have the same length")
        sizes, _ = self._native.load(ids, 0, buffers, int(mode), timeout_ms)
        return sizes

    def load_packed(
        self, ids: Iterable[int], buffer: Buffer, mode: int = 0, timeout_ms: float = 0.0
    ) -> List[Optional[int]]:
        """Writes documents back to back in ``buffer`` (absent ids take no
        space). Returns their sizes, None if absent, -1 if it did not fit (and
        every later one).
        Raises :class:`~mochi.yokan.client.Exception` if the call fails (e.g.
        ``YOKAN_ERR_KEY_NOT_FOUND`` if the collection does not exist,
        ``YOKAN_ERR_TIMEOUT``)."""
        sizes, _ = self._native.load([_id(i) for i in ids], 1, (buffer,), int(mode), timeout_ms)
        return sizes

    def fetch(self, id: int, callback: DocCallback, mode: int = 0, timeout_ms: float = 0.0) -> Any:
        """Calls ``callback(0, id, doc)``, ``doc`` a read-only memoryview or
        None if absent, and returns what the callback returns. Callback
        exceptions propagate; raises as :meth:`load_multi`."""
        (doc,) = self.load_multi((id,), None, mode, timeout_ms)
        return callback(0, id, None if doc is None else memoryview(doc))

    def fetch_multi(
        self,
        ids: Iterable[int],
        callback: DocCallback,
        mode: int = 0,
        batch_size: int = 0,
        timeout_ms: float = 0.0,
    ) -> None:
        """Calls ``callback(index, id, doc)`` for each id, ``batch_size`` ids
        per round trip (0: all at once); returns None. Callback exceptions
        propagate; raises as :meth:`load_multi`."""
        ids = list(ids)
        step = int(batch_size) if batch_size > 0 else max(len(ids), 1)
        for start in range(0, len(ids), step):
            batch = ids[start : start + step]
            docs = self.load_multi(batch, None, mode, timeout_ms)
            for offset, (doc_id, doc) in enumerate(zip(batch, docs)):
                callback(start + offset, doc_id, None if doc is None else memoryview(doc))

    # -- length / erase -------------------------------------------------------

    def length(self, id: int, mode: int = 0, timeout_ms: float = 0.0) -> Optional[int]:
        """Returns the size of document ``id``, or None if absent. Raises

        ``TypeError`` for an id that is not an int, ``YOKAN_ERR_INVALID_ID``
        for one outside the uint64 range.
        Raises :class:`~mochi.yokan.client.Exception` if the call fails (e.g.
        ``YOKAN_ERR_KEY_NOT_FOUND`` if the collection does not exist,
        ``YOKAN_ERR_TIMEOUT``)."""
        return self._native.length((_id(id),), int(mode), timeout_ms)[0]

    def length_multi(
        self, ids: Iterable[int], mode: int = 0, timeout_ms: float = 0.0
    ) -> List[Optional[int]]:
        """Returns the document sizes, None for absent ids; raises as :meth:`length`."""
        return self._native.length([_id(i) for i in ids], int(mode), timeout_ms)

    def erase(self, id: int, mode: int = 0, timeout_ms: float = 0.0) -> None:
        """Erases document ``id``; returns None. Erasing an absent id is not
        an error. Raises
        ``TypeError`` for an id that is not an int, ``YOKAN_ERR_INVALID_ID``
        for one outside the uint64 range.
        Raises :class:`~mochi.yokan.client.Exception` if the call fails (e.g.
        ``YOKAN_ERR_KEY_NOT_FOUND`` if the collection does not exist,
        ``YOKAN_ERR_TIMEOUT``)."""
        self._native.erase((_id(id),), int(mode), timeout_ms)

    def erase_multi(self, ids: Iterable[int], mode: int = 0, timeout_ms: float = 0.0) -> None:
        """Erases the documents ``ids``; returns None. Raises as :meth:`erase`."""
        self._native.erase([_id(i) for i in ids], int(mode), timeout_ms)

    # -- listing ---------------------------------------------------------------
    # Live documents from ``start_id`` (always included) in id order that pass
    # ``filter``: Lua code with LUA_FILTER (globals __doc__, __id__,
    # __collection__ and cjson), otherwise ignored.

    def list_docs(
        self,
        start_id: int,
        buffers: Iterable[Buffer],
        filter: Data = "",
        mode: int = 0,
        timeout_ms: float = 0.0,
    ) -> List[Tuple[int, int]]:
        """Fills the buffers; returns ``(id, size)`` tuples, size -1 if the
        document did not fit. Fewer tuples than buffers means the end.
        Raises :class:`~mochi.yokan.client.Exception` with
        ``YOKAN_ERR_INVALID_FILTER`` for bad Lua code, or if the call fails."""
        buffers = list(buffers)
        ids, sizes, _ = self._native.list(
            _id(start_id), filter, len(buffers), 0, buffers, int(mode), timeout_ms
        )
        return list(zip(ids, sizes))

    def list_docs_packed(
        self,
        start_id: int,
        buffer: Buffer,
        count: int,
        filter: Data = "",
        mode: int = 0,
        timeout_ms: float = 0.0,
    ) -> List[Tuple[int, int]]:
        """Writes up to ``count`` documents back to back in ``buffer``; returns
        ``(id, size)`` tuples.
        Raises :class:`~mochi.yokan.client.Exception` with
        ``YOKAN_ERR_INVALID_FILTER`` for bad Lua code, or if the call fails."""
        ids, sizes, _ = self._native.list(
            _id(start_id), filter, int(count), 1, (buffer,), int(mode), timeout_ms
        )
        return list(zip(ids, sizes))

    def scan(
        self,
        from_id: int = 0,
        filter: Data = "",
        count: int = 0,
        mode: int = 0,
        batch_size: int = 0,
        timeout_ms: float = 0.0,
    ) -> Iterator[Tuple[int, bytes]]:
        """Returns an iterator of ``(id, bytes)`` in id order, ``batch_size``
        (default 256) documents per round trip, each page requested when the
        iteration reaches the one before; ``count=0`` means all. The iteration
        raises as :meth:`list_docs` does."""
        # As Database.scan: a C-level chain over pages, Python only per page.
        return chain.from_iterable(
            self._scan_pages(from_id, filter, count, mode, batch_size, timeout_ms)
        )

    def _scan_pages(
        self,
        from_id: int,
        filter: Data,
        count: int,
        mode: int,
        batch_size: int,
        timeout_ms: float,
    ) -> Iterator[Iterator[Tuple[int, bytes]]]:
        page = int(batch_size) if batch_size > 0 else 256
        remaining = int(count) if count > 0 else None
        n = page if remaining is None else min(page, remaining)
        pending = self._native.list_start(_id(from_id), filter, n, int(mode), timeout_ms)
        while True:
            ids, _, docs = pending.wait()
            if remaining is not None:
                remaining -= len(ids)
            more = (
                len(ids) == n and ids[-1] < _UINT64_MAX - 1 and (remaining is None or remaining > 0)
            )
            if more:  # requested before this page is handed out, as Database.scan
                n = page if remaining is None else min(page, remaining)
                pending = self._native.list_start(ids[-1] + 1, filter, n, int(mode), timeout_ms)
            yield zip(ids, docs)
            if not more:
                return

    def iter(
        self,
        callback: DocCallback,
        from_id: int = 0,
        filter: Data = "",
        count: int = 0,
        mode: int = 0,
        batch_size: int = 0,
        timeout_ms: float = 0.0,
    ) -> None:
        """Calls ``callback(index, id, doc)`` (``doc`` a read-only memoryview)
        in id order from ``from_id``; returns None. Callback exceptions
        propagate; a callback returning ``False`` stops the iteration. Raises
        as :meth:`scan` does."""
        for index, (doc_id, doc) in enumerate(
            self.scan(from_id, filter, count, mode, batch_size, timeout_ms)
        ):
            if callback(index, doc_id, memoryview(doc)) is False:
                return

    def __iter__(self) -> Iterator[bytes]:
        return (doc for _, doc in self.scan())

    def __len__(self) -> int:
        return self.size()

    # -- queries ---------------------------------------------------------------

    def find(
        self,
        query: Dict[str, Any],
        limit: Optional[int] = None,
        batch_size: int = 0,
        timeout_ms: float = 0.0,
    ) -> List[Tuple[int, Dict[str, Any]]]:
        """Returns ``(id, document)`` pairs, in id order, of the JSON documents that
        match ``query``, a MongoDB-style filter such as
        ``{"city": "Boston", "age": {"$gt": 30}}``. Operators: ``$eq $ne $gt
        $gte $lt $lte $in $nin $exists`` on (dotted) field paths, and
        ``$and $or $nor`` lists at the top. The query runs on the provider as
        a Lua document filter; documents that are not JSON are skipped.
        Raises ``ValueError`` for an unknown operator or unsupported operand,
        :class:`~mochi.yokan.client.Exception` with ``YOKAN_ERR_MODE`` if the
        build has no Lua, or if the call fails."""
        code = query_to_lua(query)
        if limit is not None and limit <= 0:
            return []
        found = self.scan(0, code, limit or 0, _LUA_FILTER, batch_size, timeout_ms)
        return _json_objects(found)


# -- query translation -----------------------------------------------------------


def _lua_string(text: Data) -> str:
    """A Lua string literal for ``text``: every byte that is not a letter,
    digit or space is written as a decimal escape, so no input can end the
    literal or inject code."""
    raw = text.encode() if isinstance(text, str) else bytes(text)
    parts = []
    for b in raw:
        c = chr(b)
        parts.append(c if (c.isascii() and (c.isalnum() or c == " ")) else f"\\{b:03d}")
    return '"' + "".join(parts) + '"'


def _lua_scalar(value: Any, op: str) -> str:
    if value is None:
        return "__yk_null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        if -(2**63) <= value < 2**63:
            return str(value)
        value = float(value)
    if isinstance(value, float):
        if math.isnan(value):
            raise ValueError(f"{op}: NaN cannot be compared")
        if math.isinf(value):
            return "math.huge" if value > 0 else "(-math.huge)"
        return repr(value)
    if isinstance(value, str):
        return _lua_string(value)
    raise ValueError(f"{op}: unsupported operand type {type(value).__name__}")


def _lua_path(path: Any) -> str:
    if not isinstance(path, str) or not path:
        raise ValueError("field names must be non-empty strings")
    parts = path.split(".")
    if any(p == "" for p in parts):
        raise ValueError(f"invalid field path {path!r}")
    return "{" + ",".join(_lua_string(p) for p in parts) + "}"


_COMPARE = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}


def _field_condition(path: str, spec: Any) -> str:
    """Lua expression for one field and its condition."""
    v = f"__yk_get(d,{_lua_path(path)})"
    if isinstance(spec, dict) and spec and all(isinstance(k, str) for k in spec):
        if any(k.startswith("$") for k in spec):
            if not all(k.startswith("$") for k in spec):
                raise ValueError(f"field {path!r} mixes operators and plain fields")
            terms = []
            for op, arg in spec.items():
                if op == "$eq":
                    terms.append(f"__yk_eq({v},{_lua_scalar(arg, op)})")
                elif op == "$ne":
                    terms.append(f"not __yk_eq({v},{_lua_scalar(arg, op)})")
                elif op in _COMPARE:
                    terms.append(f"__yk_cmp({v},{_lua_scalar(arg, op)},{_lua_string(op)})")
                elif op in ("$in", "$nin"):
                    if not isinstance(arg, (list, tuple)):
                        raise ValueError(f"{op} needs a list")
                    items = ",".join(_lua_scalar(a, op) for a in arg)
                    t = f"__yk_in({v},{{{items}}},{len(arg)})"
                    terms.append(t if op == "$in" else f"not {t}")
                elif op == "$exists":
                    terms.append(f"({v}~=nil)" if arg else f"({v}==nil)")
                else:
                    raise ValueError(f"unknown query operator {op!r}")
            return "(" + " and ".join(terms) + ")"
        raise ValueError(
            f"field {path!r}: matching a whole sub-document is not supported; use dotted paths"
        )
    if isinstance(spec, (dict, list, tuple)):
        raise ValueError(f"field {path!r}: only scalar values can be matched directly")
    return f"__yk_eq({v},{_lua_scalar(spec, '$eq')})"


def _query_expr(query: Any) -> str:
    if not isinstance(query, dict):
        raise ValueError("a query is a dict")
    terms = []
    for key, spec in query.items():
        if not isinstance(key, str):
            raise ValueError("field names must be strings")
        if key in ("$and", "$or", "$nor"):
            if not isinstance(spec, (list, tuple)) or not spec:
                raise ValueError(f"{key} needs a non-empty list of queries")
            subs = [_query_expr(q) for q in spec]
            if key == "$and":
                terms.append("(" + " and ".join(subs) + ")")
            elif key == "$or":
                terms.append("(" + " or ".join(subs) + ")")
            else:
                terms.append("not (" + " or ".join(subs) + ")")
        elif key.startswith("$"):
            raise ValueError(f"unknown query operator {key!r}")
        else:
            terms.append(_field_condition(key, spec))
    return "(" + (" and ".join(terms) if terms else "true") + ")"


# Helpers defined once per filter state (the chunk runs once per document).
_PRELUDE = """
if __yk_get == nil then
  __yk_null = cjson.null
  function __yk_get(d, path)
    local v = d
    for i = 1, #path do
      if type(v) ~= "table" then return nil end
      local k = path[i]
      local w = v[k]
      if w == nil and #v > 0 then
        local n = tonumber(k)
        if n ~= nil and math.type(n) == "integer" then w = v[n + 1] end
      end
      v = w
    end
    return v
  end
  local function same(a, b)
    if type(a) == "number" and type(b) == "number" then return a == b end
    return type(a) == type(b) and a == b
  end
  function __yk_eq(v, x)
    if same(v, x) then return true end
    if type(v) == "table" then
      for i = 1, #v do if same(v[i], x) then return true end end
    end
    return false
  end
  local function cmp1(v, x, op)
    if type(v) ~= type(x) or (type(v) ~= "number" and type(v) ~= "string") then return false end
    if op == "$gt" then return v > x elseif op == "$gte" then return v >= x
    elseif op == "$lt" then return v < x else return v <= x end
  end
  function __yk_cmp(v, x, op)
    if cmp1(v, x, op) then return true end
    if type(v) == "table" then
      for i = 1, #v do if cmp1(v[i], x, op) then return true end end
    end
    return false
  end
  function __yk_in(v, xs, n)
    for i = 1, n do
      local x = xs[i]
      if x == nil then x = __yk_null end
      if __yk_eq(v, x) then return true end
    end
    return false
  end
end
"""


def query_to_lua(query: Dict[str, Any]) -> str:
    """Returns the Lua document filter for a MongoDB-style ``query`` (see
    :meth:`Collection.find`). Raises ValueError for an unknown operator or an
    unsupported operand."""
    expr = _query_expr(query)
    return (
        _PRELUDE
        + "local ok, d = pcall(cjson.decode, __doc__)\n"
        + 'if not ok or type(d) ~= "table" or #d > 0 then return false end\n'
        + f"return {expr}\n"
    )
