"""The rule: the mathematics of l2loss, written once for every backend.

With the residual ``d = y - y_ref`` (exactly 0 where the mask is False), the
weights ``w`` (1 when absent) and the reduced axes ``A``::

    sq    = sum_A w |d|^2                                L     = sq / 2
    ip    = Re sum_A w conj(d) (y_dot - y_ref_dot)       L_dot = ip
    y_bar = L_bar w d,   y_ref_bar = -y_bar

Everything here is array API code on whatever block of the inputs the plan
hands it (the whole arrays, or one block at a time), with the inner product
``inner(a, b) = Re sum conj(a) b`` over the reduced axes that the plan
chooses. A tangent given as None is a structural zero: never read, no work.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any, NamedTuple

from ._dtypes import Dtypes

__all__ = [
    "Keep",
    "Masking",
    "Quiet",
    "Sub",
    "cotangent",
    "gradient",
    "halve",
    "masked_vector",
    "residual",
    "sums",
    "vector",
]

Inner = Callable[[Any, Any], Any]
Keep = Callable[..., Any]


#: ``sub(a, b) -> a - b``, where the plan may write it into a buffer it reuses.
Sub = Callable[[Any, Any], Any]
#: ``quiet(sub, a, b) -> sub(a, b)``, raising no floating-point warning.
Quiet = Callable[[Sub, Any, Any], Any]


class Masking(NamedTuple):
    """How a mask selects: ``of(mask)`` is the function ``keep`` with
    ``keep(a)`` the bits of ``xp.where(mask, a, zero)`` (``zero`` a 0-d array
    of the real working dtype), as the library computes it fastest
    (``Traits.keep``); never ``mask * a``, since 0 * NaN is NaN.
    ``keep(a, fresh=True)`` may write them into ``a``, an array of this call's
    own that nothing else reads (a new residual). ``after``, where the
    library can subtract without a floating-point warning (``Traits.quiet``):
    the residual is masked once, after subtracting that way; else ``y`` and
    ``y_ref`` are masked before, so that an inf - inf that the mask drops
    raises none."""

    of: Callable[[Any], Keep]
    after: Quiet | None = None


def _widen(xp: Any, dt: Dtypes, a: Any) -> Any:
    return a if a.dtype == dt.work else xp.astype(a, dt.work)


def residual(
    xp: Any,
    dt: Dtypes,
    y: Any,
    y_ref: Any,
    mask: Any,
    masking: Masking | None,
    sub: Sub = operator.sub,
) -> tuple[Keep | None, Any]:
    """``(keep, d)``: the mask's ``keep`` (None without a mask) and ``d =
    sub(y, y_ref) = y - y_ref`` in the working dtype, exactly 0 where the
    mask is False (see :class:`Masking`; ``y_ref`` None is a structural zero).
    """
    keep = None
    if mask is not None:
        assert masking is not None, "a mask comes with its masking"
        keep = masking.of(mask)
    if dt.widen:
        # Widen before subtracting: in float16, y - y_ref may already overflow.
        y = _widen(xp, dt, y)
        y_ref = None if y_ref is None else _widen(xp, dt, y_ref)
    return keep, _masked(y, y_ref, keep, sub, None if masking is None else masking.after)


def _masked(
    y: Any, y_ref: Any, keep: Keep | None, sub: Sub = operator.sub, after: Quiet | None = None
) -> Any:
    """:func:`residual` of arrays in their working dtype."""
    if keep is None or y_ref is None:
        d = y if y_ref is None else sub(y, y_ref)
        return d if keep is None else keep(d)
    if after is not None:
        return keep(after(sub, y, y_ref), fresh=True)
    # Otherwise mask the inputs, not their difference: inf - inf under a
    # False entry would raise a floating-point warning.
    d, masked_ref = keep(y), keep(y_ref)
    if d.dtype != masked_ref.dtype:
        return sub(d, masked_ref)
    # keep's result is a new array: subtracting into it saves a temporary of
    # its size (libraries with immutable arrays make a new one).
    d -= masked_ref
    return d


def _weighted(xp: Any, dt: Dtypes, d: Any, weights: Any, keep: Keep | None) -> Any:
    """``w d``, with ``w`` taken as 0 where the mask is False (a NaN weight of
    a left-out entry must not reach the sums)."""
    if dt.widen:
        weights = xp.astype(weights, dt.real_work)
    if keep is not None:
        weights = keep(weights)
    return weights * d


def sums(
    xp: Any,
    dt: Dtypes,
    inner: Inner,
    y: Any,
    y_ref: Any,
    y_dot: Any,
    y_ref_dot: Any,
    mask: Any,
    weights: Any,
    masking: Masking | None,
    sub: Sub = operator.sub,
) -> tuple[Any, Any]:
    """``(sq, ip)``: the weighted sum of squares and the pushforward's inner
    product; ``ip`` is None when both tangents are structural zeros. The
    residual is ``sub(y, y_ref)``, used only within the call.

    ``L_dot = <w d, y_dot> - <w d, y_ref_dot>``: two inner products with the
    (weighted) residual, never a temporary for ``y_dot - y_ref_dot``.
    """
    plain = mask is None and not dt.widen
    if plain and y_ref is not None:
        keep, d = None, sub(y, y_ref)
    else:
        keep, d = residual(xp, dt, y, y_ref, mask, masking, sub)
    wd = d if weights is None else _weighted(xp, dt, d, weights, keep)
    sq = inner(wd, d)
    if y_ref_dot is None:
        if y_dot is None:
            return sq, None
        return sq, inner(wd, y_dot if plain else _tangent(xp, dt, y_dot, keep))
    ip_ref = inner(wd, y_ref_dot if plain else _tangent(xp, dt, y_ref_dot, keep))
    if y_dot is None:
        return sq, -ip_ref
    return sq, inner(wd, y_dot if plain else _tangent(xp, dt, y_dot, keep)) - ip_ref


def vector(
    dot: Inner, tdot: Inner, mul: Callable[[Any, Any], Any], half: Any
) -> tuple[Callable[..., Any], ...]:
    """The rule for a reduction of one dtype without a mask over the whole
    arrays (real, or complex with a ``dot`` that is ``Re sum conj(a) b``), as
    ``loss(y, y_ref, weights) -> L``, ``jvp(y, y_ref, y_dot, y_ref_dot,
    weights) -> (L, L_dot)`` and ``grad(y, y_ref, weights) -> (L, w d)`` with
    nothing left to choose: ``L = mul(dot(w d, d), half)``, ``L_dot = tdot(w d,
    y_dot) - tdot(w d, y_ref_dot)``, the operations of :func:`sums` and
    :func:`halve` in their order (``dot`` sums over the reduced axes; ``tdot``
    takes tangents with a leading axis of directions where the call has them).
    Each takes a last argument ``mask``, always None.
    """

    def loss(y: Any, y_ref: Any, weights: Any, mask: None = None) -> Any:
        d = y - y_ref
        return mul(dot(d if weights is None else weights * d, d), half)

    def jvp(
        y: Any, y_ref: Any, y_dot: Any, y_ref_dot: Any, weights: Any, mask: None = None
    ) -> tuple[Any, Any]:
        d = y - y_ref
        wd = d if weights is None else weights * d
        L = mul(dot(wd, d), half)
        if y_ref_dot is None:
            return L, tdot(wd, y_dot)
        if y_dot is None:
            return L, -tdot(wd, y_ref_dot)
        return L, tdot(wd, y_dot) - tdot(wd, y_ref_dot)

    def grad(y: Any, y_ref: Any, weights: Any, mask: None = None) -> tuple[Any, Any]:
        d = y - y_ref
        wd = d if weights is None else weights * d
        return mul(dot(wd, d), half), wd

    return loss, jvp, grad


def masked_vector(
    dot: Inner, tdot: Inner, mul: Callable[[Any, Any], Any], half: Any, masking: Masking
) -> tuple[Callable[..., Any], ...]:
    """:func:`vector`'s ``loss``, ``jvp`` and ``grad`` for a call with a mask,
    which each take last (``keep = masking.of(mask)``): the residual, the
    weights and the tangents are masked as :func:`sums` masks them."""
    of, after = masking

    def parts(y: Any, y_ref: Any, weights: Any, mask: Any) -> tuple[Keep, Any, Any]:
        keep = of(mask)
        d = _masked(y, y_ref, keep, operator.sub, after)
        return keep, d, (d if weights is None else keep(weights) * d)

    def loss(y: Any, y_ref: Any, weights: Any, mask: Any) -> Any:
        _, d, wd = parts(y, y_ref, weights, mask)
        return mul(dot(wd, d), half)

    def jvp(
        y: Any, y_ref: Any, y_dot: Any, y_ref_dot: Any, weights: Any, mask: Any
    ) -> tuple[Any, Any]:
        keep, d, wd = parts(y, y_ref, weights, mask)
        L = mul(dot(wd, d), half)
        if y_ref_dot is None:
            return L, tdot(wd, keep(y_dot))
        if y_dot is None:
            return L, -tdot(wd, keep(y_ref_dot))
        return L, tdot(wd, keep(y_dot)) - tdot(wd, keep(y_ref_dot))

    def grad(y: Any, y_ref: Any, weights: Any, mask: Any) -> tuple[Any, Any]:
        _, d, wd = parts(y, y_ref, weights, mask)
        return mul(dot(wd, d), half), wd

    return loss, jvp, grad


def _tangent(xp: Any, dt: Dtypes, t: Any, keep: Keep | None) -> Any:
    """A tangent in a working dtype (half precision widened), 0 where masked."""
    if dt.widen and t.dtype in dt.narrow:
        t = xp.astype(t, dt.work)
    return t if keep is None else keep(t)


def halve(
    xp: Any, dt: Dtypes, sq: Any, half: Any = 0.5, mul: Callable[[Any, Any], Any] = operator.mul
) -> Any:
    """``L = mul(sq, half) = sq / 2`` in the results' dtype (half precision,
    if that is what the inputs are, after summing in single); ``half`` and
    ``mul`` as the library takes them fastest (``Traits.vector``)."""
    L = mul(sq, half)
    return xp.astype(L, dt.out) if dt.widen and L.dtype != dt.out else L


def gradient(
    xp: Any, dt: Dtypes, y: Any, y_ref: Any, mask: Any, weights: Any, masking: Masking | None
) -> tuple[Any, Any]:
    """``(d, w d)``: the residual and the gradient of L with respect to ``y``
    (the cotangent at ``L_bar = 1``), both exactly 0 where ``mask`` is
    False, and new arrays: ``d`` serves L's sum and ``w d`` is returned."""
    keep, d = residual(xp, dt, y, y_ref, mask, masking)
    return d, (d if weights is None else _weighted(xp, dt, d, weights, keep))


def cotangent(
    xp: Any,
    dt: Dtypes,
    y: Any,
    y_ref: Any,
    mask: Any,
    weights: Any,
    masking: Masking | None,
    L_bar: Any,
    *,
    in_place: bool = True,
) -> Any:
    """``y_bar = L_bar w d`` (``y_ref_bar`` is its negative), exactly 0 where
    ``mask`` is False whatever ``L_bar`` and ``w`` hold there.

    ``L_bar`` arrives broadcastable against ``y`` (size-1 reduced axes).
    ``in_place`` scales the fresh residual in place, which saves an N-sized
    temporary; a caller that records operations for differentiation (PyTorch
    with ``create_graph``) asks for a new array instead.
    """
    keep, d = residual(xp, dt, y, y_ref, mask, masking)
    scale = L_bar
    if keep is not None:
        # Masked before multiplying: an infinite L_bar or weight times a
        # masked 0 would be NaN, and a floating-point warning.
        scale = keep(scale)
    if weights is not None:
        scale = _weighted(xp, dt, scale, weights, keep)
    if d is y:  # never the caller's own array
        return d * scale
    if type(scale) is float and scale == 1.0:  # exact: no pass to scale by one
        return d
    if in_place:
        d *= scale
        return d
    return d * scale
