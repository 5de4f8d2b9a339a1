"""Every public function, class, method and property of the package says in
its docstring what it returns and what it raises.

The convention, checked here: a docstring names its result with "return(s)"
or "yield(s)" ("Returns None" for procedures) and its errors with "raise(s)"
("never raises" when it cannot fail, "raises as :meth:`x`" to refer)."""

import importlib
import importlib.util
import inspect
import re

import pytest

MODULES = [
    "mochi.margo",
    "mochi.yokan.aio",
    "mochi.yokan.arrays",
    "mochi.yokan.backends",
    "mochi.yokan.client",
    "mochi.yokan.collection",
    "mochi.yokan.connect",
    "mochi.yokan.daemon",
    "mochi.yokan.exception",
    "mochi.yokan.group",
    "mochi.yokan.mapping",
    "mochi.yokan.rebalance",
    "mochi.yokan.mode",
    "mochi.yokan.server",
]
# An optional extra: checked wherever zarr-python 3 is installed (CI installs it).
if importlib.util.find_spec("zarr") is not None:
    MODULES.append("mochi.yokan.zarr")

RETURNS = re.compile(r"\b(returns?|yields?)\b", re.IGNORECASE)
RAISES = re.compile(r"\braises?\b", re.IGNORECASE)


def _public_api():
    """(qualified name, object) for every public callable and property."""
    seen = set()
    for modname in MODULES:
        module = importlib.import_module(modname)
        for name in module.__all__:
            obj = getattr(module, name)
            if inspect.isfunction(obj):
                if obj not in seen:
                    seen.add(obj)
                    yield f"{modname}.{name}", obj
            elif inspect.isclass(obj) and obj.__module__.startswith("mochi."):
                for attr, member in vars(obj).items():
                    if attr.startswith("_") or member in seen:
                        continue
                    if isinstance(member, property) or inspect.isfunction(member):
                        seen.add(member)
                        yield f"{modname}.{name}.{attr}", member


API = list(_public_api())


def test_the_walk_finds_the_api():
    names = {n for n, _ in API}
    # A walk that silently finds nothing would pass everything below.
    assert len(API) > 80
    for expected in (
        "mochi.yokan.client.Database.get",
        "mochi.yokan.client.Database.exists",
        "mochi.yokan.collection.Collection.find",
        "mochi.yokan.server.Provider.config",
        "mochi.margo.Engine.lookup",
        "mochi.yokan.connect.database",
        "mochi.yokan.exception.Exception.code",
    ):
        assert expected in names


@pytest.mark.parametrize("name,obj", API, ids=[n for n, _ in API])
def test_docstring_says_what_it_returns_and_raises(name, obj):
    doc = inspect.getdoc(obj.fget if isinstance(obj, property) else obj)
    assert doc, f"{name} has no docstring"
    assert RETURNS.search(doc), f"{name}: the docstring does not say what it returns"
    assert RAISES.search(doc), f"{name}: the docstring does not say what it raises"


@pytest.mark.parametrize(
    "modname",
    MODULES,
)
def test_public_classes_are_documented(modname):
    module = importlib.import_module(modname)
    for name in module.__all__:
        obj = getattr(module, name)
        if inspect.isclass(obj):
            assert inspect.getdoc(obj), f"{modname}.{name} has no docstring"
