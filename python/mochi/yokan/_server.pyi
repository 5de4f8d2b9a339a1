"""Type stub of mochi.yokan._server (bindings/server.cpp). Private: the public
API is mochi.yokan.server and mochi.yokan.backends."""

from typing import List

from mochi.yokan._common import Engine

has_lua: bool

def available_backends() -> List[str]: ...

class Provider:
    def __init__(self, engine: Engine, provider_id: int, config: str) -> None: ...
    @property
    def provider_id(self) -> int: ...
    def config(self) -> str: ...
