"""The plan: how one call is evaluated, chosen once per kind of call.

:func:`plan` reads the library's traits (``_traits.py``), the dtypes, the
shape, the reduced axes, batching and weights, and returns the evaluation to
run; nothing else chooses. Each is the rule of ``_rule.py`` laid over the
data a different way:

- the plain expression: the rule once over the arrays as they are (lazy
  libraries, whose compiler or scheduler fuses and chunks it, and reductions
  over leading axes), or viewed as one vector or as rows (:class:`Whole`),
  with the library's best inner product; eager libraries take it while the
  data fit in cache, where their own kernels are as fast as anything can be,
  and for rows they sum in one call without temporaries
  (``Traits.rows_in_one``);
- :class:`Blocks`, for eager libraries beyond: the arrays viewed, without a
  copy, as rows of pieces of at most ``Blocking.piece`` items, one row per
  result, and the rule run block by block (on several threads where that
  pays), so every temporary stays in cache and each input is read once;
- :class:`Pieces`, for a long vector on libraries whose every call costs more
  than a short dot (PyTorch, GPUs): 1-D pieces, each summed by their dot.

The pieces' sums are added pairwise at the end. Inputs that cannot be viewed
without a copy (transposed, strided) take the plain expression as they are.
"""

from __future__ import annotations

import functools
import math
import operator
import threading
from collections.abc import Callable
from typing import Any, NamedTuple, cast

import array_api_compat as compat

from . import _parallel
from ._dtypes import Dtypes
from ._rule import Inner, Masking, Sub, gradient, halve, masked_vector, sums, vector
from ._traits import Subtract, Traits

__all__ = ["Operands", "Plan", "library_masking", "plan"]

Array = Any


class Operands(NamedTuple):
    """The arrays of one call (None: a structural zero, or no mask / weights).

    ``weights`` has ``y``'s number of dimensions (size 1 along the axes it
    does not cover); tangents carry a leading axis of directions when batched.
    """

    y: Array
    y_ref: Array
    y_dot: Array
    y_ref_dot: Array
    mask: Array
    weights: Array

    def map(self, f: Callable[[Array], Array]) -> Operands:
        return Operands(*(None if a is None else f(a) for a in self))


# evaluate(y, y_ref, y_dot, y_ref_dot, mask, weights, masking) -> (sq, ip)
Evaluation = Callable[..., tuple[Array, Array]]
# total(a, axes) -> the sum of a over axes
Summed = Callable[[Array, tuple[int, ...]], Array]


def _axes_inner(xp: Any, dt: Dtypes, axes: tuple[int, ...], total: Summed | None = None) -> Inner:
    """``Re sum_axes conj(a) b`` as a sum of products (any axes) by ``total``
    (``Traits.sum``; None: ``xp.sum``); for complex inputs ``Re a Re b + Im a
    Im b``, which needs no conjugate (one that PyTorch's vmap would copy, with
    a warning)."""
    if total is None or not axes:
        total = lambda a, axes: xp.sum(a, axis=axes)  # noqa: E731
    if not dt.complex:
        return lambda a, b: total(a * b, axes)

    def inner(a: Array, b: Array) -> Array:
        if not xp.isdtype(b.dtype, "complex floating"):
            return total(xp.real(a) * b, axes)
        if not xp.isdtype(a.dtype, "complex floating"):
            return total(a * xp.real(b), axes)
        return total(xp.real(a) * xp.real(b) + xp.imag(a) * xp.imag(b), axes)

    return inner


def _vector_dot(traits: Traits, full: Dtypes, batched: bool) -> Inner | None:
    """The library's ``dot`` as the inner product of two vectors, where it
    applies: real dtypes, and directions where it takes them; for complex
    vectors its ``vdot`` (which takes directions where ``dot`` does)."""
    if full.complex:
        return traits.vdot if not batched or traits.dot_batches else None
    dot = traits.dot
    if dot is None or (batched and not traits.dot_batches):
        return None
    # 1-D by 1-D is symmetric; with directions, b carries them.
    return dot if not batched else lambda a, b: dot(b, a)


def _last_inner(
    traits: Traits,
    full: Dtypes,
    primal: Dtypes,
    vector: bool,
    batched: bool,
    length: int,
    items: int,
) -> Inner:
    """``Re sum conj(a) b`` over the last axis, by the library's fastest call:
    its ``dot`` for a real vector ``a`` where it has one, its own for real
    rows of ``length`` items, ``items`` of ``y`` per call, where it has one
    (``Traits.rows``, chosen by the residual's dtypes, so that L does not
    depend on the tangents), else a matrix-vector product per row for K
    directions, ``vecdot`` or a sum of products (see
    :class:`~l2loss._traits.Traits`), in calls over at most ``Blocking.piece``
    items of that axis."""
    xp = traits.xp
    dot = _vector_dot(traits, full, batched) if vector else None
    if dot is not None:
        return dot
    assert traits.blocking is not None
    piece = traits.blocking.piece
    rows = (
        None
        if traits.rows is None or primal.complex
        else traits.rows(primal, min(length, piece), items)
    )
    if rows is not None:
        inner = rows
    elif traits.sum_products:
        inner = _axes_inner(xp, full, (-1,), traits.sum)
    elif full.complex:

        def inner(a: Array, b: Array) -> Array:
            return xp.real(xp.vecdot(a, b))

    elif batched and traits.dot_batches:

        def inner(a: Array, b: Array) -> Array:
            if b.ndim == a.ndim:
                return xp.vecdot(a, b)
            # The K directions as the rows of a matrix-vector product per row
            # of a (BLAS), where vecdot would loop over K times as many rows.
            r = xp.matmul(xp.moveaxis(b, 0, -2), a[..., None])
            return xp.moveaxis(r[..., 0], -1, 0)

    else:
        inner = xp.vecdot
    if length <= piece:  # every call of this evaluation holds rows of at most length items
        return inner

    def pieces(a: Array, b: Array) -> Array:
        n = a.shape[-1]
        if n <= piece:
            return inner(a, b)
        r = inner(a[..., :piece], b[..., :piece])
        for i in range(piece, n, piece):
            j = min(i + piece, n)  # a slice ends within the axis (array API)
            r = r + inner(a[..., i:j], b[..., i:j])
        return r

    return pieces


def _general(traits: Traits, full: Dtypes, axes: tuple[int, ...], ndim: int) -> Inner:
    """``Re sum_axes conj(a) b`` over any ``axes`` of arrays of ``ndim``
    dimensions in any layout: the library's own (``Traits.over_axes``) for
    real ones where it has one, else a sum of products."""
    if traits.over_axes is not None and axes and not full.complex:
        over = traits.over_axes(axes, ndim)
        if over is not None:
            return over
    return _axes_inner(traits.xp, full, axes, traits.sum)


def _view(xp: Any, a: Array, shape: tuple[int, ...]) -> Array:
    """``a`` as ``shape`` without a copy (raises where that is impossible)."""
    return a if a.shape == shape else xp.reshape(a, shape, copy=False)


class _Layout(NamedTuple):
    """How the operands are viewed: ``y`` as ``shape``, the results as ``kept``
    (after summing, where ``fold``, the rows of each result: per-sample
    weights of reduced leading axes give a row per sample)."""

    shape: tuple[int, ...]
    weights: tuple[int, ...]
    kept: tuple[int, ...]
    fold: bool

    def operands(self, xp: Any, o: Operands, batch: tuple[int, ...]) -> Operands:
        shape = self.shape
        return Operands(
            _view(xp, o.y, shape),
            None if o.y_ref is None else _view(xp, o.y_ref, shape),
            None if o.y_dot is None else _view(xp, o.y_dot, (*batch, *shape)),
            None if o.y_ref_dot is None else _view(xp, o.y_ref_dot, (*batch, *shape)),
            None if o.mask is None else _view(xp, o.mask, shape),
            None if o.weights is None else _view(xp, o.weights, self.weights),
        )

    def results(self, xp: Any, sq: Array, ip: Array, batch: tuple[int, ...]) -> tuple[Array, Array]:
        if self.fold:
            sq = self._folded(xp, sq)
            ip = None if ip is None else self._folded(xp, ip)
        if tuple(sq.shape) != self.kept:
            sq = xp.reshape(sq, self.kept)
            ip = None if ip is None else xp.reshape(ip, (*batch, *self.kept))
        if not self.kept:
            # The one result, as the library's reductions give it (NumPy: a scalar).
            sq = sq[()]
            if ip is not None and not batch:
                ip = ip[()]
        return sq, ip

    def _folded(self, xp: Any, a: Array) -> Array:
        """The sums of each result's rows, which are consecutive (its last
        axis holds the rows, one per sample of the reduced leading axes)."""
        if self.kept:
            a = xp.reshape(a, (*a.shape[:-1], math.prod(self.kept), -1))
        return xp.sum(a, axis=-1)


class _Viewed:
    """An evaluation over views of the operands (``layout``); operands that
    cannot be viewed without a copy take the plain expression as they are,
    with ``fallback``, an inner product over any axes, and so does a ``y`` of
    several dimensions that is not ``contiguous`` (where given: a transposed
    array, whose views and blocks would stride across it). ``out``, where
    given, is an array of ``y``'s shape and dtype into which the residual is
    written (the library's ``subtract``): the gradient, at no extra pass."""

    __slots__ = (
        "batch",
        "contiguous",
        "dt",
        "fallback",
        "inner",
        "layout",
        "reuse",
        "subtract",
        "xp",
    )

    def __init__(
        self,
        xp: Any,
        dt: Dtypes,
        inner: Inner,
        layout: _Layout,
        batch: tuple[int, ...],
        fallback: Inner,
        subtract: Subtract | None = None,
        reuse: bool = False,
    ) -> None:
        self.xp, self.dt, self.inner, self.layout = xp, dt, inner, layout
        self.batch, self.fallback, self.subtract, self.reuse = batch, fallback, subtract, reuse
        self.contiguous: Callable[[Array], bool] | None = None

    def __call__(
        self,
        y: Array,
        y_ref: Array,
        y_dot: Array,
        y_ref_dot: Array,
        mask: Array,
        weights: Array,
        masking: Masking | None,
        out: Array = None,
    ) -> tuple[Array, Array]:
        o = Operands(y, y_ref, y_dot, y_ref_dot, mask, weights)
        contiguous = self.contiguous
        if contiguous is None or y.ndim < 2 or contiguous(y):
            try:
                v = self.layout.operands(self.xp, o, self.batch)
                viewed = None if out is None else _view(self.xp, out, self.layout.shape)
            except (ValueError, AttributeError, RuntimeError):
                pass
            else:
                return self._over(v, masking, viewed)
        return sums(self.xp, self.dt, self.fallback, *o, masking, _into(self.subtract, out))

    def _over(self, v: Operands, masking: Masking | None, out: Array) -> tuple[Array, Array]:
        raise NotImplementedError


class Whole(_Viewed):
    """The rule once over the whole arrays, viewed as ``layout`` (a view that
    cannot be made without a copy falls back to the arrays as they are, with
    an inner product over any axes)."""

    __slots__ = ()

    def _over(self, v: Operands, masking: Masking | None, out: Array) -> tuple[Array, Array]:
        xp, sub = self.xp, _into(self.subtract, out)
        return self.layout.results(xp, *sums(xp, self.dt, self.inner, *v, masking, sub), self.batch)


class Blocks(_Viewed):
    """The rule block by block over a ``(M, Q, P)`` view of the operands: one
    row of ``Q`` pieces of ``P`` items per result, and a ``(M, tail)``
    region of the last items of each row. A block is ``rows`` results by
    ``span`` pieces; blocks are spread over ``workers`` threads. The sums of
    the pieces are added pairwise at the end.
    """

    __slots__ = ("q", "rows", "span", "tail", "workers")

    def __init__(
        self,
        xp: Any,
        dt: Dtypes,
        layout: _Layout,
        q: int,
        tail: int,
        rows: int,
        span: int,
        inner: Inner,
        workers: int,
        batch: tuple[int, ...],
        fallback: Inner,
        subtract: Subtract | None,
        reuse: bool,
    ) -> None:
        super().__init__(xp, dt, inner, layout, batch, fallback, subtract, reuse)
        self.q, self.tail, self.rows, self.span, self.workers = q, tail, rows, span, workers

    def _over(self, flat: Operands, masking: Masking | None, out: Array) -> tuple[Array, Array]:
        xp, dt = self.xp, self.dt
        layout, q, tail, inner = self.layout, self.q, self.tail, self.inner
        m, r = layout.shape
        p = (r - tail) // q
        # Weights of whole rows (size 1 along them) are cut by rows only.
        rowwise = flat.weights is not None and flat.weights.shape[-1] == 1
        per_row = flat.weights if rowwise else None
        core = flat._replace(weights=None) if rowwise else flat

        def cut(a: Array) -> Array:
            # Cutting the last axis of an (M, R) view is always a view.
            return xp.reshape(a[..., : q * p] if tail else a, (*a.shape[:-1], q, p))

        body = core.map(cut)
        sub = _sub(xp, self.subtract if self.reuse else None)
        into = None if out is None else cut(out)

        def block(at: tuple[slice, slice]) -> tuple[Array, Array]:
            rows, pieces = at
            b = body.map(lambda a: a[..., rows, pieces, :])
            if per_row is not None:
                b = b._replace(weights=xp.reshape(per_row[rows, :], (-1, 1, 1)))
            s = sub if into is None else _into(self.subtract, into[rows, pieces, :])
            return sums(xp, dt, inner, *b, masking, s)

        at = [
            (slice(i, min(i + self.rows, m)), slice(j, min(j + self.span, q)))
            for i in range(0, m, self.rows)
            for j in range(0, q, self.span)
        ]
        parts = _parallel.ordered_map(block, at, self.workers)
        blocks_per_row = -(-q // self.span)
        sq = _assemble(xp, [s for s, _ in parts], blocks_per_row)
        ip = None if parts[0][1] is None else _assemble(xp, [i for _, i in parts], blocks_per_row)
        if tail:
            ends = core.map(lambda a: a[..., q * p :])
            if per_row is not None:
                ends = ends._replace(weights=per_row)
            s = sub if out is None else _into(self.subtract, out[..., q * p :])
            tsq, tip = sums(xp, dt, inner, *ends, masking, s)
            sq = xp.concat([sq, tsq[..., None]], axis=-1)
            ip = None if ip is None else xp.concat([ip, tip[..., None]], axis=-1)
        sq = xp.sum(sq, axis=-1)
        ip = None if ip is None else xp.sum(ip, axis=-1)
        return layout.results(xp, sq, ip, self.batch)


class Pieces(_Viewed):
    """A full reduction of one vector (``layout`` views the arrays as one) in
    1-D pieces of ``piece`` items, each summed by the library's ``dot``,
    with the pieces' sums added pairwise at the end."""

    __slots__ = ("piece",)

    def __init__(
        self,
        xp: Any,
        dt: Dtypes,
        inner: Inner,
        layout: _Layout,
        piece: int,
        batch: tuple[int, ...],
        fallback: Inner,
        subtract: Subtract | None,
        reuse: bool,
    ) -> None:
        super().__init__(xp, dt, inner, layout, batch, fallback, subtract, reuse)
        self.piece = piece

    def _over(self, v: Operands, masking: Masking | None, out: Array) -> tuple[Array, Array]:
        xp, dt, inner, step = self.xp, self.dt, self.inner, self.piece
        n = v.y.shape[0]
        sub = _sub(xp, self.subtract if self.reuse else None)
        parts = []
        for i in range(0, n, step):
            cut = slice(i, min(i + step, n))
            s = sub if out is None else _into(self.subtract, out[cut])
            parts.append(sums(xp, dt, inner, *v.map(lambda a: a[..., cut]), masking, s))  # noqa: B023
        sq = xp.sum(xp.stack([s for s, _ in parts]), axis=0)
        ip = None if parts[0][1] is None else xp.sum(xp.stack([p for _, p in parts]), axis=0)
        return sq, ip


class _PerSample:
    """``evaluate`` of each sample's sum without the weights, one per sample
    (as the shape ``samples`` the sums take them), which then scale them, ``w
    sum |d|^2`` for ``sum w |d|^2``, and the last ``fold`` axes of samples
    summed."""

    __slots__ = ("evaluate", "fold", "samples", "xp")

    def __init__(self, xp: Any, evaluate: Evaluation, samples: tuple[int, ...], fold: int) -> None:
        self.xp, self.evaluate, self.samples, self.fold = xp, evaluate, samples, fold

    def __call__(
        self,
        y: Array,
        y_ref: Array,
        y_dot: Array,
        y_ref_dot: Array,
        mask: Array,
        weights: Array,
        masking: Masking | None,
    ) -> tuple[Array, Array]:
        sq, ip = self.evaluate(y, y_ref, y_dot, y_ref_dot, mask, None, masking)
        if weights is not None:
            w = self.xp.reshape(weights, self.samples)
            sq, ip = w * sq, (None if ip is None else w * ip)
        if self.fold:
            axes = tuple(range(-self.fold, 0))
            sq = self.xp.sum(sq, axis=axes)
            ip = None if ip is None else self.xp.sum(ip, axis=axes)
        return sq, ip


def _sub(xp: Any, subtract: Subtract | None) -> Sub:
    """``sub`` for one call that loops over blocks: ``a - b`` written by the
    library's ``subtract`` into one buffer per thread, reused block after
    block, since a fresh temporary per block can make the allocator fault
    its pages in again each time (None: a new array each time)."""
    if subtract is None:
        return operator.sub
    buffers: dict[int, Array] = {}

    def sub(a: Array, b: Array) -> Array:
        n = math.prod(a.shape)
        dtype = a.dtype if a.dtype == b.dtype else xp.result_type(a, b)
        key = threading.get_ident()
        buf = buffers.get(key)
        if buf is None or buf.shape[0] < n or buf.dtype != dtype:
            buf = buffers[key] = xp.empty((n,), dtype=dtype, device=compat.device(a))
        return subtract(a, b, xp.reshape(buf[:n], a.shape))

    return sub


def _into(subtract: Subtract | None, out: Array) -> Sub:
    """``sub`` writing ``a - b`` into ``out`` (None: a new array)."""
    if out is None:
        return operator.sub
    assert subtract is not None, "a residual is written out only with the library's subtract"

    def sub(a: Array, b: Array) -> Array:
        d = subtract(a, b, out)
        if d is not out:  # the library could not write it there
            out[...] = d
        return out

    return sub


def _assemble(xp: Any, parts: list[Array], per_row: int) -> Array:
    """Blocks' ``(..., rows, span)`` sums as one ``(..., M, Q)`` array."""
    if len(parts) == 1:
        return parts[0]
    if per_row > 1:
        parts = [xp.concat(parts[i : i + per_row], axis=-1) for i in range(0, len(parts), per_row)]
    return parts[0] if len(parts) == 1 else xp.concat(parts, axis=-2)


def _pieces(r: int, longest: int) -> tuple[int, int]:
    """``(Q, tail)`` cutting a row of ``r`` items into ``Q`` pieces of equal
    length and a tail: the longest piece that divides ``r`` where one is at
    least half the longest allowed, else the longest allowed and a tail."""
    if r <= longest:
        return 1, 0
    for p in range(longest, longest // 2, -1):
        if r % p == 0:
            return r // p, 0
    return r // longest, r % longest


def _itemsize(xp: Any, dt: Dtypes) -> int:
    """Bytes per item of the residual's working dtype."""
    bits: int = xp.finfo(dt.work).bits
    return bits // 8 * (2 if dt.complex else 1)


class Plan(NamedTuple):
    """How one kind of call is evaluated.

    ``evaluate(y, y_ref, y_dot, y_ref_dot, mask, weights, masking) -> (sq,
    ip)`` serves every call. ``loss(y, y_ref, weights, mask) -> L`` and
    ``jvp(y, y_ref, y_dot, y_ref_dot, weights, mask) -> (L, L_dot)`` serve
    the calls whose arrays go to it as they are (nothing to check or widen),
    with the halving done: for a full reduction of one dtype in cache (real,
    or complex where the library has a ``vdot``; weights, if any, of ``y``'s
    shape; directions or not), as the rule's :func:`~l2loss._rule.vector`
    closures (:func:`~l2loss._rule.masked_vector` with a mask), with nothing
    left to choose, which also give ``grad(y, y_ref, weights, mask) -> (L, w
    d)``, and so too, without a mask, for any other reduction over the whole
    arrays in cache, with its inner product (a library with ``Traits.vector``);
    otherwise ``loss`` and ``jvp`` take no mask (None where the call
    has one), and ``grad``, without a mask, sums the residual it returns
    over the whole arrays, or beyond cache, without weights either, writes
    it into the gradient block by block (``Blocking.fuse``; else it forms
    it whole and sums it by blocks), else None.
    ``halve(sq) -> L``: :func:`~l2loss._rule.halve` with the library's
    fastest constant 1/2 (``Traits.vector``), for the other calls.
    ``whole``: the evaluation runs over the whole arrays at once (not in
    blocks or pieces); ``recorded``: it does, on at most ``Traits.records``
    bytes of ``y``, so that the library's autograd records its operations
    rather than run l2loss's rules.
    """

    evaluate: Evaluation
    loss: Callable[..., Array] | None
    jvp: Callable[..., tuple[Array, Array]] | None
    grad: Callable[..., tuple[Array, Array]] | None
    halve: Callable[[Array], Array]
    whole: bool
    recorded: bool


def plan(
    traits: Traits,
    full: Dtypes,
    primal: Dtypes,
    shape: tuple[int, ...],
    axes: tuple[int, ...],
    batch: tuple[int, ...],
    lead: int,
    masked: bool,
) -> Plan:
    """The :class:`Plan` of one kind of call.

    ``full`` are the dtypes of every argument (they choose the inner
    product), ``primal`` those of ``y``, ``y_ref`` and the weights (the
    residual's); ``axes`` are the reduced axes (sorted, negative), ``batch``
    is ``(K,)`` for K tangent directions or ``()``, ``lead`` is the number of
    leading axes of ``y`` the weights cover (-1: no weights), ``masked``
    whether a mask is given.
    """
    ndim = len(shape)
    # One weight per sample (per-sample weights of leading axes) scales the
    # sum of the sample's items, rather than every item: N products and a
    # temporary fewer; the weighted sums are then added over reduced samples.
    trailing = axes == tuple(range(-len(axes), 0))
    per_sample = 0 < lead < ndim and trailing and not masked and traits.blocking is not None
    per_sample &= not (primal.complex or primal.mixed or primal.widen)
    n_kept = ndim - len(axes)
    if per_sample:
        items = tuple(range(lead - ndim, 0)) if lead >= n_kept else axes
        evaluate = _evaluation(traits, full, primal, shape, items, batch, -1, masked)
    else:
        evaluate = _evaluation(traits, full, primal, shape, axes, batch, lead, masked)
    if isinstance(evaluate, _Viewed) and traits.vector is not None:
        evaluate.contiguous = traits.vector.contiguous
    whole = not isinstance(evaluate, (Blocks, Pieces))
    recorded = whole and math.prod(shape) * _itemsize(traits.xp, primal) <= traits.records
    if per_sample:
        # The weights as the sums' shape takes them: fewer axes than the
        # results keep are size 1 along the others.
        samples = (*shape[:lead], *[1] * (n_kept - lead))
        evaluate = _PerSample(traits.xp, evaluate, samples, max(0, lead - n_kept))
    ops = traits.vector
    half, mul = (0.5, operator.mul) if ops is None else (ops.half(primal.real_work), ops.mul)
    halved = functools.partial(halve, traits.xp, primal, half=half, mul=mul)
    loss, jvp = (None, None) if masked else _halved(evaluate, halved)
    grad = None
    summed = whole and ndim >= 1 and len(axes) == ndim and lead in (-1, ndim)
    if ops is not None and summed and not (full.widen or full.mixed):
        # Complex vectors take the library's vdot; with directions, the
        # tangents go to its dot (which takes them).
        dot = traits.vdot if full.complex else ops.dot
        tdot = _vector_dot(traits, full, True) if batch else dot
        if dot is not None and tdot is not None:
            if ndim > 1:
                # Arrays in another layout (transposed) are summed as they lie.
                other = _general(traits, full, axes, ndim)
                dot = _items(dot, (ops.contiguous, other))
                tdot = _items(tdot, (ops.contiguous, other))
            half = ops.half(primal.out)
            if masked:
                masking = library_masking(traits, primal.real_work)
                loss, jvp, grad = masked_vector(dot, tdot, ops.mul, half, masking)
            else:
                loss, jvp, grad = vector(dot, tdot, ops.mul, half)
    plain = not (masked or full.widen or full.mixed)
    # The rule over the whole arrays with its inner product chosen
    # (partial(sums, xp, dtypes, inner)): the same calls, with nothing left to choose.
    over_all = isinstance(evaluate, functools.partial) and evaluate.func is sums
    if grad is None and ops is not None and plain and over_all and lead in (-1, ndim):
        inner = cast(functools.partial[Any], evaluate).args[-1]
        loss, jvp, grad = vector(inner, inner, ops.mul, ops.half(primal.out))
    if grad is None and whole and plain and lead in (-1, ndim):
        grad = _whole(traits.xp, primal, evaluate, halved)
    fused = plain and not (whole or lead != -1 or full.complex)
    if fused and traits.subtract is not None:
        fuse = traits.blocking is not None and traits.blocking.fuse
        if fuse:
            grad = _fused(traits.xp, evaluate, halved)
        else:
            grad = _whole(traits.xp, primal, evaluate, halved)
    return Plan(evaluate, loss, jvp, grad, halved, whole, recorded)


def library_masking(traits: Traits, dtype: Any, device: Any = None) -> Masking:
    """The library's :class:`~l2loss._rule.Masking`: its ``keep`` with a 0-d
    zero of ``dtype`` on ``device``, and its quiet subtraction."""
    zero = traits.xp.zeros((), dtype=dtype, device=device)
    return Masking(functools.partial(traits.keep, traits.xp, zero), traits.quiet)


def _whole(
    xp: Any, dt: Dtypes, evaluate: Evaluation, halved: Callable[[Array], Array]
) -> Callable[..., tuple[Array, Array]]:
    """:attr:`Plan.grad` from the rule's gradient (the residual, times the
    weights) formed over the whole arrays, whose square the evaluation sums
    as it sums ``y - y_ref`` (the same bits), in cache or, where the library
    does not fuse them (``Blocking.fuse``), in blocks."""

    def grad(y: Array, y_ref: Array, weights: Array, mask: None = None) -> tuple[Array, Array]:
        d, g = gradient(xp, dt, y, y_ref, None, weights, None)
        return halved(evaluate(d, None, None, None, None, weights, None)[0]), g

    return grad


def _fused(
    xp: Any, evaluate: Evaluation, halved: Callable[[Array], Array]
) -> Callable[..., tuple[Array, Array]]:
    """:attr:`Plan.grad` for blocks or pieces: each writes its residual into
    the gradient while it sums its square, so the inputs are read once."""

    def grad(y: Array, y_ref: Array, weights: Array, mask: None = None) -> tuple[Array, Array]:
        out = xp.empty(y.shape, dtype=y.dtype, device=compat.device(y))
        return halved(evaluate(y, y_ref, None, None, None, None, None, out)[0]), out

    return grad


def _items(dot: Inner, otherwise: tuple[Callable[[Array], bool], Inner] | None = None) -> Inner:
    """``dot`` of arrays of any shape, as the vectors of their items in order
    (``b`` keeps a leading axis of directions that ``a`` does not have); a
    view where the arrays are contiguous, as a fresh residual is. Given
    ``otherwise = (contiguous, other)``, a residual ``a`` that is not (of a
    transposed ``y``, which a vector of its items would copy) takes
    ``other``, an inner product over every axis in the arrays' layout."""

    def inner(a: Array, b: Array) -> Array:
        return dot(a.ravel(), b.reshape(b.shape[0], -1) if b.ndim > a.ndim else b.ravel())

    if otherwise is None:
        return inner
    contiguous, other = otherwise

    def laid(a: Array, b: Array) -> Array:
        # a is the residual, in the layout of y: b in another one is copied.
        if contiguous(a):
            return dot(a.ravel(), b.reshape(b.shape[0], -1) if b.ndim > a.ndim else b.ravel())
        return other(a, b)

    return laid


def _laid(inner: Inner, contiguous: Callable[[Array], bool], other: Inner) -> Inner:
    """``inner`` where the residual ``a`` is ``contiguous`` (C order, as ``y``
    is), else ``other``, the same inner product in the arrays' layout."""

    def laid(a: Array, b: Array) -> Array:
        return inner(a, b) if contiguous(a) else other(a, b)

    return laid


def _halved(
    evaluate: Evaluation, halved: Callable[[Array], Array]
) -> tuple[Callable[..., Array], Callable[..., tuple[Array, Array]]]:
    """``loss`` and ``jvp`` of :class:`Plan`: ``evaluate``, then ``halved``."""

    def loss(y: Array, y_ref: Array, weights: Array, mask: None = None) -> Array:
        return halved(evaluate(y, y_ref, None, None, None, weights, None)[0])

    def jvp(
        y: Array, y_ref: Array, y_dot: Array, y_ref_dot: Array, weights: Array, mask: None = None
    ) -> Any:
        sq, ip = evaluate(y, y_ref, y_dot, y_ref_dot, None, weights, None)
        return halved(sq), ip

    return loss, jvp


def _in_cache(traits: Traits, primal: Dtypes, size: int, vector: bool) -> bool:
    """Whether ``size`` items of ``y`` fit where the plain expression is
    fastest (``vector``: a full reduction by dots alone, ``Blocking.vector``);
    :func:`_evaluation` decides, and :func:`plan` reads its decision."""
    blocking = traits.blocking
    assert blocking is not None
    whole = blocking.vector if vector and blocking.vector is not None else blocking.whole
    return size * _itemsize(traits.xp, primal) <= 8 * whole


def _evaluation(
    traits: Traits,
    full: Dtypes,
    primal: Dtypes,
    shape: tuple[int, ...],
    axes: tuple[int, ...],
    batch: tuple[int, ...],
    lead: int,
    masked: bool,
) -> Evaluation:
    """:attr:`Plan.evaluate` (the arguments are those of :func:`plan`)."""
    xp = traits.xp
    ndim, size = len(shape), math.prod(shape)
    kept = shape[: ndim - len(axes)]
    general = _general(traits, full, axes, ndim)
    blocking = traits.blocking
    trailing = axes == tuple(range(-len(axes), 0))
    if blocking is None or not trailing or ndim == 0 or size == 0:
        return functools.partial(sums, xp, primal, general)
    # One result per row of an (M, R) view. Per-sample weights of reduced
    # axes split the view where they end, and the rows' sums are folded.
    split = len(kept)
    leading = 0 <= lead < ndim
    if leading and lead < split:
        # Per-sample weights coarser than the results: the plain expression.
        return functools.partial(sums, xp, primal, general)
    fold = leading and lead > split
    if leading:
        split = lead
    m, r = math.prod(shape[:split]), math.prod(shape[split:])
    rows = _Layout((m, r), (m, 1) if leading else (m, r), kept, fold)
    piece, batched = blocking.piece, bool(batch)
    one = not kept and not leading  # one result (per direction): a full reduction
    workers = blocking.workers if size >= blocking.parallel else 1
    # Real rows the library sums in one call, without temporaries of their size.
    rows_in_one = traits.rows_in_one
    summed = not primal.complex and rows_in_one is not None and rows_in_one(primal, r, size)
    # They need no blocks on one thread.
    in_one = summed and not (one or masked) and workers == 1
    vector_dot = _vector_dot(traits, full, batched)
    # A full reduction without mask or weights is nothing but dots.
    if in_one or _in_cache(traits, primal, size, one and not masked and lead == -1):
        if one:
            inner = _last_inner(traits, full, primal, True, batched, r, size)
            if ndim == 1:  # a vector, summed as it is
                return functools.partial(sums, xp, primal, inner)
            return Whole(xp, primal, inner, _Layout((r,), (r,), kept, False), batch, general)
        if not kept and vector_dot is not None:
            # Per-sample weights of a full reduction: one dot over every item.
            return Whole(xp, primal, _items(vector_dot), rows._replace(fold=False), batch, general)
        inner = _last_inner(traits, full, primal, False, batched, r, size)
        if axes == (-1,):  # rows already: summed as they are
            ops = traits.vector
            if ops is not None and traits.over_axes is not None and not full.complex:
                # Rows that do not lie one after the other (transposed) take
                # the library's sum in their layout.
                inner = _laid(inner, ops.contiguous, general)
            return functools.partial(sums, xp, primal, inner)
        if traits.sum_products and not summed:
            # Products summed over several axes cost what they cost over rows, without the views.
            return functools.partial(sums, xp, primal, general)
        return Whole(xp, primal, inner, rows, batch, general)
    if one and not blocking.rows and vector_dot is not None:
        # The residual's precision decides, so that L does not depend on the
        # tangents' dtypes.
        if primal.real_work != xp.float64 and traits.dot_float32 is not None:
            piece = min(piece, traits.dot_float32)
        vector = _Layout((size,), (size,), kept, False)
        return Pieces(
            xp, primal, vector_dot, vector, piece, batch, general, traits.subtract, blocking.reuse
        )
    # A block holds as many bytes whatever the dtype, since its time is its traffic.
    block = max(1, 8 * blocking.block // _itemsize(xp, primal))
    # Rows are cut at a block's length too, so that a block's products stay in cache.
    q, tail = _pieces(r, min(blocking.piece, block))
    per_block = max(1, block // ((r - tail) // q))
    at = (max(1, per_block // q), q) if q <= per_block else (1, per_block)
    inner = _last_inner(traits, full, primal, False, batched, (r - tail) // q, block)
    return Blocks(
        xp,
        primal,
        rows,
        q,
        tail,
        *at,
        inner,
        workers,
        batch,
        general,
        traits.subtract,
        blocking.reuse,
    )
