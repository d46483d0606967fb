"""Evaluation strategies: how the sums of ``_rule`` are laid over the data.

Lazy backends (JAX, Dask, unknown libraries) get the plain expression over the
whole arrays; their compilers and schedulers fuse and chunk it.

Eager backends (NumPy, PyTorch, CuPy) would write and re-read N-sized
temporaries with the plain expression (``d = y - y_ref`` alone is N items),
twice the memory traffic the rule needs. There the inputs are
viewed as ``(M, R)`` (kept axes x reduced axes, reduced axes trailing) and cut
into tiles of about ``Backend.tile`` items; each tile is read once, its
residual lives in cache, and per-tile sums are combined in a final small
reduction. A long row (a full reduction, or per-sample losses over more than a
tile) is additionally viewed as short rows, so each tile is a batch of short
BLAS dots: single-threaded inside BLAS (OpenBLAS threads a dot only above
10 000 items), and a pairwise-like combination of short partial sums that
keeps float32 accurate. Where ``y`` holds at least ``_PARALLEL_MIN`` items,
tiles are spread over ``Backend.threads`` Python threads; NumPy releases the
GIL in its subtraction always, and in ``vecdot`` only for calls over more than
500 rows, so a full reduction that long is cut into ``Backend.release_rows``
rows per tile (512 rows of 256 items), whatever the number of threads, so
that its bits do not depend on it; shorter ones take rows of ``_ROW`` items
(fewer, longer dots). Shorter per-sample rows that are still longer than one
``Backend.dot`` are summed in several dots by ``_rule``.

GPUs (``Backend.rows`` False) take no rows: a long full reduction is cut
into 1-D pieces of one (large) tile each, one kernel per operation, since
there every launch costs more than the kernel's work on a small tile.

A full reduction over at most ``Backend.short`` items (a tile, or one dot on
NumPy) skips the rows: one call of ``_rule.sums``, on the arrays as given when
they are 1-D (no reshape), so a call on 10 items costs little more than the
three kernels it needs.

Every temporary is at most one tile (per thread) plus one partial sum per
tile: 1 MiB of float64 per thread instead of the plain expression's N items.
Inputs that cannot be viewed as rows without a copy (transposed, strided)
get the plain expression.
"""

from __future__ import annotations

import contextvars
import math
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple

from ._namespace import Backend
from ._rule import sums
from ._validate import Dtypes

__all__ = ["evaluate"]

# Row length of the blocked reductions on one thread: OpenBLAS's longest
# single-threaded dot (NumPy's ``Backend.dot``), long enough that the per-row
# call overhead is amortised (`python benchmarks/probe.py`: rows of 256 items
# took 1.2x as long in cache).
_ROW = 10_000

# Items of ``y`` below which the calling thread does all the work, with rows
# of _ROW. `bench_trait(n, "threads", [1, 2], 9, 0.15)` of benchmarks/run.py
# (what `--threads` runs) on the 2-core CI machine, fraction of the ceiling
# with one thread / two, fast path: 0.17 / 0.14 at N = 3e5, 0.14 / 0.14 at
# 1e6, 0.33 / 0.45 at 3e6, 0.57 / 0.66 at 1e7, 0.65 / 0.84 at 3e7.
_PARALLEL_MIN = 1 << 20

_POOL: ThreadPoolExecutor | None = None
_POOL_SIZE = 0
_POOL_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """The shared worker pool of at least ``workers`` threads, made on first use.

    ``workers`` is a per-process constant of a backend; a backend asking for
    more (the benchmark's ``--threads`` sweep) gets a new, larger pool. The old
    one is not shut down, so a call still using it finishes; its idle threads
    exit when it is collected.
    """
    global _POOL, _POOL_SIZE
    with _POOL_LOCK:
        if _POOL is None or workers > _POOL_SIZE:
            _POOL = ThreadPoolExecutor(workers, thread_name_prefix="l2loss")
            _POOL_SIZE = workers
        return _POOL


def _forget_pool() -> None:
    """After ``fork`` the child has none of the parent's threads: start afresh."""
    global _POOL, _POOL_SIZE, _POOL_LOCK
    _POOL, _POOL_SIZE, _POOL_LOCK = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


class _Operands(NamedTuple):
    """The arrays one tile is computed from (None: structural zero / no mask)."""

    y: Any
    y_ref: Any
    y_dot: Any
    y_ref_dot: Any
    mask: Any

    def map(self, f: Callable[[Any], Any]) -> _Operands:
        return _Operands(*(None if a is None else f(a) for a in self))


def _sums(backend: Backend, dt: Dtypes, o: _Operands, zero: Any, tangent: bool) -> tuple[Any, Any]:
    """``_rule.sums`` over the last axis of one tile."""
    return sums(backend.xp, dt, *o, zero, (-1,), backend.dot, tangent)


def evaluate(
    backend: Backend,
    dt: Dtypes,
    y: Any,
    y_ref: Any,
    y_dot: Any,
    y_ref_dot: Any,
    mask: Any,
    zero: Any,
    axes: tuple[int, ...],
    tangent: bool,
    batched: bool = False,
) -> tuple[Any, Any]:
    """Return ``(sq, ip)`` over ``axes`` (see ``_rule.sums``).

    Both have the shape of ``y`` without ``axes``; ``ip`` gains the leading
    batch axis of the tangents when they carry one.
    """
    xp = backend.xp
    if backend.eager and y.ndim == 1 and axes == (-1,):
        # 1-D, the common case, needs no (M, R) view.
        if y.shape[0] <= backend.short:
            # Small: the three kernels on the arrays as given.
            return sums(
                xp,
                dt,
                y,
                y_ref,
                y_dot,
                y_ref_dot,
                mask,
                zero,
                (-1,),
                backend.dot,
                tangent,
                _matvec_for(backend, dt, batched),
            )
        o = _Operands(y, y_ref, y_dot, y_ref_dot, mask)
        return _full_reduction(backend, dt, o, zero, tangent)
    rows = _as_rows(backend, y, y_ref, y_dot, y_ref_dot, mask, axes)
    if rows is None:
        return sums(xp, dt, y, y_ref, y_dot, y_ref_dot, mask, zero, axes, 0, tangent)
    args, kept, batch = rows
    m, r = args.y.shape
    if m == 1 and r > backend.short:
        sq, ip = _full_reduction(backend, dt, _cut(args, 0, slice(None)), zero, tangent)
    elif m * r <= backend.tile:
        sq, ip = _sums(backend, dt, args, zero, tangent)
    else:
        sq, ip = _row_tiles(backend, dt, args, zero, tangent, r)
    sq = xp.reshape(sq, kept)
    ip = None if ip is None else xp.reshape(ip, (*batch, *kept))
    return sq, ip


def _matvec_for(backend: Backend, dt: Dtypes, batched: bool) -> Any:
    """``Backend.matvec`` where it applies: real dtypes, and tangents with a
    batch axis only where the backend says so."""
    if dt.complex or (batched and not backend.matvec_batches):
        return None
    return backend.matvec


def _as_rows(
    backend: Backend,
    y: Any,
    y_ref: Any,
    y_dot: Any,
    y_ref_dot: Any,
    mask: Any,
    axes: tuple[int, ...],
) -> tuple[_Operands, tuple[int, ...], tuple[int, ...]] | None:
    """The operands viewed as ``(M, R)`` rows (kept x reduced axes; tangents
    ``(K, M, R)``), with the kept shape and the batch shape ``(K,)`` or ``()``.

    None where the tiles do not apply and the plain expression is used: lazy
    backends, 0-d inputs, reduced axes that are not trailing, and inputs that
    cannot be viewed as rows without a copy (transposed, strided), whose copy
    would cost more than the plain expression.
    """
    ndim = y.ndim
    if not backend.eager or ndim == 0 or axes != tuple(range(-len(axes), 0)):
        return None
    xp = backend.xp
    kept = tuple(y.shape[: ndim - len(axes)])
    m = math.prod(kept)
    r = math.prod(y.shape[ndim - len(axes) :])
    tangents = (y_dot, y_ref_dot)
    batch = next((t.shape[:1] for t in tangents if t is not None and t.ndim > ndim), ())
    try:
        args = _Operands(
            _view(xp, y, (m, r)),
            _view(xp, y_ref, (m, r)),
            _view(xp, y_dot, (*batch, m, r)),
            _view(xp, y_ref_dot, (*batch, m, r)),
            _view(xp, mask, (m, r)),
        )
    except (ValueError, AttributeError):
        return None
    return args, kept, tuple(batch)


def _workers(backend: Backend, items: int) -> int:
    """Threads worth using on ``items`` items of ``y``."""
    return backend.threads if items >= _PARALLEL_MIN else 1


def _spans(count: int, per_tile: int) -> list[slice]:
    """``range(count)`` cut into spans of ``per_tile`` (the last one shorter)."""
    return [slice(i, min(i + per_tile, count)) for i in range(0, count, per_tile)]


def _view(xp: Any, a: Any, shape: tuple[int, ...]) -> Any:
    """``a`` reshaped to ``shape`` without a copy (raises where that is impossible)."""
    return None if a is None else xp.reshape(a, shape, copy=False)


def _cut(o: _Operands, rows: int | slice, cols: slice) -> _Operands:
    return o.map(lambda a: a[..., rows, cols])


def _row_tiles(
    backend: Backend, dt: Dtypes, args: _Operands, zero: Any, tangent: bool, r: int
) -> tuple[Any, Any]:
    """Per-sample sums: tiles of whole rows, or each long row on its own."""
    xp = backend.xp
    m = args.y.shape[-2]
    if r > backend.tile:
        parts = [
            _full_reduction(backend, dt, _cut(args, i, slice(None)), zero, tangent)
            for i in range(m)
        ]
        sq = xp.stack([p[0] for p in parts], axis=-1)
        return sq, (xp.stack([p[1] for p in parts], axis=-1) if tangent else None)
    spans = _spans(m, max(1, backend.tile // max(r, 1)))
    parts = _map(backend, dt, args, zero, tangent, spans, _workers(backend, m * r), reduce=False)
    sq = xp.concat([p[0] for p in parts], axis=-1)
    return sq, (xp.concat([p[1] for p in parts], axis=-1) if tangent else None)


def _full_reduction(
    backend: Backend, dt: Dtypes, o: _Operands, zero: Any, tangent: bool
) -> tuple[Any, Any]:
    """Sums over the whole last axis of ``o`` (tangents may carry a leading
    batch axis), as rows, tile by tile, or as 1-D pieces where the backend
    takes no rows: ``sq`` of shape ``()``, ``ip`` of the batch shape."""
    if not backend.rows:
        return _pieces(backend, dt, o, zero, tangent)
    xp = backend.xp
    n = o.y.shape[-1]
    row = _ROW
    if n >= _PARALLEL_MIN and backend.release_rows:
        # Enough rows per call for NumPy to release the GIL, so that the
        # threads' dots run at once (below, rows of _ROW: fewer, longer dots
        # were 1.2x as fast in cache). The layout depends on n alone, never
        # on the number of threads: results are the same bits on every
        # machine, and L is the same from l2_loss and from l2_loss_jvp.
        row = max(1, backend.tile // backend.release_rows)
    rows, rest = divmod(n, row)
    body = n - rest
    # (..., n) -> (..., rows, row): splitting the last axis is always a view.
    grid = o.map(lambda a: xp.reshape(a[..., :body], (*a.shape[:-1], rows, row)))
    spans = _spans(rows, max(1, backend.tile // row))
    parts = _map(backend, dt, grid, zero, tangent, spans, _workers(backend, n), reduce=True)
    if rest:
        tail = _sums(backend, dt, o.map(lambda a: a[..., None, body:]), zero, tangent)
        parts.append(_reduced(xp, dt, tail))
    sq = _total(xp, dt, [p[0] for p in parts])
    return sq, (_total(xp, dt, [p[1] for p in parts]) if tangent else None)


def _pieces(
    backend: Backend, dt: Dtypes, o: _Operands, zero: Any, tangent: bool
) -> tuple[Any, Any]:
    """``_full_reduction`` as 1-D pieces of one tile each, no rows (GPUs)."""
    xp, wide = backend.xp, _wide(backend.xp, dt)
    batched = any(t is not None and t.ndim > o.y.ndim for t in (o.y_dot, o.y_ref_dot))
    matvec = _matvec_for(backend, dt, batched)

    def one(s: slice) -> tuple[Any, Any]:
        sq, ip = sums(
            xp, dt, *o.map(lambda a: a[..., s]), zero, (-1,), backend.dot, tangent, matvec
        )
        return _as(xp, sq, wide), (None if ip is None else _as(xp, ip, wide))

    parts = [one(s) for s in _spans(o.y.shape[-1], backend.tile)]
    sq = _total(xp, dt, [p[0] for p in parts])
    return sq, (_total(xp, dt, [p[1] for p in parts]) if tangent else None)


def _map(
    backend: Backend,
    dt: Dtypes,
    o: _Operands,
    zero: Any,
    tangent: bool,
    spans: list[slice],
    workers: int,
    reduce: bool,
) -> list[tuple[Any, Any]]:
    """``_sums`` of the rows ``o[..., span, :]`` of each span (summed over the
    span too, by ``_reduced``, if ``reduce``), in ``spans`` order.

    The calling thread and up to ``workers - 1`` pool threads take spans
    one at a time, in order, until none is left: a worker that wakes late (or
    a core taken by another process) only takes fewer spans, and the caller
    never waits for a worker that has not started. Results are stored by
    span, so the sums are reproducible whichever thread computed them. The
    pool threads run in copies of the caller's context, so they see its
    ``numpy.errstate``.
    """
    xp = backend.xp

    def one(s: slice) -> tuple[Any, Any]:
        part = _sums(backend, dt, _cut(o, s, slice(None)), zero, tangent)
        return _reduced(xp, dt, part) if reduce else part

    workers = min(workers, len(spans))
    if workers <= 1:
        return [one(s) for s in spans]
    out: list[tuple[Any, Any]] = [(None, None)] * len(spans)
    claim = iter(range(len(spans)))
    lock = threading.Lock()

    def run() -> None:
        while True:
            with lock:
                i = next(claim, -1)
            if i < 0:
                return
            try:
                out[i] = one(spans[i])
            except BaseException:
                # The call has failed: no thread takes another of its spans.
                with lock:
                    for _ in claim:
                        pass
                raise

    pool = _pool(workers)
    futures = [pool.submit(contextvars.copy_context().run, run) for _ in range(workers - 1)]
    try:
        run()
    finally:
        for f in futures:
            # A thread that has not started by now has nothing left to take.
            if not f.cancel():
                f.result()
    return out


def _wide(xp: Any, dt: Dtypes) -> Any:
    """The dtype partial sums are combined in: float64 for float32 work, so
    the result is as accurate as its rows."""
    return xp.float64 if dt.real_work == xp.float32 else dt.real_work


def _as(xp: Any, a: Any, dtype: Any) -> Any:
    return a if a.dtype == dtype else xp.astype(a, dtype)


def _reduced(xp: Any, dt: Dtypes, part: tuple[Any, Any]) -> tuple[Any, Any]:
    """One span's per-row sums (``(..., rows)`` each) summed over their rows,
    in the wide dtype: every span leaves a number (per direction), not one
    per row."""
    wide, (sq, ip) = _wide(xp, dt), part
    return xp.sum(sq, axis=-1, dtype=wide), (
        None if ip is None else xp.sum(ip, axis=-1, dtype=wide)
    )


def _total(xp: Any, dt: Dtypes, parts: list[Any]) -> Any:
    """Sum the spans' partial sums (wide, shape ``()`` or ``(K,)`` each)."""
    total = parts[0] if len(parts) == 1 else xp.sum(xp.stack(parts, axis=-1), axis=-1)
    return total if total.dtype == dt.real_work else xp.astype(total, dt.real_work)
