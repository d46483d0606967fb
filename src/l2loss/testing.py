"""Check derivative rules against finite differences, on any array backend.

Modelled on ChainRulesTestUtils' ``test_frule``/``test_rrule``:

- :func:`check_jvp` compares a pushforward ``(f(x), J t)`` with ``f(x)`` and
  with the central difference ``(f(x + h t) - f(x - h t)) / 2h``;
- :func:`check_vjp` compares a pullback with the same finite differences
  through the dot-product test ``<J t, c> = <t, J^T c>``, in the real inner
  product ``<a, b> = Re sum(conj(a) b)``.

Tangents given as None are structural zeros: that primal is not perturbed.
Steps and tolerances follow the precision of the primals' dtype. Both
functions raise ``AssertionError`` with the numbers on failure and return a
:class:`Check` with the largest error seen, relative to its tolerance.

These helpers read values back to the host: they are for tests, not for
``jax.jit`` or lazy graphs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import array_api_compat as compat
import numpy as np

__all__ = ["Check", "check_jvp", "check_vjp", "to_numpy"]

Array = Any


@dataclass(frozen=True)
class Check:
    """Outcome of a check: ``error <= tolerance`` held for every comparison.

    Attributes
    ----------
    error
        Largest absolute error seen, divided by its tolerance (so <= 1 passes).
    eps
        Machine epsilon of the working precision.
    """

    error: float
    eps: float


def to_numpy(x: Array) -> np.ndarray[Any, Any]:
    """A NumPy copy of ``x`` from any backend (computes Dask graphs, copies
    device arrays to the host)."""
    if compat.is_dask_array(x):
        x = x.compute()
    if compat.is_torch_array(x):
        x = x.detach().cpu().resolve_conj()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()  # NumPy has no bfloat16
        return np.asarray(x.numpy())
    if compat.is_cupy_array(x):
        return np.asarray(x.get())
    if compat.is_jax_array(x) or compat.is_numpy_array(x):
        return np.asarray(x)
    xp = compat.array_namespace(x)
    if hasattr(xp, "Device"):  # array-api-strict: only its CPU device converts
        x = xp.asarray(x, device=xp.Device())
    return np.asarray(x)


def _eps(primals: Sequence[Array]) -> float:
    """Machine epsilon of the narrowest primal: steps and tolerances follow it."""
    return max(float(compat.array_namespace(p).finfo(p.dtype).eps) for p in primals)


def _like(x: Array, a: np.ndarray[Any, Any]) -> Array:
    """NumPy data ``a`` as an array of ``x``'s library, dtype, device and chunks."""
    xp = compat.array_namespace(x)
    a = np.asarray(a, dtype=np.complex128 if np.iscomplexobj(a) else np.float64)
    if compat.is_dask_array(x):
        import dask.array as da

        out = da.from_array(a, chunks=x.chunks)
    elif compat.is_torch_array(x):
        import torch

        out = torch.from_numpy(a).to(x.device)
    else:
        out = xp.asarray(a, device=compat.device(x))
    if xp.isdtype(out.dtype, "complex floating") and not xp.isdtype(x.dtype, "complex floating"):
        out = xp.real(out)
    return xp.astype(out, x.dtype)


def _random_like(rng: np.random.Generator, x: Array) -> np.ndarray[Any, Any]:
    shape = tuple(x.shape)
    a = rng.standard_normal(shape)
    if compat.array_namespace(x).isdtype(x.dtype, "complex floating"):
        a = a + 1j * rng.standard_normal(shape)
    return np.asarray(a)


def _real_dot(a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    return float(np.real(np.vdot(a.astype(np.complex128), b.astype(np.complex128))))


def _central_difference(
    fun: Callable[..., Array],
    primals: Sequence[Array],
    tangents: Sequence[np.ndarray[Any, Any] | None],
    h: float,
) -> np.ndarray[Any, Any]:
    def at(sign: float) -> np.ndarray[Any, Any]:
        moved = [
            p if t is None else _like(p, to_numpy(p) + sign * h * t)
            for p, t in zip(primals, tangents, strict=True)
        ]
        return to_numpy(fun(*moved)).astype(np.float64)

    diff: np.ndarray[Any, Any] = (at(1.0) - at(-1.0)) / (2 * h)
    return diff


def _step(
    primals: Sequence[Array], tangents: Sequence[np.ndarray[Any, Any] | None], eps: float
) -> float:
    """Step balancing truncation (h^2) against rounding (eps / h)."""
    scale = max([1.0] + [float(np.max(np.abs(to_numpy(p)), initial=0.0)) for p in primals])
    tscale = max([1.0] + [float(np.max(np.abs(t), initial=0.0)) for t in tangents if t is not None])
    return float(eps ** (1 / 3)) * scale / tscale


def _compare(
    what: str,
    got: np.ndarray[Any, Any],
    want: np.ndarray[Any, Any],
    tol: np.ndarray[Any, Any] | float,
) -> float:
    got = np.asarray(got, dtype=np.float64)
    want = np.asarray(want, dtype=np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"{what}: shape {got.shape}, expected {want.shape}")
    err = np.abs(got - want)
    both_nan = np.isnan(got) & np.isnan(want)
    same_inf = np.isinf(got) & (got == want)
    err = np.where(both_nan | same_inf, 0.0, err)
    ratio = np.where(err == 0, 0.0, err / np.maximum(tol, np.finfo(np.float64).tiny))
    worst = float(np.max(ratio, initial=0.0)) if not np.any(np.isnan(ratio)) else float("inf")
    if worst > 1.0:
        raise AssertionError(
            f"{what} differs: got {got!r}, expected {want!r}, "
            f"error/tolerance = {worst:.3g} (tolerance {tol!r})"
        )
    return worst


def check_jvp(
    fun: Callable[..., Array],
    jvp_rule: Callable[..., tuple[Array, Array]],
    primals: Sequence[Array],
    tangents: Sequence[Array | None] | None = None,
    *,
    rtol: float | None = None,
    seed: int = 0,
) -> Check:
    """Check a pushforward ``jvp_rule(*primals, *tangents) -> (f(x), J t)``.

    Parameters
    ----------
    fun
        The primal function, ``fun(*primals) -> y``.
    jvp_rule
        Called as ``jvp_rule(*primals, *tangents)``.
    primals
        Arrays of one library.
    tangents
        One per primal (None is a structural zero, which ``jvp_rule`` is given
        as None); random ones when omitted.
    rtol
        Relative tolerance; by default ``eps ** (1/2)`` of the primals' dtype
        for the finite differences and ``64 eps`` for the primal value.
    seed
        Seed of the random tangents.
    """
    rng = np.random.default_rng(seed)
    if tangents is None:
        tangents = [_like(p, _random_like(rng, p)) for p in primals]
    if len(tangents) != len(primals):
        raise ValueError(f"{len(primals)} primals but {len(tangents)} tangents")
    eps = _eps(primals)
    rtol_fd = rtol if rtol is not None else float(np.sqrt(eps))
    y = to_numpy(fun(*primals))
    got_y, got_dot = jvp_rule(*primals, *tangents)
    got_y, got_dot = to_numpy(got_y), to_numpy(got_dot)
    err = _compare("primal output", got_y, y, 64 * eps * (np.abs(y) + eps))
    host_t = [None if t is None else to_numpy(t) for t in tangents]
    h = _step(primals, host_t, eps)
    fd = _central_difference(fun, primals, host_t, h)
    # Rounding in f(x +- h t) is about eps |f| / h; scale the tolerance with it.
    tol = rtol_fd * (np.abs(fd) + 1.0) + 8 * eps * (np.abs(y) + 1.0) / h
    err = max(err, _compare("tangent output (J t)", got_dot, fd, tol))
    return Check(err, eps)


def check_vjp(
    fun: Callable[..., Array],
    vjp_rule: Callable[..., tuple[Array, Callable[[Array], Sequence[Array]]]],
    primals: Sequence[Array],
    cotangent: Array | None = None,
    *,
    rtol: float | None = None,
    seed: int = 0,
) -> Check:
    """Check a pullback by the dot-product test ``<J t, c> = <t, J^T c>``.

    ``vjp_rule(*primals) -> (f(x), pullback)`` and ``pullback(c)`` returns one
    cotangent per primal, each of its primal's shape. ``J t`` comes from
    central finite differences along random tangents ``t``; ``c`` is random
    (real, of the output's shape) unless given.
    """
    rng = np.random.default_rng(seed)
    eps = _eps(primals)
    rtol_fd = rtol if rtol is not None else float(np.sqrt(eps))
    y = to_numpy(fun(*primals))
    got_y, pullback = vjp_rule(*primals)
    err = _compare("primal output", to_numpy(got_y), y, 64 * eps * (np.abs(y) + eps))
    if cotangent is None:
        cotangent = _like(got_y, np.asarray(rng.standard_normal(y.shape)))
    bars = pullback(cotangent)
    if len(bars) != len(primals):
        raise AssertionError(f"pullback gave {len(bars)} cotangents for {len(primals)} primals")
    for i, (p, b) in enumerate(zip(primals, bars, strict=True)):
        if tuple(b.shape) != tuple(p.shape):
            raise AssertionError(
                f"cotangent {i} has shape {tuple(b.shape)}, primal {tuple(p.shape)}"
            )
    t = [_random_like(rng, p) for p in primals]
    h = _step(primals, t, eps)
    jt = _central_difference(fun, primals, t, h)
    c = to_numpy(cotangent).astype(np.float64)
    lhs = float(np.sum(jt * c))
    rhs = sum(_real_dot(to_numpy(b), ti) for b, ti in zip(bars, t, strict=True))
    scale = float(np.sum(np.abs(jt * c))) + 1.0
    tol = rtol_fd * scale + 8 * eps * float(np.sum(np.abs(y) * np.abs(c)) + 1.0) / h
    err = max(err, _compare("<J t, c> vs <t, J^T c>", np.asarray(rhs), np.asarray(lhs), tol))
    return Check(err, eps)
