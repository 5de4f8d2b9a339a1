"""The installed package carries real type information (PEP 561): the
``py.typed`` markers and the stubs of the compiled modules are installed, the
package passes ``mypy --strict``, and a user's script is checked against it:
correct use passes, an obvious type error is rejected."""

import ast
import os
import site
import subprocess
import sys
import textwrap
import types
from pathlib import Path

import mochi.margo
import mochi.yokan
import pytest
from mochi.yokan import _client, _common, _mode, _server
from mochi.yokan.mode import Mode

pytest.importorskip("mypy", reason="mypy is not installed (pip install mypy)")

YOKAN_DIR = Path(list(mochi.yokan.__path__)[0])
MARGO_DIR = Path(list(mochi.margo.__path__)[0])
# The directory that holds the installed 'mochi' (site-packages, or a staging tree).
ROOT = YOKAN_DIR.parent.parent
# The compiled modules, each with its own stub.
NATIVE = {"_common": _common, "_mode": _mode, "_client": _client, "_server": _server}


def _mypy(tmp_path, *args):
    """Runs mypy --strict on the installed package; returns (exit code, output)."""
    env = dict(os.environ)
    # mypy finds packages in site-packages by itself (and refuses them in
    # MYPYPATH); anywhere else it needs to be told where 'mochi' is.
    site_dirs = {Path(p).resolve() for p in site.getsitepackages() + [site.getusersitepackages()]}
    if ROOT.resolve() not in site_dirs:
        env["MYPYPATH"] = str(ROOT)
    cmd = [
        sys.executable,
        "-m",
        "mypy",
        "--strict",
        "--no-incremental",
        "--cache-dir",
        str(tmp_path / ".mypy_cache"),
        "--python-executable",
        sys.executable,
        *args,
    ]
    proc = subprocess.run(
        cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    return proc.returncode, proc.stdout + proc.stderr


def test_markers_and_stubs_are_installed():
    assert (YOKAN_DIR / "py.typed").is_file()
    assert (MARGO_DIR / "py.typed").is_file()
    for name in NATIVE:
        assert (YOKAN_DIR / f"{name}.pyi").is_file(), name


def _stub_names(path):
    tree = ast.parse(path.read_text())
    stub = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            stub[node.name] = {n.name for n in node.body if isinstance(n, ast.FunctionDef)}
        elif isinstance(node, ast.FunctionDef):
            stub[node.name] = set()
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            stub[node.target.id] = set()
    return stub


@pytest.mark.parametrize("name", sorted(NATIVE))
def test_stub_names_what_the_compiled_module_exports(name):
    """Every public class and function of each native module is in its stub,
    with every method; a stub that drifts from the bindings fails here."""
    module = NATIVE[name]
    stub = _stub_names(YOKAN_DIR / f"{name}.pyi")
    for attr in dir(module):
        if attr.startswith("__"):
            continue
        obj = getattr(module, attr)
        if isinstance(obj, types.ModuleType):
            continue
        assert attr in stub, f"{name}.{attr} is missing from {name}.pyi"
        if isinstance(obj, type):
            methods = {m for m in vars(obj) if not m.startswith("_")}
            assert methods <= stub[attr], f"{name}.{attr}: {methods - stub[attr]} not in the stub"
    for attr in stub:
        assert hasattr(module, attr), f"{name}.pyi declares {attr}, which the module lacks"


def test_mode_members_seen_by_type_checkers_match_the_native_table():
    # mode.py spells the members out for type checkers; they must be the real ones.
    source = ast.parse((YOKAN_DIR / "mode.py").read_text())
    declared = {}
    for node in ast.walk(source):
        if isinstance(node, ast.ClassDef) and node.name == "Mode":
            for item in node.body:
                if isinstance(item, ast.Assign) and isinstance(item.value, ast.Constant):
                    declared[item.targets[0].id] = item.value.value
    assert declared == dict(_mode.modes)
    assert {m: int(getattr(Mode, m)) for m in declared} == dict(_mode.modes)


def test_package_passes_mypy_strict(tmp_path):
    code, out = _mypy(tmp_path, "-p", "mochi.yokan", "-p", "mochi.margo")
    assert code == 0, out


GOOD = """
    from typing import List, Optional, Tuple

    import numpy as np

    from mochi.margo import Engine
    from mochi.yokan.arrays import get_array, put_array
    from mochi.yokan.client import Client, Database
    from mochi.yokan.client import Exception as ClientError
    from mochi.yokan.connect import database
    from mochi.yokan.exception import YOKAN_ERR_KEY_NOT_FOUND
    from mochi.yokan.mapping import KeyValueStore
    from mochi.yokan.mode import Mode
    from mochi.yokan.server import Provider


    def use(db: Database) -> int:
        db.put("key", b"value", mode=Mode.NEW_ONLY)
        db.put(b"k2", np.arange(4, dtype=np.uint8))
        data: bytes = db.get("key")
        buf = bytearray(16)
        size: int = db.get("key", buf)
        present: bool = db.exists("key")
        length: Optional[int] = db.length("nope")
        many: List[bool] = db.exists_multi(["key", b"k2"])
        pairs: List[Tuple[bytes, Optional[bytes]]] = list(db.scan("", "k"))
        try:
            db.get("absent")
        except ClientError as e:
            assert e.code == YOKAN_ERR_KEY_NOT_FOUND
        coll = db.create_collection("c")
        doc_id: int = coll.store({"a": 1})
        found = coll.find({"a": {"$gt": 0}})
        put_array(db, "arr", np.zeros(3))
        arr = get_array(db, "arr")
        store = KeyValueStore(db, prefix="p/", codec="json")
        store["x"] = {"y": 1}
        return size + len(data) + int(present) + (length or 0) + len(many) + len(pairs) \\
            + doc_id + len(found) + int(arr.size) + len(store)


    def main() -> None:
        with Engine("tcp") as engine:
            provider = Provider(engine, 42, {"database": {"type": "map"}})
            db = Client(engine).make_database_handle(engine.addr(), provider.provider_id)
            use(db)
        with database() as db2:
            use(db2)


    if __name__ == "__main__":
        main()
"""

BAD = """
    from mochi.yokan.connect import database

    with database() as db:
        n: str = db.count()
        db.put("key", 42)
"""


def test_a_correct_user_script_passes_mypy(tmp_path):
    script = tmp_path / "good.py"
    script.write_text(textwrap.dedent(GOOD))
    code, out = _mypy(tmp_path, str(script))
    assert code == 0, out
    # ... and the script does run: the annotations describe real behaviour.
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    run = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr


def test_a_wrong_user_script_is_rejected_by_mypy(tmp_path):
    script = tmp_path / "bad.py"
    script.write_text(textwrap.dedent(BAD))
    code, out = _mypy(tmp_path, str(script))
    assert code == 1, out
    # Both mistakes are caught, at their lines: the stubs carry real types.
    assert 'bad.py:5: error: Incompatible types in assignment (expression has type "int"' in out
    assert 'bad.py:6: error: Argument 2 to "put" of "Database"' in out
