"""The plan's evaluations agree with the reference on every backend: the plain
expression and the blocks (with small blocks forced through the traits'
seam, ``l2loss._traits.override``), every inner product, layouts that cannot
be viewed without a copy, complex and half precision, masks, weights and
directions; and the plan chooses as documented."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import reference as ref
from backends import Backend
from strategies import eps
from test_values import vjp_apply

from l2loss import _parallel, _rule, l2_loss, l2_loss_grad, l2_loss_jvp
from l2loss._api import Kind, _kind
from l2loss._plan import Blocks, Pieces, Whole, _PerSample
from l2loss._rule import sums
from l2loss._traits import _NUMPY, Blocking, _matmul, override, traits_of

ROWS, COLS = 3, 150_001  # 450 003 items: several blocks, pieces and a ragged tail


def layout(a: np.ndarray[Any, Any], kind: str) -> np.ndarray[Any, Any]:
    """``a`` (shape (..., ROWS, COLS)) as a contiguous, transposed-view or strided
    array with the same values (the strided one is every other column of a wider
    array)."""
    if kind == "transposed":
        return np.swapaxes(np.ascontiguousarray(np.swapaxes(a, -1, -2)), -1, -2)
    if kind == "strided":
        wide = np.zeros((*a.shape[:-1], 2 * a.shape[-1]), dtype=a.dtype)
        wide[..., ::2] = a
        return wide[..., ::2]
    return a


def weighted(weights: np.ndarray[Any, Any] | None, a: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``a`` times the weights expanded along ``a``'s trailing axes."""
    if weights is None:
        return a
    w = weights.reshape(weights.shape + (1,) * (a.ndim - weights.ndim))
    return np.asarray(a * w)


def reference(
    y: Any, r: Any, t: Any, u: Any, axis: Any, keep: Any, w: Any
) -> tuple[Any, Any, Any, Any]:
    """L, L_dot and the scales of their rounding errors, in float64/complex128,
    with weights (per entry or per sample) and a mask."""
    d = ref.kept(ref.wide(y), keep) - ref.kept(ref.wide(r), keep)
    wd = weighted(None if w is None else w.astype(np.float64), d)
    axes = ref.reduce_axes(y.ndim, axis)
    L = 0.5 * np.sum(np.real(np.conj(wd) * d), axis=axes)
    scale_L = np.sum(np.abs(wd) * np.abs(d), axis=axes)
    tt = 0.0
    for a, sign in ((t, 1), (u, -1)):
        if a is not None:
            tt = tt + sign * ref.kept(ref.wide(a), keep)
    prod = np.conj(wd) * tt
    shift = np.ndim(prod) - y.ndim
    ax = tuple(a + shift for a in axes)
    Ld = np.sum(np.real(prod), axis=ax)
    scale_Ld = np.sum(np.abs(wd) * np.abs(tt), axis=ax)
    return L, Ld, scale_L, scale_Ld


@pytest.mark.parametrize("kind", ["contiguous", "transposed", "strided"])
@pytest.mark.parametrize("dtype", ["complex64", "complex128", "float16"])
def test_large_inputs_match_reference(be: Backend, dtype: str, kind: str) -> None:
    if dtype == "float16" and "float16" not in be.low_precision:
        pytest.skip(f"{be.name} has no float16")
    rng = np.random.default_rng(1)
    bound = 0.1 if dtype == "float16" else 1.0  # float16 sums must stay below 65504

    def draw(*shape: int) -> np.ndarray[Any, Any]:
        a = rng.uniform(-bound, bound, shape)
        if dtype.startswith("complex"):
            a = a + 1j * rng.uniform(-1, 1, shape)
        return a.astype(dtype)

    y, r, t = draw(ROWS, COLS), draw(ROWS, COLS), draw(2, ROWS, COLS)
    keep = rng.random((ROWS, COLS)) > 0.25
    Y, R, T, W = (be.asarray(layout(a, kind)) for a in (y, r, t, keep))
    tol = eps("float32" if dtype == "float16" else dtype) * 64
    for axis in (None, -1, (-2, -1)):
        L, Ld = be.call(l2_loss_jvp, Y, R, T, None, axis=axis, where=W, batched=True)
        want_L, want_Ld, sL, sLd = reference(y, r, t, None, axis, keep, None)
        # half precision: float32 accumulation, then one rounding to float16
        half = 2.0**-11 if dtype == "float16" else 0.0
        got_L = be.to_numpy(L).astype(np.float64)
        assert np.all(np.abs(got_L - want_L) <= tol * sL + half * np.abs(want_L)), axis
        got_Ld = be.to_numpy(Ld).astype(np.float64)
        assert np.all(np.abs(got_Ld - want_Ld) <= tol * sLd + half * np.abs(want_Ld)), axis
    _, yb, _ = be.call(vjp_apply, Y, R, be.asarray(np.full(ROWS, 2.0)), axis=-1, where=W)
    want = 2.0 * (ref.kept(ref.wide(y), keep) - ref.kept(ref.wide(r), keep))
    rtol = {"complex64": 1e-6, "complex128": 1e-15, "float16": 2.0**-10}[dtype]
    np.testing.assert_allclose(be.to_numpy(yb), want, rtol=rtol, atol=1e-30)


def traits(be: Backend) -> Any:
    """The traits l2loss gives ``be``'s arrays."""
    return traits_of(("y",), (be.asarray(np.zeros(1)),))[0]


@contextlib.contextmanager
def small_blocks(be: Backend, inner: str) -> Iterator[None]:
    """Blocks of 4 Ki items and pieces of 1000 for ``be`` (eager libraries, and
    array-api-strict, whose arrays are eager too: the blocks are array API
    code), with the library's own inner products and rows of pieces, or a
    GPU's: vectors in 1-D pieces summed by ``b @ a``, sums of products over
    rows."""
    t = traits(be)
    if t.name in ("jax", "dask"):
        pytest.skip(f"{be.name} compiles or schedules the plain expression itself")
    rows = inner == "native"
    change: dict[str, Any] = {"blocking": Blocking(whole=0, block=1 << 12, piece=1000, rows=rows)}
    if inner == "gpu":
        change |= {
            "dot": functools.partial(_matmul, t.xp),
            "dot_batches": True,
            "sum_products": True,
        }
    with override(t.name, **change):
        yield


def draw(rng: np.random.Generator, dtype: str, *shape: int) -> np.ndarray[Any, Any]:
    a = rng.standard_normal(shape)
    if dtype.startswith("complex"):
        a = a + 1j * rng.standard_normal(shape)
    return a.astype(dtype)


CASES = [
    # shape, axis, weights (None, "full" or "sample")
    ((50_003,), None, None),
    ((50_003,), None, "full"),
    ((3, 9_001), -1, "sample"),
    ((40, 301), -1, None),
    ((40, 301), None, "sample"),
    ((7, 5, 999), (-2, -1), "full"),
    ((6, 3_001), None, None),
]


@pytest.mark.parametrize("inner", ["native", "gpu"])
@pytest.mark.parametrize("dtype", ["float64", "complex128", "float32"])
def test_small_blocks_match_reference(be: Backend, dtype: str, inner: str) -> None:
    """With blocks of 4 Ki items: a full reduction, per-sample rows spanning
    several blocks and blocks of several rows, pieces with and without a tail,
    per-entry and per-sample weights (those of a full reduction folded after
    the rows), a mask and two directions (float32 with float64 directions:
    mixed precision) all equal the reference, with each inner product."""
    rng = np.random.default_rng(5)
    tol = eps(dtype) * 64
    with small_blocks(be, inner):
        for shape, axis, wkind in CASES:
            t_dtype = "float64" if dtype == "float32" else dtype
            y, r = draw(rng, dtype, *shape), draw(rng, dtype, *shape)
            t, u = draw(rng, t_dtype, 2, *shape), draw(rng, dtype, 2, *shape)
            keep = rng.random(shape) > 0.25
            real = "float32" if dtype in ("float32", "complex64") else "float64"
            w = None if wkind is None else rng.random(shape if wkind == "full" else shape[:1])
            w = None if w is None else w.astype(real)
            Y, R, T, U = (be.asarray(a) for a in (y, r, t, u))
            W = None if w is None else be.asarray(w)
            kind = _kind(Y, R, T, U, be.asarray(keep), W, axis, True)
            assert isinstance(kind.evaluate, (Blocks, Pieces)), (shape, axis, wkind)
            L, Ld = be.call(
                l2_loss_jvp, Y, R, T, U, axis=axis, where=be.asarray(keep), weights=W, batched=True
            )
            want_L, want_Ld, sL, sLd = reference(y, r, t, u, axis, keep, w)
            got_L, got_Ld = be.to_numpy(L), be.to_numpy(Ld)
            case = (shape, axis, wkind)
            assert got_L.shape == np.shape(want_L), case
            assert got_Ld.shape == np.shape(want_Ld), case
            assert np.all(np.abs(got_L - want_L) <= tol * sL), case
            assert np.all(np.abs(got_Ld - want_Ld) <= tol * sLd), case


def _subtract_of(t: Any) -> Any:
    """The library's ``subtract`` (``Traits.subtract``), or one for any
    library: ``a - b`` written into ``out`` by indexing."""
    if t.subtract is not None:
        return t.subtract

    def subtract(a: Any, b: Any, out: Any) -> Any:
        out[...] = a - b
        return out

    return subtract


@pytest.mark.parametrize("inner", ["native", "gpu"])
def test_block_buffers_give_the_bits_of_fresh_temporaries(be: Backend, inner: str) -> None:
    """Blocks and pieces that write each residual into a buffer reused from
    block to block (one per thread: NumPy's blocks on two threads) give the
    bits of a fresh temporary per block: full reductions, rows, the tail,
    masks, weights, and mixed dtypes, whose buffer takes the promoted dtype."""
    rng = np.random.default_rng(11)
    t = traits(be)
    for dtype, t_dtype in (("float64", "float64"), ("float32", "float64")):
        for shape, axis, wkind in CASES:
            y, r = draw(rng, dtype, *shape), draw(rng, t_dtype, *shape)
            v = draw(rng, t_dtype, *shape)
            keep = be.asarray(rng.random(shape) > 0.25)
            w = None if wkind is None else rng.random(shape if wkind == "full" else shape[:1])
            args = [be.asarray(a) for a in (y, r, v)]
            kw = {"axis": axis, "weights": None if w is None else be.asarray(w)}
            got = []
            with small_blocks(be, inner):
                threads = dataclasses.replace(
                    traits(be).blocking, workers=2, parallel=0, reuse=True
                )
                for subtract in (_subtract_of(t), None):
                    with override(t.name, blocking=threads, subtract=subtract):
                        for mask in (None, keep):
                            out = l2_loss_jvp(*args, where=mask, **kw)
                            got += [be.to_numpy(x) for x in out]
            half = len(got) // 2
            for a, b in zip(got[:half], got[half:], strict=True):
                np.testing.assert_array_equal(a, b, err_msg=str((dtype, shape, axis, wkind)))


@pytest.mark.parametrize("rows", [3, 12])
def test_rows_longer_than_one_piece(be: Backend, rows: int) -> None:
    """Per-sample sums over rows longer than one piece (each summed in several
    dots), in one block or several, agree with exactly rounded sums row by
    row."""
    cols = 2 * _NUMPY.piece + 7
    rng = np.random.default_rng(rows)
    y, r, t, u = (rng.standard_normal((rows, cols)) for _ in range(4))
    L, Ld = be.call(l2_loss_jvp, *(be.asarray(a) for a in (y, r, t, u)), axis=-1)
    L, Ld = be.to_numpy(L), be.to_numpy(Ld)
    assert L.shape == Ld.shape == (rows,)
    eps64 = np.finfo(np.float64).eps
    d = y - r  # exact: both compute this residual, rounded once
    for i in range(rows):
        want_L = 0.5 * math.fsum(d[i] * d[i])
        want_Ld = math.fsum(d[i] * t[i]) - math.fsum(d[i] * u[i])
        scale = math.fsum(np.abs(d[i] * t[i])) + math.fsum(np.abs(d[i] * u[i]))
        assert abs(L[i] - want_L) <= 8 * eps64 * want_L, i
        assert abs(Ld[i] - want_Ld) <= 8 * eps64 * scale, i


# (14000, 10): over 128 Ki items, where PyTorch's float64 rows are a matrix product per row;
# (1, 2e5) and (2, 6e5): a long row in cache and in blocks, one row a call, where it takes dot.
@pytest.mark.parametrize(
    "shape", [(1000, 10), (14000, 10), (200, 100), (40, 1000), (1, 200_000), (2, 600_000)]
)
@pytest.mark.parametrize("tangent", ["float64", "float32", "complex128", "batched"])
def test_rows_of_any_tangent_match_exact_sums(
    be: Backend, shape: tuple[int, int], tangent: str
) -> None:
    """Rows summed by the library's own row product where it has one
    (``Traits.rows``: NumPy's einsum on many short rows, PyTorch's matrix
    product per row on many and its dot on one long row): tangents of another
    dtype, complex ones and K directions agree with exactly rounded sums row
    by row, and L has the bits ``l2_loss`` gives."""
    rng = np.random.default_rng(len(tangent) + shape[1])
    y, r = (rng.standard_normal(shape) for _ in range(2))
    k = 3 if tangent == "batched" else 1
    t = rng.standard_normal((k, *shape))
    if tangent == "complex128":
        t = t + 1j * rng.standard_normal((k, *shape))
    dtype = "float64" if tangent == "batched" else tangent
    if dtype == "complex128" and not be.has_complex:
        pytest.skip(f"{be.name} has no complex dtypes")
    T = be.asarray(t if k > 1 else t[0], dtype)
    Y, R = be.asarray(y), be.asarray(r)
    L, Ld = be.call(l2_loss_jvp, Y, R, T, axis=-1, batched=k > 1)
    L, Ld = be.to_numpy(L), be.to_numpy(Ld).reshape(k, shape[0])
    np.testing.assert_array_equal(L, be.to_numpy(be.call(l2_loss, Y, R, axis=-1)))
    t_used = np.real(t.astype(dtype)).astype(np.float64)
    d = y - r
    eps64 = np.finfo(np.float64).eps
    for i in range(shape[0]):
        assert abs(L[i] - 0.5 * math.fsum(d[i] * d[i])) <= 8 * eps64 * L[i], i
        for j in range(k):
            scale = math.fsum(np.abs(d[i] * t_used[j, i]))
            assert abs(Ld[j, i] - math.fsum(d[i] * t_used[j, i])) <= 8 * eps64 * scale, (i, j)


@pytest.mark.parametrize("shape", [(1, 1), (3, 4), (2, 1), (1, 5)])
@pytest.mark.parametrize("axis", [(), -1, 1, 0, (0, 1), None])
def test_two_dimensional_reductions_keep_their_shape(
    be: Backend, shape: tuple[int, int], axis: Any
) -> None:
    """Every reduction of small 2-D inputs (rows summed as they are among
    them, and ``axis=()``, which reduces nothing) gives L and L_dot of
    ``sum(axis=...)``'s shape and values."""
    n = math.prod(shape)
    y = np.arange(n, dtype=np.float64).reshape(shape) / 2
    r, t = np.ones(shape), np.arange(n, 0, -1, dtype=np.float64).reshape(shape)
    L, Ld = be.call(l2_loss_jvp, be.asarray(y), be.asarray(r), be.asarray(t), axis=axis)
    want_L, want_Ld = 0.5 * np.sum((y - r) ** 2, axis=axis), np.sum((y - r) * t, axis=axis)
    L, Ld = be.to_numpy(L), be.to_numpy(Ld)
    assert L.shape == Ld.shape == np.shape(want_L)
    np.testing.assert_allclose(L, want_L, rtol=1e-15)
    np.testing.assert_allclose(Ld, want_Ld, rtol=1e-15)


def test_the_plan_chooses() -> None:
    """NumPy: the plain expression while the inputs fit in cache (a vector is
    not even reshaped) and for reductions over leading axes; blocks above;
    lazy libraries always the plain expression."""
    assert _NUMPY.vector is not None
    small, large = np.ones(100), np.ones(_NUMPY.vector + 1)
    k = _kind(small, small, small, None, None, None, None, False)
    assert isinstance(k.evaluate, functools.partial)  # the rule on the vector as it is
    assert k.evaluate.func is sums
    assert isinstance(_kind(large, large, large, None, None, None, None, False).evaluate, Blocks)
    T = np.ones((2, large.shape[0]))  # K directions: blocks too
    assert isinstance(_kind(large, large, T, None, None, None, None, True).evaluate, Blocks)
    cube = np.ones((4, 5, _NUMPY.whole))
    assert isinstance(_kind(cube, cube, None, None, None, None, -1, False).evaluate, Blocks)
    assert isinstance(
        _kind(cube, cube, None, None, None, None, 0, False).evaluate, functools.partial
    )
    grid = np.ones((5, 7))  # a small full reduction: the arrays viewed as one vector
    assert isinstance(_kind(grid, grid, None, None, None, None, None, False).evaluate, Whole)
    # Per-sample weights (coarser than the results: one per sample, results per
    # sample and row; or finer, folded) scale the unweighted sums of each sample.
    w = np.ones(4)
    for axis in (-1, None, (1, 2)):
        kind = _kind(cube, cube, None, None, None, w, axis, False)
        assert isinstance(kind.evaluate, _PerSample), axis
        assert kind.evaluate.fold == (1 if axis is None else 0), axis
    da = pytest.importorskip("dask.array")
    lazy = da.ones(_NUMPY.whole + 1)
    lazy_kind = _kind(lazy, lazy, None, None, None, None, None, False)
    assert isinstance(lazy_kind.evaluate, functools.partial)


@pytest.mark.parametrize("shape", [(4099,), (37, 111)])
@pytest.mark.parametrize("k", [0, 3])
@pytest.mark.parametrize("weights", [False, True])
@pytest.mark.parametrize("tangents", ["y_dot", "y_ref_dot", "both"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_direct_calls_give_the_bits_of_the_evaluation(
    be: Backend, dtype: str, tangents: str, weights: bool, k: int, shape: tuple[int, ...]
) -> None:
    """A call that needs nothing but its evaluation takes the plan's ``loss``,
    ``jvp`` and ``grad`` (on NumPy and PyTorch's CPU, for a full reduction of
    any shape, with K directions or not, the rule's
    :func:`~l2loss._rule.vector` closures); they give the bits of the plan's
    general evaluation, halved, on data with large, tiny and signed zeros."""
    rng = np.random.default_rng(7)
    y, r, w = (rng.standard_normal(shape) for _ in range(3))
    t, u = (rng.standard_normal((k, *shape) if k else shape) for _ in range(2))
    y.flat[:4], r.flat[:4] = [1e18, -0.0, 1e-20, 3.0], [-1e18, 0.0, 0.0, 3.0]
    Y, R, T, U = (be.asarray(a, dtype) for a in (y, r, t, u))
    T = None if tangents == "y_ref_dot" else T
    U = None if tangents == "y_dot" else U
    W = be.asarray(np.abs(w), dtype) if weights else None
    kind = _kind(Y, R, T, U, None, W, None, bool(k))
    if be.name in ("numpy", "torch") and be.device in (None, "cpu"):
        for name in ("jvp", "loss", "grad"):
            assert getattr(getattr(kind, name), "__qualname__", None) == f"vector.<locals>.{name}"
    L, Ld = be.call(l2_loss_jvp, Y, R, T, U, weights=W, batched=bool(k))
    with be.computing():
        sq, ip = kind.evaluate(Y, R, T, U, None, W, None)
        want_L = _rule.halve(kind.xp, kind.primal, sq)
    np.testing.assert_array_equal(be.to_numpy(L), be.to_numpy(want_L))
    np.testing.assert_array_equal(be.to_numpy(Ld), be.to_numpy(ip))
    L_loss = be.call(l2_loss, Y, R, weights=W)
    np.testing.assert_array_equal(be.to_numpy(L_loss), be.to_numpy(L))
    L_grad, g = be.call(l2_loss_grad, Y, R, weights=W)
    np.testing.assert_array_equal(be.to_numpy(L_grad), be.to_numpy(L))
    _, y_bar, _ = be.call(vjp_apply, Y, R, 1.0, weights=W)
    np.testing.assert_array_equal(be.to_numpy(g), be.to_numpy(y_bar))


@pytest.mark.parametrize("dtype", ["complex128", "complex64"])
@pytest.mark.parametrize("shape", [(4099,), (37, 111)])
def test_complex_vectors_take_vdot(be: Backend, dtype: str, shape: tuple[int, ...]) -> None:
    """Complex full reductions in cache run as the rule's vector closures on
    the library's ``vdot`` where it has one (NumPy: one BLAS ``dotc``;
    PyTorch: ``torch.vdot``, and with directions a matrix-vector product of
    the real views): ``Re sum conj(d) t``, with the bits of ``l2_loss`` in
    every function, for tangents of another dtype, real ones and K directions."""
    if not be.has_complex:
        pytest.skip(f"{be.name} has no complex dtypes")
    rng = np.random.default_rng(8)
    y, r, t, u = (
        (rng.standard_normal(shape) + 1j * rng.standard_normal(shape)).astype(dtype)
        for _ in range(4)
    )
    Y, R, T, U = (be.asarray(a, dtype) for a in (y, r, t, u))
    if be.name in ("numpy", "torch"):  # the eager libraries with a vdot
        kind = _kind(Y, R, T, U, None, None, None, False)
        assert kind.jvp.__qualname__ == "vector.<locals>.jvp"
    d = (y - r).astype(np.complex128)  # the residual, as the rule rounds it
    rtol = 8 * eps(dtype) * math.sqrt(d.size)
    L, Ld = (be.to_numpy(a) for a in be.call(l2_loss_jvp, Y, R, T, U))
    np.testing.assert_allclose(L, 0.5 * math.fsum(np.abs(d).ravel() ** 2), rtol=rtol)
    tangents = {
        "full": (t.astype(np.complex128) - u.astype(np.complex128), (T, U), {}),
        "wider": (t.astype(np.complex128), (be.asarray(t, "complex128"),), {}),
        "real": (t.real.astype(np.float64), (be.asarray(t.real, "float64"),), {}),
        "directions": (
            np.stack([t, -2 * t]).astype(np.complex128),
            (be.asarray(np.stack([t, -2 * t]), dtype),),
            {"batched": True},
        ),
    }
    for name, (v, args, options) in tangents.items():
        L_t, Ld = (be.to_numpy(a) for a in be.call(l2_loss_jvp, Y, R, *args, **options))
        assert L_t.tobytes() == L.tobytes(), name
        # L_dot takes the dtype all arguments promote to: float64 beside a float64 tangent.
        want_dtype = np.float64 if name in ("wider", "real") else np.asarray(L_t).dtype
        assert Ld.dtype == want_dtype, name
        vs = v if options else v[None]
        for i, vi in enumerate(vs):
            got = Ld[i] if options else Ld
            scale = math.fsum(np.abs(d * vi).ravel())
            want = math.fsum((np.conj(d) * vi).real.ravel())
            assert abs(got - want) <= rtol * scale, (name, i)
    L_grad, g = (be.to_numpy(a) for a in be.call(l2_loss_grad, Y, R))
    assert L_grad.tobytes() == L.tobytes() == be.to_numpy(be.call(l2_loss, Y, R)).tobytes()
    np.testing.assert_array_equal(g, (y - r))


def test_gradients_beyond_cache_are_written_by_the_blocks(be: Backend) -> None:
    """Beyond cache on an eager library with a ``subtract`` that writes into an
    array, each block or piece writes its residual into the gradient while it
    sums its square (the inputs are read once), or, where the library does not
    fuse them (``Blocking.fuse``: PyTorch), the residual is formed whole and
    summed by blocks; either way the loss has ``l2_loss``'s bits. With a mask
    or weights, or mixed dtypes, the gradient is the residual computed first,
    then summed."""
    traits = traits_of(("y",), (be.asarray(np.zeros(1)),))[0]
    if traits.blocking is None or traits.subtract is None:
        pytest.skip(f"{be.name} evaluates the plain expression at every size")
    n = 8 * traits.blocking.whole + 3
    rng = np.random.default_rng(4)
    y, r = be.asarray(rng.standard_normal(n)), be.asarray(rng.standard_normal(n))
    kind = _kind(y, r, None, None, None, None, None, False)
    way = "_fused" if traits.blocking.fuse else "_whole"
    assert getattr(kind.grad, "__qualname__", None) == f"{way}.<locals>.grad"
    L, g = l2_loss_grad(y, r)
    d = be.to_numpy(y) - be.to_numpy(r)
    np.testing.assert_array_equal(be.to_numpy(g), d)
    np.testing.assert_allclose(float(L), 0.5 * math.fsum(d * d), rtol=1e-13)
    assert be.to_numpy(L).tobytes() == be.to_numpy(l2_loss(y, r)).tobytes()
    weighted = _kind(y, r, None, None, None, y, None, False)
    assert weighted.grad is None


@pytest.mark.parametrize("order", ["C", "F"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
# 53 dimensions: more than einsum has letters for.
@pytest.mark.parametrize(
    ("shape", "axis"),
    [
        ((300, 40), 0),
        ((20, 30, 40), (0, 1)),
        ((3, 2, *[1] * 51), 0),
        ((20, 30, 40), (0, 2)),
        ((20, 30, 40), 1),
        ((300, 40), None),
    ],
)
def test_numpy_sums_over_any_axes_in_one_einsum(
    dtype: str, shape: tuple[int, ...], axis: Any, order: str
) -> None:
    """NumPy sums over axes that are not rows in memory (leading ones, middle
    ones, any of a Fortran-ordered array) in one ``einsum``, which follows the
    layout without a temporary of the products: over leading axes of
    C-ordered arrays with the bits of ``np.sum(d * d, axis)``, and otherwise
    within the error of a sum of as many terms; with directions too."""
    rng = np.random.default_rng(3)
    y, r, t = (np.asarray(rng.standard_normal(shape), dtype, order=order) for _ in range(3))
    L, Ld = l2_loss_jvp(y, r, t, axis=axis)
    d = y - r
    leading = axis in (0, (0, 1)) and order == "C" and len(shape) <= 52
    if leading or len(shape) > 52:
        np.testing.assert_array_equal(L, np.sum(d * d, axis=axis) * np.asarray(0.5, dtype))
        np.testing.assert_array_equal(Ld, np.sum(d * t, axis=axis))
    d64, t64 = d.astype(np.float64), t.astype(np.float64)
    terms = d.size // np.size(L)
    bound = (terms + 3) * eps(dtype)
    np.testing.assert_allclose(L, 0.5 * np.sum(d64 * d64, axis=axis), rtol=bound)
    scale = np.sum(np.abs(d64 * t64), axis=axis)
    assert np.all(np.abs(Ld - np.sum(d64 * t64, axis=axis)) <= bound * scale)
    np.testing.assert_array_equal(L, l2_loss(y, r, axis=axis))
    _, Ldk = l2_loss_jvp(y, r, np.stack([t, -t]), axis=axis, batched=True)
    if axis is None:  # a full reduction in cache: one matrix-vector product for the directions
        np.testing.assert_allclose(Ldk, np.stack([Ld, -Ld]), rtol=bound)
    else:
        np.testing.assert_array_equal(Ldk, np.stack([Ld, -Ld]))


def test_torch_rows_summed_in_one_call_skip_blocks() -> None:
    """Beyond cache, PyTorch's short rows (a matrix product per row, no
    temporary of their size: ``Traits.rows_in_one``) are summed as they are up
    to 16 MiB of ``y``, and in blocks beyond; longer rows and masked ones go
    in blocks. Each agrees with the rows summed one by one in float64."""
    torch = pytest.importorskip("torch")
    from l2loss._traits import _MATMUL_ROWS, _ROWS_IN_ONE, _TORCH_CPU

    rng = np.random.default_rng(5)
    for dtype, cols, mask, plain, nbytes in (
        ("float64", 10, False, True, None),
        ("float64", _MATMUL_ROWS[8], False, True, None),
        ("float64", 10, True, False, None),
        ("float32", 10, False, True, None),
        ("float32", _MATMUL_ROWS[4], False, True, _ROWS_IN_ONE),
        ("float32", _MATMUL_ROWS[4] + 1, False, False, None),
        ("float64", _MATMUL_ROWS[8] + 1, False, False, None),
        ("float64", 10, False, False, _ROWS_IN_ONE + 80),
    ):
        size = np.dtype(dtype).itemsize
        # Past cache (8 * whole bytes, float32 too), or nbytes of y.
        n = 2 * _TORCH_CPU.whole // cols + 1 if nbytes is None else nbytes // size // cols
        y, r, t = (rng.standard_normal((n, cols)) for _ in range(3))
        keep = rng.random((n, cols)) > 0.2 if mask else None
        Y, R, T = (torch.from_numpy(a.astype(dtype)) for a in (y, r, t))
        M = None if keep is None else torch.from_numpy(keep)
        kind = _kind(Y, R, T, None, M, None, -1, False)
        assert isinstance(kind.evaluate, functools.partial) == plain, (dtype, cols, mask)
        assert isinstance(kind.evaluate, Blocks) != plain, (dtype, cols, mask)
        L, Ld = l2_loss_jvp(Y, R, T, axis=-1, where=M)
        d = (Y - R).numpy().astype(np.float64)
        tt = T.numpy().astype(np.float64)
        if keep is not None:
            d, tt = np.where(keep, d, 0.0), np.where(keep, tt, 0.0)
        tol = 8 * eps(dtype) * cols
        np.testing.assert_allclose(L.numpy(), 0.5 * np.sum(d * d, axis=-1), rtol=tol)
        scale = np.sum(np.abs(d * tt), axis=-1)
        assert np.all(np.abs(Ld.numpy() - np.sum(d * tt, axis=-1)) <= tol * scale + 1e-300)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_torch_short_rows_by_bytes_per_call(dtype: str) -> None:
    """PyTorch's short rows in cache are a sum of products while a call holds
    few bytes (a batched matrix product costs more there) and a matrix
    product per row beyond, except float32 under autocast, which keeps the
    products rather than round them to half precision; each has the bits of
    that expression, and both functions take the same one."""
    torch = pytest.importorskip("torch")
    from l2loss._traits import _MATMUL_BYTES

    rng = np.random.default_rng(8)
    cols, size = 10, np.dtype(dtype).itemsize
    for rows, matmul in (
        (32, False),
        (_MATMUL_BYTES // size // cols, False),
        (3 * _MATMUL_BYTES // size // cols, True),
    ):
        Y, R, T = (
            torch.from_numpy((rng.standard_normal((rows, cols)) * 1e3).astype(dtype))
            for _ in range(3)
        )
        d = Y - R
        products = torch.sum(d * d, -1), torch.sum(d * T, -1)
        per_row = (d[:, None, :] @ d[:, :, None])[:, 0, 0], (d[:, None, :] @ T[:, :, None])[:, 0, 0]
        if rows > 32:  # the two expressions differ somewhere, so the check can tell them apart
            assert not torch.equal(products[0], per_row[0])
        sq, ip = per_row if matmul else products
        L, Ld = l2_loss_jvp(Y, R, T, axis=-1)
        assert torch.equal(L, 0.5 * sq), rows
        assert torch.equal(Ld, ip), rows
        assert torch.equal(l2_loss(Y, R, axis=-1), L)
        if dtype == "float32":
            with torch.autocast("cpu", dtype=torch.bfloat16):
                L, Ld = l2_loss_jvp(Y, R, T, axis=-1)
            assert L.dtype == Ld.dtype == torch.float32
            assert torch.equal(L, 0.5 * products[0]), rows
            assert torch.equal(Ld, products[1]), rows


def test_torch_long_rows_are_cut_at_the_block_length() -> None:
    """PyTorch's rows longer than a block (``Blocking.block``, no longer than
    its 1-D pieces) are cut into pieces of at most a block, each summed by a sum
    of products that stays in cache, and agree with exactly rounded sums."""
    torch = pytest.importorskip("torch")
    from l2loss._traits import _TORCH_CPU

    assert _TORCH_CPU.block <= _TORCH_CPU.piece
    cols = 2 * _TORCH_CPU.block + 5
    rng = np.random.default_rng(9)
    y, r, t = (rng.standard_normal((3, cols)) for _ in range(3))
    Y, R, T = (torch.from_numpy(a) for a in (y, r, t))
    evaluation = _kind(Y, R, T, None, None, None, -1, False).evaluate
    assert isinstance(evaluation, Blocks)
    assert evaluation.q >= 2
    assert (cols - evaluation.tail) // evaluation.q <= _TORCH_CPU.block
    L, Ld = l2_loss_jvp(Y, R, T, axis=-1)
    d = y - r
    eps64 = np.finfo(np.float64).eps
    for i in range(3):
        assert abs(float(L[i]) - 0.5 * math.fsum(d[i] * d[i])) <= 8 * eps64 * float(L[i])
        scale = math.fsum(np.abs(d[i] * t[i]))
        assert abs(float(Ld[i]) - math.fsum(d[i] * t[i])) <= 8 * eps64 * scale


def test_torch_arrays_on_a_device_get_the_device_traits() -> None:
    """PyTorch holds arrays on the host and on devices: the traits follow the
    device of ``y`` (``meta`` stands in for a GPU here)."""
    torch = pytest.importorskip("torch")
    cpu, meta = torch.ones(3), torch.ones(3, device="meta")
    traits = traits_of(("y",), (cpu,))[0]
    on_cpu = Kind((cpu, cpu, cpu, None, None, None), traits, (), None, False)
    on_meta = Kind((meta, meta, meta, None, None, None), traits, (), None, False)
    assert on_cpu.traits is traits
    assert on_meta.traits is traits.accelerated
    assert on_cpu.traits.blocking != on_meta.traits.blocking
    # The device is not part of a kind's key: a call on another device than
    # the kind's first remakes it for that device.
    l2_loss_jvp(cpu, cpu, cpu)
    L, Ld = l2_loss_jvp(meta, meta, meta)
    assert L.device == Ld.device == meta.device


def test_torch_float32_is_summed_in_short_pieces() -> None:
    """PyTorch's CPU dot accumulates float32 along a whole vector; beyond cache
    l2loss gives it float32 pieces of at most ``Traits.dot_float32`` items
    (float64 ones are longer), and both reach a few ulps of the exactly
    rounded sum."""
    torch = pytest.importorskip("torch")
    n = 3 * (1 << 20) + 5
    rng = np.random.default_rng(3)
    y, r, t = rng.standard_normal(n), rng.standard_normal(n), rng.standard_normal(n)
    for dtype in ("float64", "float32"):
        Y, R = torch.from_numpy(y.astype(dtype)), torch.from_numpy(r.astype(dtype))
        T = torch.from_numpy(t.astype(dtype))
        kind = _kind(Y, R, T, None, None, None, None, False)
        evaluation = kind.evaluate
        assert isinstance(evaluation, Pieces)
        longest = kind.traits.dot_float32 if dtype == "float32" else kind.traits.blocking.piece
        assert evaluation.piece == longest < n
        d = (Y - R).numpy().astype(np.float64)  # the residual l2loss computes
        want = 0.5 * math.fsum(d * d)
        L = float(l2_loss_jvp(Y, R, T)[0])
        assert abs(L - want) <= 64 * eps(dtype) * want, dtype


@pytest.mark.parametrize("n", [3000, 50_003])
def test_torch_autocast_keeps_float32(be: Backend, n: int) -> None:
    """Under ``torch.autocast`` PyTorch runs ``matmul`` in half precision; the
    dot l2loss takes with ``b @ a`` must not (a loss above 65504 became inf).
    The dot is forced on float32 here, and blocks for the larger size."""
    if be.name != "torch":
        pytest.skip("PyTorch's autocast")
    import torch

    blocking = Blocking(whole=10_000, block=1 << 12, piece=1 << 12)
    y, r, t = (be.asarray(np.full(n, v, dtype=np.float32)) for v in (20.0, 0.0, 1.0))
    half = torch.float16 if be.device.type == "cuda" else torch.bfloat16
    T = be.asarray(np.ones((2, n), dtype=np.float32))
    with (
        override("torch", dot_float32=None, blocking=blocking),
        torch.autocast(be.device.type, dtype=half),
    ):
        L, Ld = l2_loss_jvp(y, r, t)
        _, Ld2 = l2_loss_jvp(y, r, T, batched=True)
    assert L.dtype == Ld.dtype == torch.float32
    assert float(L) == 200.0 * n  # exact in float32; bfloat16 or float16 is not
    assert float(Ld) == 20.0 * n
    assert be.to_numpy(Ld2).tolist() == [20.0 * n] * 2


@pytest.mark.parametrize("dtype", [">f8", ">c16", ">f4"])
def test_byte_swapped_dtypes_keep_their_precision(dtype: str) -> None:
    """NumPy's non-native byte order ('>f8', from FITS, HDF5, frombuffer) is
    as precise as the native dtype and is computed as such."""
    rng = np.random.default_rng(2)
    y = rng.standard_normal(1000) * 1e3
    if "c" in dtype:
        y = y + 1j * rng.standard_normal(1000)
    r = y + 1e-6
    ys, rs = y.astype(dtype), r.astype(dtype)
    native = np.dtype(dtype).newbyteorder("=")
    L, Ld = l2_loss_jvp(ys, rs, ys)
    L_native, Ld_native = l2_loss_jvp(y.astype(native), r.astype(native), y.astype(native))
    assert L_native == L
    assert Ld == Ld_native
    assert np.dtype(L.dtype) == np.dtype(native).type(0).real.dtype


# -- threads --------------------------------------------------------------------


def test_threads_give_the_same_bits() -> None:
    """Blocks spread over threads give the bits of one thread (results are
    combined in block order), for both functions, with a mask and
    directions."""
    n = 8 * _NUMPY.block + 12_345
    rng = np.random.default_rng(5)
    y, r = rng.standard_normal(n), rng.standard_normal(n)
    t = rng.standard_normal((3, n))
    keep = rng.random(n) > 0.3
    results = []
    for workers in (1, 2, 3, 2):
        with override("numpy", blocking=Blocking(0, _NUMPY.block, _NUMPY.piece, workers, 0)):
            L, Ld = l2_loss_jvp(y, r, t, where=keep, batched=True)
            results.append((float(L), tuple(Ld), float(l2_loss(y, r, where=keep))))
    assert len(set(results)) == 1
    assert results[0][0] == results[0][2]
    d = np.where(keep, y - r, 0.0)
    assert abs(results[0][0] - 0.5 * math.fsum(d * d)) <= 8 * eps("float64") * results[0][0]


def test_ordered_map_keeps_order_and_context() -> None:
    """Results come back in item order whichever thread computed them, and
    every thread sees the caller's ``numpy.errstate``."""

    def slow_square(i: int) -> tuple[int, str]:
        time.sleep(0.001 * (i % 3))
        return i * i, np.geterr()["over"]

    with np.errstate(over="raise"):
        out = _parallel.ordered_map(slow_square, list(range(20)), 3)
    assert [v for v, _ in out] == [i * i for i in range(20)]
    assert {mode for _, mode in out} == {"raise"}


@pytest.mark.parametrize("where", ["caller", "pool"])
def test_ordered_map_stops_on_a_failure(where: str) -> None:
    """An error in any item, in the calling thread or a pool thread, reaches
    the caller; no thread takes another item after it, and nothing runs once
    the call has returned."""
    started: list[int] = []
    pool_busy = threading.Event()

    def work(i: int) -> int:
        pool = threading.current_thread().name.startswith("l2loss")
        if pool:
            pool_busy.set()
        elif where == "pool":
            pool_busy.wait(10)  # let the pool thread take an item first
        started.append(i)
        if (where == "pool") == pool:
            raise ArithmeticError("injected")
        time.sleep(0.01)
        return i

    with pytest.raises(ArithmeticError, match="injected"):
        _parallel.ordered_map(work, list(range(50)), 2)
    done = len(started)
    time.sleep(0.1)
    assert len(started) == done < 50
    assert _parallel.ordered_map(lambda i: i, [1, 2, 3], 2) == [1, 2, 3]
