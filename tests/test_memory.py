"""Peak extra memory of the eager (tiled) evaluation, measured with tracemalloc.

NumPy reports its data allocations to tracemalloc, so the peak is
deterministic: no timing, no flakiness. The plain expression
``d = y - y_ref; d @ d; d @ y_dot`` allocates N items (80 MB at N = 1e7);
the tiled evaluation allocates a tile per thread plus one partial sum per
tile.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from backends import selected

import l2loss

# NumPy's memory is what tracemalloc sees: run once, in the NumPy session (or
# a run of every backend), not again in every other backend's session.
pytestmark = pytest.mark.skipif(
    "numpy" not in selected(), reason="tracemalloc measures NumPy's allocations: numpy session"
)

N = 10_000_000
LIMIT = 8 * 2**20  # 8 MiB; the plain expression needs 80 MB for d alone


def _peak(fn: Callable[[], Any]) -> int:
    fn()  # warm caches (namespace, thread pool) outside the measurement
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        fn()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.fixture(scope="module")
def arrays() -> tuple[np.ndarray[Any, Any], ...]:
    rng = np.random.default_rng(0)
    y, y_ref, y_dot, y_ref_dot = (rng.standard_normal(N) for _ in range(4))
    return y, y_ref, y_dot, y_ref_dot, y > -3.0


def test_plain_expression_is_what_the_limit_guards_against(
    arrays: tuple[np.ndarray[Any, Any], ...],
) -> None:
    """The measurement sees NumPy's allocations: the plain expression's N-sized d."""
    y, y_ref, y_dot, _, _ = arrays

    def plain() -> Any:
        d = y - y_ref
        return d @ d, d @ y_dot

    assert _peak(plain) >= 8 * N


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda y, r, yd, rd, w: l2loss.l2_loss_jvp(y, r, yd), id="jvp-fast"),
        pytest.param(lambda y, r, yd, rd, w: l2loss.l2_loss_jvp(y, r, yd, rd), id="jvp-full"),
        pytest.param(lambda y, r, yd, rd, w: l2loss.l2_loss(y, r), id="loss"),
        pytest.param(lambda y, r, yd, rd, w: l2loss.l2_loss_jvp(y, r, yd, where=w), id="where"),
        pytest.param(
            lambda y, r, yd, rd, w: l2loss.l2_loss_jvp(
                y.reshape(100, -1), r.reshape(100, -1), yd.reshape(100, -1), axis=-1
            ),
            id="axis",
        ),
        pytest.param(
            lambda y, r, yd, rd, w: l2loss.l2_loss_jvp(y, r, yd, weights=rd), id="weights"
        ),
        pytest.param(
            lambda y, r, yd, rd, w: l2loss.l2_loss_jvp(
                y.reshape(1000, -1),
                r.reshape(1000, -1),
                yd.reshape(1000, -1),
                weights=rd[:1000] ** 2,
            ),
            id="weights-per-sample",
        ),
    ],
)
def test_peak_extra_memory_at_1e7(
    arrays: tuple[np.ndarray[Any, Any], ...], call: Callable[..., Any]
) -> None:
    peak = _peak(lambda: call(*arrays))
    assert peak <= LIMIT, f"peak extra memory {peak / 2**20:.1f} MiB > 8 MiB"


def test_float32_blocks_hold_as_many_bytes(arrays: tuple[np.ndarray[Any, Any], ...]) -> None:
    """float32 blocks hold twice as many items as float64 ones, so their
    temporaries stay within the same bytes: a masked call with weights, the
    most temporaries a block makes."""
    y, y_ref, y_dot, weights = (a.astype(np.float32) for a in arrays[:4])
    keep = arrays[4]
    peak = _peak(lambda: l2loss.l2_loss_jvp(y, y_ref, y_dot, where=keep, weights=weights))
    assert peak <= LIMIT, f"peak extra memory {peak / 2**20:.1f} MiB > 8 MiB"


def test_batched_peak_extra_memory() -> None:
    """K = 8 directions at N = 2e6 (beyond cache): temporaries stay a few
    blocks, not N or K N."""
    rng = np.random.default_rng(1)
    n, k = 2_000_000, 8
    y, y_ref = rng.standard_normal(n), rng.standard_normal(n)
    y_dots = rng.standard_normal((k, n))
    peak = _peak(lambda: l2loss.l2_loss_jvp(y, y_ref, y_dots, batched=True))
    assert peak <= LIMIT, f"peak extra memory {peak / 2**20:.1f} MiB"


def test_gradient_costs_its_own_size(arrays: tuple[np.ndarray[Any, Any], ...]) -> None:
    """``l2_loss_grad`` computes the gradient it returns and nothing more: the
    peak is that gradient (N items) and a block's temporaries, not the
    unused ``y_ref`` cotangent beside it."""
    y, y_ref = arrays[0], arrays[1]
    peak = _peak(lambda: l2loss.l2_loss_grad(y, y_ref))
    assert peak <= 8 * N + LIMIT, f"peak extra memory {peak / 2**20:.1f} MiB"


@pytest.mark.parametrize("full", [False, True])
def test_masked_call_in_cache_holds_three_temporaries(full: bool) -> None:
    """A masked call whose inputs fit in cache makes, at most at once, three
    temporaries of their size: the mask as integers, the residual (the masked
    ``y``, ``y_ref`` subtracted into it) and one masked input or tangent."""
    rng = np.random.default_rng(2)
    n = 100_000
    y, y_ref, y_dot, y_ref_dot = (rng.standard_normal(n) for _ in range(4))
    keep = rng.random(n) < 0.5
    tangents = (y_dot, y_ref_dot if full else None)
    peak = _peak(lambda: l2loss.l2_loss_jvp(y, y_ref, *tangents, where=keep))
    assert peak <= 3 * 8 * n + 4096, f"peak extra memory {peak / (8 * n):.2f} N items"


@pytest.mark.parametrize(
    ("axis", "order"),
    [(None, "F"), (None, "T"), ((0, 2), "C"), (1, "C"), (0, "F"), (-1, "F"), (-1, "T")],
)
def test_reductions_in_any_layout_copy_nothing(axis: Any, order: str) -> None:
    """Fortran-ordered and transposed inputs, and axes that are not rows in
    memory, are summed as they lie in memory: the call allocates the residual
    and nothing of its size more (a vector of a transposed array's items, or
    a temporary of the products, would be another)."""
    rng = np.random.default_rng(1)
    shape = (40, 50, 60) if isinstance(axis, tuple) or axis == 1 else (400, 300)

    def make() -> np.ndarray[Any, Any]:
        a = rng.standard_normal(shape[::-1] if order == "T" else shape)
        return a.T if order == "T" else np.asarray(a, order=order)

    y, r, t = make(), make(), make()
    ts = np.stack([t, -t])
    size = y.nbytes
    for call in (
        lambda: l2loss.l2_loss(y, r, axis=axis),
        lambda: l2loss.l2_loss_jvp(y, r, t, axis=axis),
        lambda: l2loss.l2_loss_jvp(y, r, ts, axis=axis, batched=True),
    ):
        peak = _peak(call)
        assert peak < size * 1.25, (peak, size)
    d = y - r
    L, Ld = l2loss.l2_loss_jvp(y, r, t, axis=axis)
    np.testing.assert_allclose(L, 0.5 * np.sum(d * d, axis=axis), rtol=1e-12)
    np.testing.assert_allclose(Ld, np.sum(d * t, axis=axis), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("axis", [None, -1, (1, 2)])
def test_per_sample_weights_scale_sums(axis: Any) -> None:
    """One weight per sample scales the sum of the sample's items: a call
    makes the residual and nothing of its size more (weighting every item
    would make another), and agrees with the weighted sum."""
    rng = np.random.default_rng(2)
    shape = (300, 40, 50)
    y, r, t = (rng.standard_normal(shape) for _ in range(3))
    w = rng.random(300)
    for call in (
        lambda: l2loss.l2_loss(y, r, axis=axis, weights=w),
        lambda: l2loss.l2_loss_jvp(y, r, t, axis=axis, weights=w),
    ):
        peak = _peak(call)
        assert peak < y.nbytes * 1.25, (peak, y.nbytes)
    d, wb = y - r, w[:, None, None]
    L, Ld = l2loss.l2_loss_jvp(y, r, t, axis=axis, weights=w)
    np.testing.assert_allclose(L, 0.5 * np.sum(wb * d * d, axis=axis), rtol=1e-12)
    np.testing.assert_allclose(Ld, np.sum(wb * d * t, axis=axis), rtol=1e-10, atol=1e-10)
