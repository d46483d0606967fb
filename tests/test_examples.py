"""Each script in examples/ runs as a script and prints results that make sense.

The scripts run in a subprocess with warnings as errors and sizes small enough
for CI; their printed numbers are parsed and checked against what the docs
claim for them (convergence to least squares, agreement with finite
differences, NumPy and Dask agreeing). ``examples/dask_scale.py`` is the
``nox -s scale`` run, not a docs example, and is left out here.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.docs

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
NOT_HERE = {"dask_scale.py"}  # the large Dask run of `nox -s scale`
CHECKED = {
    "linear_regression.py",
    "jacobian.py",
    "missing_targets.py",
    "dask_same_code.py",
    "torch_mlp.py",
}


def run(name: str, *args: str, timeout: float = 180) -> str:
    """Run ``examples/name`` with ``args``; return its stdout (fails on a non-zero exit)."""
    done = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert done.returncode == 0, (
        f"{name} {' '.join(args)} exited with {done.returncode}\n"
        f"stdout:\n{done.stdout}\nstderr:\n{done.stderr}"
    )
    return done.stdout


def number(out: str, label: str) -> float:
    """The number printed after ``label`` (and optional spaces and '=' or ':')."""
    m = re.search(re.escape(label) + r"\s*[=:]?\s*(?P<x>[-+0-9.eE]+|nan)", out)
    assert m is not None, f"{label!r} not found in the output:\n{out}"
    return float(m["x"])


def test_every_example_is_checked() -> None:
    """A new example needs a test here (and a section in docs/examples.md with its output)."""
    found = {p.name for p in EXAMPLES.glob("*.py")} - NOT_HERE
    assert found == CHECKED
    listed = (EXAMPLES.parent / "docs" / "examples.md").read_text(encoding="utf-8")
    for name in CHECKED:
        assert f"../examples/{name}" in listed, f"{name} is not shown in docs/examples.md"
        # ... and what it prints, run when the docs are built (docs/_ext/example_output.py).
        assert f"```{{example-output}} {name}" in listed, f"{name}'s output is not shown"


@pytest.mark.parametrize("name", sorted(CHECKED))
def test_help(name: str) -> None:
    assert "usage:" in run(name, "--help")


def test_linear_regression() -> None:
    out = run("linear_regression.py", "--samples", "500", "--features", "3", "--steps", "200")
    losses = [float(x) for x in re.findall(r"mean loss ([0-9.]+)", out)]
    assert len(losses) >= 2
    assert losses[-1] < losses[0] / 100
    # Gradient descent converges to the least-squares solution ...
    assert number(out, "max |fitted - least squares|") < 1e-8
    # ... which is as close to the truth as noise 0.1 on 500 samples allows.
    assert number(out, "max |fitted - true|") < 0.05


def test_jacobian() -> None:
    out = run("jacobian.py", "--series", "4", "--times", "30")
    assert "(B x P = (4, 3))" in out
    # Forward mode with batched=True matches central differences (h = 1e-6).
    assert number(out, "max |J - J_fd| / max |J_fd|") < 1e-6
    assert number(out, "max |J v - (J_fd) v|") < 1e-6
    # Forward (sum of J v) and reverse (gradient . v) agree.
    forward, reverse = number(out, "sum_b (J v)[b]"), number(out, "gradient . v")
    assert abs(forward - reverse) <= 1e-9 * max(1.0, abs(reverse))


def test_missing_targets() -> None:
    out = run("missing_targets.py", "--sensors", "5", "--times", "100", "--steps", "300")
    assert number(out, "without where=") == 5  # every sensor has a NaN reading
    assert number(out, "multiplying by the mask") == 5
    flags = re.findall(r"NaN in gradient: (\w+)", out)
    assert flags
    assert set(flags) == {"False"}
    assert number(out, "max |fitted - per-sensor least squares|") < 1e-8
    assert number(out, "max |fitted - true|") < 0.05


@pytest.mark.parametrize("distributed", [False, True], ids=["threads", "distributed"])
def test_dask_same_code(distributed: bool) -> None:
    if distributed and importlib.util.find_spec("distributed") is None:
        pytest.skip("needs dask.distributed, which is not installed")
    args = ["--samples", "20000", "--chunks", "3", "--steps", "25"]
    out = run("dask_same_code.py", *args, *(["--distributed"] if distributed else []))
    assert ("LocalCluster" in out) == distributed
    assert "3 chunks" in out
    assert number(out, "tasks in one step's graph") > 3  # really chunked work
    assert number(out, "max |dask - numpy|") < 1e-10
    assert number(out, "max |dask - least squares|") < 1e-6


def test_torch_mlp() -> None:
    if importlib.util.find_spec("torch") is None:
        pytest.skip("needs PyTorch, which is not installed")
    out = run("torch_mlp.py", "--samples", "256", "--steps", "120")
    # The loop with l2_loss follows the loop with 0.5 mse_loss to rounding ...
    assert number(out, "largest relative difference between the curves:") < 1e-12
    # ... and it trains.
    assert number(out, "loss fell by a factor of") > 5
