"""Sphinx configuration: MyST Markdown pages, the furo theme, MathJax and autodoc.

``nox -s docs`` builds with ``-W --keep-going`` (every warning is an error) and
then runs every code block of these pages (tests/test_docs.py).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

# Document the checkout next to this file, whatever else is installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

import l2loss

project = "l2loss"
author = "The l2loss developers"
copyright = "The l2loss developers"
release = l2loss.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]

source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build"]

# MyST: $...$ and $$...$$ math, amsmath environments, ::: fences, anchors for ## headings.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]
myst_heading_anchors = 3

# autodoc: members in source order, type hints in the signature (the parameter
# descriptions say the rest: shapes, dtypes, devices).
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_type_aliases = {"Array": "Array", "Pullback": "Pullback"}
autodoc_default_options = {"members": True}
napoleon_numpy_docstring = True
napoleon_google_docstring = False
napoleon_use_rtype = False

html_theme = "furo"
html_title = f"l2loss {release}"
# docs/_static holds the benchmark figures (written by benchmarks/run.py).
html_static_path = ["_static"] if (Path(__file__).parent / "_static").is_dir() else []


_ALIAS = re.compile(r"TypeAliasForwardRef\('([\w.]+)'\)")


def _alias_names(
    app: Any, what: str, name: str, obj: Any, options: Any, sig: str | None, ret: str | None
) -> tuple[str | None, str | None]:
    """Show the alias ``Array`` inside generics as at the top level (Sphinx 9
    prints ``tuple[TypeAliasForwardRef('Array'), ...]`` there)."""
    sig, ret = (None if s is None else _ALIAS.sub(r"\1", s) for s in (sig, ret))
    return sig, ret


def setup(app: Any) -> None:
    app.connect("autodoc-process-signature", _alias_names)
