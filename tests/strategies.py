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
