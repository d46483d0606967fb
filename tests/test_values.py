"""Values of L, L_dot and the cotangents against an independent NumPy reference,
on every backend, for hypothesis-drawn shapes, axes, dtypes and values."""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np
import pytest
import reference as ref
from backends import Backend
from hypothesis import given
from hypothesis import strategies as st
from strategies import eps, problems, values

from l2loss import l2_loss, l2_loss_grad, l2_loss_jvp, l2_loss_vjp
from l2loss._traits import _NUMPY

PIECE, BLOCK, VECTOR = _NUMPY.piece, _NUMPY.block, _NUMPY.vector or _NUMPY.whole


def close(be: Backend, got: Any, want: Any, scale: Any, dtype: str, like: Any) -> None:
    """``got`` (a backend array) equals ``want`` within the rounding error of a
    summation of terms whose magnitudes add up to ``scale``."""
    be.check_array(got, like)
    g = be.to_numpy(got)
    want = np.asarray(want)
    assert g.shape == want.shape
    # Relative rounding of the sum, plus underflow of products below the
    # dtype's smallest normal number (at most one such loss per term).
    tiny = float(np.finfo(np.dtype(dtype)).tiny)
    tol = 16 * eps(dtype) * np.asarray(scale) + 256 * tiny
    np.testing.assert_array_less(np.abs(ref.wide(g) - want), tol)


def vjp_apply(y: Any, y_ref: Any, L_bar: Any, **kw: Any) -> tuple[Any, Any, Any]:
    L, pullback = l2_loss_vjp(y, y_ref, **kw)
    return (L, *pullback(L_bar))


@given(data=st.data())
def test_loss_and_jvp_match_reference(be: Backend, data: st.DataObject) -> None:
    dtype, _, axis, (y, r, t, u) = data.draw(problems(4))
    full = data.draw(st.booleans())
    Y, R, T, U = (be.asarray(a) for a in (y, r, t, u))

    L = be.call(l2_loss, Y, R, axis=axis)
    close(be, L, ref.loss(y, r, axis), ref.magnitude(y, r, None, axis, None), dtype, Y)
    L2, Ld = be.call(l2_loss_jvp, Y, R, T, U if full else None, axis=axis)
    close(be, L2, ref.loss(y, r, axis), ref.magnitude(y, r, None, axis, None), dtype, Y)
    scale = ref.magnitude(y, r, t, axis, None) + (ref.magnitude(y, r, u, axis, None) if full else 0)
    close(be, Ld, ref.loss_dot(y, r, t, u if full else None, axis), scale, dtype, Y)

    real = "float32" if dtype in ("float32", "complex64") else "float64"
    assert be.to_numpy(L).dtype == np.dtype(real)
    assert be.to_numpy(Ld).dtype == np.dtype(real)


@given(data=st.data())
def test_pullback_matches_reference(be: Backend, data: st.DataObject) -> None:
    dtype, _, axis, (y, r) = data.draw(problems())
    L_shape = ref.loss(y, r, axis).shape
    real = "float32" if dtype in ("float32", "complex64") else "float64"
    c = data.draw(values(L_shape, real))
    Y, R, C = be.asarray(y), be.asarray(r), be.asarray(c)

    L, y_bar, y_ref_bar = be.call(vjp_apply, Y, R, C, axis=axis)
    close(be, L, ref.loss(y, r, axis), ref.magnitude(y, r, None, axis, None), dtype, Y)
    expand = np.expand_dims(c.astype(np.float64), ref.reduce_axes(y.ndim, axis))
    want = expand * (ref.wide(y) - ref.wide(r))
    scale = np.abs(want) * 2
    close(be, y_bar, want, scale, dtype, Y)
    close(be, y_ref_bar, -want, scale, dtype, Y)
    assert be.to_numpy(y_bar).dtype == np.dtype(dtype)


@given(data=st.data())
def test_grad_is_pullback_of_one(be: Backend, data: st.DataObject) -> None:
    dtype, _, axis, (y, r) = data.draw(problems())
    Y, R = be.asarray(y), be.asarray(r)
    L, g = be.call(l2_loss_grad, Y, R, axis=axis)
    want = ref.wide(y) - ref.wide(r)
    close(be, g, want, np.abs(want), dtype, Y)
    close(be, L, ref.loss(y, r, axis), ref.magnitude(y, r, None, axis, None), dtype, Y)


@pytest.mark.parametrize(
    ("n", "dtype"),
    [
        (1000, "float64"),
        (1000, "float32"),
        (1000, "float16"),
        # Past cache: blocks on two threads (float16's L would overflow).
        (3 * (1 << 20) + 5, "float64"),
        (3 * (1 << 20) + 5, "float32"),
    ],
)
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("weights", [False, True])
def test_grad_has_the_bits_of_loss_and_pullback(
    be: Backend, n: int, masked: bool, weights: bool, dtype: str
) -> None:
    """``l2_loss_grad`` sums the residual it returns: its L has the bits of
    ``l2_loss`` and its gradient those of the pullback at 1, for a vector and
    for rows, with masks and weights, in cache and in blocks (JAX compiles
    each function whole, and XLA may order the two sums differently: there
    they agree to rounding)."""
    if dtype in ("float16",) and dtype not in be.low_precision:
        pytest.skip(f"{be.name} has no {dtype}")
    same = np.testing.assert_array_equal
    if be.xp.__name__.startswith("jax"):
        same = functools.partial(np.testing.assert_allclose, rtol=4 * eps(dtype), atol=0)
    rng = np.random.default_rng(n)
    y, r, w = rng.standard_normal(n), rng.standard_normal(n), rng.random(n)
    keep = rng.random(n) > 0.2
    for shape, axis in (((n,), None), ((5, n // 5), -1)):
        m = n // 5 * 5 if len(shape) == 2 else n
        Y, R = (be.asarray(a[:m].reshape(shape), dtype) for a in (y, r))
        kw = {
            "axis": axis,
            "where": be.asarray(keep[:m].reshape(shape)) if masked else None,
            "weights": be.asarray(w[:m].reshape(shape), dtype) if weights else None,
        }
        L, g = be.call(l2_loss_grad, Y, R, **kw)
        _, y_bar, _ = be.call(vjp_apply, Y, R, 1.0, **kw)
        same(be.to_numpy(L), be.to_numpy(be.call(l2_loss, Y, R, **kw)))
        same(be.to_numpy(g), be.to_numpy(y_bar))


@pytest.mark.parametrize(
    "n",
    [0, 1, 7, PIECE - 1, PIECE, PIECE + 1, 4 * PIECE + 3, VECTOR + 1, BLOCK + PIECE + 3, 300_001],
)
def test_float64_matches_fsum(be: Backend, n: int) -> None:
    """float64 agrees with exactly rounded sums (math.fsum) to a few ulps, across
    every tile and row boundary of the eager evaluation."""
    rng = np.random.default_rng(n)
    y, r, t, u = (rng.standard_normal(n) for _ in range(4))
    Y, R, T, U = (be.asarray(a) for a in (y, r, t, u))
    L, Ld = be.call(l2_loss_jvp, Y, R, T, U)
    d = y - r  # exact: the residual is what both compute, rounded once
    L_exact = 0.5 * math.fsum(d * d)
    # products are rounded once each; compare against their exact sum
    Ld_exact = math.fsum(d * t) - math.fsum(d * u)
    tol_L = 4 * np.finfo(np.float64).eps * abs(L_exact) + 1e-300
    scale = math.fsum(np.abs(d * t)) + math.fsum(np.abs(d * u))
    assert abs(float(be.to_numpy(L)) - L_exact) <= tol_L + 2 * np.finfo(np.float64).eps * L_exact
    assert abs(float(be.to_numpy(Ld)) - Ld_exact) <= 4 * np.finfo(np.float64).eps * scale + 1e-300


def longest_dot(be: Backend, n: int) -> int:
    """The longest single dot l2loss's plan takes over ``n`` items on ``be``:
    the whole vector while it stays in cache, pieces beyond; a library that
    sums itself (lazy ones) is allowed all ``n``."""
    from l2loss._traits import traits_of

    blocking = traits_of(("y",), (be.asarray(np.zeros(1)),))[0].blocking
    if blocking is None:
        return n
    return min(n, max(blocking.vector or blocking.whole, blocking.piece))


HARD = {
    "constant": lambda rng, n: np.full(n, 0.1),
    "third": lambda rng, n: np.full(n, 1 / 3),
    "alternating": lambda rng, n: np.where(np.arange(n) % 2 == 0, 0.7, -0.7),
    "log-normal": lambda rng, n: rng.lognormal(0.0, 3.0, n),
}


@pytest.mark.parametrize("kind", list(HARD))
@pytest.mark.parametrize("n", [1000, 50_000, 131_073, 1_000_003])
def test_float64_error_bound_on_hard_data(be: Backend, kind: str, n: int) -> None:
    """On constant, alternating and log-normal data (where rounding errors do
    not cancel), L and L_dot stay within the bound of summing dots of at most
    D items pairwise: relative error <= (D + log2 N + 2) eps of the sum of the
    terms' magnitudes, D being the longest dot (``longest_dot``)."""
    rng = np.random.default_rng(11)
    d = HARD[kind](rng, n)
    t = HARD[kind](rng, n)[::-1].copy()
    zero = np.zeros(n)
    L, Ld = be.call(l2_loss_jvp, be.asarray(d), be.asarray(zero), be.asarray(t))
    # One more eps: the reference sums the products rounded once each, a
    # fused multiply-add does not round them.
    bound = (longest_dot(be, n) + math.log2(n) + 3) * np.finfo(np.float64).eps
    exact_L = 0.5 * math.fsum(d * d)
    assert abs(float(be.to_numpy(L)) - exact_L) <= bound * exact_L
    exact_Ld, scale = math.fsum(d * t), math.fsum(np.abs(d * t))
    assert abs(float(be.to_numpy(Ld)) - exact_Ld) <= bound * scale


def test_float32_large_sum_is_accurate(be: Backend) -> None:
    """float32 at N = 1e7: relative error of L at most 1e-6 (a plain float32 BLAS
    dot loses several times that); lazy backends sum with their own reductions."""
    n = 10_000_000
    rng = np.random.default_rng(7)
    y = rng.random(n, dtype=np.float32) + np.float32(1.0)
    r = np.zeros(n, dtype=np.float32)
    exact = 0.5 * math.fsum(y.astype(np.float64) ** 2)
    chunks = n // 4 if be.name == "dask" else "auto"
    L = be.call(l2_loss, be.asarray(y, chunks=chunks), be.asarray(r, chunks=chunks))
    rel = abs(float(be.to_numpy(L)) - exact) / exact
    assert rel <= 1e-6, f"relative error {rel:.2e}"


@pytest.mark.parametrize("shape", [(), (0,), (3, 0), (0, 4)])
def test_empty_and_zero_dimensional(be: Backend, shape: tuple[int, ...]) -> None:
    y = np.full(shape, 3.0)
    r = np.full(shape, 1.0)
    Y, R = be.asarray(y), be.asarray(r)
    for axis in (None, -1) if shape else (None,):
        L, Ld = be.call(l2_loss_jvp, Y, R, be.asarray(np.full(shape, 0.5)), axis=axis)
        np.testing.assert_array_equal(be.to_numpy(L), ref.loss(y, r, axis))
        np.testing.assert_array_equal(
            be.to_numpy(Ld), ref.loss_dot(y, r, np.full(shape, 0.5), None, axis)
        )
    L, y_bar, _y_ref_bar = be.call(vjp_apply, Y, R, be.asarray(np.asarray(2.0)))
    assert be.to_numpy(y_bar).shape == shape
    np.testing.assert_array_equal(be.to_numpy(y_bar), 2.0 * (y - r))


@pytest.mark.parametrize(
    ("bad", "expect"),
    [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "inf")],
)
def test_nan_and_inf_propagate(be: Backend, bad: float, expect: str) -> None:
    y = np.arange(20, dtype=np.float64)
    r = np.zeros(20)
    t = np.ones(20)
    y[5] = bad
    Y, R, T = be.asarray(y), be.asarray(r), be.asarray(t)
    L, Ld = (be.to_numpy(a) for a in be.call(l2_loss_jvp, Y, R, T))
    assert np.isnan(L) if expect == "nan" else np.isposinf(L)
    assert np.isnan(Ld) or np.isinf(Ld)
    L, y_bar, _ = be.call(vjp_apply, Y, R, be.asarray(np.asarray(1.0)))
    g = be.to_numpy(y_bar)
    assert np.isnan(g[5]) if expect == "nan" else g[5] == bad
    assert np.all(np.isfinite(np.delete(g, 5)))


def test_huge_and_tiny_values(be: Backend) -> None:
    """No premature overflow for large finite inputs whose squares still fit,
    and no flush of tiny ones whose squares are normal."""
    y = np.array([1e150, -1e150, 1e-150, 3.0])
    r = np.array([0.0, 0.0, 0.0, 1.0])
    L = be.to_numpy(be.call(l2_loss, be.asarray(y), be.asarray(r)))
    np.testing.assert_allclose(L, 0.5 * (2e300 + 1e-300 + 4.0), rtol=1e-15)
    L = be.to_numpy(be.call(l2_loss, be.asarray(y[2:3]), be.asarray(r[2:3])))
    np.testing.assert_allclose(L, 0.5e-300, rtol=1e-15)


@pytest.mark.parametrize("n", [1000, 3 * (1 << 20) + 5])  # one piece; several tiles
@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("k", [0, 2])
def test_loss_does_not_depend_on_the_tangents(be: Backend, n: int, masked: bool, k: int) -> None:
    """float32 primals with float64 tangents (one or K directions): the
    tangents promote L_dot, not L, which has the bits ``l2_loss`` gives (the
    residual stays float32, with a mask too) and float32's accuracy for long
    sums."""
    rng = np.random.default_rng(n)
    y = rng.random(n, dtype=np.float32) + np.float32(1.0)
    r = rng.random(n, dtype=np.float32)
    t = rng.standard_normal((k, n) if k else n)
    keep = rng.random(n) > 0.2 if masked else None
    Y, R, T = (be.asarray(a) for a in (y, r, t))
    W = None if keep is None else be.asarray(keep)
    L = be.to_numpy(be.call(l2_loss, Y, R, where=W))
    L_jvp, Ld = (be.to_numpy(a) for a in be.call(l2_loss_jvp, Y, R, T, where=W, batched=bool(k)))
    assert L_jvp.dtype == L.dtype == np.float32
    assert Ld.dtype == np.float64
    np.testing.assert_array_equal(L_jvp, L)
    d = (y - r).astype(np.float64)  # the float32 residual, exactly
    if keep is not None:
        d = np.where(keep, d, 0.0)
    exact = 0.5 * math.fsum(d * d)
    assert abs(float(L_jvp) - exact) <= 1e-6 * exact
