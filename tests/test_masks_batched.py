"""where=, batched=True and axis compose with each other, with None tangents,
complex dtypes and every backend: each combination equals the hand computation
on the kept entries."""

from __future__ import annotations

from typing import Any

import array_api_compat as compat
import numpy as np
import pytest
import reference as ref
from backends import Backend
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from strategies import masks, problems, values
from test_values import close, vjp_apply

from l2loss import l2_loss, l2_loss_grad, l2_loss_jvp


def poison(a: np.ndarray[Any, Any], keep: np.ndarray[Any, Any], rng: np.random.Generator) -> Any:
    """``a`` with NaN, inf and -inf written under the False entries of ``keep``."""
    a = a.copy()
    bad = np.array([np.nan, np.inf, -np.inf])[rng.integers(0, 3, size=a.shape)]
    a[~keep] = bad[~keep]
    return a


@given(data=st.data())
def test_masked_batched_per_sample(be: Backend, data: st.DataObject) -> None:
    dtype, shape, axis, (y, r) = data.draw(problems())
    keep = data.draw(masks(shape))
    k = data.draw(st.sampled_from([1, 3]))
    which = data.draw(st.sampled_from(["y_dot", "y_ref_dot", "both"]))
    t = data.draw(values((k, *shape), dtype)) if which != "y_ref_dot" else None
    u = data.draw(values((k, *shape), dtype)) if which != "y_dot" else None
    rng = np.random.default_rng(0)
    # Missing targets: NaN/inf in y_ref (and y, tangents) under the mask.
    y, r = poison(y, keep, rng), poison(r, keep, rng)
    if t is not None:
        t = poison(t, np.broadcast_to(keep, t.shape), rng)

    W = be.asarray(keep)
    Y, R = be.asarray(y), be.asarray(r)
    T = None if t is None else be.asarray(t)
    U = None if u is None else be.asarray(u)
    L, Ld = be.call(l2_loss_jvp, Y, R, T, U, axis=axis, where=W, batched=True)
    mag = ref.magnitude(y, r, None, axis, keep)
    close(be, L, ref.loss(y, r, axis, keep), mag, dtype, Y)
    want = ref.loss_dot(y, r, t, u, axis, keep)
    scale = sum(ref.magnitude(y, r, v, axis, keep) for v in (t, u) if v is not None)
    close(be, Ld, want, scale, dtype, Y)
    assert be.to_numpy(Ld).shape == (k, *ref.loss(y, r, axis, keep).shape)

    # An unbatched call along each direction gives that direction's L_dot, to
    # the same rounding (a matrix product and a dot may sum in other orders,
    # which differ where the terms cancel).
    for i in range(k):
        Ti = None if t is None else be.asarray(t[i])
        Ui = None if u is None else be.asarray(u[i])
        _, Ldi = be.call(l2_loss_jvp, Y, R, Ti, Ui, axis=axis, where=W)
        close(be, Ldi, want[i], np.asarray(scale)[i], dtype, Y)


@given(data=st.data())
def test_masked_pullback_is_exactly_zero_under_false(be: Backend, data: st.DataObject) -> None:
    dtype, shape, axis, (y, r) = data.draw(problems())
    keep = data.draw(masks(shape))
    rng = np.random.default_rng(1)
    y, r = poison(y, keep, rng), poison(r, keep, rng)
    L_shape = ref.loss(y, r, axis, keep).shape
    c = np.full(L_shape, 2.5)
    Y, R, W = be.asarray(y), be.asarray(r), be.asarray(keep)
    L, y_bar, y_ref_bar = be.call(vjp_apply, Y, R, be.asarray(c), axis=axis, where=W)
    gy, gr = be.to_numpy(y_bar), be.to_numpy(y_ref_bar)
    assert np.all(gy[~keep] == 0)
    assert np.all(gr[~keep] == 0)
    want = 2.5 * (ref.kept(ref.wide(y), keep) - ref.kept(ref.wide(r), keep))
    close(be, y_bar, want, np.abs(want) * 2, dtype, Y)
    close(be, y_ref_bar, -want, np.abs(want) * 2, dtype, Y)
    assert np.all(np.isfinite(be.to_numpy(L)))
    _, g = be.call(l2_loss_grad, Y, R, axis=axis, where=W)
    assert np.all(be.to_numpy(g)[~keep] == 0)


def test_all_false_mask_gives_zero(be: Backend) -> None:
    y = np.full((3, 4), np.nan)
    keep = np.zeros((3, 4), dtype=bool)
    Y, W = be.asarray(y), be.asarray(keep)
    L, Ld = be.call(l2_loss_jvp, Y, Y, Y, Y, where=W, axis=1)
    np.testing.assert_array_equal(be.to_numpy(L), np.zeros(3))
    np.testing.assert_array_equal(be.to_numpy(Ld), np.zeros(3))
    np.testing.assert_array_equal(be.to_numpy(be.call(l2_loss, Y, Y, where=W)), 0.0)


def test_both_tangents_none_gives_zeros(be: Backend) -> None:
    y = be.asarray(np.arange(12.0).reshape(3, 4))
    r = be.asarray(np.ones((3, 4)))
    _L, Ld = be.call(l2_loss_jvp, y, r, None, None, axis=0)
    be.check_array(Ld, y)
    np.testing.assert_array_equal(be.to_numpy(Ld), np.zeros(4))
    assert be.to_numpy(Ld).dtype == np.float64


@pytest.mark.parametrize("n", [5, 8192 * 3 + 17, 200_003])
def test_batched_large_matches_loop(be: Backend, n: int) -> None:
    """Across tile boundaries of the eager evaluation, batched equals K single calls."""
    rng = np.random.default_rng(n)
    y, r = rng.standard_normal(n), rng.standard_normal(n)
    t = rng.standard_normal((4, n))
    keep = rng.random(n) > 0.3
    Y, R, T, W = (be.asarray(a) for a in (y, r, t, keep))
    _, Ld = be.call(l2_loss_jvp, Y, R, T, None, where=W, batched=True)
    want = ref.loss_dot(y, r, t, None, None, keep)
    np.testing.assert_allclose(be.to_numpy(Ld), want, rtol=1e-12)
    y2 = rng.standard_normal((3, n))
    r2 = rng.standard_normal((3, n))
    t2 = rng.standard_normal((2, 3, n))
    L, Ld = be.call(
        l2_loss_jvp, be.asarray(y2), be.asarray(r2), be.asarray(t2), batched=True, axis=-1
    )
    np.testing.assert_allclose(be.to_numpy(L), ref.loss(y2, r2, -1), rtol=1e-12)
    np.testing.assert_allclose(be.to_numpy(Ld), ref.loss_dot(y2, r2, t2, None, -1), rtol=1e-12)


@pytest.mark.parametrize("n", [10, 1000, 10_001, 300_003])
def test_batched_equals_single_directions(be: Backend, n: int) -> None:
    """K directions at once give each direction's single-call result to a few
    ulps (a matrix-vector product rounds unlike one dot per direction)."""
    rng = np.random.default_rng(n)
    y, r = rng.standard_normal(n), rng.standard_normal(n)
    t = rng.standard_normal((5, n))
    Y, R, T = (be.asarray(a) for a in (y, r, t))
    _, Ld = be.call(l2_loss_jvp, Y, R, T, batched=True)
    one = [be.to_numpy(be.call(l2_loss_jvp, Y, R, be.asarray(t[k]))[1]) for k in range(5)]
    np.testing.assert_allclose(be.to_numpy(Ld), np.array(one), rtol=1e-13, atol=1e-13)


def test_infinite_cotangent_leaves_masked_entries_at_zero(be: Backend) -> None:
    """An infinite L_bar multiplies no left-out entry: their cotangents are
    exactly 0, with no floating-point warning (and no error under NumPy's
    ``errstate(invalid="raise")``)."""
    y = np.array([[1.0, np.nan, 3.0], [np.inf, 2.0, 5.0]])
    keep = np.isfinite(y)
    Y, R, K = be.asarray(y), be.asarray(np.zeros((2, 3))), be.asarray(keep)
    with np.errstate(all="raise"):
        for L_bar in (be.asarray(np.array([np.inf, 1.0])), be.asarray(np.array([-np.inf, np.inf]))):
            _, yb, rb = be.call(vjp_apply, Y, R, L_bar, axis=1, where=K)
            yb, rb = be.to_numpy(yb), be.to_numpy(rb)
            assert np.all(yb[~keep] == 0.0)
            assert np.all(rb[~keep] == 0.0)
        _, yb, _ = be.call(
            vjp_apply,
            Y,
            R,
            be.asarray(np.array([np.inf, 1.0])),
            axis=1,
            where=K,
            weights=be.asarray(np.where(keep, 1.0, np.nan)),
        )
        assert np.all(be.to_numpy(yb)[~keep] == 0.0)


_FLOAT_BITS = {2: np.uint16, 4: np.uint32, 8: np.uint64}


def _bits(a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The bit patterns of a float array's items (pairs of them for complex)."""
    if a.dtype.kind == "c":
        a = np.stack([a.real, a.imag])
    return np.ascontiguousarray(a).view(_FLOAT_BITS[a.dtype.itemsize])


@given(data=st.data())
def test_masking_gives_the_bits_of_where(be: Backend, data: st.DataObject) -> None:
    """The library's masking (``Traits.keep``) gives the bits of
    ``where(mask, a, zero)`` for any values (NaN payloads, infinities, -0.0,
    subnormals), for ``a`` of the zero's dtype, of another, 0-d and
    broadcasting, for several arrays under one mask, and written into ``a``
    (``fresh=True``)."""
    from l2loss._traits import traits_of

    names = ["float64", "float32", *(n for n in be.low_precision if n == "float16")]
    if be.has_complex:
        names.append("complex128")
    zero_dtype = data.draw(st.sampled_from([n for n in names if n != "complex128"]))
    shape = data.draw(hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6))
    keep = data.draw(masks(shape))
    M = be.asarray(keep)
    traits = traits_of(("where",), (M,))[0]
    zero = be.xp.zeros((), dtype=be.dtype(zero_dtype), device=compat.device(M))
    keep_fn = traits.keep(be.xp, zero, M)
    for _ in range(3):  # several arrays under one mask
        dtype = data.draw(st.sampled_from([zero_dtype, *names]))
        a_shape = data.draw(st.sampled_from([shape, (), (*shape[:-1], 1)]))
        elements = hnp.from_dtype(np.dtype(dtype), allow_nan=True, allow_infinity=True)
        a = data.draw(hnp.arrays(np.dtype(dtype), a_shape, elements=elements))
        A = be.asarray(a)
        want = be.to_numpy(be.xp.where(M, A, zero))
        # In place too, into an array of the call's own (a new residual).
        for got in (keep_fn(A), keep_fn(be.asarray(a.copy()), fresh=True)):
            got = be.to_numpy(got)
            assert got.dtype == want.dtype
            assert got.shape == want.shape
            np.testing.assert_array_equal(_bits(got), _bits(want))
        np.testing.assert_array_equal(_bits(be.to_numpy(A)), _bits(a))  # A is left as it was


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_masking_many_items_gives_the_bits_of_where(be: Backend, dtype: str) -> None:
    """Masks of many items (where PyTorch masks float64 by an AND of its bits
    with the mask's all-ones or 0) give the bits of ``where(mask, a, zero)``
    too: NaN payloads, infinities, -0.0 and subnormals, for two arrays under
    one mask, new and written into ``a``."""
    from l2loss._traits import _WIDE_MASK, traits_of

    rng = np.random.default_rng(11)
    n = _WIDE_MASK + 5
    info = np.finfo(dtype)
    specials = np.array([np.nan, np.inf, -np.inf, -0.0, info.smallest_subnormal, -info.max], dtype)
    keep = rng.random(n) < 0.6
    M = be.asarray(keep)
    traits = traits_of(("where",), (M,))[0]
    zero = be.xp.zeros((), dtype=be.dtype(dtype), device=compat.device(M))
    keep_fn = traits.keep(be.xp, zero, M)
    for _ in range(2):
        a = rng.standard_normal(n).astype(dtype)
        where = rng.integers(0, n, 4096)
        a[where] = specials[rng.integers(0, len(specials), where.size)]
        bits = a.view(_FLOAT_BITS[a.dtype.itemsize])
        bits[where[:16]] = _bits(np.array([np.nan], dtype))[0] | 1  # NaNs with a payload
        want = _bits(np.where(keep, a, 0).astype(dtype))
        for got in (keep_fn(be.asarray(a)), keep_fn(be.asarray(a.copy()), fresh=True)):
            np.testing.assert_array_equal(_bits(be.to_numpy(got)), want)


@given(data=st.data())
def test_masking_after_subtracting_gives_the_same_bits(be: Backend, data: st.DataObject) -> None:
    """A mask that selects from the residual once, after subtracting
    (``Traits.quiet``), gives the bits of one that selects from ``y`` and
    ``y_ref`` before: NaN and inf under False entries, weights, tangents and
    the pullback, with and without half precision."""
    from l2loss._traits import override, traits_of

    dtype, shape, axis, (y, r, t) = data.draw(problems(3))
    if dtype.startswith("complex") and not be.has_complex:
        dtype = "float64"
        y, r, t = (np.real(a).astype(dtype) for a in (y, r, t))
    keep = data.draw(masks(shape))
    rng = np.random.default_rng(2)
    y, r, t = (poison(a, keep, rng) for a in (y, r, t))
    # Weights of the residual's precision (wider ones would widen it first).
    w = poison(rng.random(shape), keep, rng).astype(np.real(y).dtype)
    w = w if data.draw(st.booleans()) else None
    Y, R, T, M = (be.asarray(a) for a in (y, r, t, keep))
    kw = {"axis": axis, "where": M, "weights": None if w is None else be.asarray(w)}
    traits = traits_of(("y",), (Y,))[0]
    got = []
    for quiet in (None, traits.quiet or (lambda sub, a, b: sub(a, b))):
        # A library that has no quiet subtraction may warn about the inf - inf
        # of a dropped entry, which is why it masks before subtracting; forced
        # to mask after, it is silenced here.
        with override(traits.name, quiet=quiet), np.errstate(all="ignore"):
            L, Ld = be.call(l2_loss_jvp, Y, R, T, **kw)
            _, y_bar, y_ref_bar = be.call(vjp_apply, Y, R, 2.0, **kw)
            got.append([be.to_numpy(a) for a in (L, Ld, y_bar, y_ref_bar)])
    for a, b in zip(*got, strict=True):
        np.testing.assert_array_equal(_bits(np.asarray(a)), _bits(np.asarray(b)))


@pytest.mark.parametrize("n", [7, 300_000])
def test_dropped_inf_minus_inf_raises_nothing(be: Backend, n: int) -> None:
    """inf - inf and an overflowing difference under False entries raise no
    floating-point warning or error (NumPy's ``errstate(all="raise")``
    included) and change no result, in cache and in blocks, for every
    function."""
    rng = np.random.default_rng(5)
    y, r, t = rng.standard_normal((3, n))
    keep = rng.random(n) < 0.7
    big = np.finfo(np.float64).max
    y[~keep] = np.where(rng.random(n) < 0.5, np.inf, big)[~keep]
    r[~keep] = np.where(y[~keep] == np.inf, np.inf, -big)
    d = np.where(keep, y - np.where(keep, r, 0.0), 0.0)
    Y, R, T, M = (be.asarray(a) for a in (y, r, t, keep))
    with np.errstate(all="raise"):
        L = be.call(l2_loss, Y, R, where=M)
        L_jvp, L_dot = be.call(l2_loss_jvp, Y, R, T, where=M)
        L_grad, grad = be.call(l2_loss_grad, Y, R, where=M)
        _, y_bar, y_ref_bar = be.call(vjp_apply, Y, R, 1.0, where=M)
    close(be, L, d @ d / 2, d @ d / 2, "float64", Y)
    close(be, L_dot, d @ t, np.abs(d) @ np.abs(t), "float64", Y)
    assert be.to_numpy(L_jvp) == be.to_numpy(L) == be.to_numpy(L_grad)
    for g, sign in ((grad, 1), (y_bar, 1), (y_ref_bar, -1)):
        np.testing.assert_array_equal(be.to_numpy(g), sign * d)
