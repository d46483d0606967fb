"""The examples in the public docstrings run and print what they show."""

from __future__ import annotations

import doctest

import pytest
from backends import selected

import l2loss._api

pytestmark = pytest.mark.skipif(
    "numpy" not in selected(), reason="the docstring examples use NumPy: numpy session"
)


@pytest.mark.parametrize("name", ["l2_loss", "l2_loss_jvp", "l2_loss_vjp", "l2_loss_grad"])
def test_docstring_examples(name: str) -> None:
    fn = getattr(l2loss._api, name)
    assert "Examples" in (fn.__doc__ or ""), f"{name} has no Examples section"
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    tests = finder.find(fn, name, globs={name: fn})
    assert tests, f"{name}: no docstring found"
    assert tests[0].examples, f"{name}: no doctest examples found"
    for test in tests:
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples of {name} failed"
