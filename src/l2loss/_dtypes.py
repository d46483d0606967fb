"""The dtypes a call works in: which inputs are accepted, how they promote,
and in which dtype the arithmetic runs and the results are returned."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

__all__ = ["Dtypes", "promote"]


@dataclass(frozen=True, slots=True)
class Dtypes:
    """The dtypes one call works in.

    Attributes
    ----------
    work
        Dtype the arithmetic runs in: the promoted input dtype, widened to at
        least 32 bits so that half precision accumulates in single precision.
    out
        Dtype of the results: the real counterpart of the promoted input
        dtype (the loss of complex inputs is real), half precision included.
    real_work
        Real counterpart of ``work``: the dtype the sums are taken in.
    complex
        Whether ``work`` is complex.
    widen
        Whether some input must be cast up to ``work`` before the arithmetic
        (half precision, alone or promoted with a wider dtype).
    narrow
        The half-precision dtypes among the inputs: those cast up.
    mixed
        Whether the inputs differ in dtype (so that some operation promotes).
    """

    work: Any
    out: Any
    real_work: Any
    complex: bool
    widen: bool = False
    narrow: tuple[Any, ...] = ()
    mixed: bool = False


def _classify(xp: Any, dtype: Any) -> Dtypes | None:
    """The working dtypes of one floating dtype; None for any other dtype.

    By bit width, not dtype equality: NumPy's byte-swapped float64 (``'>f8'``)
    is not ``== float64`` but is just as precise.
    """
    if xp.isdtype(dtype, "complex floating"):
        bits = xp.finfo(dtype).bits  # of each component
        if bits < 32:  # complex32: accumulate in complex64
            return Dtypes(xp.complex64, xp.float32, xp.float32, complex=True, widen=True)
        real = xp.float32 if bits == 32 else xp.float64 if bits == 64 else xp.finfo(dtype).dtype
        return Dtypes(dtype, real, real, complex=True)
    if xp.isdtype(dtype, "real floating"):
        bits = xp.finfo(dtype).bits
        if bits < 32:  # float16, bfloat16: accumulate in float32, answer in the input dtype
            return Dtypes(xp.float32, dtype, xp.float32, complex=False, widen=True)
        native = xp.float32 if bits == 32 else xp.float64 if bits == 64 else dtype
        return Dtypes(dtype, native, native, complex=False)
    return None


def promote(xp: Any, names: tuple[str, ...], arrays: tuple[Any, ...], cast_hint: Any) -> Dtypes:
    """The :class:`Dtypes` of ``arrays`` (named ``names``) promoted together.

    ``cast_hint(name, dtype)`` is the code, in the arrays' library, that casts
    the argument ``name`` to ``dtype``; it goes into the error message.

    Raises
    ------
    TypeError
        If an array is not of a real or complex floating dtype.
    """
    narrow: list[Any] = []
    for name, a in zip(names, arrays, strict=True):
        kind = _classify(xp, a.dtype)
        if kind is None:
            target = "complex128" if xp.isdtype(a.dtype, "complex floating") else "float64"
            raise TypeError(
                f"{name} must have a real or complex floating dtype, got shape "
                f"{tuple(a.shape)} and dtype {a.dtype}; cast it first: "
                f"{cast_hint(name, target)}"
            )
        if kind.widen and a.dtype not in narrow:
            narrow.append(a.dtype)
    dtype = arrays[0].dtype
    mixed = any(a.dtype != dtype for a in arrays[1:])
    if mixed:
        dtype = xp.result_type(*arrays)
    info = _classify(xp, dtype)
    assert info is not None  # floating dtypes promote to floating dtypes
    if mixed:
        info = replace(info, mixed=True)
    # A half-precision input promoted with a wider one must still be widened
    # before the arithmetic, not after.
    return replace(info, widen=bool(narrow), narrow=tuple(narrow)) if narrow else info
