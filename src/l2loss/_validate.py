"""Argument checks. They read shapes, dtypes and devices, never array values,
so they run unchanged under ``jax.jit`` and on lazy Dask arrays."""

from __future__ import annotations

import operator
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

from ._namespace import Backend

__all__ = ["Dtypes", "check_axis", "check_devices", "check_mask", "check_shape", "dtypes_of"]


@dataclass(frozen=True, slots=True)
class Dtypes:
    """The dtypes one call works in.

    Attributes
    ----------
    work
        Dtype the arithmetic runs in: the promoted input dtype, widened to at
        least 32 bits so half precision accumulates in single precision.
    out
        Dtype of the loss and its tangent: the real counterpart of the
        promoted input dtype (the loss of complex inputs is real).
    real_work
        Real counterpart of ``work``.
    complex
        Whether ``work`` is complex.
    widen
        Whether inputs must be cast up to ``work`` (half precision).
    """

    work: Any
    out: Any
    real_work: Any
    complex: bool
    widen: bool = False


def _describe(a: Any) -> str:
    return f"shape {tuple(a.shape)} and dtype {a.dtype}"


def _cast_hint(xp: Any) -> str:
    name = getattr(xp, "__name__", "xp").split(".")[-1]
    return f"cast it first, e.g. {name}.astype(x, {name}.float64)"


_DTYPES: dict[tuple[int, Any], Dtypes] = {}


def _classify_dtype(backend: Backend, dtype: Any) -> Dtypes | None:
    # By bit width, not dtype equality: NumPy's byte-swapped float64 ('>f8')
    # is not == float64 but is just as precise.
    xp = backend.xp
    if xp.isdtype(dtype, "complex floating"):
        bits = xp.finfo(dtype).bits  # of each component
        if bits < 32:  # complex32: accumulate in complex64
            return Dtypes(
                work=xp.complex64, out=xp.float32, real_work=xp.float32, complex=True, widen=True
            )
        real = xp.float32 if bits == 32 else xp.float64 if bits == 64 else xp.finfo(dtype).dtype
        return Dtypes(work=dtype, out=real, real_work=real, complex=True)
    if xp.isdtype(dtype, "real floating"):
        bits = xp.finfo(dtype).bits
        if bits < 32:
            # float16 / bfloat16: accumulate in float32, answer in the input dtype.
            return Dtypes(
                work=xp.float32, out=dtype, real_work=xp.float32, complex=False, widen=True
            )
        native = xp.float32 if bits == 32 else xp.float64 if bits == 64 else dtype
        return Dtypes(work=dtype, out=native, real_work=native, complex=False)
    return None


def dtypes_of(backend: Backend, names: tuple[str, ...], arrays: tuple[Any, ...]) -> Dtypes:
    """Promote the dtypes of ``arrays`` and return the :class:`Dtypes` to work in.

    Raises
    ------
    TypeError
        If an array is not of a real or complex floating dtype.
    """
    # Called once per combination of input dtypes (the caller caches the
    # answer), so clarity wins over speed here.
    widen = False
    for name, a in zip(names, arrays, strict=True):
        kind = _classify_cached(backend, a.dtype)
        if kind is None:
            raise TypeError(
                f"{name} must have a real or complex floating dtype, got {_describe(a)}; "
                + _cast_hint(backend.xp)
            )
        widen = widen or kind.widen
    dtype = arrays[0].dtype
    if any(a.dtype != dtype for a in arrays[1:]):
        dtype = backend.xp.result_type(*arrays)
    info = _classify_cached(backend, dtype)
    assert info is not None  # floating dtypes promote to floating dtypes
    # A half-precision input promoted with a wider one must still be widened
    # before the arithmetic, not after.
    return replace(info, widen=True) if widen and not info.widen else info


def _classify_cached(backend: Backend, dtype: Any) -> Dtypes | None:
    key = (id(backend.xp), dtype)
    try:
        return _DTYPES[key]
    except KeyError:
        pass
    info = _classify_dtype(backend, dtype)
    if info is not None:
        _DTYPES[key] = info
    return info


def same_shape(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Whether shapes ``a`` and ``b`` agree; a dimension unknown until compute
    (None, or NaN as Dask gives after boolean indexing) agrees with any."""
    if a == b:
        return True
    return len(a) == len(b) and all(
        i == j or i is None or j is None or i != i or j != j for i, j in zip(a, b, strict=True)
    )


def check_shape(name: str, a: Any, shape: tuple[Any, ...], ref: str) -> None:
    """Raise ``ValueError`` unless ``a`` has ``shape`` (``ref``'s shape)."""
    if not same_shape(tuple(a.shape), shape):
        raise ValueError(
            f"{name} must have the shape of {ref}, {shape}, got {_describe(a)}; "
            "l2loss never broadcasts silently: reshape or broadcast it explicitly"
        )


def check_mask(backend: Backend, where: Any, shape: tuple[Any, ...]) -> None:
    """Raise unless ``where`` is a boolean array of shape ``shape``."""
    if where.dtype != backend.xp.bool:
        raise TypeError(
            f"where must be a boolean array, got {_describe(where)}; "
            "build it with a comparison, e.g. where = ~isnan(y_ref)"
        )
    if not same_shape(tuple(where.shape), shape):
        raise ValueError(
            f"where must have the shape of y, {shape}, got {_describe(where)}; "
            "broadcast it explicitly, e.g. xp.broadcast_to(where, y.shape)"
        )


def check_devices(names: tuple[str, ...], arrays: tuple[Any, ...]) -> None:
    """Raise ``ValueError`` unless every array lives on the device of the
    first (entries given as None, absent arguments, are skipped).

    By the standard's ``device`` attribute: the backends that check devices
    (``Backend.check_devices``: PyTorch, CuPy, array-api-strict, others) have
    it, and it costs 0.1 us where ``array_api_compat.device`` costs 1 us.
    """
    dev = arrays[0].device
    for name, a in zip(names[1:], arrays[1:], strict=True):
        if a is None:
            continue
        other = a.device
        if other != dev:
            raise ValueError(
                f"{name} is on device {other} but {names[0]} is on {dev}; "
                f"move it first, e.g. with array_api_compat.to_device({name}, {names[0]}.device)"
            )


def check_axis(axis: Any, ndim: int) -> tuple[int, ...]:
    """Normalise ``axis`` for an array of ``ndim`` dimensions.

    Returns the reduced axes as sorted negative indices, so that they address
    the same trailing axes of a tangent carrying an extra leading batch axis.

    Raises
    ------
    ValueError
        If ``axis`` is not None, an int or a tuple of distinct in-range ints.
    """
    if axis is None and ndim < len(_ALL_AXES):
        return _ALL_AXES[ndim]
    # Only exact ints are cached: 1.0 == 1 == True hash alike but are not axes.
    if axis is None or type(axis) is int:
        return _axes(axis, ndim)
    if type(axis) is tuple and all(type(a) is int for a in axis):
        return _axes(axis, ndim)
    return _axes.__wrapped__(axis, ndim)


# axis=None for each ndim: every axis, as negative indices.
_ALL_AXES = tuple(tuple(range(-ndim, 0)) for ndim in range(33))


@lru_cache(maxsize=512)
def _axes(axis: Any, ndim: int) -> tuple[int, ...]:
    if axis is None:
        return tuple(range(-ndim, 0))
    axes = axis if isinstance(axis, tuple) else (axis,)
    out = []
    for ax in axes:
        if isinstance(ax, bool):
            raise ValueError(f"axis must be None, an int or a tuple of ints, got {axis!r}")
        try:
            i = operator.index(ax)
        except TypeError:
            raise ValueError(
                f"axis must be None, an int or a tuple of ints, got {axis!r}"
            ) from None
        if not -ndim <= i < ndim:
            raise ValueError(
                f"axis {axis!r} is out of bounds for y with {ndim} dimensions; "
                f"use axes in [{-ndim}, {ndim - 1}]"
            )
        out.append(i - ndim if i >= 0 else i)
    if len(set(out)) != len(out):
        raise ValueError(f"axis {axis!r} names the same axis twice")
    return tuple(sorted(out))
