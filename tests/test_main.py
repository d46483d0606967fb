"""``python -m l2loss``: the table on every installed library, and a non-zero
exit status when a check fails."""

from __future__ import annotations

import subprocess
import sys
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
    done = subprocess.run(
        [sys.executable, "-m", "l2loss", "--n", "100"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "passed, 0 failed" in done.stdout


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
