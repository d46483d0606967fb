"""Hypothesis strategies for l2loss problems: shapes, axes, dtypes, values, masks."""

from __future__ import annotations

from typing import Any

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

REAL = ("float32", "float64")
COMPLEX = ("complex64", "complex128")
FLOATING = REAL + COMPLEX


def eps(dtype: str) -> float:
    return float(np.finfo(np.dtype(dtype)).eps) if dtype != "bfloat16" else 2.0**-7


@st.composite
def axes(draw: st.DrawFn, ndim: int) -> Any:
    """None, an int (positive or negative) or a tuple of distinct axes, as sum() takes."""
    if ndim == 0:
        return draw(st.sampled_from([None, ()]))
    kind = draw(st.sampled_from(["none", "int", "tuple"]))
    if kind == "none":
        return None
    if kind == "int":
        return draw(st.integers(-ndim, ndim - 1))
    return draw(hnp.valid_tuple_axes(ndim))


@st.composite
def values(
    draw: st.DrawFn, shape: tuple[int, ...], dtype: str, bound: float = 1e3
) -> np.ndarray[Any, Any]:
    """Finite values of magnitude up to ``bound``, including tiny and subnormal ones."""
    elements = st.one_of(
        st.floats(-bound, bound, allow_nan=False, allow_infinity=False, width=32),
        st.sampled_from([0.0, -0.0, 1e-30, -1e-30, 1.0, -1.0]),
    )
    re = draw(hnp.arrays(np.float64, shape, elements=elements))
    if dtype in COMPLEX:
        im = draw(hnp.arrays(np.float64, shape, elements=elements))
        return np.asarray((re + 1j * im).astype(dtype))
    return np.asarray(re.astype(dtype))


@st.composite
def shapes(draw: st.DrawFn, max_dims: int = 3) -> tuple[int, ...]:
    return tuple(draw(hnp.array_shapes(min_dims=0, max_dims=max_dims, min_side=0, max_side=5)))


@st.composite
def masks(draw: st.DrawFn, shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    """All True, all False, or random."""
    kind = draw(st.sampled_from(["all", "none", "random"]))
    if kind == "all":
        return np.ones(shape, dtype=bool)
    if kind == "none":
        return np.zeros(shape, dtype=bool)
    return np.asarray(draw(hnp.arrays(np.bool_, shape)))


@st.composite
def problems(
    draw: st.DrawFn, count: int = 2
) -> tuple[str, tuple[int, ...], Any, list[np.ndarray[Any, Any]]]:
    """A floating dtype, a shape, an axis for it, and ``count`` arrays of values."""
    dtype = draw(st.sampled_from(FLOATING))
    shape = draw(shapes())
    axis = draw(axes(len(shape)))
    return dtype, shape, axis, [draw(values(shape, dtype)) for _ in range(count)]


# -- adversarial values, None arguments, masked non-finite entries, junk -----


def _finite_bound(dtype: str, size: int) -> float:
    """Largest magnitude for which half the sum of ``|y - y_ref|^2`` over
    ``size`` entries stays finite in ``dtype``."""
    return float(np.sqrt(np.finfo(np.dtype(dtype)).max / (16 * max(size, 1))))


@st.composite
def _adversarial_real(draw: st.DrawFn, shape: tuple[int, ...], dtype: str) -> Any:
    info = np.finfo(np.dtype(dtype))
    size = int(np.prod(shape))
    bound = _finite_bound(dtype, size)
    lo, hi = float(np.log10(info.smallest_normal)), float(np.log10(bound))
    kind = draw(st.sampled_from(["constant", "alternating", "decades", "extremes"]))
    sign = draw(st.sampled_from([1.0, -1.0]))
    if kind in ("constant", "alternating"):
        a = sign * draw(
            st.sampled_from([0.1, 1 / 3, 2 / 3, 0.7, 1e-3, 1e3])
            | st.floats(info.smallest_normal, bound, allow_subnormal=False)
        )
        if kind == "constant":
            return np.full(shape, a)
        # +a, -a, +a, ... in C order.
        return a * (-1.0) ** (np.arange(size).reshape(shape) % 2)
    if kind == "decades":
        # Magnitudes 10**(mu + sigma z): log-normal-like over many decades.
        mu = draw(st.floats(lo, hi))
        sigma = draw(st.floats(0.0, (hi - lo) / 4))
        z = draw(hnp.arrays(np.float64, shape, elements=st.floats(-3.0, 3.0)))
        signs = draw(hnp.arrays(np.bool_, shape))
        return np.where(signs, -1.0, 1.0) * 10.0 ** np.clip(mu + sigma * z, lo, hi)
    special = [
        0.0,
        -0.0,
        1.0,
        float(info.smallest_normal),
        float(info.smallest_subnormal),
        3 * float(info.smallest_subnormal),
        -float(info.smallest_subnormal),
        bound,
        -bound,
        float(info.eps),
    ]
    return draw(hnp.arrays(np.float64, shape, elements=st.sampled_from(special)))


@st.composite
def adversarial_values(draw: st.DrawFn, shape: tuple[int, ...], dtype: str) -> np.ndarray[Any, Any]:
    """Finite values that stress accuracy: constant (0.1, 1/3, ...), alternating +a/-a,
    magnitudes over many decades, or tiny/huge/subnormal; the loss stays finite."""
    real = np.dtype(dtype).type(0).real.dtype
    re = np.asarray(draw(_adversarial_real(shape, real.name)), dtype=real)
    if dtype in COMPLEX:
        im = np.asarray(draw(_adversarial_real(shape, real.name)), dtype=real)
        return np.asarray(re + 1j * im, dtype=dtype)
    return np.asarray(re, dtype=dtype)


# (function, argument that holds None): every position that must hold an array.
NONE_POSITIONS = (
    ("l2_loss", "y"),
    ("l2_loss", "y_ref"),
    ("l2_loss_jvp", "y"),
    ("l2_loss_jvp", "y_ref"),
    ("l2_loss_vjp", "y"),
    ("l2_loss_vjp", "y_ref"),
    ("pullback", "L_bar"),
)


@st.composite
def calls_with_none(
    draw: st.DrawFn, shape: tuple[int, ...], dtype: str
) -> tuple[str, str, dict[str, np.ndarray[Any, Any] | None]]:
    """(function, position, arguments): None where an array is required (y, y_ref, L_bar),
    the optional tangents and mask None or arrays; the call must raise TypeError."""
    function, position = draw(st.sampled_from(NONE_POSITIONS))
    args: dict[str, np.ndarray[Any, Any] | None] = {
        "y": draw(values(shape, dtype)),
        "y_ref": draw(values(shape, dtype)),
    }
    if function == "l2_loss_jvp":
        for name in ("y_dot", "y_ref_dot"):
            args[name] = draw(st.none() | values(shape, dtype))
    if function != "pullback":
        args["where"] = draw(st.none() | masks(shape))
    else:
        args["L_bar"] = np.asarray(1.0)
    args[position] = None
    return function, position, args


@st.composite
def nonfinite_where_masked(
    draw: st.DrawFn, shape: tuple[int, ...], dtype: str, mask: np.ndarray[Any, Any] | None = None
) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """(values, mask): finite where the mask (drawn unless given) is True, NaN or +-inf (in
    either part when complex) where it is False; for tangents, cotangents, missing targets."""
    if mask is None:
        mask = draw(masks(shape))
    finite = draw(values(shape, dtype))
    bad = draw(hnp.arrays(np.float64, shape, elements=st.sampled_from([np.nan, np.inf, -np.inf])))
    if dtype in COMPLEX:
        # Set the parts one by one: 1j * inf would make a NaN real part too.
        part = draw(hnp.arrays(np.bool_, shape))
        z = np.empty(shape, dtype=np.complex128)
        z.real, z.imag = np.where(part, bad, 0.0), np.where(part, 0.0, bad)
        bad = z
    return np.asarray(np.where(mask, finite, bad), dtype=dtype), mask


def complex_junk() -> st.SearchStrategy[complex]:
    """A complex number for a wrong rule to add to a real output: any imaginary part,
    zero included (a complex dtype alone is already wrong for a real function)."""
    return st.sampled_from([0j, 1e6j, -1e-30j, 1 + 1j]) | st.complex_numbers(
        max_magnitude=1e6, allow_nan=False, allow_infinity=False
    )
