"""Scale-out on Dask distributed: the one implementation on a multi-process cluster.

Every input here is generated lazily, chunk by chunk, on the workers (as data
read from storage would be) and every generation is logged to a file, so the
tests can prove what the issue asks for:

- building the graph computes nothing (a scheduler that refuses to run, and
  the cluster's scheduler has received no new computation);
- each input chunk is read once: one dependent per data chunk in the graph
  the library builds, and one logged generation per chunk at run time;
- the task count grows linearly with the number of chunks;
- results are lazy Dask arrays (0-d or per-sample), cotangents keep the
  input's chunking, and the numbers match NumPy.

Runs in the dask session (``L2LOSS_BACKEND=dask``) and when no backend is
selected; skipped otherwise.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from backends import Backend, EarlyCompute, session_modules

from l2loss import l2_loss, l2_loss_grad, l2_loss_jvp, l2_loss_vjp

dask, da, distributed = session_modules(
    "dask",
    "dask",
    "dask.array",
    "distributed",
    why="the Dask distributed tests run in the dask session",
)

# Only the dask backend: the module's tests are about Dask, whatever else is installed.
pytestmark = pytest.mark.parametrize("be", ["dask"], indirect=True)

Outputs = tuple[Any, ...]


# -- the cluster --------------------------------------------------------------


@pytest.fixture(scope="module")
def client() -> Iterator[Any]:
    """Two single-threaded worker processes on loopback, no dashboard.

    ``set_as_default=False``: only an explicit ``client.compute`` runs on the
    cluster, so anything that computes behind the test's back still meets the
    refusing scheduler of the dask backend (or ``_refuse``).
    """
    with (
        distributed.LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",  # any free port: 8787 may be taken
            memory_limit="1GiB",
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as c,
    ):
        c.wait_for_workers(2)
        yield c


def _computations(client: Any) -> tuple[int, int]:
    """Marks the graphs the cluster's scheduler has been given: a new one changes it
    (its history is bounded, so the last one's identity is part of the mark)."""

    def mark(dask_scheduler: Any) -> tuple[int, int]:
        history = dask_scheduler.computations
        return len(history), id(history[-1]) if history else 0

    return tuple(client.run_on_scheduler(mark))  # type: ignore[return-value]


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise EarlyCompute("l2loss computed a Dask graph while building it")


# -- lazily generated inputs ----------------------------------------------------


MASK_SEED = 7


def _values(seed: int, shape: tuple[int, ...], kind: str) -> np.ndarray[Any, Any]:
    """The whole array an input stands for (small: the tests' reference)."""
    rng = np.random.default_rng(seed)
    if kind == "mask":
        return rng.random(shape) < 0.7
    x = rng.standard_normal(shape)
    if kind == "holes":
        # Missing targets where the mask is False: they must take no part.
        x[~_values(MASK_SEED, shape, "mask")] = np.nan
    return x


def _chunk(
    block_info: dict[Any, Any] | None = None,
    *,
    seed: int,
    shape: tuple[int, ...],
    kind: str,
    log: str,
    label: str,
) -> np.ndarray[Any, Any]:
    """One chunk of an input, made on a worker; each call appends one line to ``log``.

    The line (input label and chunk index) is one small O_APPEND write, atomic
    across the worker processes, so the log counts every read of every chunk.
    """
    assert block_info is not None
    info = block_info[None]
    part = _values(seed, shape, kind)[tuple(slice(a, b) for a, b in info["array-location"])]
    with open(log, "a") as f:
        f.write(f"{label} {tuple(info['chunk-location'])}\n")
    return part


class Inputs:
    """Lazily generated Dask inputs, their NumPy values, and a log of chunk reads."""

    def __init__(self, log: Path) -> None:
        self.log = log
        self.arrays: dict[str, Any] = {}
        self.values: dict[str, np.ndarray[Any, Any]] = {}

    def make(
        self, label: str, shape: tuple[int, ...], chunks: tuple[int, ...], kind: str = "normal"
    ) -> Any:
        seed = MASK_SEED if kind == "mask" else 1000 + len(self.arrays)
        dtype = bool if kind == "mask" else np.float64
        x = da.map_blocks(
            _chunk,
            chunks=da.core.normalize_chunks(chunks, shape),
            dtype=dtype,
            meta=np.empty((0,) * len(shape), dtype=dtype),
            seed=seed,
            shape=shape,
            kind=kind,
            log=str(self.log),
            label=label,
        )
        self.arrays[label] = x
        self.values[label] = _values(seed, shape, kind)
        return x

    def reads(self) -> Counter[str]:
        return Counter(self.log.read_text().splitlines()) if self.log.exists() else Counter()

    def expected_reads(self) -> Counter[str]:
        """Every chunk of every input, once."""
        return Counter(
            f"{label} {idx}" for label, x in self.arrays.items() for idx in np.ndindex(*x.numblocks)
        )


@pytest.fixture
def inputs(tmp_path: Path) -> Inputs:
    return Inputs(tmp_path / "reads.log")


# -- graphs -----------------------------------------------------------------------


class _Captured(Exception):
    pass


def graph_of(*outs: Any, optimize: bool = True) -> dict[Any, Any]:
    """The graph Dask would run for ``outs`` computed together: the optimized one,
    or, with ``optimize=False``, the one the library built.

    Taken from a scheduler that records what it is given and runs nothing.
    """
    seen: dict[str, Any] = {}

    def capture(dsk: Any, keys: Any, **kwargs: Any) -> Any:
        graph = dsk.__dask_graph__() if hasattr(dsk, "__dask_graph__") else dsk
        seen["graph"] = dict(graph)
        raise _Captured

    with pytest.raises(_Captured):
        dask.compute(*outs, scheduler=capture, optimize_graph=optimize)
    return seen["graph"]


def dependents(graph: dict[Any, Any]) -> dict[Any, set[Any]]:
    _, deps = dask.core.get_deps(graph)
    return deps


# -- the cases --------------------------------------------------------------------

S, N = 6, 240  # per-sample problems: S samples of N items
SCH, NCH = 2, 60  # chunk sizes: 3 x 4 chunks


def _residual(v: dict[str, np.ndarray[Any, Any]], masked: bool) -> np.ndarray[Any, Any]:
    d = v["y"] - v["y_ref"]
    return np.where(v["where"], d, 0.0) if masked else d


def _tangent(v: dict[str, np.ndarray[Any, Any]], masked: bool, full: bool) -> Any:
    t = v["y_dot"] - v["y_ref_dot"] if full else v["y_dot"]
    return np.where(v["where"], t, 0.0) if masked else t


def _build(case: str, inp: Inputs) -> tuple[Outputs, Outputs, Callable[[], Outputs]]:
    """``(outputs, the primals they are cotangents of or None, NumPy reference)``."""
    per_sample = "axis" in case
    masked = "where" in case
    batched = "batched" in case
    full = "full" in case
    shape = (S, N) if per_sample else (S * N,)
    chunks = (SCH, NCH) if per_sample else (NCH,)
    axis = -1 if per_sample else None
    y = inp.make("y", shape, chunks)
    y_ref = inp.make("y_ref", shape, chunks, "holes" if masked else "normal")
    where = inp.make("where", shape, chunks, "mask") if masked else None
    kw: dict[str, Any] = {"axis": axis, "where": where}
    v = inp.values
    if masked:
        # _values(seed + 1) of y_ref is the mask: the holes sit exactly where it is False.
        assert np.array_equal(np.isnan(v["y_ref"]), ~v["where"])

    def sq() -> Any:
        d = _residual(v, masked)
        return 0.5 * np.sum(d * d, axis=axis)

    if case.startswith("loss"):
        return (l2_loss(y, y_ref, **kw),), (None,), lambda: (sq(),)

    if case.startswith("jvp"):
        tshape, tchunks = ((3, *shape), (2, *chunks)) if batched else (shape, chunks)
        y_dot = inp.make("y_dot", tshape, tchunks)
        y_ref_dot = inp.make("y_ref_dot", tshape, tchunks) if full else None
        outs = l2_loss_jvp(y, y_ref, y_dot, y_ref_dot, **kw, batched=batched)

        def ref() -> Outputs:
            d = _residual(v, masked)
            t = _tangent(v, masked, full)
            # Over y's axes only: a batch of tangents keeps its leading axis.
            return sq(), np.sum(d * t, axis=tuple(range(-len(shape), 0)) if axis is None else -1)

        return outs, (None, None), ref

    if case.startswith("grad"):
        L, y_bar = l2_loss_grad(y, y_ref, **kw)
        return (L, y_bar), (None, y), lambda: (sq(), _residual(v, masked))

    assert case.startswith("vjp")
    L, pullback = l2_loss_vjp(y, y_ref, **kw)
    # A lazy cotangent computed from L itself, as a chained reverse pass gives it.
    L_bar = 3.0 - L if per_sample else 2.5
    y_bar, y_ref_bar = pullback(L_bar)

    def ref_vjp() -> Outputs:
        L_np = sq()
        lb = (3.0 - L_np)[:, None] if per_sample else 2.5
        g = lb * _residual(v, masked)
        return L_np, g, -g

    return (L, y_bar, y_ref_bar), (None, y, y_ref), ref_vjp


CASES = [
    "loss",
    "loss-axis",
    "loss-where",
    "jvp-fast",
    "jvp-full",
    "jvp-fast-axis",
    "jvp-full-where",
    "jvp-full-axis-where",
    "jvp-fast-batched",
    "jvp-full-batched-axis-where",
    "grad-where",
    "vjp",
    "vjp-axis",
    "vjp-axis-where",
]


@pytest.mark.parametrize("case", CASES)
def test_matches_numpy_lazily_reading_each_chunk_once(
    be: Backend, client: Any, inputs: Inputs, case: str
) -> None:
    before = _computations(client)
    # Build everything with any local compute refused (``_refuse``) and the
    # cluster not asked either (its computation count must not move).
    with dask.config.set(scheduler=_refuse):
        outs, primals, reference = _build(case, inputs)
        graph = graph_of(*outs, optimize=False)
    assert _computations(client) == before, "building the graph ran a computation"
    assert inputs.reads() == Counter(), "an input chunk was read while building the graph"

    expected = reference()
    for out, primal, want in zip(outs, primals, expected, strict=True):
        assert isinstance(out, da.Array), f"{type(out)} is not a lazy Dask array"
        assert out.shape == np.shape(want)
        if primal is None:
            continue
        # A cotangent keeps its primal's chunking: no rechunk for the next step.
        assert out.chunks == primal.chunks
        assert out.dtype == primal.dtype

    # Each data chunk feeds exactly one task of the graph the library built
    # (the optimizer may then fuse it into that task, never copy it). The mask
    # is applied to the residual and to each tangent, so it fans out by design.
    deps = dependents(graph)
    for label, x in inputs.arrays.items():
        if label == "where":
            continue
        for key in dask.core.flatten(x.__dask_keys__()):
            n = len(deps.get(key, ()))
            assert n == 1, f"chunk {key} of {label} feeds {n} tasks, not 1"

    got = client.compute(list(outs), sync=True)
    # At run time, on two worker processes, each chunk of each input is read once.
    assert inputs.reads() == inputs.expected_reads()
    for g, want in zip(got, expected, strict=True):
        np.testing.assert_allclose(np.asarray(g), want, rtol=1e-12, atol=1e-12)


def _task_count(case: str, chunks: int, tmp_path: Path) -> int:
    inp = Inputs(tmp_path / f"{case}-{chunks}.log")
    per_sample = "axis" in case
    # Keep the chunk size fixed: more chunks is more data, as when N grows.
    if per_sample:
        shape, chunk = (4 * chunks, 64), (4, 64)
    else:
        shape, chunk = (64 * chunks,), (64,)
    y = inp.make("y", shape, chunk)
    y_ref = inp.make("y_ref", shape, chunk)
    where = inp.make("where", shape, chunk, "mask")
    axis = -1 if per_sample else None
    if case.startswith("jvp"):
        y_dot = inp.make("y_dot", shape, chunk)
        y_ref_dot = inp.make("y_ref_dot", shape, chunk)
        outs: Outputs = l2_loss_jvp(y, y_ref, y_dot, y_ref_dot, axis=axis, where=where)
    else:
        L, pullback = l2_loss_vjp(y, y_ref, axis=axis, where=where)
        outs = (L, *pullback(2.0 - L))
    return len(graph_of(*outs))


@pytest.mark.parametrize("case", ["jvp", "jvp-axis", "vjp", "vjp-axis"])
def test_task_count_grows_linearly_with_chunks(be: Backend, case: str, tmp_path: Path) -> None:
    with dask.config.set(scheduler=_refuse):
        counts = {c: _task_count(case, c, tmp_path) for c in (16, 32, 64, 128)}
    cs = sorted(counts)
    for small, large in itertools.pairwise(cs):
        ratio = counts[large] / counts[small]
        # Linear: doubling the chunks doubles the tasks (a tree reduction adds
        # a vanishing share); anything quadratic would give about 4.
        assert 1.9 <= ratio <= 2.1, f"{case}: {counts}"
    assert counts[cs[-1]] / cs[-1] < 20, f"{case}: too many tasks per chunk: {counts}"


def test_pullback_keeps_chunking_for_any_cotangent_chunking(be: Backend) -> None:
    with dask.config.set(scheduler=_refuse):
        y = da.ones((60, 40), chunks=(20, 10))
        y_ref = da.zeros((60, 40), chunks=(20, 10))
        _, pullback = l2_loss_vjp(y, y_ref, axis=1)
        y_bar, y_ref_bar = pullback(da.ones(60, chunks=30))
    assert y_bar.chunks == y.chunks
    assert y_ref_bar.chunks == y_ref.chunks
