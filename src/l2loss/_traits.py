"""What l2loss knows about each array library: the one module that names them.

:func:`traits_of` resolves the arrays of a call to their namespace and to the
:class:`Traits` that the plan (``_plan.py``) reads to choose an evaluation.
Resolution runs once per combination of argument types; a call then pays one
dictionary lookup. To support a new library, give it a branch in
:func:`_classify`; to try other values (tests, benchmarks), use
:func:`override`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import operator
import os
import string
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple

import array_api_compat as compat
import numpy as np

from ._dtypes import Dtypes

__all__ = ["Blocking", "Traits", "VectorOps", "override", "traits_of"]

Array = Any


@dataclass(frozen=True, slots=True)
class Blocking:
    """How an eager library evaluates inputs too large to stay in cache.

    Attributes
    ----------
    whole
        Items of ``y``, counted as 8 bytes each, up to which the plain
        expression over the whole arrays is the fastest evaluation (the data
        sit in cache, and the library's own kernels are as good as any); above
        it the inputs go in blocks. The cache holds twice as many float32 items.
    block
        Items per block, counted as 8 bytes each (twice as many float32
        items): each block's residual and products stay in cache, and no
        temporary is larger than a block.
    piece
        Longest inner product taken in one call of the library's dot: longer
        ones are cut into pieces whose sums are added, which bounds the
        rounding error of each and, on NumPy, keeps OpenBLAS from handing a
        dot to threads of its own.
    vector
        As ``whole``, for a full reduction without mask or weights (one
        vector, K directions or not), whose plain expression is dots that
        stream from the last-level cache as fast as blocks do (None:
        ``whole``).
    workers
        Threads the blocks are spread over (1: the calling thread alone).
    parallel
        Items of ``y`` from which ``workers`` threads are used.
    reuse
        Whether blocks subtract into one buffer per thread, reused block
        after block (PyTorch: a fresh temporary per block lets its allocator
        hand the memory back and fault it in again), rather than into a new
        array each time (NumPy, whose new arrays are no slower).
    rows
        Whether a long vector is viewed as rows of pieces, a block of rows
        summed by one call (NumPy, whose calls cost more than a short dot);
        otherwise it is cut into 1-D pieces, each summed by the library's
        ``dot`` (PyTorch and GPUs, whose every call costs more, so that
        pieces are long, and whose dot is their best reduction).
    fuse
        Whether ``l2_loss_grad`` beyond cache writes each block's residual
        into the gradient as it sums the block, reading the inputs once
        (NumPy, whose subtraction runs on one thread), rather than forming
        the whole residual, which is the gradient, in one call and summing it
        by blocks (PyTorch on the CPU, whose subtraction of whole arrays is
        threaded and faster than its blocks').
    """

    whole: int
    block: int
    piece: int
    vector: int | None = None
    workers: int = 1
    parallel: int = 1 << 62
    reuse: bool = True
    rows: bool = True
    fuse: bool = True


Subtract = Callable[[Any, Any, Any], Any]
Inner = Callable[[Array, Array], Array]


class VectorOps(NamedTuple):
    """The calls that evaluate the commonest call, a real vector of one dtype
    in cache with nothing to check, at the least cost per call.

    Attributes
    ----------
    dot
        ``dot(a, b)``: the library's inner product of two vectors of one
        dtype, called without any check.
    mul
        ``mul(s, c)``: its product of a sum just made (which it may
        overwrite) and a constant.
    half
        ``half(dtype)``: the constant 0.5 in the form ``mul`` takes fastest
        (a 0-d host tensor saves PyTorch converting a Python float per call).
    contiguous
        ``contiguous(a)``: whether ``a``'s items lie in C order, one after the
        other, so that it is a vector without a copy.
    """

    dot: Callable[[Array, Array], Array]
    mul: Callable[[Array, Any], Array]
    half: Callable[[Any], Any]
    contiguous: Callable[[Array], bool]


@dataclass(frozen=True, slots=True)
class Traits:
    """An array namespace and the facts that choose how l2loss evaluates on it.

    Attributes
    ----------
    xp
        The array API namespace.
    name
        Short library name, used in messages.
    blocking
        For eager libraries (every operation runs at once: NumPy, PyTorch,
        CuPy), how large inputs are cut into blocks; None for lazy ones (JAX,
        Dask and unknown libraries), whose compiler or scheduler fuses and
        chunks the plain expression itself.
    dot
        ``dot(b, a)``: the library's fastest inner product ``b @ a`` of a real
        1-D ``a`` with a real ``b`` of its shape, or None. Where the library's
        ``vecdot`` goes through more machinery for the same BLAS call (NumPy),
        or has none of its own (CuPy, PyTorch).
    dot_batches
        Whether ``dot`` also takes ``b`` with a leading axis of directions:
        one matrix-vector product for K directions.
    vdot
        ``vdot(a, b)``: ``Re sum conj(a) b`` of two vectors, complex or not, in
        one call (NumPy's ``vdot``, a BLAS ``dotc``; PyTorch's ``dot`` of
        their real views), ``b`` with a leading axis of directions where
        ``dot_batches``; or None.
    dot_float32
        The longest float32 piece ``dot`` sums out of cache (None: as long
        as any other): PyTorch's CPU dot accumulates float32 along the whole
        vector, so beyond cache its float32 pieces are shorter. In cache the
        dot sums the whole vector, as the plain expression does.
    rows
        ``rows(dtypes, length, items)``: an inner product over the last axis
        (``Re sum a b`` for a real ``a``, ``b`` of any dtype, with a leading
        axis of directions or not) that beats the others on real rows of
        ``dtypes`` and ``length`` items, ``items`` in all per call, or None;
        the default is None.
    over_axes
        ``over_axes(axes, ndim)``: ``sum a b`` over the reduced ``axes``
        (negative) of real arrays of ``ndim`` dimensions (``b`` with a leading
        axis of directions or not) in one call in any layout, without a
        temporary of the products; or None (also as its result: the default,
        a sum of products).
    rows_in_one
        ``rows_in_one(dtypes, length, items)``: whether ``rows`` sums real
        rows of ``dtypes`` and ``length`` items, ``items`` in all, in one call
        of the library, with no temporary of their size (PyTorch's matrix
        product per row, up to 16 MiB of ``y``), so that there blocks on one
        thread would only add calls; None: never.
    sum
        ``sum(a, axes)``: the library's own sum of ``a`` over the non-empty
        tuple ``axes``, called without array-api-compat's wrapper, whose
        checks cost a small call as much as the sum (None: ``xp.sum``).
    sum_products
        Whether inner products over an axis are sums of products rather than
        ``vecdot``: PyTorch's ``torch.sum`` is exact to a few ulps where its
        ``vecdot`` (a batched matrix product) accumulates sequentially, and
        CuPy's ``vecdot`` is slower.
    compile
        Whether a call is compiled whole (JAX: ``jax.jit``, cached by shapes
        and dtypes); called eagerly, JAX would dispatch every operation alone.
    check_devices
        Whether the arrays' devices must be compared (libraries with devices
        that do not check themselves).
    accelerated
        The traits for arrays on an accelerator, where one library holds
        arrays on the host and on devices (PyTorch); None: one set serves all.
    adopts
        The namespace's ``asarray`` for NumPy arrays passed beside this
        library's (JAX, whose own functions accept them), or None.
    guard
        ``guard(y, others)``: ``y`` wrapped so that the checks the library can
        only make when it computes (Dask's unknown sizes: ``others`` are
        ``(name, array)`` pairs of ``y``'s dimensions) raise then; None where
        every check is made at the call.
    autodiff
        ``autodiff(arrays)``: whether a call must go through the library's
        automatic differentiation (PyTorch tensors that require grad, or
        ``torch.func`` transforms); None where l2loss's rules are not
        registered with the library.
    host
        ``host(*arrays)``: whether every array is on the host, where these
        traits serve them all and their devices need no comparison (PyTorch's
        CPU tensors; None entries skipped); None where there is no such check.
    ready
        ``ready(*arrays)``: ``host`` and no ``autodiff`` in one check, for a
        call that then runs as its evaluation alone.
    records
        Bytes of ``y`` up to which the library's autograd records the
        operations of an evaluation over the whole arrays, rather than run
        l2loss's rules: there its own backward of a few operations costs less
        than a custom Function's call (PyTorch); 0: never.
    recording
        ``recording(*arrays)``: ``ready`` for those calls, whose arrays may
        require grad; None where ``records`` is 0.
    vector
        The :class:`VectorOps` of calls that run as their evaluation alone
        (on the host), or None.
    subtract
        ``subtract(a, b, out)``: ``a - b`` written into ``out`` and returned,
        for evaluations that loop over blocks: into the gradient, and into a
        reused buffer (``Blocking.reuse``); or None (a new array each time).
    keep
        ``keep(xp, zero, mask)``: the function that gives the bits of
        ``xp.where(mask, a, zero)`` for an array ``a`` (``zero`` is a 0-d
        array of the real working dtype), as the library computes them
        fastest, into ``a`` itself where ``keep(a, fresh=True)`` allows it;
        the default is ``xp.where`` itself.
    quiet
        ``quiet(sub, a, b) -> sub(a, b)`` raising no floating-point warning
        (PyTorch's and CuPy's arithmetic raises none; NumPy's is silenced),
        so that a mask selects from the residual once, after subtracting,
        rather than from ``y`` and ``y_ref`` before (an inf - inf that the
        mask drops must raise no warning); or None.
    cast
        ``cast(name, dtype)``: the code, in this library, that casts the
        argument ``name`` to ``dtype`` (for error messages).
    """

    xp: Any
    name: str
    blocking: Blocking | None
    dot: Callable[[Array, Array], Array] | None = None
    dot_batches: bool = False
    vdot: Callable[[Array, Array], Array] | None = None
    dot_float32: int | None = None
    rows: Callable[[Dtypes, int, int], Callable[[Array, Array], Array] | None] | None = None
    over_axes: Callable[[tuple[int, ...], int], Inner | None] | None = None
    rows_in_one: Callable[[Dtypes, int, int], bool] | None = None
    sum: Callable[[Array, tuple[int, ...]], Array] | None = None
    sum_products: bool = False
    compile: bool = False
    check_devices: bool = False
    accelerated: Traits | None = None
    adopts: Callable[[Array], Array] | None = None
    guard: Callable[[Array, tuple[tuple[str, Array], ...]], Array] | None = None
    autodiff: Callable[[tuple[Array, ...]], bool] | None = None
    host: Callable[..., bool] | None = None
    ready: Callable[..., bool] | None = None
    records: int = 0
    recording: Callable[..., bool] | None = None
    vector: VectorOps | None = None
    subtract: Subtract | None = None
    keep: Callable[[Any, Array, Array], Callable[..., Array]] = lambda xp, zero, mask: (
        lambda a, fresh=False: xp.where(mask, a, zero)
    )
    quiet: Callable[[Callable[[Any, Any], Any], Array, Array], Array] | None = None
    cast: Callable[[str, str], str] = lambda name, dtype: f"xp.astype({name}, xp.{dtype})"


def _cores() -> int:
    """Cores this process may run on (its affinity mask, not the machine's)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


# NumPy: the plain expression while the three arrays fit in the last-level
# cache (a vector's dots, which stream from it as fast as blocks, to 8 MiB of
# y), blocks beyond, spread over one thread per core; BLAS dots of at most
# 8192 items in blocks (OpenBLAS threads a dot only above 10 000).
# `python benchmarks/parity.py` measures the choice against the plain expression.
_NUMPY = Blocking(
    whole=3 << 18,
    block=1 << 17,
    piece=1 << 13,
    vector=1 << 20,
    workers=max(1, min(_cores(), 8)),
    parallel=3 << 18,
    reuse=False,
)
# PyTorch on the CPU threads each operation itself; pieces a block long keep
# each residual, a temporary, in cache. A full reduction without mask or
# weights (one temporary, then dots) runs whole to 8 MiB, as NumPy's does.
_TORCH_CPU = Blocking(
    whole=1 << 19, block=1 << 18, piece=1 << 18, vector=1 << 20, rows=False, fuse=False
)
# The float32 pieces of PyTorch's CPU dot: short enough that its sequential
# float32 sum of each stays within the accuracy the tests hold it to.
_FLOAT32_DOT = 1 << 18
# Beyond this many bytes of y, the backward of a recorded dot (a new product per
# argument, then their sum) costs PyTorch more than l2loss's one-pass pullback.
_RECORDS = 1 << 19
# A GPU runs a block per kernel, and each launch costs more than a small
# block's work: blocks only bound the temporaries of very large inputs.
_GPU = Blocking(whole=1 << 25, block=1 << 25, piece=1 << 25, rows=False)


def _matmul(xp: Any, b: Array, a: Array) -> Array:
    """``b @ a``, promoting first (PyTorch's ``matmul`` does not promote)."""
    if a.dtype != b.dtype:
        common = xp.result_type(a, b)
        a, b = xp.astype(a, common), xp.astype(b, common)
    return b @ a


def _torch_dot(torch: Any, b: Array, a: Array) -> Array:
    """``b @ a`` for PyTorch: ``torch.dot`` for two vectors, and otherwise a
    matrix-vector product outside ``torch.autocast``, which would run it in
    half precision (a loss above 65504 would be inf; ``dot`` is not cast)."""
    if a.dtype != b.dtype:
        common = torch.promote_types(a.dtype, b.dtype)
        a, b = a.to(common), b.to(common)
    if b.ndim == 1:
        return torch.dot(b, a)
    if not torch._C._is_any_autocast_enabled():  # one C call, where the next are several
        return b @ a
    device = a.device.type
    if torch.amp.is_autocast_available(device) and torch.is_autocast_enabled(device):
        with torch.autocast(device, enabled=False):
            return b @ a
    return b @ a


# NumPy's einsum sums many short rows in one loop, where vecdot pays per row;
# vecdot is faster on fewer rows, and on longer ones (float64 from 32 items).
_EINSUM_ROWS = {2: 32, 4: 32, 8: 24}
_EINSUM_COUNT = 512


def _einsum_rows(a: Array, b: Array) -> Array:
    r = np.einsum("...i,...i->...", a, b)
    return r.real if r.dtype.kind == "c" else r


def _numpy_rows(dt: Dtypes, length: int, items: int) -> Callable[[Array, Array], Array] | None:
    longest = _EINSUM_ROWS.get(np.dtype(dt.real_work).itemsize, 0)
    return _einsum_rows if length <= longest and items >= _EINSUM_COUNT * length else None


def _numpy_over_axes(axes: tuple[int, ...], ndim: int) -> Callable[[Array, Array], Array] | None:
    """NumPy's sum over ``axes`` as one ``einsum``, which follows the arrays'
    layout (a sum of products over a transposed array would stride across
    it); over leading axes of C-contiguous arrays it adds the products row
    after row, the bits of ``np.sum(a * b, axes)``. None beyond the 52 axes
    einsum has letters for."""
    if ndim > len(string.ascii_letters):
        return None
    # Subscripts as a string, which einsum parses faster than lists of axes.
    s = string.ascii_letters[:ndim]
    kept = "".join(c for i, c in enumerate(s) if i - ndim not in axes)
    return functools.partial(np.einsum, f"...{s},...{s}->...{kept}")


# PyTorch's matrix product per row sums each row in order: longer rows keep
# the sum of products, summed pairwise, within the accuracy tests hold it to.
_MATMUL_ROWS = {8: 128, 4: 16}
# Below this many bytes of y per call a batched matrix product's fixed cost
# exceeds the temporary of products it saves.
_MATMUL_BYTES = 1 << 20
# Rows at least this long come one to a block (or a call) in pieces no longer
# than a 1-D dot's, which sums them without a temporary of products.
_DOT_ROWS = 1 << 16


def _torch_rows(torch: Any) -> Callable[[Dtypes, int, int], Callable[[Array, Array], Array] | None]:
    """PyTorch's short rows, many at a time, as a matrix product per row,
    which its BLAS sums faster than a sum of products (float32 only outside
    autocast, which would round it to half precision); a single long row by
    its ``dot``, as 1-D pieces are; other real rows as ``torch.sum`` of
    products, called directly."""

    def products(a: Array, b: Array) -> Array:
        return torch.sum(a * (b.real if b.is_complex() else b), -1)

    def matmul(a: Array, b: Array) -> Array:
        if b.dtype != a.dtype:
            b = (b.real if b.is_complex() else b).to(a.dtype)
        if a.dtype != torch.float64 and torch.is_autocast_enabled(a.device.type):
            return products(a, b)
        return (a[..., None, :] @ b[..., :, None])[..., 0, 0]

    def dot(a: Array, b: Array) -> Array:
        if math.prod(a.shape[:-1]) != 1:
            return products(a, b)
        lead = b.shape[: b.ndim - a.ndim]  # K directions, or none
        b = (b.real if b.is_complex() else b).reshape(*lead, -1)
        return _torch_dot(torch, b, a.reshape(-1)).reshape(*lead, *a.shape[:-1])

    def rows(dt: Dtypes, length: int, items: int) -> Callable[[Array, Array], Array] | None:
        if length >= _DOT_ROWS:
            return dot
        return matmul if _torch_matmul_rows(torch, dt, length, items) else products

    return rows


def _torch_matmul_rows(torch: Any, dt: Dtypes, length: int, items: int) -> bool:
    size = torch.finfo(dt.real_work).bits // 8
    return length <= _MATMUL_ROWS.get(size, 0) and items * size > _MATMUL_BYTES


# Up to this many bytes of y, short rows are one matrix product per row over all
# of them: blocks cost more calls than they save until the whole residual, a
# temporary, outgrows the cache; half the last-level cache of common machines.
_ROWS_IN_ONE = 1 << 24


def _torch_rows_in_one(torch: Any, dt: Dtypes, length: int, items: int) -> bool:
    # Under autocast float32 rows are a sum of products, a temporary as large
    # as the residual, which the bound keeps from growing with N.
    size = torch.finfo(dt.real_work).bits // 8
    return _torch_matmul_rows(torch, dt, length, items) and items * size <= _ROWS_IN_ONE


def _torch_subtract(torch: Any, autodiff: Callable[[tuple[Array, ...]], bool]) -> Subtract:
    """``torch.sub(a, b, out=out)``, except where ``autodiff`` (of
    :func:`_torch_checks`) says autodiff sees ``a`` or ``b``, and for
    forward-mode dual tensors, which take no ``out``: then ``a - b``."""

    def subtract(a: Array, b: Array, out: Array) -> Array:
        if autodiff((a, b)):
            return a - b
        try:
            return torch.sub(a, b, out=out)
        except NotImplementedError:  # dual tensors: no public check is cheaper
            return a - b

    return subtract


# From this many items a float64 mask's 64-bit AND costs less than a where;
# below it, the integer mask it needs costs more than it saves.
_WIDE_MASK = 1 << 17


def _torch_keep(
    torch: Any, autodiff: Callable[[tuple[Array, ...]], bool]
) -> Callable[[Any, Array, Array], Callable[..., Array]]:
    """PyTorch's ``where(mask, a, zero)`` for an ``a`` of ``zero``'s dtype:
    ``torch.where`` called directly (without array-api-compat's promotion),
    or for floats that ``autodiff`` (of :func:`_torch_checks`) does not see,
    the same bits in a cheaper pass: ``a``'s bits as integers times the
    mask's 1 or 0 (at most 32 bits), or ANDed with its all-ones or 0
    (float64, under masks of at least ``_WIDE_MASK`` items)."""
    ints = {torch.float16: torch.int16, torch.bfloat16: torch.int16, torch.float32: torch.int32}

    def masking(xp: Any, zero: Array, mask: Array) -> Callable[..., Array]:
        bits, combine = ints.get(zero.dtype), torch.mul
        if zero.dtype == torch.float64 and mask.numel() >= _WIDE_MASK:
            bits, combine = torch.int64, torch.bitwise_and
        factor: list[Array] = []

        def keep(a: Array, fresh: bool = False) -> Array:
            if not isinstance(a, torch.Tensor) or a.dtype != zero.dtype:
                return xp.where(mask, a, zero)
            if bits is None or autodiff((a,)):
                return torch.where(mask, a, zero)
            if not factor:  # once per mask, for the several arrays it masks
                ones = mask.to(bits)
                factor.append(ones.neg_() if combine is torch.bitwise_and else ones)
            if fresh and a.shape == mask.shape:
                view = a.view(bits)
                combine(view, factor[0], out=view)
                return a
            return combine(a.view(bits), factor[0]).view(a.dtype)

        return keep

    return masking


def _torch_checks(torch: Any) -> tuple[Callable[..., bool], ...]:
    """PyTorch's ``autodiff``, ``host``, ``ready`` and ``recording`` (see :class:`Traits`),
    with its state functions bound once: they run on every call."""
    transforming = torch._C._are_functorch_transforms_active
    grad_enabled = torch.is_grad_enabled

    def autodiff(arrays: tuple[Array, ...]) -> bool:
        if transforming():
            return True
        if grad_enabled():
            for a in arrays:
                if a is not None and a.requires_grad:
                    return True
        return False

    def host(*arrays: Array) -> bool:
        for a in arrays:  # noqa: SIM110 (a generator costs more per call)
            if a is not None and not a.is_cpu:
                return False
        return True

    def ready(*arrays: Array) -> bool:
        if transforming():
            return False
        grad = grad_enabled()
        for a in arrays:
            if a is not None and (not a.is_cpu or (grad and a.requires_grad)):
                return False
        return True

    def recording(*arrays: Array) -> bool:
        return not transforming() and host(*arrays)

    return autodiff, host, ready, recording


def _refuse_masked_chunks(names: tuple[str, ...], arrays: tuple[Array, ...]) -> None:
    for name, a in zip(names, arrays, strict=True):
        if isinstance(getattr(a, "_meta", None), np.ma.MaskedArray):
            raise TypeError(
                f"{name} is a Dask array of numpy.ma.MaskedArray chunks (shape {a.shape}, "
                f"dtype {a.dtype}), whose masks l2loss does not read; pass the data and "
                f"the mask as `where`: dask.array.ma.getdata({name}) and "
                f"where=~dask.array.ma.getmaskarray({name})"
            )


def _block_shapes_agree(y: Array, *others: Array, names: tuple[str, ...]) -> Array:
    """The block of ``y``, after checking that the blocks of ``others`` have
    its shape (size 1 where an argument broadcasts: expanded weights)."""
    for name, b in zip(names, others, strict=True):
        if len(b.shape) != len(y.shape) or any(
            i != j and i != 1 for i, j in zip(b.shape, y.shape, strict=True)
        ):
            raise ValueError(
                f"{name} does not have the shape of y: one of their Dask chunks holds "
                f"{b.shape} items against {y.shape}; their sizes were unknown when the "
                "graph was built (after boolean indexing, for example): call "
                "compute_chunk_sizes() on both, or give them matching lengths"
            )
    return y


def _dask_guard(y: Array, others: tuple[tuple[str, Array], ...]) -> Array:
    """``y``, made to check chunk by chunk, when the graph runs, that the
    chunks of ``others`` (arrays of ``y``'s dimensions) match its own,
    wherever a size is unknown (NaN) and so could not be compared at the call."""
    _refuse_masked_chunks(("y", *(n for n, _ in others)), (y, *(a for _, a in others)))
    if all(s == s for a in (y, *(a for _, a in others)) for s in a.shape):
        return y
    import dask.array as da

    return da.map_blocks(
        functools.partial(_block_shapes_agree, names=tuple(n for n, _ in others)),
        y,
        *(a for _, a in others),
        dtype=y.dtype,
        meta=y._meta,
    )


def _cast_hint(module: str, method: str) -> Callable[[str, str], str]:
    forms = {
        "function": lambda n, d: f"{module}.astype({n}, {module}.{d})",
        "method": lambda n, d: f"{n}.astype({module}.{d})",
        "to": lambda n, d: f"{n}.to({module}.{d})",
    }
    return forms[method]


# The integers of the widths of NumPy's real floats, to mask their bits.
_BITS = {
    np.dtype(t): i
    for t, i in ((np.float16, np.int16), (np.float32, np.int32), (np.float64, np.int64))
}


def _numpy_keep(xp: Any, zero: Array, mask: Array) -> Callable[..., Array]:
    """NumPy's ``where(mask, a, zero)`` for a float ``a`` of ``zero``'s dtype
    as ``a``'s bits times the mask's 1 or 0 as integers: the same bits,
    without the branch per item that makes ``where`` several times slower."""
    ints = _BITS.get(zero.dtype)
    factor: list[Array] = []

    def keep(a: Array, fresh: bool = False) -> Array:
        if ints is None or type(a) is not np.ndarray or a.dtype != zero.dtype:
            return np.where(mask, a, zero)
        if not factor:  # once per mask, for the several arrays it masks
            factor.append(mask.astype(ints))
        if fresh and a.shape == mask.shape:
            bits = a.view(ints)
            np.multiply(bits, factor[0], out=bits)
            return a
        return (a.view(ints) * factor[0]).view(a.dtype)

    return keep


def _quiet(sub: Callable[[Array, Array], Array], a: Array, b: Array) -> Array:
    return sub(a, b)


def _numpy_quiet(sub: Callable[[Array, Array], Array], a: Array, b: Array) -> Array:
    with np.errstate(invalid="ignore", over="ignore"):
        return sub(a, b)


if np.lib.NumpyVersion(np.__version__) >= "2.0.0":
    # NumPy 2's errstate decorates thread-safely (a context variable), and a
    # decorated call costs less than entering a new errstate.
    _numpy_quiet = np.errstate(invalid="ignore", over="ignore")(_quiet)


def _numpy_vdot(a: Array, b: Array) -> Array:
    if b.ndim == a.ndim:
        return np.vdot(a, b).real
    return (b @ np.conj(a)).real  # K directions: one matrix-vector product


def _torch_vdot(torch: Any, forward_ad: Any, a: Array, b: Array) -> Array:
    """``Re sum conj(a) b`` for PyTorch: its ``vdot`` for two complex vectors
    that no autodiff sees (the real part of its result is a view that forward
    mode cannot differentiate); otherwise, and with directions, the dot of
    their real views (real and imaginary parts in turn), which needs no
    conjugate (one that vmap would copy, with a warning); a real one takes
    the other's real part."""
    if not (a.is_complex() and b.is_complex()):
        return _torch_dot(torch, b.real if b.is_complex() else b, a.real if a.is_complex() else a)
    if a.dtype != b.dtype:
        common = torch.promote_types(a.dtype, b.dtype)
        a, b = a.to(common), b.to(common)
    seen = a.requires_grad or b.requires_grad or forward_ad._current_level >= 0
    if b.ndim == 1 and not (seen or torch._C._are_functorch_transforms_active()):
        return torch.vdot(a, b).real
    a, b = torch.view_as_real(a), torch.view_as_real(b)
    return _torch_dot(torch, b.reshape(*b.shape[:-2], -1), a.reshape(-1))


# Whether a NumPy array is C-contiguous, read in C: it is asked on every call.
_C_ORDER = operator.attrgetter("flags.c_contiguous")


def _numpy_subtract(a: Array, b: Array, out: Array) -> Array:
    return np.subtract(a, b, out=out)


def _classify(xp: Any, sample: Array) -> Traits:
    """The traits of the library of ``sample`` (an array of namespace ``xp``)."""
    if compat.is_numpy_array(sample):
        return Traits(
            xp,
            "numpy",
            _NUMPY,
            dot=np.dot,
            dot_batches=True,
            vdot=_numpy_vdot,
            rows=_numpy_rows,
            over_axes=_numpy_over_axes,
            vector=VectorOps(np.dot, operator.mul, lambda dtype: 0.5, _C_ORDER),
            subtract=_numpy_subtract,
            keep=_numpy_keep,
            quiet=_numpy_quiet,
            cast=_cast_hint("numpy", "method"),
        )
    if compat.is_torch_array(sample):
        import torch
        from torch.autograd import forward_ad

        dot = functools.partial(_torch_dot, torch)
        autodiff, host, ready, recording = _torch_checks(torch)
        common: dict[str, Any] = {
            "dot": dot,
            "vdot": functools.partial(_torch_vdot, torch, forward_ad),
            "dot_batches": True,
            "sum": torch.sum,
            "sum_products": True,
            "check_devices": True,
            "autodiff": autodiff,
            "records": _RECORDS,
            "quiet": _quiet,
            "cast": _cast_hint("torch", "to"),
        }
        gpu = Traits(xp, "torch", _GPU, **common)
        # The sum is halved in place: it is new, and a new 0-d tensor costs more than the product.
        vector = VectorOps(
            torch.dot,
            torch.Tensor.mul_,
            lambda dtype: torch.tensor(0.5, dtype=dtype),
            torch.Tensor.is_contiguous,
        )
        cpu: dict[str, Any] = {"host": host, "ready": ready, "recording": recording}
        cpu.update(vector=vector, accelerated=gpu)
        cpu["rows"] = _torch_rows(torch)
        cpu["rows_in_one"] = functools.partial(_torch_rows_in_one, torch)
        cpu["subtract"] = _torch_subtract(torch, autodiff)
        cpu["keep"] = _torch_keep(torch, autodiff)
        return Traits(xp, "torch", _TORCH_CPU, dot_float32=_FLOAT32_DOT, **cpu, **common)
    if compat.is_cupy_array(sample):
        return Traits(
            xp,
            "cupy",
            _GPU,
            dot=functools.partial(_matmul, xp),
            dot_batches=True,
            sum_products=True,
            check_devices=True,
            quiet=_quiet,
            cast=_cast_hint("cupy", "method"),
        )
    if compat.is_jax_array(sample):
        import jax.numpy as jnp

        return Traits(
            xp,
            "jax",
            None,
            compile=True,
            adopts=jnp.asarray,
            cast=_cast_hint("jax.numpy", "method"),
        )
    if compat.is_dask_array(sample):
        return Traits(xp, "dask", None, guard=_dask_guard, cast=_cast_hint("numpy", "method"))
    module = getattr(xp, "__name__", type(sample).__module__)
    name = module.split(".")[0]
    return Traits(xp, name, None, check_devices=True, cast=_cast_hint(module, "function"))


# Per-library changes made by override(), applied as traits are made.
_OVERRIDES: dict[str, dict[str, Any]] = {}
# Argument types -> (traits, positions of NumPy arrays to adopt). Bounded: a
# program that makes array subclasses on the fly must not grow it forever.
_CACHE: dict[tuple[type, ...], tuple[Traits, tuple[int, ...]]] = {}
_CACHE_SIZE = 256
_LOCK = threading.Lock()


def _changed(traits: Traits) -> Traits:
    change = _OVERRIDES.get(traits.name)
    if not change:
        return traits
    accelerated = traits.accelerated
    if accelerated is not None:
        accelerated = dataclasses.replace(accelerated, **change)
    return dataclasses.replace(traits, accelerated=accelerated, **change)


def _describe(a: Array) -> str:
    return f"{type(a).__module__}.{type(a).__qualname__}"


def refuse(name: str, a: Array) -> None:
    if a is None:
        raise TypeError(
            f"{name} must be an array, got None; pass an array of y's library "
            "(None stands for a structural zero only where a tangent is expected)"
        )
    if not compat.is_array_api_obj(a):
        raise TypeError(
            f"{name} must be an array of an array API library (NumPy, CuPy, PyTorch, "
            f"JAX, Dask, ...), got {_describe(a)}; wrap it first, e.g. numpy.asarray({name})"
        )
    if isinstance(a, np.ma.MaskedArray):
        # NumPy's kernels would drop the mask on some paths, not others.
        raise TypeError(
            f"{name} is a numpy.ma.MaskedArray (shape {a.shape}, dtype {a.dtype}), whose "
            f"mask l2loss does not read; pass its data and the mask as `where`: "
            f"{name}.data and where=~numpy.ma.getmaskarray({name})"
        )


def _resolve(names: tuple[str, ...], arrays: tuple[Array, ...]) -> tuple[Traits, tuple[int, ...]]:
    given = [(i, n, a) for i, (n, a) in enumerate(zip(names, arrays, strict=True)) if a is not None]
    for _, n, a in given:
        refuse(n, a)
    present = [a for _, _, a in given]
    try:
        xp = compat.array_namespace(*present)
        return _changed(_classify(xp, present[0])), ()
    except TypeError:
        pass
    # NumPy arrays beside JAX arrays (or tracers) are taken as JAX does.
    jax_arrays = [a for a in present if compat.is_jax_array(a)]
    if jax_arrays and all(compat.is_jax_array(a) or type(a) is np.ndarray for a in present):
        traits = _changed(_classify(compat.array_namespace(*jax_arrays), jax_arrays[0]))
        return traits, tuple(i for i, _, a in given if type(a) is np.ndarray)
    libraries = ", ".join(f"{n}: {_describe(a)}" for _, n, a in given)
    raise TypeError(
        f"all arrays must come from one array library, got {libraries}; "
        "convert them to one library first"
    )


def traits_of(names: tuple[str, ...], arrays: tuple[Array, ...]) -> tuple[Traits, tuple[int, ...]]:
    """The traits of the library of ``arrays`` (named ``names``; None entries,
    absent optional arguments, are skipped), and the positions of the NumPy
    arrays that must be taken into it (``Traits.adopts``).

    Raises
    ------
    TypeError
        For a non-array, a NumPy masked array, or arrays of several libraries.
    """
    key = tuple(map(type, arrays))
    known = _CACHE.get(key)
    if known is not None:
        return known
    known = _resolve(names, arrays)
    with _LOCK:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.clear()
        _CACHE[key] = known
    return known


_FORGET: list[Callable[[], None]] = []


def on_change(forget: Callable[[], None]) -> Callable[[], None]:
    """Register ``forget``, called whenever traits change (caches of things
    derived from them)."""
    _FORGET.append(forget)
    return forget


def _forget() -> None:
    with _LOCK:
        _CACHE.clear()
    for forget in _FORGET:
        forget()


@contextlib.contextmanager
def override(library: str, **change: Any) -> Iterator[None]:
    """Within the block, the traits of ``library`` (its :attr:`Traits.name`)
    have the fields ``change`` (also on their accelerator variant): the seam
    through which tests and benchmarks try other evaluations.

    Not thread-safe against calls running in other threads meanwhile.
    """
    before = _OVERRIDES.get(library)
    _OVERRIDES[library] = {**(before or {}), **change}
    _forget()
    try:
        yield
    finally:
        if before is None:
            del _OVERRIDES[library]
        else:
            _OVERRIDES[library] = before
        _forget()
