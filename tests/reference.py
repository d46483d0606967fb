"""Reference results computed independently of l2loss, in NumPy float64/complex128,
written directly from the definitions over the kept (unmasked) entries."""

from __future__ import annotations

from typing import Any

import numpy as np

Arr = np.ndarray[Any, Any]


def wide(a: Arr) -> Arr:
    return a.astype(np.complex128 if np.iscomplexobj(a) else np.float64)


def kept(a: Arr, where: Arr | None) -> Arr:
    """``a`` with the entries left out by ``where`` replaced by 0 (``where``
    broadcasts against a leading batch axis of ``a``)."""
    return a if where is None else np.where(where, a, 0)


def reduce_axes(ndim: int, axis: Any) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, tuple) else (axis,)
    return tuple(a % ndim for a in axes)


def loss(y: Arr, y_ref: Arr, axis: Any = None, where: Arr | None = None) -> Arr:
    """1/2 sum over axis of |y - y_ref|^2, entries with where=False left out."""
    d = kept(wide(y), where) - kept(wide(y_ref), where)
    sq = np.abs(d) ** 2
    return 0.5 * np.sum(sq, axis=reduce_axes(y.ndim, axis))


def loss_dot(
    y: Arr,
    y_ref: Arr,
    y_dot: Arr | None,
    y_ref_dot: Arr | None,
    axis: Any = None,
    where: Arr | None = None,
) -> Arr:
    """Re sum over axis of conj(y - y_ref) (y_dot - y_ref_dot) on kept entries.

    A tangent with one more dimension than y is a batch of directions along its
    leading axis."""
    d = kept(wide(y), where) - kept(wide(y_ref), where)
    t: Any = 0.0
    if y_dot is not None:
        t = t + kept(wide(y_dot), where)
    if y_ref_dot is not None:
        t = t - kept(wide(y_ref_dot), where)
    prod = np.real(np.conj(d) * t)
    axes = reduce_axes(y.ndim, axis)
    shift = np.ndim(prod) - y.ndim
    return np.sum(prod, axis=tuple(a + shift for a in axes))


def magnitude(y: Arr, y_ref: Arr, other: Arr | None, axis: Any, where: Arr | None) -> Arr:
    """sum |d| |other| (or |d|^2) over axis: the scale of rounding errors in the sums."""
    d = np.abs(kept(wide(y), where) - kept(wide(y_ref), where))
    o = d if other is None else np.abs(kept(wide(other), where))
    prod = d * o
    axes = reduce_axes(y.ndim, axis)
    shift = np.ndim(prod) - y.ndim
    return np.sum(prod, axis=tuple(a + shift for a in axes))
