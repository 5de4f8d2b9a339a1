"""Type stub of mochi.yokan._client (bindings/client*.cpp,
bindings/collection.cpp). Private: the public API is mochi.yokan.client,
mochi.yokan.collection and mochi.yokan.group, which wrap it.

Arguments the bindings take as ``object`` (keys, values, buffers, batches)
are any ``str`` or buffer-protocol object, or a sequence of them, or a packed
``(buffer, sizes)`` pair; they are typed ``Any`` here because the bindings
decide at run time which form they were given."""

from typing import Any, List, Optional, Tuple

from mochi.yokan._common import Engine

KEY_NOT_FOUND: int
SIZE_TOO_SMALL: int

class CompletionQueue:
    def __init__(self) -> None: ...
    def fd(self) -> int: ...
    def take(self) -> List[int]: ...
    def in_flight(self) -> int: ...
    def peak_in_flight(self) -> int: ...
    def reset_peak(self) -> None: ...

class PendingCall:
    """A call made by a ``*_start`` method; ``wait()`` returns what the
    blocking method of the same name returns."""
    def sent(self) -> bool: ...
    def ready(self) -> bool: ...
    def expire(self) -> None: ...
    def wait(self) -> Any: ...
    def cancel(self) -> None: ...

class Database:
    @property
    def provider_id(self) -> int: ...
    def address(self) -> str: ...
    def transport_info(self) -> str: ...
    def count(self, mode: int, timeout_ms: float) -> int: ...
    def put(self, keys: Any, values: Any, mode: int, timeout_ms: float) -> None: ...
    def get(self, keys: Any, buffers: Any, mode: int, timeout_ms: float) -> List[Optional[int]]: ...
    def get_alloc(self, keys: Any, mode: int, timeout_ms: float) -> List[Optional[bytes]]: ...
    def get_packed(
        self, keys: Any, buffer: Any, mode: int, timeout_ms: float
    ) -> List[Optional[int]]: ...
    def exists(self, keys: Any, mode: int, timeout_ms: float) -> List[bool]: ...
    def length(self, keys: Any, mode: int, timeout_ms: float) -> List[Optional[int]]: ...
    def erase(self, keys: Any, mode: int, timeout_ms: float) -> None: ...
    def erase_range(self, prefix: Any, mode: int, timeout_ms: float) -> None: ...
    def get_range(
        self, key: Any, offset: int, length: int, from_end: bool, mode: int, timeout_ms: float
    ) -> Tuple[Optional[int], bytes]: ...
    def get_range_start(
        self,
        key: Any,
        offset: int,
        length: int,
        from_end: bool,
        mode: int,
        timeout_ms: float,
        completions: Optional[CompletionQueue],
        cookie: int,
    ) -> PendingCall: ...
    def list(
        self,
        from_key: Any,
        filter: Any,
        count: int,
        with_values: bool,
        layout: int,
        key_buffers: Any,
        value_buffers: Any,
        mode: int,
        timeout_ms: float,
    ) -> Tuple[List[int], List[int]]: ...
    def list_start(
        self,
        from_key: Any,
        filter: Any,
        count: int,
        with_values: bool,
        mode: int,
        timeout_ms: float,
        layout: int = 2,
        key_buffers: Any = None,
        value_buffers: Any = None,
        completions: Optional[CompletionQueue] = None,
        cookie: int = 0,
    ) -> PendingCall: ...
    def count_start(
        self, mode: int, timeout_ms: float, completions: Optional[CompletionQueue], cookie: int
    ) -> PendingCall: ...
    def put_start(
        self,
        keys: Any,
        values: Any,
        mode: int,
        timeout_ms: float,
        completions: Optional[CompletionQueue],
        cookie: int,
    ) -> PendingCall: ...
    def get_start(
        self,
        keys: Any,
        buffers: Any,
        mode: int,
        timeout_ms: float,
        completions: Optional[CompletionQueue],
        cookie: int,
    ) -> PendingCall: ...
    def get_packed_start(
        self,
        keys: Any,
        buffer: Any,
        mode: int,
        timeout_ms: float,
        completions: Optional[CompletionQueue],
        cookie: int,
    ) -> PendingCall: ...
    def get_alloc_start(
        self,
        keys: Any,
        mode: int,
        timeout_ms: float,
        completions: Optional[CompletionQueue],
        cookie: int,
    ) -> PendingCall: ...
    def exists_start(
        self,
        keys: Any,
        mode: int,
        timeout_ms: float,
        completions: Optional[CompletionQueue],
        cookie: int,
    ) -> PendingCall: ...
    def length_start(
        self,
        keys: Any,
        mode: int,
        timeout_ms: float,
        completions: Optional[CompletionQueue],
        cookie: int,
    ) -> PendingCall: ...
    def erase_start(
        self,
        keys: Any,
        mode: int,
        timeout_ms: float,
        completions: Optional[CompletionQueue],
        cookie: int,
    ) -> PendingCall: ...
    def erase_range_start(
        self,
        prefix: Any,
        mode: int,
        timeout_ms: float,
        completions: Optional[CompletionQueue],
        cookie: int,
    ) -> PendingCall: ...

class ShardedDatabase:
    def __init__(self, shards: List[Database]) -> None: ...
    def __len__(self) -> int: ...
    def shard_of(self, key: Any) -> int: ...
    def describe(self, shard: int) -> str: ...
    def count(self, mode: int, timeout_ms: float) -> int: ...
    def put(self, keys: Any, values: Any, mode: int, timeout_ms: float) -> None: ...
    def get(self, keys: Any, buffers: Any, mode: int, timeout_ms: float) -> List[Optional[int]]: ...
    def get_alloc(self, keys: Any, mode: int, timeout_ms: float) -> List[Optional[bytes]]: ...
    def get_packed(
        self, keys: Any, buffer: Any, mode: int, timeout_ms: float
    ) -> List[Optional[int]]: ...
    def exists(self, keys: Any, mode: int, timeout_ms: float) -> List[bool]: ...
    def length(self, keys: Any, mode: int, timeout_ms: float) -> List[Optional[int]]: ...
    def erase(self, keys: Any, mode: int, timeout_ms: float) -> None: ...
    def erase_range(self, prefix: Any, mode: int, timeout_ms: float) -> None: ...

def shard_of(key: Any, shards: int) -> int: ...
def fnv1a_64(key: Any) -> int: ...

class Client:
    def __init__(self, engine: Engine) -> None: ...
    def make_database_handle(
        self, address: str, provider_id: int, check: bool = True
    ) -> Database: ...

class Collection:
    def __init__(self, database: Database, name: str) -> None: ...
    @property
    def name(self) -> str: ...
    def create(self, mode: int, timeout_ms: float) -> None: ...
    def drop(self, mode: int, timeout_ms: float) -> None: ...
    def exists(self, mode: int, timeout_ms: float) -> bool: ...
    def info(self, mode: int, timeout_ms: float) -> Tuple[int, int]: ...
    def store(self, documents: Any, mode: int, timeout_ms: float) -> List[int]: ...
    def update(self, ids: Any, documents: Any, mode: int, timeout_ms: float) -> None: ...
    def load(
        self, ids: Any, layout: int, buffers: Any, mode: int, timeout_ms: float
    ) -> Tuple[List[Optional[int]], List[Optional[bytes]]]: ...
    def length(self, ids: Any, mode: int, timeout_ms: float) -> List[Optional[int]]: ...
    def erase(self, ids: Any, mode: int, timeout_ms: float) -> None: ...
    def list(
        self,
        start_id: int,
        filter: Any,
        count: int,
        layout: int,
        buffers: Any,
        mode: int,
        timeout_ms: float,
    ) -> Tuple[List[int], List[int], List[bytes]]: ...
    def list_start(
        self,
        start_id: int,
        filter: Any,
        count: int,
        mode: int,
        timeout_ms: float,
        layout: int = 2,
        buffers: Any = None,
        completions: Optional[CompletionQueue] = None,
        cookie: int = 0,
    ) -> PendingCall: ...
    def create_start(
        self, mode: int, timeout_ms: float, completions: Optional[CompletionQueue], cookie: int
    ) -> PendingCall: ...
    def drop_start(
        self, mode: int, timeout_ms: float, completions: Optional[CompletionQueue], cookie: int
    ) -> PendingCall: ...
    def exists_start(
        self, mode: int, timeout_ms: float, completions: Optional[CompletionQueue], cookie: int
    ) -> PendingCall: ...
    def info_start(
        self, mode: int, timeout_ms: float, completions: Optional[CompletionQueue], cookie: int
    ) -> PendingCall: ...
    def store_start(
        self,
        documents: Any,
        mode: int,
        timeout_ms: float,
        completions: Optional[CompletionQueue],
        cookie: int,
    ) -> PendingCall: ...
    def update_start(
        self,
        ids: Any,
        documents: Any,
        mode: int,
        timeout_ms: float,
        completions: Optional[CompletionQueue],
        cookie: int,
    ) -> PendingCall: ...
    def load_start(
        self,
        ids: Any,
        layout: int,
        buffers: Any,
        mode: int,
        timeout_ms: float,
        completions: Optional[CompletionQueue],
        cookie: int,
    ) -> PendingCall: ...
    def length_start(
        self,
        ids: Any,
        mode: int,
        timeout_ms: float,
        completions: Optional[CompletionQueue],
        cookie: int,
    ) -> PendingCall: ...
    def erase_start(
        self,
        ids: Any,
        mode: int,
        timeout_ms: float,
        completions: Optional[CompletionQueue],
        cookie: int,
    ) -> PendingCall: ...
