"""Dtype semantics: half precision accumulates in float32 and answers in its own
dtype; mixed precisions promote as the standard says; complex inputs follow the
real-inner-product conventions."""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
import pytest
import reference as ref
from backends import Backend
from test_values import vjp_apply

from l2loss import l2_loss, l2_loss_jvp


def _np_dtype(x: Any, be: Backend) -> str:
    return str(be.xp.asarray(x).dtype).rsplit(".", 1)[-1]


@pytest.mark.parametrize("low", ["float16", "bfloat16"])
def test_half_precision_accumulates_in_float32(be: Backend, low: str) -> None:
    if low not in be.low_precision:
        pytest.skip(f"{be.name} has no {low}")
    n = 20_000
    rng = np.random.default_rng(3)
    y = rng.uniform(1, 2, n)
    r = np.zeros(n)
    dt = be.dtype(low)
    Y = be.xp.astype(be.asarray(y), dt)
    R = be.xp.astype(be.asarray(r), dt)
    L, Ld = be.call(l2_loss_jvp, Y, R, Y)
    assert L.dtype == dt
    assert Ld.dtype == dt
    exact = 0.5 * math.fsum(be.to_numpy(Y).astype(np.float64) ** 2)
    # A float16 accumulator would stall near 2048 / overflow at 65504; a float32
    # one is exact to ~1e-7 before the final rounding to the half dtype.
    half_eps = 2.0**-10 if low == "float16" else 2.0**-7
    if low == "float16":
        assert math.isinf(float(be.to_numpy(L))) == (exact > 65504)
    if not math.isinf(float(be.to_numpy(L))):
        assert abs(float(be.to_numpy(L)) - exact) <= half_eps * exact
    # the 6e4-sized sum overflows float16; a per-sample sum stays in range:
    Ls = be.call(l2_loss, Y[:100], R[:100])
    e = 0.5 * math.fsum(be.to_numpy(Y[:100]).astype(np.float64) ** 2)
    assert abs(float(be.to_numpy(Ls)) - e) <= half_eps * e


def test_half_precision_difference_does_not_overflow(be: Backend) -> None:
    if "float16" not in be.low_precision:
        pytest.skip(f"{be.name} has no float16")
    y = be.xp.astype(be.asarray(np.array([60000.0])), be.dtype("float16"))
    r = be.xp.astype(be.asarray(np.array([-60000.0])), be.dtype("float16"))
    with warnings.catch_warnings():
        # L = 7.2e9 itself overflows float16 (NumPy warns on that cast): expected.
        warnings.simplefilter("ignore", RuntimeWarning)
        L, y_bar, _ = be.call(vjp_apply, y, r, be.asarray(np.asarray(1e-4), dtype="float16"))
        assert np.isposinf(be.to_numpy(L))
    # d = 120000 overflows float16, but L_bar * d = 12 does not.
    np.testing.assert_allclose(be.to_numpy(y_bar).astype(np.float64), [12.0], rtol=1e-3)


@pytest.mark.parametrize(
    ("a", "b", "want"),
    [
        ("float32", "float64", "float64"),
        ("float64", "float32", "float64"),
        ("float32", "complex64", "float32"),
        ("float64", "complex64", "float64"),
        ("complex64", "complex128", "float64"),
        ("float16", "float64", "float64"),
    ],
)
def test_mixed_precision_promotes(be: Backend, a: str, b: str, want: str) -> None:
    if "float16" in (a, b) and "float16" not in be.low_precision:
        pytest.skip(f"{be.name} has no float16")
    y = be.asarray(np.arange(4.0) + (1j if "complex" in a else 0), dtype=a)
    r = be.asarray(np.ones(4) + (0.5j if "complex" in b else 0), dtype=b)
    L, Ld = be.call(l2_loss_jvp, y, r, y)
    assert be.to_numpy(L).dtype == np.dtype(want)
    assert be.to_numpy(Ld).dtype == np.dtype(want)
    _, y_bar, y_ref_bar = be.call(vjp_apply, y, r, be.asarray(np.asarray(1.0), dtype=want))
    # each cotangent has its primal's dtype (a real primal takes the real part)
    assert be.to_numpy(y_bar).dtype == np.dtype(a)
    assert be.to_numpy(y_ref_bar).dtype == np.dtype(b)
    yn, rn = be.to_numpy(y), be.to_numpy(r)
    np.testing.assert_allclose(be.to_numpy(L), ref.loss(yn, rn), rtol=1e-6)
    want_ref = rn - yn if np.iscomplexobj(rn) else np.real(rn - yn)
    np.testing.assert_allclose(be.to_numpy(y_ref_bar), want_ref, rtol=1e-6)
    want_y = yn - rn if np.iscomplexobj(yn) else np.real(yn - rn)
    np.testing.assert_allclose(be.to_numpy(y_bar), want_y, rtol=1e-6)


def test_complex_conventions(be: Backend) -> None:
    """L_dot = Re(vecdot(d, t)) (conjugating d), and L_dot L_bar = <y_bar, y_dot>
    + <y_ref_bar, y_ref_dot> in the real inner product (PyTorch's convention)."""
    rng = np.random.default_rng(5)

    def c(shape: tuple[int, ...]) -> Any:
        return rng.standard_normal(shape) + 1j * rng.standard_normal(shape)

    y, r, t, u = c((7,)), c((7,)), c((7,)), c((7,))
    Y, R, T, U = (be.asarray(a) for a in (y, r, t, u))
    L, Ld = be.call(l2_loss_jvp, Y, R, T, U)
    d = y - r
    np.testing.assert_allclose(be.to_numpy(L), 0.5 * np.vdot(d, d).real, rtol=1e-13)
    np.testing.assert_allclose(be.to_numpy(Ld), np.vdot(d, t - u).real, rtol=1e-13)
    assert np.isrealobj(be.to_numpy(Ld))
    _, yb, rb = be.call(vjp_apply, Y, R, be.asarray(np.asarray(1.5)))
    yb, rb = be.to_numpy(yb), be.to_numpy(rb)
    lhs = float(be.to_numpy(Ld)) * 1.5
    rhs = np.vdot(yb, t).real + np.vdot(rb, u).real
    np.testing.assert_allclose(lhs, rhs, rtol=1e-12)
    np.testing.assert_allclose(yb, 1.5 * d, rtol=1e-13)
