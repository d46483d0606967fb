"""weights=: per-entry and per-sample weights on every function and backend,
composed with axis, where, batched tangents and complex inputs, against an
independent NumPy reference and against JAX and PyTorch autodiff of the
weighted expression; bad weights get clear errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import reference as ref
from backends import Backend
from hypothesis import given
from hypothesis import strategies as st
from strategies import masks, problems, values
from test_values import close, vjp_apply

from l2loss import l2_loss, l2_loss_grad, l2_loss_jvp

Arr = np.ndarray[Any, Any]


def expand(w: Arr, ndim: int) -> Arr:
    """Weights of the leading axes given size-1 trailing axes."""
    return w.reshape(w.shape + (1,) * (ndim - w.ndim))


def weighted_reference(
    y: Arr, r: Arr, t: Arr | None, w: Arr, axis: Any, keep: Arr | None
) -> tuple[Arr, Arr, Arr, Arr, Arr, Arr]:
    """L, L_dot, y_bar (for L_bar = 1) and the scales of their rounding
    errors, from the definitions, over the kept entries."""
    w = np.broadcast_to(expand(w.astype(np.float64), y.ndim), y.shape)
    if keep is not None:
        w = np.where(keep, w, 0.0)  # a left-out entry's weight never counts, NaN or not
    d = ref.kept(ref.wide(y), keep) - ref.kept(ref.wide(r), keep)
    axes = ref.reduce_axes(y.ndim, axis)
    L = 0.5 * np.sum(w * np.abs(d) ** 2, axis=axes)
    sL = np.sum(np.abs(w) * np.abs(d) ** 2, axis=axes)
    if t is None:
        Ld = sLd = np.zeros_like(L)
    else:
        tt = ref.kept(ref.wide(t), keep)
        Ld = np.sum(w * np.real(np.conj(d) * tt), axis=axes)
        sLd = np.sum(np.abs(w) * np.abs(d) * np.abs(tt), axis=axes)
    y_bar = w * d
    return L, Ld, y_bar, sL, sLd, np.abs(y_bar)


@st.composite
def weights_for(draw: st.DrawFn, shape: tuple[int, ...], dtype: str) -> Arr:
    """Real weights of ``y``'s shape or of its leading axes, some zero."""
    k = draw(st.integers(0, len(shape)))
    real = "float32" if dtype in ("float32", "complex64") else "float64"
    return np.asarray(draw(values(shape[:k], real, bound=10.0)))


@given(data=st.data())
def test_weighted_values_match_reference(be: Backend, data: st.DataObject) -> None:
    dtype, shape, axis, (y, r, t) = data.draw(problems(3))
    w = data.draw(weights_for(shape, dtype))
    keep = data.draw(st.none() | masks(shape))
    if keep is not None and w.ndim == len(shape) and w.size:
        w = np.where(keep, w, np.nan)  # NaN weights where the mask leaves entries out
    Y, R, T, Wt = (be.asarray(a) for a in (y, r, t, w))
    K = None if keep is None else be.asarray(keep)
    L, Ld, y_bar, sL, sLd, sy = weighted_reference(y, r, t, w, axis, keep)
    got = be.call(l2_loss, Y, R, axis=axis, where=K, weights=Wt)
    close(be, got, L, sL, dtype, Y)
    got_L, got_Ld = be.call(l2_loss_jvp, Y, R, T, axis=axis, where=K, weights=Wt)
    close(be, got_L, L, sL, dtype, Y)
    close(be, got_Ld, Ld, sLd, dtype, Y)
    _, g = be.call(l2_loss_grad, Y, R, axis=axis, where=K, weights=Wt)
    close(be, g, y_bar, sy, dtype, Y)
    c = np.full(np.shape(L), 2.0)
    _, yb, rb = be.call(vjp_apply, Y, R, be.asarray(c), axis=axis, where=K, weights=Wt)
    close(be, yb, 2.0 * y_bar, 2.0 * sy, dtype, Y)
    close(be, rb, -2.0 * y_bar, 2.0 * sy, dtype, Y)


@pytest.mark.parametrize(
    ("shape", "axis", "w_axes"),
    [
        ((2, 1, 1), (1, 2), 2),
        ((3, 4, 5), (1, 2), 2),
        ((3, 4, 5, 6), (2, 3), 3),
        ((3, 4, 5, 6), (1, 2, 3), 3),
        ((3, 4, 70_001), (1, 2), 2),  # past cache: blocks
    ],
)
def test_weights_of_reduced_leading_axes(
    be: Backend, shape: tuple[int, ...], axis: tuple[int, ...], w_axes: int
) -> None:
    """Weights of more leading axes than the results keep (one weight per
    sample of a reduced leading axis): each result sums the rows of its own
    samples, in cache and in blocks, with and without directions."""
    rng = np.random.default_rng(len(shape) + w_axes)
    y, r, t = (rng.standard_normal(shape) for _ in range(3))
    w = rng.random(shape[:w_axes])
    Y, R, T, W = (be.asarray(a) for a in (y, r, t, w))
    L, Ld, y_bar, sL, sLd, sy = weighted_reference(y, r, t, w, axis, None)
    got_L, got_Ld = be.call(l2_loss_jvp, Y, R, T, axis=axis, weights=W)
    close(be, got_L, L, sL, "float64", Y)
    close(be, got_Ld, Ld, sLd, "float64", Y)
    _, Ldk = be.call(
        l2_loss_jvp, Y, R, be.asarray(np.stack([t, -t])), axis=axis, weights=W, batched=True
    )
    close(be, Ldk, np.stack([Ld, -Ld]), np.stack([sLd, sLd]), "float64", Y)
    got_L, g = be.call(l2_loss_grad, Y, R, axis=axis, weights=W)
    close(be, got_L, L, sL, "float64", Y)
    close(be, g, y_bar, sy, "float64", Y)


@pytest.mark.parametrize("shape", [(40, 301), (300_001,), (3, 50_001)])
def test_weighted_batched_directions(be: Backend, shape: tuple[int, ...]) -> None:
    """K directions with per-sample weights, large enough for the blocks."""
    rng = np.random.default_rng(0)
    y, r = rng.standard_normal(shape), rng.standard_normal(shape)
    t = rng.standard_normal((3, *shape))
    w = rng.random(shape[:1])
    for axis in (None, -1):
        L, Ld = be.call(
            l2_loss_jvp,
            *(be.asarray(a) for a in (y, r, t)),
            axis=axis,
            weights=be.asarray(w),
            batched=True,
        )
        for k in range(3):
            want_L, want_Ld, _, sL, sLd, _ = weighted_reference(y, r, t[k], w, axis, None)
            got_Ld = be.to_numpy(Ld)[k]
            assert np.all(np.abs(be.to_numpy(L) - want_L) <= 1e-13 * sL)
            assert np.all(np.abs(got_Ld - want_Ld) <= 1e-13 * sLd)


def test_weights_against_autodiff(be: Backend) -> None:
    """JAX's and PyTorch's autodiff of 1/2 sum w |y - y_ref|^2 agree with the
    weighted rules."""
    jax = pytest.importorskip("jax")
    torch = pytest.importorskip("torch")
    jax.config.update("jax_enable_x64", True)
    rng = np.random.default_rng(3)
    y, r, t, u = (rng.standard_normal((4, 6)) + 1j * rng.standard_normal((4, 6)) for _ in range(4))
    w = rng.random(4)
    wb = expand(w, 2)

    def f(y: Any, r: Any) -> Any:
        return 0.5 * jax.numpy.sum(wb * jax.numpy.abs(y - r) ** 2, axis=1)

    L_j, Ld_j = jax.jvp(f, (y, r), (t, u))
    L, Ld = be.call(
        l2_loss_jvp, *(be.asarray(a) for a in (y, r, t, u)), axis=1, weights=be.asarray(w)
    )
    np.testing.assert_allclose(be.to_numpy(L), np.asarray(L_j), rtol=1e-12)
    np.testing.assert_allclose(be.to_numpy(Ld), np.asarray(Ld_j), rtol=1e-12)
    Y = torch.from_numpy(y).requires_grad_(True)
    loss = 0.5 * torch.sum(torch.from_numpy(wb) * torch.abs(Y - torch.from_numpy(r)) ** 2)
    (g,) = torch.autograd.grad(loss, Y)
    _, grad = be.call(l2_loss_grad, be.asarray(y), be.asarray(r), weights=be.asarray(w))
    np.testing.assert_allclose(be.to_numpy(grad), g.numpy(), rtol=1e-12)


def test_bad_weights(be: Backend) -> None:
    y = be.asarray(np.ones((2, 3)))
    with pytest.raises(ValueError, match=r"weights must have the shape of y, \(2, 3\), or of"):
        l2_loss(y, y, weights=be.asarray(np.ones(3)))  # trailing: never broadcast
    with pytest.raises(ValueError, match=r"weights must have the shape of y"):
        l2_loss(y, y, weights=be.asarray(np.ones((2, 3, 1))))
    with pytest.raises(TypeError, match=r"weights must be a real floating array, got shape \(2,\)"):
        l2_loss(y, y, weights=be.asarray(np.ones(2, dtype=np.int64)))
    with pytest.raises(TypeError, match=r"weights must be a real floating array"):
        l2_loss(y, y, weights=be.asarray(np.ones(2, dtype=np.complex128)))
    with pytest.raises(TypeError, match=r"weights must be an array"):
        l2_loss(y, y, weights=[1.0, 2.0])
