"""l2loss.testing: passes on correct rules, catches wrong ones, on every backend;
and the project's own rules pass it."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from backends import Backend

from l2loss import l2_loss, l2_loss_jvp, l2_loss_vjp
from l2loss.testing import check_jvp, check_vjp

DTYPES = ["float32", "float64", "complex64", "complex128"]


def problem(be: Backend, dtype: str, shape: tuple[int, ...] = (3, 5)) -> list[Any]:
    rng = np.random.default_rng(11)
    out = []
    for _ in range(2):
        a = rng.standard_normal(shape)
        if "complex" in dtype:
            a = a + 1j * rng.standard_normal(shape)
        out.append(be.asarray(a, dtype=dtype))
    return out


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [None, 1, (0, 1)])
def test_rules_pass_their_own_checks(be: Backend, dtype: str, axis: Any) -> None:
    y, r = problem(be, dtype)
    with be.computing():
        check_jvp(
            lambda y, r: l2_loss(y, r, axis=axis),
            lambda y, r, t, u: l2_loss_jvp(y, r, t, u, axis=axis),
            [y, r],
        )
        # The structural zero: y_ref_dot=None means y_ref is held fixed.
        check_jvp(
            lambda y, r: l2_loss(y, r, axis=axis),
            lambda y, r, t, u: l2_loss_jvp(y, r, t, u, axis=axis),
            [y, r],
            [problem(be, dtype)[0], None],
        )
        c = check_vjp(
            lambda y, r: l2_loss(y, r, axis=axis), lambda y, r: l2_loss_vjp(y, r, axis=axis), [y, r]
        )
        # The report: the dtype's precision, and the worst error over its tolerance.
        assert c.eps == float(np.finfo(np.dtype(dtype)).eps)
        assert 0.0 <= c.error <= 1.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_wrong_jvp_is_caught(be: Backend, dtype: str) -> None:
    y, r = problem(be, dtype)

    def twice(y: Any, r: Any, t: Any, u: Any) -> Any:
        L, Ld = l2_loss_jvp(y, r, t, u)
        return L, 2 * Ld

    def forgets_y_ref_dot(y: Any, r: Any, t: Any, u: Any) -> Any:
        return l2_loss_jvp(y, r, t, None)

    def wrong_value(y: Any, r: Any, t: Any, u: Any) -> Any:
        L, Ld = l2_loss_jvp(y, r, t, u)
        return L * 1.01, Ld

    with be.computing():
        for rule in (twice, forgets_y_ref_dot, wrong_value):
            with pytest.raises(AssertionError, match="differs"):
                check_jvp(l2_loss, rule, [y, r])


@pytest.mark.parametrize("dtype", DTYPES)
def test_wrong_vjp_is_caught(be: Backend, dtype: str) -> None:
    y, r = problem(be, dtype)

    def same_sign(y: Any, r: Any) -> Any:
        L, pb = l2_loss_vjp(y, r)
        return L, lambda c: (pb(c)[0], pb(c)[0])

    def conjugated(y: Any, r: Any) -> Any:
        L, pb = l2_loss_vjp(y, r)
        xp = be.xp
        return L, lambda c: tuple(xp.conj(b) for b in pb(c))

    rules = [same_sign] + ([conjugated] if "complex" in dtype else [])
    with be.computing():
        for rule in rules:
            with pytest.raises(AssertionError, match="differs"):
                check_vjp(l2_loss, rule, [y, r])


def test_cotangent_shape_is_checked(be: Backend) -> None:
    y, r = problem(be, "float64")

    def flat(y: Any, r: Any) -> Any:
        L, pb = l2_loss_vjp(y, r)
        return L, lambda c: tuple(be.xp.reshape(b, (-1,)) for b in pb(c))

    with be.computing(), pytest.raises(AssertionError, match="shape"):
        check_vjp(l2_loss, flat, [y, r])
