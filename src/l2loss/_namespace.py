"""Namespace resolution, cached by the types of the inputs.

``array_api_compat.array_namespace`` inspects every argument on every call
(a few microseconds); the namespace depends only on the array types, so one
dictionary lookup per call is enough after the first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import array_api_compat as compat

__all__ = ["Backend", "backend_of"]


@dataclass(frozen=True, slots=True)
class Backend:
    """An array namespace and the traits that choose how the rule is evaluated.

    Attributes
    ----------
    xp
        The array API namespace.
    name
        Short library name, used in messages.
    eager
        True where every operation executes immediately (NumPy, PyTorch,
        CuPy): evaluation is then tiled so no temporary exceeds a tile.
        Lazy libraries (JAX, Dask) and unknown ones get the plain expression,
        which their compilers and schedulers fuse and chunk themselves.
    threads
        Python worker threads for tiles; > 1 only where the library releases
        the GIL in its kernels and does not already parallelise them (NumPy).
    tile
        Elements per tile on the eager path.
    check_devices
        Whether devices must be compared (meaningless on NumPy and Dask;
        impossible on traced JAX arrays, which JAX checks itself).
    """

    xp: Any
    name: str
    eager: bool
    threads: int
    tile: int
    check_devices: bool


_CACHE: dict[tuple[type, ...], Backend] = {}


def _classify(xp: Any, sample: Any) -> Backend:
    if compat.is_numpy_array(sample):
        return Backend(xp, "numpy", eager=True, threads=2, tile=1 << 17, check_devices=False)
    if compat.is_torch_array(sample):
        return Backend(xp, "torch", eager=True, threads=1, tile=1 << 20, check_devices=True)
    if compat.is_cupy_array(sample):
        return Backend(xp, "cupy", eager=True, threads=1, tile=1 << 24, check_devices=True)
    if compat.is_jax_array(sample):
        return Backend(xp, "jax", eager=False, threads=1, tile=0, check_devices=False)
    if compat.is_dask_array(sample):
        return Backend(xp, "dask", eager=False, threads=1, tile=0, check_devices=False)
    name = getattr(xp, "__name__", type(sample).__module__).split(".")[0]
    return Backend(xp, name, eager=False, threads=1, tile=0, check_devices=True)


def backend_of(names: tuple[str, ...], arrays: tuple[Any, ...]) -> Backend:
    """Return the :class:`Backend` shared by ``arrays`` (named ``names``).

    Raises
    ------
    TypeError
        If an argument is not an array, or the arrays come from different
        libraries.
    """
    key = tuple(map(type, arrays))
    backend = _CACHE.get(key)
    if backend is not None:
        return backend
    for name, a in zip(names, arrays, strict=True):
        if not compat.is_array_api_obj(a):
            raise TypeError(
                f"{name} must be an array of an array API library (NumPy, CuPy, "
                f"PyTorch, JAX, Dask, ...), got {type(a).__module__}.{type(a).__qualname__}; "
                f"wrap it first, e.g. numpy.asarray({name})"
            )
    try:
        xp = compat.array_namespace(*arrays)
    except TypeError:
        given = ", ".join(
            f"{n}: {type(a).__module__}.{type(a).__qualname__}"
            for n, a in zip(names, arrays, strict=True)
        )
        raise TypeError(
            f"all arrays must come from one array library, got {given}; "
            "convert them to one library first"
        ) from None
    backend = _classify(xp, arrays[0])
    _CACHE[key] = backend
    return backend
