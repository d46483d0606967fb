"""The mathematics, written once for every backend.

With the residual ``d = y - y_ref`` (zeroed where the mask is False) and the
reduced axes ``A``::

    sq = sum_A |d|^2                              so  L     = sq / 2
    ip = Re sum_A conj(d) (y_dot - y_ref_dot)     so  L_dot = ip

Everything here is plain array API code on whatever block of the inputs it is
given: the whole arrays on lazy backends, one tile at a time on eager ones
(see ``_evaluate``).
"""

from __future__ import annotations

from typing import Any

from ._validate import Dtypes

__all__ = ["residual", "sums"]


def _widen(xp: Any, dt: Dtypes, a: Any) -> Any:
    return a if a.dtype == dt.work else xp.astype(a, dt.work)


def residual(xp: Any, dt: Dtypes, y: Any, y_ref: Any, mask: Any, zero: Any) -> Any:
    """``d = y - y_ref`` in the working dtype, exactly 0 where ``mask`` is False."""
    if dt.widen:
        # Widen before subtracting: in float16, y - y_ref may already overflow.
        y, y_ref = _widen(xp, dt, y), _widen(xp, dt, y_ref)
    if mask is not None:
        # Mask the inputs, not their difference: inf - inf under a False entry
        # would otherwise raise floating-point warnings. xp.where, never
        # mask * y: 0 * NaN is NaN.
        y, y_ref = xp.where(mask, y, zero), xp.where(mask, y_ref, zero)
    return y - y_ref


def _inner(
    xp: Any, dt: Dtypes, a: Any, b: Any, axes: tuple[int, ...], dot: int, matvec: Any
) -> Any:
    """``Re sum_axes conj(a) b``; ``b`` may carry extra leading (batch) axes.

    By ``matvec(b, a)`` where it is given and ``a`` is 1-D (``b`` then has
    its shape or one more leading axis; see ``Backend.matvec``); else, ``dot`` > 0: the
    reduced axis is the single last one and the sum is taken by ``vecdot``,
    in calls over at most ``dot`` items of it (see ``Backend.dot``); ``dot``
    = 0: as ``sum(conj(a) * b)``.
    """
    if matvec is not None and a.ndim == 1:
        r = matvec(b, a)
    elif dot:
        n = a.shape[-1]
        if n <= dot:
            # vecdot: axis=-1 is the default (a keyword costs 0.1 us)
            r = xp.vecdot(a, b)
        else:
            r = xp.vecdot(a[..., :dot], b[..., :dot])
            for i in range(dot, n, dot):
                r = r + xp.vecdot(a[..., i : i + dot], b[..., i : i + dot])
    else:
        r = xp.sum((xp.conj(a) if dt.complex else a) * b, axis=axes)
    return xp.real(r) if dt.complex else r


def sums(
    xp: Any,
    dt: Dtypes,
    y: Any,
    y_ref: Any,
    y_dot: Any,
    y_ref_dot: Any,
    mask: Any,
    zero: Any,
    axes: tuple[int, ...],
    dot: int,
    tangent: bool,
    matvec: Any = None,
) -> tuple[Any, Any]:
    """Return ``(sq, ip)`` over ``axes`` (``ip`` is None unless ``tangent``).

    A tangent given as None is a structural zero: it is never read and costs
    nothing. ``dot`` and ``matvec`` choose the inner product (see ``_inner``).
    """
    d = residual(xp, dt, y, y_ref, mask, zero)
    sq = _inner(xp, dt, d, d, axes, dot, matvec)
    if not tangent:
        return sq, None
    # L_dot = <d, y_dot> - <d, y_ref_dot>: two dots of the residual, no
    # temporary for y_dot - y_ref_dot.
    if y_ref_dot is None:
        return sq, _along(xp, dt, d, y_dot, mask, zero, axes, dot, matvec)
    ip_ref = _along(xp, dt, d, y_ref_dot, mask, zero, axes, dot, matvec)
    if y_dot is None:
        return sq, -ip_ref
    return sq, _along(xp, dt, d, y_dot, mask, zero, axes, dot, matvec) - ip_ref


def _along(
    xp: Any,
    dt: Dtypes,
    d: Any,
    t: Any,
    mask: Any,
    zero: Any,
    axes: tuple[int, ...],
    dot: int,
    matvec: Any,
) -> Any:
    """``Re <d, t>`` over ``axes``, ``t`` zeroed where ``mask`` is False."""
    if dt.widen:
        t = _widen(xp, dt, t)
    if mask is not None:
        t = xp.where(mask, t, zero)
    return _inner(xp, dt, d, t, axes, dot, matvec)
