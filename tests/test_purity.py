"""Purity and laziness: inputs are never modified, read-only arrays work,
results stay in the input's library and device, calls are thread-safe, and
Dask graphs are built without computing anything."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pytest
import reference as ref
from backends import Backend, EarlyCompute
from test_values import vjp_apply

import l2loss
from l2loss import l2_loss, l2_loss_grad, l2_loss_jvp, l2_loss_vjp


@pytest.mark.parametrize("n", [10, 300_001])
def test_inputs_are_not_modified(be: Backend, n: int) -> None:
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(n) for _ in range(4)]
    keep = rng.random(n) > 0.5
    Y, R, T, U, W = (be.asarray(a) for a in (*arrays, keep))
    be.call(l2_loss_jvp, Y, R, T, U, where=W)
    be.call(vjp_apply, Y, R, be.asarray(np.asarray(2.0)), where=W)
    be.call(l2_loss_grad, Y, R)
    for a, A in zip([*arrays, keep], [Y, R, T, U, W], strict=True):
        np.testing.assert_array_equal(be.to_numpy(A), a)


def test_read_only_numpy_arrays() -> None:
    rng = np.random.default_rng(0)
    for n in (10, 300_001):
        y, r, t = (rng.standard_normal(n) for _ in range(3))
        for a in (y, r, t):
            a.flags.writeable = False
        _L, Ld = l2_loss_jvp(y, r, t)
        _, pullback = l2_loss_vjp(y, r)
        y_bar, _ = pullback(np.asarray(1.0))
        np.testing.assert_allclose(Ld, ref.loss_dot(y, r, t, None), rtol=1e-12)
        assert y_bar.flags.writeable  # the cotangent is a fresh array


def test_results_are_arrays_of_the_input_library(be: Backend) -> None:
    y = be.asarray(np.arange(6.0).reshape(2, 3))
    r = be.asarray(np.ones((2, 3)))
    for axis in (None, 1):
        L, Ld = be.call(l2_loss_jvp, y, r, y, axis=axis)
        be.check_array(L, y)
        be.check_array(Ld, y)
        L, yb, rb = be.call(
            vjp_apply, y, r, be.asarray(np.ones(() if axis is None else (2,))), axis=axis
        )
        for a in (L, yb, rb):
            be.check_array(a, y)


def test_dask_stays_lazy_and_keeps_chunks(be: Backend) -> None:
    if be.name != "dask":
        pytest.skip("Dask only")
    import dask.array as da

    y = da.from_array(np.arange(40.0).reshape(4, 10), chunks=(2, 5))
    r = da.ones((4, 10), chunks=(2, 5))
    # The test backend's scheduler refuses to compute outside be.computing().
    with pytest.raises(EarlyCompute):
        y.sum().compute()
    L, Ld = l2_loss_jvp(y, r, y, axis=1, where=y > 3)
    _, pullback = l2_loss_vjp(y, r, where=y > 3)
    y_bar, y_ref_bar = pullback(1.0)
    assert all(isinstance(a, da.Array) for a in (L, Ld, y_bar, y_ref_bar))
    assert y_bar.chunks == y.chunks
    assert y_ref_bar.chunks == r.chunks
    np.testing.assert_allclose(
        be.to_numpy(L), ref.loss(be.to_numpy(y), np.ones((4, 10)), 1, be.to_numpy(y) > 3)
    )


def test_dask_unknown_chunk_sizes(be: Backend) -> None:
    """Boolean indexing (dropping missing targets) leaves Dask shapes unknown
    (NaN) until compute: validation lets them through, the result is lazy."""
    if be.name != "dask":
        pytest.skip("Dask only")
    import dask.array as da

    rng = np.random.default_rng(4)
    x = rng.standard_normal((40, 3))
    x_ref = rng.standard_normal((40, 3))
    X = da.from_array(x, chunks=(10, 3))
    keep = X[:, 0] > 0
    y, y_ref = X[keep], da.from_array(x_ref, chunks=(10, 3))[keep]
    assert np.isnan(y.shape[0])
    L, Ld = l2_loss_jvp(y, y_ref, y, axis=1)
    L_all, pullback = l2_loss_vjp(y, y_ref, axis=1)
    y_bar, _ = pullback(2 * L_all)
    rows = x[:, 0] > 0
    d = x[rows] - x_ref[rows]
    np.testing.assert_allclose(be.to_numpy(L), 0.5 * np.sum(d * d, axis=1), rtol=1e-13)
    np.testing.assert_allclose(be.to_numpy(Ld), np.sum(d * x[rows], axis=1), rtol=1e-13)
    want = (np.sum(d * d, axis=1))[:, None] * d
    np.testing.assert_allclose(be.to_numpy(y_bar), want, rtol=1e-13)


def test_dask_unknown_sizes_that_differ_fail_when_computed(be: Backend) -> None:
    """Arrays whose sizes are unknown until compute are compared chunk by chunk
    when the graph runs: lengths that differ raise a ValueError then, never a
    silently broadcast result; building the graph computes nothing."""
    if be.name != "dask":
        pytest.skip("Dask only")
    import dask.array as da

    x = da.from_array(np.arange(10.0), chunks=5)
    y, y_ref = x[x > 3], x[x < 100]  # 6 and 10 items, both unknown (NaN) here
    for result in (
        l2_loss(y, y_ref),
        l2_loss_jvp(y, y_ref, y)[1],
        l2_loss_grad(y, y_ref)[1],
        l2_loss(y, y, where=y_ref > 0),
        l2_loss(y, y, weights=y_ref),
    ):
        assert isinstance(result, da.Array)
        with pytest.raises(ValueError, match=r"does not have the shape of y.*compute_chunk_sizes"):
            be.to_numpy(result)
    same = x[x > 3]
    assert float(be.to_numpy(l2_loss(same, same * 2))) == 0.5 * float(
        np.sum(np.arange(4.0, 10) ** 2)
    )


def test_dask_arrays_of_masked_chunks_are_refused(be: Backend) -> None:
    if be.name != "dask":
        pytest.skip("Dask only")
    import dask.array as da

    m = da.ma.masked_array(da.ones(4, chunks=2), mask=da.zeros(4, dtype=bool, chunks=2))
    with pytest.raises(TypeError, match=r"y is a Dask array of numpy\.ma\.MaskedArray chunks"):
        l2_loss(m, da.ones(4, chunks=2))


def test_zero_dimensional_results_follow_the_library(be: Backend) -> None:
    """One rule for the type of results: each is an array of the inputs'
    library and device; on NumPy a 0-d result is a NumPy scalar, as NumPy's
    own reductions give, whichever function and path computed it (L_dot of
    two structural zeros included)."""
    for n in (5, 300_001):
        y, r = be.asarray(np.ones(n)), be.asarray(np.zeros(n))
        results = [
            be.call(l2_loss, y, r),
            *be.call(l2_loss_jvp, y, r, y),
            *be.call(l2_loss_jvp, y, r, None),
            be.call(l2_loss_grad, y, r)[0],
        ]
        for a in results:
            be.check_array(a, y)
            assert tuple(a.shape) == ()
            if be.name == "numpy":
                assert isinstance(a, np.floating), type(a)
        types = {type(a) for a in results}
        assert len(types) == 1, types


def test_thread_safety(be: Backend) -> None:
    """Concurrent calls (sharing the namespace cache and worker pool) give the
    same results as sequential ones."""
    rng = np.random.default_rng(2)
    problems = [
        tuple(be.asarray(rng.standard_normal(n)) for _ in range(3)) for n in (5, 9000, 200_000) * 4
    ]

    def run(p: tuple[Any, ...]) -> tuple[Any, ...]:
        return tuple(be.call(l2_loss_jvp, *p))

    def host(results: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        # Read back in this thread: Dask's scheduler setting (be.computing) is
        # process-wide, so it cannot be switched per worker thread.
        return [tuple(be.to_numpy(a) for a in r) for r in results]

    sequential = host([run(p) for p in problems])
    with ThreadPoolExecutor(4) as pool:
        concurrent = host(list(pool.map(run, problems)))
    for s, c in zip(sequential, concurrent, strict=True):
        np.testing.assert_array_equal(s[0], c[0])
        np.testing.assert_array_equal(s[1], c[1])


def test_public_api() -> None:
    assert set(l2loss.__all__) == {
        "__version__",
        "l2_loss",
        "l2_loss_grad",
        "l2_loss_jvp",
        "l2_loss_vjp",
    }
    for name in l2loss.__all__[1:]:
        doc = getattr(l2loss, name).__doc__
        assert (doc and "math::" in doc) or ":math:" in doc, f"{name} docstring lacks its formula"
    assert l2_loss.__module__.startswith("l2loss")
