"""``python -m l2loss``: the table on every installed library, and a non-zero
exit status when a check fails."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import pytest
from backends import selected

import l2loss
import l2loss.__main__ as main

pytestmark = pytest.mark.skipif(
    "numpy" not in selected(), reason="runs every installed library itself: numpy session"
)


def test_main_checks_every_installed_library(
    capsys: pytest.CaptureFixture[str], dask_may_compute: None
) -> None:
    assert main.main(["--n", "200"]) == 0
    out = capsys.readouterr().out
    assert "backend" in out.splitlines()[3]
    for dtype in main.DTYPES:
        assert f"numpy             {dtype}" in out
    assert "cupy" in out  # a missing library gets a row saying why
    assert out.rstrip().endswith("0 failed")


def test_main_fails_on_a_wrong_rule(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def wrong(*args: Any, **kwargs: Any) -> Any:
        L, L_dot = l2loss.l2_loss_jvp(*args, **kwargs)
        return L, 2 * L_dot

    monkeypatch.setattr(main, "l2_loss_jvp", wrong)
    monkeypatch.setattr(main, "BACKENDS", {"numpy": main.BACKENDS["numpy"]})
    assert main.main(["--n", "50"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out
    assert out.rstrip().endswith("0 passed, 4 failed")


def test_module_runs_as_a_script() -> None:
    """The table, and no deprecation notice of PyTorch's above it even where
    Python shows every one."""
    # The checkout's l2loss (the one imported here), not an installed one.
    src = str(Path(l2loss.__file__).parents[1])
    path = os.pathsep.join([src, *filter(None, [os.environ.get("PYTHONPATH")])])
    loud = ["-W", "always::DeprecationWarning", "-W", "always::FutureWarning"]
    done = subprocess.run(
        [sys.executable, *loud, "-m", "l2loss", "--n", "100"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={**os.environ, "PYTHONPATH": path},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("l2loss ")
    assert "passed, 0 failed" in done.stdout
    assert "torch.jit.script" not in done.stderr


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--n", "-5"], "argument --n: must be 0 or more, got -5"),
        (["--n", "abc"], "argument --n: expected a whole number, got 'abc'"),
        (["--n", "1.5"], "argument --n: expected a whole number, got '1.5'"),
        (["--seed", "-1"], "argument --seed: must be 0 or more, got -1"),
        (["--seed", "x"], "argument --seed: expected a whole number, got 'x'"),
    ],
)
def test_bad_arguments_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit:
        main.main(argv)
    assert exit.value.code == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err.startswith("usage: python -m l2loss")
    assert message in out.err


def test_empty_arrays_are_checked(
    capsys: pytest.CaptureFixture[str], dask_may_compute: None
) -> None:
    """N = 0 is allowed: the loss of empty arrays is 0, and every library
    must take them."""
    assert main.main(["--n", "0"]) == 0
    out = capsys.readouterr().out
    assert "Empty arrays" in out
    assert "numpy             float32     0  0      0" in out
    assert out.rstrip().endswith(" 0 failed")


def test_only_torchscripts_deprecation_is_silenced(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """torch.func.jvp's notice that torch.jit.script is deprecated (a
    DeprecationWarning up to torch 2.13, a FutureWarning from 2.14) is not
    shown; any other warning from the same call still is."""
    torch = pytest.importorskip("torch")
    jvp = torch.func.jvp

    def noisy(*args: Any, **kwargs: Any) -> Any:
        for category in (DeprecationWarning, FutureWarning):
            warnings.warn(
                "`torch.jit.script` is deprecated. Please switch to `torch.compile` or "
                "`torch.export`.",
                category,
                stacklevel=2,
            )
        warnings.warn("`torch.jit.script` was something else", FutureWarning, stacklevel=2)
        warnings.warn("another notice", FutureWarning, stacklevel=2)
        return jvp(*args, **kwargs)

    monkeypatch.setattr(torch.func, "jvp", noisy)
    monkeypatch.setattr(main, "BACKENDS", {"torch": main.BACKENDS["torch"]})
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert main.main(["--n", "50"]) == 0
    shown = sorted({str(w.message) for w in seen})
    assert shown == ["`torch.jit.script` was something else", "another notice"]
    assert capsys.readouterr().out.rstrip().endswith("4 passed, 0 failed")


def test_autodiff_tolerance_follows_the_scale() -> None:
    """The autodiff column compares relative to the magnitudes involved: an
    L_dot off by 1 % fails on inputs of 1e-8, where an absolute floor of 1
    would hide it, and the right one passes there."""
    torch = pytest.importorskip("torch")
    gen = torch.Generator().manual_seed(0)
    arrays = [1e-8 * torch.randn(100, dtype=torch.float64, generator=gen) for _ in range(4)]
    _, L_dot = l2loss.l2_loss_jvp(*arrays)
    assert main._autodiff("torch", arrays, L_dot).startswith("ok")
    assert main._autodiff("torch", arrays, 1.01 * L_dot).startswith("FAIL")
