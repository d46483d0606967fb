"""Every backend against autodiff oracles nobody here wrote: jax.jvp / jax.vjp
and torch.func.jvp / torch.func.vjp of ``0.5 * sum(|y - y_ref|^2)``."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from backends import Backend
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import axes, masks, shapes, values
from test_values import vjp_apply

from l2loss import l2_loss_jvp

jax = pytest.importorskip("jax")
torch = pytest.importorskip("torch")
jax.config.update("jax_enable_x64", True)
jnp = jax.numpy

Arr = np.ndarray[Any, Any]


def _axes(ndim: int, axis: Any) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    return tuple(a % ndim for a in (axis if isinstance(axis, tuple) else (axis,)))


def jax_oracle(y: Arr, r: Arr, t: Arr, u: Arr, c: Arr, axis: Any, keep: Arr) -> tuple[Arr, ...]:
    red = _axes(y.ndim, axis)

    def f(y: Any, r: Any) -> Any:
        d = jnp.where(keep, y - r, 0)
        return 0.5 * jnp.sum(jnp.real(jnp.conj(d) * d), axis=red)

    L, Ld = jax.jvp(f, (jnp.asarray(y), jnp.asarray(r)), (jnp.asarray(t), jnp.asarray(u)))
    _, vjp = jax.vjp(f, jnp.asarray(y), jnp.asarray(r))
    yb, rb = vjp(jnp.asarray(c))
    # JAX's cotangent of a real function of complex inputs is the conjugate of
    # the real-inner-product (PyTorch) one that l2loss returns.
    return tuple(np.asarray(a) for a in (L, Ld, jnp.conj(yb), jnp.conj(rb)))


def torch_oracle(y: Arr, r: Arr, t: Arr, u: Arr, c: Arr, axis: Any, keep: Arr) -> tuple[Arr, ...]:
    red = _axes(y.ndim, axis)
    mask = torch.from_numpy(keep)

    def f(y: Any, r: Any) -> Any:
        d = torch.where(mask, y - r, torch.zeros((), dtype=y.dtype))
        return 0.5 * torch.sum(torch.abs(d) ** 2, dim=red) if red else 0.5 * torch.abs(d) ** 2

    T = [torch.from_numpy(np.array(a, copy=True)) for a in (y, r, t, u, c)]
    L, Ld = torch.func.jvp(f, (T[0], T[1]), (T[2], T[3]))
    _, vjp = torch.func.vjp(f, T[0], T[1])
    yb, rb = vjp(T[4])
    return tuple(a.detach().resolve_conj().numpy() for a in (L, Ld, yb, rb))


@pytest.mark.parametrize("oracle", [jax_oracle, torch_oracle], ids=["jax", "torch"])
@given(data=st.data())
def test_against_autodiff(be: Backend, oracle: Any, data: st.DataObject) -> None:
    dtype = data.draw(st.sampled_from(["float64", "complex128"]))
    shape = data.draw(shapes())
    axis = data.draw(axes(len(shape)))
    keep = data.draw(masks(shape))
    y, r, t, u = (data.draw(values(shape, dtype, bound=1e3)) for _ in range(4))
    L_shape = np.sum(np.zeros(shape), axis=_axes(len(shape), axis)).shape
    c = data.draw(values(L_shape, "float64"))
    want = oracle(y, r, t, u, c, axis, keep)

    Y, R, T, U, W, C = (be.asarray(a) for a in (y, r, t, u, keep, c))
    L, Ld = be.call(l2_loss_jvp, Y, R, T, U, axis=axis, where=W)
    _, yb, rb = be.call(vjp_apply, Y, R, C, axis=axis, where=W)
    got = [be.to_numpy(a) for a in (L, Ld, yb, rb)]
    scale = float(np.max(np.abs(np.stack([y, r, t, u])), initial=0.0)) + 1.0
    n = max(1, int(np.prod(shape)))
    for name, g, w in zip(("L", "L_dot", "y_bar", "y_ref_bar"), got, want, strict=True):
        w = np.asarray(w)
        assert g.shape == w.shape, name
        # Both sides round sums of at most n terms of magnitude <= scale^2.
        atol = (
            8
            * n
            * np.finfo(np.float64).eps
            * scale
            * scale
            * (1 + float(np.max(np.abs(c), initial=0)))
        )
        np.testing.assert_allclose(g, w, rtol=1e-12, atol=atol, err_msg=name)


@settings(max_examples=8)
@given(data=st.data())
def test_batched_against_forward_jacobians(be: Backend, data: st.DataObject) -> None:
    """batched=True with the identity as the K = N directions gives the whole
    Jacobian of the per-sample losses: equal to jax.jacfwd, torch.func.jacfwd,
    and jax.vmap of jax.jvp over the directions."""
    dtype = "float64"
    shape = data.draw(shapes(max_dims=2).filter(lambda s: 0 < int(np.prod(s)) <= 24))
    axis = data.draw(axes(len(shape)))
    keep = data.draw(masks(shape))
    y, r = (data.draw(values(shape, dtype)) for _ in range(2))
    n = int(np.prod(shape))
    eye = np.eye(n).reshape((n, *shape))
    red = _axes(len(shape), axis)

    def jf(y: Any) -> Any:
        d = jnp.where(keep, y - jnp.asarray(r), 0)
        return 0.5 * jnp.sum(d * d, axis=red)

    jac = np.asarray(jax.jacfwd(jf)(jnp.asarray(y)))  # (*L.shape, *shape)
    want = np.moveaxis(jac.reshape((*jac.shape[: jac.ndim - len(shape)], n)), -1, 0)
    vm = np.asarray(jax.vmap(lambda t: jax.jvp(jf, (jnp.asarray(y),), (t,))[1])(jnp.asarray(eye)))
    mask_t = torch.from_numpy(keep)

    def tf(y: Any) -> Any:
        d = torch.where(mask_t, y - torch.from_numpy(r), torch.zeros((), dtype=y.dtype))
        return 0.5 * torch.sum(d * d, dim=red) if red else 0.5 * d * d

    tj = torch.func.jacfwd(tf)(torch.from_numpy(y)).numpy()
    t_want = np.moveaxis(tj.reshape((*tj.shape[: tj.ndim - len(shape)], n)), -1, 0)

    Y, R, E, W = (be.asarray(a) for a in (y, r, eye, keep))
    _, Ld = be.call(l2_loss_jvp, Y, R, E, axis=axis, where=W, batched=True)
    got = be.to_numpy(Ld)
    atol = 1e-12 * (1 + float(np.max(np.abs(y - r), initial=0)))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=atol)
    np.testing.assert_allclose(got, vm, rtol=1e-12, atol=atol)
    np.testing.assert_allclose(got, t_want, rtol=1e-12, atol=atol)
