"""Every code block of the docs and the README runs, so no example can rot.

Which blocks run, and how:

- ```` ```python ```` fences and ```` ```{code-block} python ```` directives are
  executed; the blocks of one page run in order in one namespace, so a block may
  use the names an earlier block of its page defined. Assertions in a block are
  the claims the page makes.
- ```` ```pycon ```` fences are doctests (``>>>`` lines and their printed
  output, compared with ELLIPSIS and NORMALIZE_WHITESPACE), in the same namespace.
- ```` ```console ```` fences: each ``$ python ...`` command runs with this
  interpreter from the repository root and must exit with status 0; other
  commands (``pip``, ``nox``) are shown, not run.

A block that needs an optional library says so in its first line,
``# requires: torch`` (several: ``# requires: jax, torch``); it is skipped,
with that reason, where the library cannot be imported. ``cupy`` also needs a
CUDA device. Names outside :data:`OPTIONAL` are an error, so a typo cannot
skip a block silently.

Tracebacks point at the Markdown file and line of the failing statement.
"""

from __future__ import annotations

import doctest
import functools
import importlib
import importlib.util
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.docs

ROOT = Path(__file__).resolve().parent.parent
PAGES = [*sorted((ROOT / "docs").glob("*.md")), ROOT / "README.md"]

# The optional libraries a block may require (import name -> what to tell the reader).
OPTIONAL = {
    "torch": "PyTorch",
    "jax": "JAX",
    "cupy": "CuPy and a CUDA device",
    "dask": "Dask",
    "distributed": "dask.distributed",
    "array_api_strict": "array-api-strict",
    "matplotlib": "Matplotlib",
    "sklearn": "scikit-learn",
    "scipy": "SciPy",
    "optax": "optax",
}

RUN = {"python", "py", "python3", "pycon", "console"}
# Directives whose body is Markdown: fences inside them are scanned too.
_CODE_DIRECTIVES = {"{code-block}", "{code}", "{sourcecode}"}
_OPAQUE_DIRECTIVES = {
    "{math}",
    "{literalinclude}",
    "{eval-rst}",
    "{raw}",
    "{csv-table}",
    "{example-output}",
}
_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*)$")
_REQUIRES = re.compile(r"^\s*(?:>>>\s*)?#\s*requires:\s*(?P<names>.+?)\s*$")


@dataclass(frozen=True)
class Block:
    """One code block: its page, the line its code starts on, its language."""

    page: Path
    line: int  # 1-based line of the first code line in the page
    lang: str
    code: str

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    def requires(self) -> list[str]:
        first = next((ln for ln in self.code.splitlines() if ln.strip()), "")
        m = _REQUIRES.match(first)
        return [] if m is None else [n.strip() for n in m["names"].split(",") if n.strip()]


def _strip_options(body: list[str]) -> tuple[int, list[str]]:
    """Drop a directive's ``:option:`` lines or ``---`` YAML header; return how
    many lines were dropped and the code."""
    if body and body[0].strip() == "---":
        end = next((i for i in range(1, len(body)) if body[i].strip() == "---"), None)
        if end is not None:
            return end + 1, body[end + 1 :]
    n = 0
    while n < len(body) and re.match(r"^\s*:[\w-]+:", body[n]):
        n += 1
    if n and n < len(body) and not body[n].strip():
        n += 1
    return n, body[n:]


def extract(page: Path) -> list[Block]:
    """The code blocks of a Markdown page that the docs tests run, in order."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    stack: list[tuple[str, int]] = []  # open transparent directive fences
    i = 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        fence, info, indent = m["fence"], m["info"].strip(), len(m["indent"])
        if stack and not info and fence[0] == stack[-1][0][0] and len(fence) >= stack[-1][1]:
            stack.pop()  # closes a transparent directive
            i += 1
            continue
        words = info.split()
        head = words[0] if words else ""
        if head.startswith("{") and head not in _CODE_DIRECTIVES | _OPAQUE_DIRECTIVES:
            stack.append((fence, len(fence)))  # e.g. {note}: scan its body
            i += 1
            continue
        # An opaque fence: find its end.
        j = i + 1
        while j < len(lines):
            c = _FENCE.match(lines[j])
            closes = c and not c["info"].strip() and c["fence"][0] == fence[0]
            if closes and len(c["fence"]) >= len(fence):
                break
            j += 1
        body = [ln[indent:] if not ln[:indent].strip() else ln.lstrip() for ln in lines[i + 1 : j]]
        start = i + 2  # 1-based line of the first body line
        lang = head
        if head in _CODE_DIRECTIVES:
            lang = words[1] if len(words) > 1 else ""
            dropped, body = _strip_options(body)
            start += dropped
        if lang in RUN:
            lang = "python" if lang in {"py", "python3"} else lang
            blocks.append(Block(page, start, lang, textwrap.dedent("\n".join(body)) + "\n"))
        i = j + 1
    return blocks


ALL_BLOCKS = [b for page in PAGES if page.exists() for b in extract(page)]


@functools.cache
def _missing(name: str) -> str | None:
    """Why optional library ``name`` cannot be used here, or None if it can."""
    if name not in OPTIONAL:
        pytest.fail(f"unknown requirement {name!r}; known: {sorted(OPTIONAL)}")
    try:
        module = importlib.import_module(name)
    except ImportError as e:
        return f"needs {OPTIONAL[name]}, which is not importable here ({e})"
    if name == "cupy":
        try:
            if module.cuda.runtime.getDeviceCount() < 1:
                return "needs a CUDA device for CuPy; none is present"
        except Exception as e:  # CUDARuntimeError without a driver
            return f"needs a CUDA device for CuPy; none is usable ({type(e).__name__}: {e})"
    return None


_NAMESPACES: dict[Path, dict[str, Any]] = {}
_FAILED: dict[Path, str] = {}


def _namespace(page: Path) -> dict[str, Any]:
    return _NAMESPACES.setdefault(page, {"__name__": f"docs_{page.stem.replace('-', '_')}"})


def _exec(block: Block) -> None:
    # Pad with blank lines so tracebacks give the Markdown line numbers.
    source = "\n" * (block.line - 1) + block.code
    exec(compile(source, str(block.page), "exec"), _namespace(block.page))


def _doctest(block: Block) -> None:
    parser = doctest.DocTestParser()
    test = parser.get_doctest(block.code, {}, block.id, str(block.page), block.line - 1)
    test.globs = _namespace(block.page)  # DocTest copies the globals it is given
    flags = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
    runner = doctest.DocTestRunner(optionflags=flags)
    report: list[str] = []
    result = runner.run(test, out=report.append, clear_globs=False)
    if result.failed:
        pytest.fail("".join(report), pytrace=False)


def _console(block: Block) -> None:
    commands = [ln[2:] for ln in block.code.splitlines() if ln.startswith("$ ")]
    for command in commands:
        argv = shlex.split(command)
        if argv[0] != "python" or argv[1:3] == ["-m", "pip"]:
            # pip, nox, git: shown to the reader, not run here (an install
            # would replace the package under test in the running environment).
            continue
        if argv[1:3] == ["-m", "l2loss"] and importlib.util.find_spec("l2loss.__main__") is None:
            pytest.skip("l2loss has no __main__ module in this checkout")
        done = subprocess.run(
            [sys.executable, *argv[1:]],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert done.returncode == 0, (
            f"{block.id}: `{command}` exited with {done.returncode}\n"
            f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
        )


@pytest.mark.parametrize("block", ALL_BLOCKS, ids=[b.id for b in ALL_BLOCKS])
def test_block(block: Block, dask_may_compute: None) -> None:
    """The block runs without error (doctests: and prints what the page shows)."""
    if block.page in _FAILED:
        pytest.skip(f"an earlier block of this page failed ({_FAILED[block.page]})")
    for name in block.requires():
        why = _missing(name)
        if why is not None:
            pytest.skip(why)
    try:
        if block.lang == "pycon":
            _doctest(block)
        elif block.lang == "console":
            _console(block)
        else:
            _exec(block)
    except BaseException:
        if block.lang != "console":
            _FAILED[block.page] = block.id
        raise


# -- the runner itself --------------------------------------------------------------


def test_every_page_is_covered() -> None:
    """Each hand-written page of the docs has code that runs, and is in the toctree."""
    pages = {p.stem: p for p in PAGES if p.parent.name == "docs"}
    with_code = {b.page.stem for b in ALL_BLOCKS if b.lang in {"python", "pycon"}}
    for stem in ("getting-started", "derivation", "backends", "custom-rules"):
        assert stem in pages, f"docs/{stem}.md is missing"
        assert stem in with_code, f"docs/{stem}.md has no python block to run"
    index = (ROOT / "docs" / "index.md").read_text(encoding="utf-8")
    for stem in pages:
        if stem != "index":
            assert re.search(rf"^{re.escape(stem)}$", index, re.M), f"{stem} not in the toctree"


def test_requirements_are_known() -> None:
    """A ``# requires:`` line only names libraries the runner knows how to check."""
    for block in ALL_BLOCKS:
        unknown = set(block.requires()) - set(OPTIONAL)
        assert not unknown, f"{block.id}: unknown requirement(s) {sorted(unknown)}"


def test_extract_handles_directives(tmp_path: Path) -> None:
    """Fences in lists and admonitions, {code-block} options and non-run fences."""
    page = tmp_path / "page.md"
    page.write_text(
        textwrap.dedent(
            """\
            # Title

            ```python
            a = 0
            for _ in range(1):
                a += 1
            ```

            ````{note}
            ```python
            b = a + 1
            ```
            ````

            1. a list item

               ```{code-block} python
               :caption: an option

               c = b + 1
               ```

            ```text
            not run
            ```

            ```{math}
            x = 1
            ```

            ```pycon
            >>> print(c)
            3
            ```
            """
        ),
        encoding="utf-8",
    )
    blocks = extract(page)
    assert [(b.line, b.lang, b.code) for b in blocks] == [
        (4, "python", "a = 0\nfor _ in range(1):\n    a += 1\n"),
        (11, "python", "b = a + 1\n"),
        (20, "python", "c = b + 1\n"),
        (32, "pycon", ">>> print(c)\n3\n"),
    ]
    ns: dict[str, Any] = {}
    for b in blocks[:3]:
        exec(b.code, ns)
    assert ns["c"] == 3


def test_requires_line() -> None:
    block = Block(ROOT / "x.md", 1, "python", "\n# requires: jax, torch\nimport jax\n")
    assert block.requires() == ["jax", "torch"]
    assert Block(ROOT / "x.md", 1, "python", "import numpy\n").requires() == []
