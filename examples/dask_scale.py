"""The loss and its pushforward on Dask arrays larger than one process's memory.

    python examples/dask_scale.py                 # 3e8 float64 per input, 2 workers
    python examples/dask_scale.py --quick         # a few seconds: a smoke test
    nox -s scale -- --n 1e9 --workers 4           # the nox session passes arguments on

Three inputs ``y``, ``y_ref`` and ``y_dot`` of ``--n`` float64 each (2.4 GB
each at the default 3e8) are generated lazily, chunk by chunk, on the workers
of a ``LocalCluster``: no process ever holds a whole input. The unchanged
``l2_loss_jvp`` builds a Dask graph (with computing forbidden while it does),
and the cluster computes ``L`` and ``L_dot`` with a text progress bar.

What is timed, each as the median of ``--repeat`` runs:

- ``rule``: generating the inputs and computing ``(L, L_dot)`` on the cluster;
- ``inputs only``: generating the same inputs and reducing each with a plain
  sum, the floor set by making the data on these workers;
- ``numpy``: ``l2_loss_jvp`` on NumPy arrays of ``--numpy-n`` items held in
  this process (the part that fits in memory comfortably), on the very same
  data as the cluster's run of that size, whose results must agree.

Throughput counts the bytes the rule reads: 3 inputs x 8 bytes x N.
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import dask
import dask.array as da
import numpy as np
from distributed import Client, LocalCluster, progress

from l2loss import l2_loss_jvp

SEED = 20240806


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise RuntimeError("the graph was computed while it was being built")


def inputs(n: int, chunk: int) -> tuple[Any, Any, Any]:
    """``y``, ``y_ref``, ``y_dot``: lazy standard normal float64 vectors, one task per chunk."""
    rng = da.random.default_rng(SEED)
    return tuple(rng.standard_normal(n, chunks=chunk) for _ in range(3))  # type: ignore[return-value]


def build(n: int, chunk: int) -> tuple[Any, Any]:
    """``(L, L_dot)`` as lazy 0-d Dask arrays; any compute while building raises."""
    with dask.config.set(scheduler=_refuse):
        y, y_ref, y_dot = inputs(n, chunk)
        return l2_loss_jvp(y, y_ref, y_dot)


def run(client: Client, outs: tuple[Any, ...], show: bool) -> tuple[float, list[Any]]:
    """Compute ``outs`` on the cluster; return (wall seconds, results)."""
    t0 = time.perf_counter()
    futures = client.compute(list(outs))
    if show:
        progress(futures, notebook=False)
        print(file=sys.stdout, flush=True)
    results = client.gather(futures)
    return time.perf_counter() - t0, results


def median_time(f: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    times, out = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = f()
        times.append(time.perf_counter() - t0)
    return statistics.median(times), out


def gbps(n: int, seconds: float) -> float:
    return 3 * 8 * n / seconds / 1e9


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=float, default=3e8, help="float64 items per input (3e8)")
    p.add_argument("--chunk", type=float, default=2**23, help="items per chunk (2**23)")
    p.add_argument("--workers", type=int, default=2, help="worker processes (2)")
    p.add_argument("--threads", type=int, default=1, help="threads per worker (1)")
    p.add_argument("--numpy-n", type=float, default=3e7, help="size of the NumPy comparison")
    p.add_argument("--repeat", type=int, default=3, help="timed runs per figure (median)")
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke test")
    a = p.parse_args(argv)
    if a.quick:
        a.n, a.chunk, a.numpy_n, a.repeat = 4e6, 5e5, 2e6, 1
    n, chunk = int(a.n), int(a.chunk)
    small = int(min(a.numpy_n, n))

    print(
        f"l2_loss_jvp on Dask: N = {n:.3g} float64 per input ({8 * n / 1e9:.2f} GB each), "
        f"chunks of {chunk:.3g}, {a.workers} workers x {a.threads} thread(s); "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"dask {dask.__version__}, numpy {np.__version__}"
    )
    with (
        LocalCluster(
            n_workers=a.workers,
            threads_per_worker=a.threads,
            processes=True,
            host="127.0.0.1",
            dashboard_address=":0",
        ) as cluster,
        Client(cluster) as client,
    ):
        # -- the part that fits in memory: the same data on the cluster and in NumPy
        y, y_ref, y_dot = inputs(small, chunk)
        host = client.compute([y, y_ref, y_dot], sync=True)
        t_np, (L_np, Ld_np) = median_time(functools.partial(l2_loss_jvp, *host), a.repeat)
        del host
        L_s, Ld_s = build(small, chunk)
        t_small = statistics.median(run(client, (L_s, Ld_s), False)[0] for _ in range(a.repeat))
        _, (L_d, Ld_d) = run(client, (L_s, Ld_s), False)
        err = max(abs(L_d - L_np) / abs(L_np), abs(Ld_d - Ld_np) / (abs(L_np) + abs(Ld_np)))
        assert err < 1e-10, f"the cluster and NumPy disagree: relative error {err:.2e}"
        floor_small = statistics.median(
            run(client, tuple(x.sum() for x in inputs(small, chunk)), False)[0]
            for _ in range(a.repeat)
        )

        # -- the large run: never materialised in one process
        L, L_dot = build(n, chunk)
        tasks = len({**L.__dask_graph__(), **L_dot.__dask_graph__()})
        print(f"graph of (L, L_dot): {tasks} tasks for {-(-n // chunk)} chunks per input")
        print("computing (L, L_dot):")
        t_big, (L_v, Ld_v) = run(client, (L, L_dot), True)
        times = [t_big] + [run(client, (L, L_dot), False)[0] for _ in range(a.repeat - 1)]
        t_big = statistics.median(times)
        floor_big = statistics.median(
            run(client, tuple(x.sum() for x in inputs(n, chunk)), False)[0] for _ in range(a.repeat)
        )

    # For standard normal inputs, E[L] = N and L_dot / sqrt(2N) is about N(0, 1).
    print(f"L / N = {L_v / n:.6f} (expected 1), L_dot / sqrt(2N) = {Ld_v / np.sqrt(2 * n):+.3f}")
    print(f"cluster and NumPy agree at N = {small:.3g}: relative difference {err:.1e}")
    rows = [
        ("numpy, in memory", small, t_np),
        ("dask cluster: rule", small, t_small),
        ("dask cluster: inputs only", small, floor_small),
        ("dask cluster: rule", n, t_big),
        ("dask cluster: inputs only", n, floor_big),
    ]
    print(f"\n{'':28s} {'N':>8s} {'wall s':>9s} {'GB/s':>7s}")
    for name, size, t in rows:
        print(f"{name:28s} {size:8.3g} {t:9.3f} {gbps(size, t):7.2f}")
    print(
        "\n(median of "
        f"{a.repeat}; the cluster figures include generating the inputs on the workers, "
        "'inputs only' is that generation alone with a plain sum of each input)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
