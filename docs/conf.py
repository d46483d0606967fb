"""Sphinx configuration: MyST Markdown pages, the furo theme, MathJax and autodoc.

``nox -s docs`` builds with ``-W --keep-going`` (every warning is an error) and
then runs every code block of these pages (tests/test_docs.py). MathJax is served
from the built site, so formulas render without a network; ``_ext/`` holds the
``example-output`` directive, which shows what each example prints.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

# Document the checkout next to this file, whatever else is installed.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))
# The project's own Sphinx extensions.
sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

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
    # copies MathJax 3 (with its fonts) into _static/mathjax of the built site
    "sphinx-mathjax-offline",
    "example_output",
]
mathjax_path = "mathjax/tex-chtml.js"

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
# docs/_static holds the benchmark figures and their JSON, and the style sheet.
html_static_path = ["_static"]
# Wide tables scroll and long lines of console blocks wrap, inside the page.
html_css_files = ["l2loss.css"]


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
