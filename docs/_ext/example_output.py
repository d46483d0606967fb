"""The ``example-output`` directive: what an example script prints, run at build time.

In a MyST page::

    ```{example-output} linear_regression.py
    :args: --steps 100
    ```

runs ``python examples/linear_regression.py --steps 100`` from the repository's
root with the interpreter that builds the docs (the checkout's ``src/`` first on
its path, as for autodoc) and shows the command and its standard output as a
literal block. A script that fails, or runs past :data:`TIMEOUT` seconds, fails
the build; the page is rebuilt whenever the script changes.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from sphinx.util.docutils import SphinxDirective

ROOT = Path(__file__).resolve().parent.parent.parent
EXAMPLES = ROOT / "examples"
TIMEOUT = 300


class ExampleOutput(SphinxDirective):
    """Run one script of examples/ and show what it prints."""

    required_arguments = 1
    option_spec: ClassVar[dict[str, Any]] = {"args": directives.unchanged}

    def run(self) -> list[nodes.Node]:
        script = EXAMPLES / self.arguments[0]
        if not script.is_file():
            raise self.error(f"example-output: {script} does not exist")
        self.env.note_dependency(str(script))
        args = shlex.split(self.options.get("args", ""))
        command = shlex.join(["python", f"examples/{script.name}", *args])
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), *_path()])}
        try:
            done = subprocess.run(
                [sys.executable, str(script), *args],
                cwd=ROOT,
                env=env,
                capture_output=True,
                text=True,
                timeout=TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise self.error(f"example-output: `{command}` ran past {TIMEOUT} s") from None
        if done.returncode != 0:
            raise self.error(
                f"example-output: `{command}` exited with {done.returncode}:\n{done.stderr}"
            )
        text = f"$ {command}\n{done.stdout.rstrip()}"
        block = nodes.literal_block(text, text, language="console")
        self.set_source_info(block)
        return [block]


def _path() -> list[str]:
    value = os.environ.get("PYTHONPATH")
    return value.split(os.pathsep) if value else []


def setup(app: Any) -> dict[str, Any]:
    app.add_directive("example-output", ExampleOutput)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
