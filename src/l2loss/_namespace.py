"""Namespace resolution, cached by the types of the inputs.

``array_api_compat.array_namespace`` inspects every argument on every call
(a few microseconds); the namespace depends only on the array types, so one
dictionary lookup per call is enough after the first.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from dataclasses import dataclass
from typing import Any

import array_api_compat as compat
import numpy as np

__all__ = ["Backend", "backend_of", "present"]


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
        Elements per tile on the eager path (see ``benchmarks/run.py --tiles``
        for the measurements that chose it).
    short
        Longest full reduction computed in one piece, with no rows: a tile,
        or one ``dot`` where that is shorter.
    dot
        How inner products are taken. > 0: by ``vecdot`` (BLAS-backed on
        NumPy and CuPy), in calls over at most ``dot`` items, so that NumPy's
        OpenBLAS never starts its own threads for them (it threads dots of
        more than 10 000 items; right after a NumPy subtraction such a dot
        cost 2x to 5.6x the single-threaded one on the 2-core CI machine, and
        l2loss's worker threads would compete with OpenBLAS's). 0: as
        ``sum(a * b)``, for PyTorch, whose array-api-compat ``vecdot`` is a
        batched matmul that sums sequentially, while ``sum`` uses PyTorch's
        cascade summation and is exact to a few ulps; and for CuPy, which
        has no ``vecdot`` of its own: array-api-compat's read 0.3 to 0.6x
        the bytes per second of ``sum(a * b)`` over rows on an H200, and
        per-sample losses reached 0.35 of the ceiling with it, 0.54 with
        ``sum`` (`benchmarks/gpu.sh`). Full reductions of 1-D pieces take
        ``matvec`` instead.
    check_devices
        Whether devices must be compared (meaningless on NumPy and Dask;
        impossible on traced JAX arrays, which JAX checks itself).
    matvec
        ``matvec(b, a)``: the inner product ``b @ a`` of a real 1-D ``a``
        with a real ``b`` of its shape (and, where ``matvec_batches``, with
        one more leading axis of directions), where the library has a faster
        call than ``vecdot``, or None. NumPy: ``numpy.dot``, the same BLAS
        dot as ``vecdot`` without the ufunc machinery (0.55 against 0.73 us
        at 10 items; a call of l2loss on 10 items takes two); not for a batch
        of directions, where BLAS's gemv would round differently from one
        dot per direction. Not for complex arrays: for complex64 with a
        negative stride BLAS rounds differently from ``vecdot``. GPUs:
        ``b @ a``, cuBLAS's dot or matrix-vector product (CuPy's ``vecdot``
        took 1.5x as long as ``cupy.dot`` on 1e8 items, and 10x as long as
        ``T @ d`` for 8 directions: ``benchmarks/gpu.sh``).
    matvec_batches
        Whether ``matvec`` also takes a batch of directions.
    rows
        Whether a long full reduction is cut into rows (of ``_evaluate._ROW``
        items, or per ``release_rows``) whose dots are summed per tile: short
        BLAS dots on CPUs. False (GPUs): each tile is one 1-D piece, one
        kernel per operation, since on a GPU every launch costs several us
        while the kernel covers the whole piece at once.
    release_rows
        Rows per ``vecdot`` call that a tile handed to worker threads is cut
        into, where the library releases the GIL only for calls over enough
        rows (NumPy: see ``_NUMPY_RELEASE_ROWS``); 0: no such condition.
    compile
        Whether each call is compiled as a whole (JAX: ``jax.jit``, cached by
        shapes and dtypes). Called eagerly, JAX runs the rule operation by
        operation, with no fusion: 1.8x to 6.2x as slow as compiled on the
        CPU (N = 1e7 to 10), and 3.6x at N = 1e8 on an H200.
    accelerated
        The traits for arrays on an accelerator, where one library holds
        arrays on the host and on devices (PyTorch: CUDA, ...); chosen per
        call from ``y.device.type``. None: one set of traits serves all.
    float64
        The traits for a real float64 residual (``y`` and ``y_ref`` promote
        to float64; the tangents do not count, since every product reads the
        residual), where they differ (chosen once per combination of input
        dtypes, before ``accelerated``). PyTorch on the
        CPU: 1-D pieces of a tile summed by ``matvec``, its BLAS dot (1.5x
        the speed of rows summed by ``sum(a * b)`` at N = 1e5, 1e7 and 3e7,
        17x at 1e6, where each call's tile-sized products cost fresh pages;
        batched K = 8: 2x to 6x). Not for float32, which that dot
        accumulates in float32 over a whole piece (relative error of L
        2.5e-6 at N = 1e7, against 1.7e-8 by rows and ``sum``, which
        float32 and complex work keep).
    """

    xp: Any
    name: str
    eager: bool
    threads: int
    tile: int
    short: int
    check_devices: bool
    dot: int = 1 << 62
    rows: bool = True
    release_rows: int = 0
    matvec: Any = None
    matvec_batches: bool = False
    compile: bool = False
    accelerated: Backend | None = None
    float64: Backend | None = None

    def with_traits(self, **change: Any) -> Backend:
        """These traits with ``change``, and so the variants they hold
        (``accelerated``, ``float64``): for tests and benchmarks."""
        held = {
            name: variant.with_traits(**change)
            for name in ("accelerated", "float64")
            if (variant := getattr(self, name)) is not None
        }
        return dataclasses.replace(self, **change, **held)


_CACHE: dict[tuple[type, ...], Backend] = {}

# Tile of the NumPy path: 128 Ki items (1 MiB of float64; a full reduction
# takes it as 13 rows of 10 000 on one thread, 512 rows of 256 on several).
# Measured with `python benchmarks/run.py --tiles` on the 2-core CI machine
# (2 MiB L2 per core), fraction of the ceiling at N = 1e7 (two threads): 0.30
# at 16 Ki items, 0.48 at 64 Ki, 0.74 at 128 Ki, 0.76 at 256 Ki, 0.81 at
# 512 Ki, 0.68 at 1 Mi; at 1e6 (one thread): 0.06 at 16 Ki, 0.13-0.14 from
# 128 Ki up (docs/_static/bench-cpu.json; differences of 0.1 are within this
# machine's noise). 128 Ki is the largest tile whose temporaries (residual,
# and masked inputs with `where`) stay under 8 MiB with two threads.
_NUMPY_TILE = 1 << 17


# Tile of GPU arrays (CuPy; PyTorch on CUDA): 32 Mi items (256 MiB of
# float64). A GPU covers a whole tile per kernel, and each of a tile's few
# kernels costs 10-40 us to launch from Python (an H200, `benchmarks/gpu.sh`:
# cupy.dot on 1e3 items took 44 us), so tiles must be large for the GPU, not
# the host, to set the pace; they still bound the temporaries for inputs
# larger than that. Measured with `benchmarks/gpu.sh` (its `--tiles` sweep).
_GPU_TILE = 1 << 25


def _matvec(xp: Any, b: Any, a: Any) -> Any:
    """``b @ a`` of real ``a`` (1-D) and ``b`` (1-D, or one row per
    direction): cuBLAS's dot or matrix-vector product on GPUs. PyTorch's
    ``matmul`` does not promote: mixed precision is cast first."""
    if a.dtype != b.dtype:
        common = xp.result_type(a, b)
        a, b = xp.astype(a, common), xp.astype(b, common)
    return b @ a


def _torch_matvec(xp: Any, b: Any, a: Any) -> Any:
    """``_matvec`` outside ``torch.autocast``, which would run ``matmul`` in
    float16 or bfloat16 (a loss above 65504 became inf): the CPU path's
    ``sum`` stays in float32 under autocast, and so must this."""
    import torch

    device = a.device.type
    if torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device):
        with torch.autocast(device, enabled=False):
            return _matvec(xp, b, a)
    return _matvec(xp, b, a)


def _cores() -> int:
    """Cores this process may run on (its affinity mask, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# The longest dot OpenBLAS computes on one thread: it threads longer ones, and
# right after a NumPy subtraction that cost 4.1 us at 10 000 items and 8.0 to
# 23 us at 10 001 in four runs of `python benchmarks/probe.py`
# (docs/_static/probe.txt holds one).
_OPENBLAS_SERIAL_DOT = 10_000

# NumPy releases the GIL in a generalised ufunc such as vecdot only when its
# outer loop (here: the rows of one call) has more than 500 iterations; two
# Python threads' vecdots over 500 rows ran one at a time, over 501 or more at
# once (`python benchmarks/probe.py`). Tiles handed to worker threads are
# therefore cut into 512 rows (of 256 items for a tile of 128 Ki).
_NUMPY_RELEASE_ROWS = 512

# Worker threads of the NumPy path, one per core: their subtractions and, cut
# into _NUMPY_RELEASE_ROWS rows, their dots run at once. A few threads already
# draw the full memory bandwidth of a socket; more only add hand-offs.
_NUMPY_THREADS = max(1, min(_cores(), 8))


def _classify(xp: Any, sample: Any) -> Backend:
    if compat.is_numpy_array(sample):
        return Backend(
            xp,
            "numpy",
            eager=True,
            threads=_NUMPY_THREADS,
            tile=_NUMPY_TILE,
            short=_OPENBLAS_SERIAL_DOT,
            check_devices=False,
            dot=_OPENBLAS_SERIAL_DOT,
            release_rows=_NUMPY_RELEASE_ROWS,
            matvec=np.dot,
        )
    if compat.is_torch_array(sample):
        cpu = Backend(
            xp,
            "torch",
            eager=True,
            threads=1,
            tile=1 << 20,
            short=1 << 20,
            check_devices=True,
            dot=0,
        )
        by_matvec: dict[str, Any] = {
            "rows": False,
            "matvec": functools.partial(_torch_matvec, xp),
            "matvec_batches": True,
        }
        gpu = dataclasses.replace(cpu, tile=_GPU_TILE, short=_GPU_TILE, **by_matvec)
        return dataclasses.replace(
            cpu, accelerated=gpu, float64=dataclasses.replace(cpu, accelerated=gpu, **by_matvec)
        )
    if compat.is_cupy_array(sample):
        return Backend(
            xp,
            "cupy",
            eager=True,
            threads=1,
            tile=_GPU_TILE,
            short=_GPU_TILE,
            check_devices=True,
            dot=0,
            rows=False,
            matvec=functools.partial(_matvec, xp),
            matvec_batches=True,
        )
    if compat.is_jax_array(sample):
        return Backend(
            xp, "jax", eager=False, threads=1, tile=0, short=0, check_devices=False, compile=True
        )
    if compat.is_dask_array(sample):
        return Backend(xp, "dask", eager=False, threads=1, tile=0, short=0, check_devices=False)
    name = getattr(xp, "__name__", type(sample).__module__).split(".")[0]
    return Backend(xp, name, eager=False, threads=1, tile=0, short=0, check_devices=True)


def present(
    names: tuple[str, ...], arrays: tuple[Any, ...]
) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """``names`` and ``arrays`` without the arguments given as None (absent
    optional arguments and structural zeros)."""
    given = [(n, a) for n, a in zip(names, arrays, strict=True) if a is not None]
    return tuple(n for n, _ in given), tuple(a for _, a in given)


def backend_of(names: tuple[str, ...], arrays: tuple[Any, ...]) -> Backend:
    """Return the :class:`Backend` shared by ``arrays`` (named ``names``;
    None entries, absent optional arguments, are skipped).

    Raises
    ------
    TypeError
        If an argument is not an array, is a NumPy masked array, or the
        arrays come from different libraries.
    """
    key = tuple(map(type, arrays))
    backend = _CACHE.get(key)
    if backend is not None:
        return backend
    names, arrays = present(names, arrays)
    for name, a in zip(names, arrays, strict=True):
        if not compat.is_array_api_obj(a):
            raise TypeError(
                f"{name} must be an array of an array API library (NumPy, CuPy, "
                f"PyTorch, JAX, Dask, ...), got {type(a).__module__}.{type(a).__qualname__}; "
                f"wrap it first, e.g. numpy.asarray({name})"
            )
        if isinstance(a, np.ma.MaskedArray):
            # NumPy's kernels would drop the mask on some paths, not others.
            raise TypeError(
                f"{name} is a numpy.ma.MaskedArray (shape {a.shape}, dtype {a.dtype}), whose "
                f"mask l2loss does not read; pass its data and the mask as `where`: "
                f"{name}.data and where=~numpy.ma.getmaskarray({name})"
            )
    try:
        xp = compat.array_namespace(*arrays)
    except TypeError:
        libraries = ", ".join(
            f"{n}: {type(a).__module__}.{type(a).__qualname__}"
            for n, a in zip(names, arrays, strict=True)
        )
        raise TypeError(
            f"all arrays must come from one array library, got {libraries}; "
            "convert them to one library first"
        ) from None
    backend = _classify(xp, arrays[0])
    _CACHE[key] = backend
    return backend
