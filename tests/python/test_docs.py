"""The manual in docs/ is true and builds: the Python code blocks of each
page run (as one script per page, in page order, in an empty directory),
JSON blocks parse, and Sphinx builds it with warnings as errors (when Sphinx
is installed). docs/README.md states these rules for whoever writes a page."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from mochi.yokan import _server

DOCS = Path(__file__).resolve().parents[2] / "docs"
PAGES = sorted(p for p in DOCS.glob("*.rst"))
# A page with this comment has examples that need a build with Lua.
NEEDS_LUA = ".. needs-lua"

_DIRECTIVE = re.compile(r"^\.\. code-block:: *(\w+)\s*$")


def code_blocks(path):
    """(language, source, line) of every ``.. code-block::`` of an RST page:
    the indented lines that follow the directive (and its options)."""
    lines = path.read_text().splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        m = _DIRECTIVE.match(lines[i])
        if not m:
            i += 1
            continue
        start = i + 1
        j = start
        # Options (":linenos:") and blank lines before the body.
        while j < len(lines) and (not lines[j].strip() or lines[j].lstrip().startswith(":")):
            j += 1
        body = []
        while j < len(lines) and (not lines[j].strip() or lines[j].startswith((" ", "\t"))):
            body.append(lines[j])
            j += 1
        text = "\n".join(body)
        indent = min(len(ln) - len(ln.lstrip()) for ln in body if ln.strip()) if body else 0
        source = "\n".join(ln[indent:] for ln in body).strip("\n") + "\n"
        blocks.append((m.group(1), source, i + 1))
        assert text.strip(), f"{path.name}:{start}: empty code block"
        i = j
    return blocks


def test_the_manual_has_its_pages():
    names = {p.stem for p in PAGES}
    for page in [
        "index",
        "quickstart",
        "engine",
        "client",
        "modes",
        "documents",
        "backends",
        "errors",
        "deployment",
        "performance",
        "security",
        "upstream",
        "api",
    ]:
        assert page in names, f"docs/{page}.rst is missing"


def test_the_extractor_sees_indented_blocks(tmp_path):
    page = tmp_path / "p.rst"
    page.write_text(
        "Title\n=====\n\n.. code-block:: python\n\n   x = 1\n\n   assert x == 1\n\nText.\n"
    )
    assert code_blocks(page) == [("python", "x = 1\n\nassert x == 1\n", 4)]


@pytest.mark.parametrize("page", [p for p in PAGES if code_blocks(p)], ids=lambda p: p.stem)
def test_python_blocks_of_each_page_run(page, tmp_path):
    blocks = code_blocks(page)
    python = [(src, line) for lang, src, line in blocks if lang == "python"]
    for lang, src, _line in blocks:
        if lang == "json":
            json.loads(src)  # a config shown to users must be valid JSON
    if not python:
        return
    if NEEDS_LUA in page.read_text() and not _server.has_lua:
        pytest.skip("this page's examples need Lua filters; the build has no Lua")
    # One script per page; each block is preceded by a comment naming its line
    # so that a traceback points at the page.
    script = "".join(f"# --- {page.name}:{line}\n{src}\n" for src, line in python)
    (tmp_path / "page.py").write_text(script)
    env = dict(os.environ)
    proc = subprocess.run(
        [sys.executable, "page.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, f"{page.name}:\n{proc.stdout}\n{proc.stderr}"


def test_the_manual_builds_without_warnings(tmp_path):
    pytest.importorskip("sphinx", reason="Sphinx is not installed (pip install '.[docs]')")
    env = dict(os.environ)
    # autodoc imports the package the tests run against.
    import mochi.yokan

    root = Path(list(mochi.yokan.__path__)[0]).parent.parent
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(root), env.get("PYTHONPATH", "")] if p)
    proc = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html"]
        + ["-d", str(tmp_path / "doctrees"), str(DOCS), str(tmp_path / "html")],
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The API reference is generated from the docstrings.
    api = (tmp_path / "html" / "api.html").read_text()
    assert "make_database_handle" in api
    assert "Returns the" in api or "Returns" in api
    for page in PAGES:
        assert (tmp_path / "html" / f"{page.stem}.html").is_file()
