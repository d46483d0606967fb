"""Argument checks. They read types, shapes, dtypes and devices, never array
values, so they run unchanged under ``jax.jit`` and on lazy Dask arrays."""

from __future__ import annotations

import operator
from functools import lru_cache
from typing import Any

__all__ = [
    "check_axis",
    "check_batched",
    "check_devices",
    "check_mask",
    "check_shape",
    "check_weights",
    "directions",
    "same_shape",
]

Array = Any


def describe(a: Array) -> str:
    return f"shape {tuple(a.shape)} and dtype {a.dtype}"


def same_shape(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Whether shapes ``a`` and ``b`` agree; a dimension unknown until compute
    (None, or NaN as Dask gives after boolean indexing) agrees with any here,
    and is checked when the graph runs (``Traits.guard``)."""
    if a == b:
        return True
    return len(a) == len(b) and all(
        i == j or i is None or j is None or i != i or j != j for i, j in zip(a, b, strict=True)
    )


def check_shape(name: str, a: Array, shape: tuple[Any, ...]) -> None:
    """Raise ``ValueError`` unless ``a`` has ``shape``, ``y``'s shape."""
    if not same_shape(tuple(a.shape), shape):
        raise ValueError(
            f"{name} must have the shape of y, {shape}, got {describe(a)}; "
            "l2loss never broadcasts silently: reshape or broadcast it explicitly"
        )


def check_mask(xp: Any, where: Array, shape: tuple[Any, ...]) -> None:
    """Raise unless ``where`` is a boolean array of shape ``shape``."""
    if where.dtype != xp.bool:
        raise TypeError(
            f"where must be a boolean array, got {describe(where)}; "
            "build it with a comparison, e.g. where = ~isnan(y_ref)"
        )
    if not same_shape(tuple(where.shape), shape):
        raise ValueError(
            f"where must have the shape of y, {shape}, got {describe(where)}; "
            "broadcast it explicitly, e.g. xp.broadcast_to(where, y.shape)"
        )


def check_weights(xp: Any, weights: Array, shape: tuple[Any, ...]) -> int:
    """The number of leading axes of ``y`` that ``weights`` covers: ``weights``
    has ``y``'s shape, or that of its leading axes (one weight per sample).

    Raises
    ------
    TypeError
        Unless ``weights`` is real floating.
    ValueError
        For any other shape (weights never broadcast along trailing axes).
    """
    if not xp.isdtype(weights.dtype, "real floating"):
        raise TypeError(
            f"weights must be a real floating array, got {describe(weights)}; "
            "cast it to y's real dtype first"
        )
    k = len(weights.shape)
    if k > len(shape) or not same_shape(tuple(weights.shape), shape[:k]):
        raise ValueError(
            f"weights must have the shape of y, {shape}, or of its leading axes "
            f"(one weight per sample: {shape[:1]} for instance), got {describe(weights)}; "
            "l2loss never broadcasts weights along trailing axes: broadcast them "
            "explicitly if that is what you mean"
        )
    return k


def check_batched(batched: Any) -> bool:
    if type(batched) is not bool:
        raise TypeError(
            f"batched must be True or False, got {batched!r} of type {type(batched).__name__}"
        )
    return batched


def directions(y_dot: Array, y_ref_dot: Array, shape: tuple[Any, ...]) -> tuple[int, ...]:
    """``(K,)`` from tangents of shape ``(K, *shape)`` (``batched=True``)."""
    batch: tuple[int, ...] = ()
    for name, t in (("y_dot", y_dot), ("y_ref_dot", y_ref_dot)):
        if t is None:
            continue
        if len(t.shape) != len(shape) + 1 or not same_shape(tuple(t.shape[1:]), shape):
            raise ValueError(
                f"with batched=True, {name} must have shape (K, *y.shape) = (K, *{shape}), "
                f"got {describe(t)}; stack the K tangent directions along a new leading axis"
            )
        if batch and not same_shape(batch, (t.shape[0],)):
            raise ValueError(
                "y_dot and y_ref_dot must carry the same number of directions K, "
                f"got shapes {tuple(y_dot.shape)} and {tuple(t.shape)}"
            )
        batch = (t.shape[0],)
    if not batch:
        raise ValueError(
            "batched=True needs at least one tangent array to take the number of "
            "directions K from; got y_dot=None and y_ref_dot=None"
        )
    return batch


def check_devices(names: tuple[str, ...], arrays: tuple[Array, ...]) -> None:
    """Raise ``ValueError`` unless every array lives on the device of the
    first (None entries, absent arguments, are skipped)."""
    dev = arrays[0].device
    for name, a in zip(names[1:], arrays[1:], strict=True):
        if a is not None and a.device != dev:
            raise ValueError(
                f"{name} is on device {a.device} but {names[0]} is on {dev}; move it "
                f"first, e.g. with array_api_compat.to_device({name}, {names[0]}.device)"
            )


def check_axis(axis: Any, ndim: int) -> tuple[int, ...]:
    """The reduced axes as sorted negative indices (so that they address the
    same trailing axes of a tangent with an extra leading batch axis).

    Raises
    ------
    TypeError
        For an axis that is not known when the call is traced (``jax.jit``
        with ``axis`` among the traced arguments).
    ValueError
        Unless ``axis`` is None, an int or a tuple of distinct in-range ints.
    """
    if axis is None:
        return tuple(range(-ndim, 0))
    if type(axis) is int or (type(axis) is tuple and all(type(a) is int for a in axis)):
        return _axes(axis, ndim)
    return _axes.__wrapped__(axis, ndim)


@lru_cache(maxsize=512)
def _axes(axis: Any, ndim: int) -> tuple[int, ...]:
    axes = axis if isinstance(axis, tuple) else (axis,)
    out = []
    for ax in axes:
        if hasattr(ax, "aval") or type(ax).__name__.endswith("Tracer"):
            raise TypeError(
                f"axis must be known when the call is traced, got the traced value {ax!r}; "
                "under jax.jit mark it static: jax.jit(f, static_argnames='axis')"
            )
        if isinstance(ax, bool):
            raise ValueError(f"axis must be None, an int or a tuple of ints, got {axis!r}")
        try:
            i = operator.index(ax)
        except TypeError:
            raise ValueError(
                f"axis must be None, an int or a tuple of ints, got {axis!r}"
            ) from None
        if not -ndim <= i < ndim:
            if ndim == 0:
                raise ValueError(
                    f"axis {axis!r} is out of bounds for y with 0 dimensions (a scalar): "
                    "it has no axes to reduce; use axis=None or axis=()"
                )
            raise ValueError(
                f"axis {axis!r} is out of bounds for y with {ndim} dimensions; "
                f"use axes in [{-ndim}, {ndim - 1}]"
            )
        out.append(i - ndim if i >= 0 else i)
    if len(set(out)) != len(out):
        raise ValueError(f"axis {axis!r} names the same axis twice")
    return tuple(sorted(out))
