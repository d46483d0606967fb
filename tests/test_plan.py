"""Inputs larger than a tile: complex and half precision, transposed and strided
layouts, per-sample and full reductions, masks and batched tangents, all equal
to the reference on every backend (on NumPy and PyTorch this exercises the
tiled evaluation: rows, worker threads, partial sums)."""

from __future__ import annotations

import dataclasses
import functools
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pytest
import reference as ref
from backends import Backend
from strategies import eps
from test_values import vjp_apply

from l2loss import _api, _evaluate, _namespace, l2_loss, l2_loss_jvp
from l2loss._evaluate import _PARALLEL_MIN, _ROW

ROWS, COLS = 3, 150_001  # 450 003 items: several tiles, rows and a ragged tail


def layout(a: np.ndarray[Any, Any], kind: str) -> np.ndarray[Any, Any]:
    """``a`` (shape (..., ROWS, COLS)) as a contiguous, transposed-view or strided array
    with the same values (the strided one is every other column of a wider array)."""
    if kind == "transposed":
        return np.swapaxes(np.ascontiguousarray(np.swapaxes(a, -1, -2)), -1, -2)
    if kind == "strided":
        wide = np.zeros((*a.shape[:-1], 2 * a.shape[-1]), dtype=a.dtype)
        wide[..., ::2] = a
        return wide[..., ::2]
    return a


@pytest.mark.parametrize("kind", ["contiguous", "transposed", "strided"])
@pytest.mark.parametrize("dtype", ["complex64", "complex128", "float16"])
def test_large_inputs_match_reference(be: Backend, dtype: str, kind: str) -> None:
    if dtype == "float16" and "float16" not in be.low_precision:
        pytest.skip(f"{be.name} has no float16")
    rng = np.random.default_rng(1)

    # float16 sums must stay below its largest value, 65504
    bound = 0.1 if dtype == "float16" else 1.0

    def draw(*shape: int) -> np.ndarray[Any, Any]:
        a = rng.uniform(-bound, bound, shape)
        if dtype.startswith("complex"):
            a = a + 1j * rng.uniform(-1, 1, shape)
        return a.astype(dtype)

    y, r, t = draw(ROWS, COLS), draw(ROWS, COLS), draw(2, ROWS, COLS)
    keep = rng.random((ROWS, COLS)) > 0.25
    Y, R, T, W = (be.asarray(layout(a, kind)) for a in (y, r, t, keep))
    if dtype == "float16":
        Y, R, T = (be.xp.astype(a, be.dtype("float16")) for a in (Y, R, T))
    tol = eps("float32" if dtype == "float16" else dtype) * 64
    for axis in (None, -1, (-2, -1)):
        L, Ld = be.call(l2_loss_jvp, Y, R, T, None, axis=axis, where=W, batched=True)
        want_L = ref.loss(y, r, axis, keep)
        want_Ld = ref.loss_dot(y, r, t, None, axis, keep)
        scale = ref.magnitude(y, r, None, axis, keep)
        got_L = be.to_numpy(L).astype(np.float64)
        # half precision: float32 accumulation, then one rounding to float16
        out_tol = 2.0**-11 * np.abs(want_L) if dtype == "float16" else 0
        assert np.all(np.abs(got_L - want_L) <= tol * scale + out_tol), axis
        sc = ref.magnitude(y, r, t, axis, keep)
        out_tol = 2.0**-11 * np.abs(want_Ld) if dtype == "float16" else 0
        assert np.all(np.abs(be.to_numpy(Ld).astype(np.float64) - want_Ld) <= tol * sc + out_tol)
    _, yb, _ = be.call(vjp_apply, Y, R, be.asarray(np.full(ROWS, 2.0)), axis=-1, where=W)
    want = 2.0 * (ref.kept(ref.wide(y), keep) - ref.kept(ref.wide(r), keep))
    got = be.to_numpy(yb)
    assert got.shape == (ROWS, COLS)
    # one rounding of 2 (y - y_ref) in the output dtype (float16: float32 inside)
    rtol = {"complex64": 1e-6, "complex128": 1e-15, "float16": 2.0**-10}[dtype]
    np.testing.assert_allclose(got, want, rtol=rtol, atol=1e-30)


@pytest.mark.parametrize("rows", [3, 12])
def test_rows_longer_than_one_dot(be: Backend, rows: int) -> None:
    """Per-sample sums over rows longer than one BLAS dot (on NumPy each row is
    summed in several calls, see ``Backend.dot``), in one tile (3 rows) or
    several (12), agree with exactly rounded sums row by row."""
    cols = 2 * _ROW + 7
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
        assert abs(L[i] - want_L) <= 6 * eps64 * want_L, i
        assert abs(Ld[i] - want_Ld) <= 6 * eps64 * scale, i


def use_traits(
    monkeypatch: pytest.MonkeyPatch, change: Callable[[Any, _namespace.Backend], _namespace.Backend]
) -> None:
    """Backends made for the rest of the test are ``change(xp, traits)``
    (the caches of backends made before are set aside)."""
    classify = _namespace._classify
    monkeypatch.setattr(_namespace, "_classify", lambda xp, s: change(xp, classify(xp, s)))
    monkeypatch.setattr(_namespace, "_CACHE", {})
    monkeypatch.setattr(_api, "_RESOLVED", {})


@pytest.mark.parametrize("layout", ["native", "pieces"])
@pytest.mark.parametrize("dtype", ["float64", "complex128", "float32"])
def test_small_tiles_match_reference(
    be: Backend, dtype: str, layout: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The tiled path of every eager backend, whatever its tile (CuPy's and
    PyTorch-on-GPU tiles are larger than any input here): with tiles of 4 Ki
    items, a full reduction, per-sample rows spanning several tiles and tiles
    of several rows, with a mask and two directions, equal the reference;
    also with the GPUs' layout (1-D pieces, ``b @ a``, rows summed as
    ``sum(a * b)``) on every backend."""
    tile = 1 << 12

    def small(xp: Any, b: _namespace.Backend) -> _namespace.Backend:
        gpu_layout: dict[str, Any] = {}
        if layout == "pieces":
            gpu_layout = {
                "rows": False,
                "dot": 0,
                "matvec": functools.partial(_namespace._matvec, xp),
            }
        return b.with_traits(tile=tile, short=tile, **gpu_layout)

    use_traits(monkeypatch, small)
    rng = np.random.default_rng(5)
    tol = eps(dtype) * 64
    for shape, axis in (((50_003,), None), ((3, 9_001), -1), ((40, 301), -1), ((40, 301), None)):

        def draw(*shape: int, dtype: str = dtype) -> np.ndarray[Any, Any]:
            a = rng.standard_normal(shape)
            if dtype.startswith("complex"):
                a = a + 1j * rng.standard_normal(shape)
            return a.astype(dtype)

        # float32 with a float64 direction: mixed precision, promoted
        t = draw(2, *shape, dtype="float64" if dtype == "float32" else dtype)
        y, r, u = draw(*shape), draw(*shape), draw(2, *shape)
        keep = rng.random(shape) > 0.25
        Y, R, T, U = (be.asarray(a) for a in (y, r, t, u))
        L, Ld = be.call(l2_loss_jvp, Y, R, T, U, axis=axis, where=be.asarray(keep), batched=True)
        want_L, want_Ld = ref.loss(y, r, axis, keep), ref.loss_dot(y, r, t, u, axis, keep)
        got_L, got_Ld = be.to_numpy(L), be.to_numpy(Ld)
        assert got_L.shape == np.shape(want_L), shape
        assert got_Ld.shape == np.shape(want_Ld), shape
        assert np.all(np.abs(got_L - want_L) <= tol * ref.magnitude(y, r, None, axis, keep))
        scale = ref.magnitude(y, r, t, axis, keep) + ref.magnitude(y, r, u, axis, keep)
        assert np.all(np.abs(got_Ld - want_Ld) <= tol * scale), shape


def test_torch_arrays_on_a_device_get_the_device_traits() -> None:
    """PyTorch holds arrays on the host and on devices: the traits (tile)
    follow the device of ``y``, per call (``meta`` stands in for a GPU here)."""
    torch = pytest.importorskip("torch")
    cpu, meta = torch.ones(3), torch.ones(3, device="meta")
    on_cpu = _api._Call(cpu, cpu, cpu, None, None, None, False).backend
    on_meta = _api._Call(meta, meta, meta, None, None, None, False).backend
    assert on_cpu.tile == 1 << 20
    assert on_meta.tile == on_meta.short == _namespace._GPU_TILE
    L, Ld = l2_loss_jvp(meta, meta, meta)
    assert L.device == Ld.device == meta.device


def test_torch_float64_on_the_host_gets_its_traits() -> None:
    """PyTorch on the CPU sums a float64 residual with its BLAS dot over 1-D
    pieces and keeps rows and ``sum`` for a float32 one, whose dot would
    accumulate in float32 (``Backend.float64``): the traits follow the dtype
    ``y`` and ``y_ref`` promote to, whatever the tangent's, and each gives L
    to a few ulps of the exactly rounded sum, over several tiles."""
    torch = pytest.importorskip("torch")
    n = 3 * (1 << 20) + 5
    rng = np.random.default_rng(3)
    y, r, t = rng.standard_normal(n), rng.standard_normal(n), rng.standard_normal(n)
    for dtype, promoted, tangent, rows in (
        ("float64", "float64", "float64", False),
        ("float32", "float32", "float32", True),
        ("float32", "float64", "float32", False),  # y_ref float64: so is the residual
        ("float32", "float32", "float64", True),  # the tangent promotes L_dot alone
    ):
        case = (dtype, promoted, tangent)
        Y, R = torch.from_numpy(y.astype(dtype)), torch.from_numpy(r.astype(promoted))
        T = torch.from_numpy(t.astype(tangent))
        backend = _api._Call(Y, R, T, None, None, None, False).backend
        assert backend.rows is rows, case
        assert (backend.matvec is None) is rows, case
        d = (Y - R).numpy().astype(np.float64)  # the residual l2loss computes
        want = 0.5 * math.fsum(d * d)
        L = float(l2_loss_jvp(Y, R, T)[0])
        assert abs(L - want) <= 64 * eps(promoted) * want, case


@pytest.mark.parametrize("n", [3000, 50_003])
def test_torch_autocast_keeps_float32(be: Backend, n: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under ``torch.autocast`` PyTorch runs ``matmul`` in half precision; the
    GPU traits' ``b @ a`` must not (a loss above 65504 became inf). The GPU
    traits are forced on the backend's device (tiles of 4 Ki items for the
    larger size, so it takes the 1-D pieces)."""
    if be.name != "torch":
        pytest.skip("PyTorch's autocast")
    import torch

    def gpu_traits(xp: Any, b: _namespace.Backend) -> _namespace.Backend:
        gpu = b.accelerated
        assert gpu is not None
        tile = 1 << 12 if n > 10_000 else gpu.tile
        return dataclasses.replace(gpu, tile=tile, short=tile, accelerated=None)

    use_traits(monkeypatch, gpu_traits)
    y, r, t = (be.asarray(np.full(n, v, dtype=np.float32)) for v in (20.0, 0.0, 1.0))
    half = torch.float16 if be.device.type == "cuda" else torch.bfloat16
    with torch.autocast(be.device.type, dtype=half):
        L, Ld = l2_loss_jvp(y, r, t)
        T = be.asarray(np.ones((2, n), dtype=np.float32))
        _, Ld2 = l2_loss_jvp(y, r, T, batched=True)
    assert L.dtype == Ld.dtype == torch.float32
    assert float(L) == 200.0 * n  # exact in float32; bfloat16 or float16 is not
    assert float(Ld) == 20.0 * n
    assert be.to_numpy(Ld2).tolist() == [20.0 * n] * 2


def test_worker_pool_grows_and_keeps_the_old_one_working() -> None:
    """A backend asking for more workers than the pool has gets a larger pool
    (the benchmark sweeps Backend.threads); a call still holding the old pool
    can go on submitting to it."""
    old = _evaluate._pool(1)
    size = _evaluate._POOL_SIZE
    new = _evaluate._pool(size + 2)
    assert new is not old
    assert size + 2 == _evaluate._POOL_SIZE
    assert _evaluate._pool(1) is new  # never shrinks
    assert old.submit(sum, [1, 2]).result() == 3
    assert new.submit(sum, [3, 4]).result() == 7


@contextmanager
def numpy_threads(count: int) -> Iterator[None]:
    """l2loss's NumPy path uses ``count`` threads inside the block."""

    def forget() -> None:  # backends are made once per argument types, then cached
        _namespace._CACHE.clear()
        _api._RESOLVED.clear()

    saved = _namespace._NUMPY_THREADS
    forget()
    _namespace._NUMPY_THREADS = count
    try:
        l2_loss_jvp(np.ones(1), np.ones(1), np.ones(1))
        assert _api._resolve(np.ones(1), np.ones(1), np.ones(1), None, None)[0].threads == count
        yield
    finally:
        _namespace._NUMPY_THREADS = saved
        forget()


def test_threads_sum_exactly_and_reproducibly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inputs worth several threads (rows cut for NumPy to release the GIL,
    spans taken by whichever thread is free) agree with exactly rounded sums
    and give the same bits whatever the number of threads and their timing;
    ``l2_loss`` and ``l2_loss_jvp`` give the same L."""
    pools = []
    real_pool = _evaluate._pool
    monkeypatch.setattr(_evaluate, "_pool", lambda k: pools.append(k) or real_pool(k))
    n = _PARALLEL_MIN + 12_345  # just worth threads; a ragged tail
    rng = np.random.default_rng(5)
    y, r, t = (rng.standard_normal(n) for _ in range(3))
    d = y - r  # exact: the residual is what both compute, rounded once
    want_L, want_Ld = 0.5 * math.fsum(d * d), math.fsum(d * t)
    eps64 = np.finfo(np.float64).eps
    results = set()
    for count in (1, 2, 3, 2):
        with numpy_threads(count):
            L, Ld = l2_loss_jvp(y, r, t)
            results.add((float(L), float(Ld)))
            results.add((float(l2_loss(y, r)), float(Ld)))
        assert abs(float(L) - want_L) <= 4 * eps64 * want_L
        assert abs(float(Ld) - want_Ld) <= 4 * eps64 * math.fsum(np.abs(d * t))
    assert len(results) == 1
    # Threads were asked for, by both functions...
    assert pools.count(2) == 4
    assert pools.count(3) == 2
    pools.clear()
    with numpy_threads(2):
        l2_loss_jvp(y[: _PARALLEL_MIN - 1], r[: _PARALLEL_MIN - 1], t[: _PARALLEL_MIN - 1])
    assert pools == []  # ... and only from _PARALLEL_MIN items


def test_threads_batched_and_masked() -> None:
    """Batched tangents and a mask on the threaded path: per-direction sums
    equal the reference."""
    n, k = _PARALLEL_MIN + 777, 3
    rng = np.random.default_rng(6)
    y, r = rng.standard_normal(n), rng.standard_normal(n)
    t = rng.standard_normal((k, n))
    keep = rng.random(n) > 0.3
    with numpy_threads(2):
        L, Ld = l2_loss_jvp(y, r, t, where=keep, batched=True)
    tol = 8 * np.finfo(np.float64).eps
    assert abs(float(L) - ref.loss(y, r, None, keep)) <= tol * ref.magnitude(y, r, None, None, keep)
    want = ref.loss_dot(y, r, t, None, None, keep)
    assert np.all(np.abs(Ld - want) <= tol * ref.magnitude(y, r, t, None, keep))


@pytest.mark.parametrize("where", ["first", "middle", "last"])
def test_threads_see_the_callers_errstate(where: str) -> None:
    """An overflow raises under ``numpy.errstate(over="raise")`` whichever
    thread computes its tile (NumPy keeps errstate per context)."""
    n = _PARALLEL_MIN + 3
    y, r = np.zeros(n), np.zeros(n)
    y[{"first": 0, "middle": n // 2, "last": n - 1}[where]] = 1e200
    with numpy_threads(2):
        for _ in range(5):
            with np.errstate(over="raise"), pytest.raises(FloatingPointError):
                l2_loss(y, r)
            with np.errstate(over="ignore"):
                assert l2_loss(y, r) == np.inf


def test_a_failing_tile_fails_the_call_and_stops_the_threads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An error in any tile, in the calling thread or a pool thread, reaches
    the caller; no thread takes another tile of the failed call, nothing runs
    after it returns, and the next call works."""
    n = 8 * _PARALLEL_MIN
    rng = np.random.default_rng(7)
    y, r = rng.standard_normal(n), rng.standard_normal(n)
    real_sums = _evaluate._sums
    calls = []

    def failing_in(thread: str) -> Any:
        pool_started = threading.Event()

        def sums(backend: Any, dt: Any, o: Any, zero: Any, tangent: bool) -> Any:
            name = threading.current_thread().name
            if name.startswith("l2loss"):
                pool_started.set()
            elif thread == "l2loss":
                # Or the caller could take every tile before the pool thread
                # starts, and nothing would fail.
                pool_started.wait(10)
            if name.startswith(thread):
                calls.append("failed")
                raise ArithmeticError("injected")
            calls.append("started")
            return real_sums(backend, dt, o, zero, tangent)

        return sums

    with numpy_threads(2):
        want = l2_loss(y, r)
        for thread in ("MainThread", "l2loss"):
            calls.clear()
            monkeypatch.setattr(_evaluate, "_sums", failing_in(thread))
            with pytest.raises(ArithmeticError, match="injected"):
                l2_loss(y, r)
            done = len(calls)
            time.sleep(0.1)
            assert len(calls) == done  # nothing left running in the background
            # After the failure, only a tile the other thread had already
            # taken may start; the rest are abandoned.
            after = calls[calls.index("failed") + 1 :]
            assert after.count("started") <= 1, (thread, calls)
        monkeypatch.setattr(_evaluate, "_sums", real_sums)
        assert l2_loss(y, r) == want


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
