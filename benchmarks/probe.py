"""Probe the facts about NumPy and OpenBLAS that shaped l2loss's NumPy path.

Run it as ``python benchmarks/probe.py`` (a few seconds). It measures,
on this machine:

1. OpenBLAS's threading threshold: a dot right after a NumPy subtraction, at
   10 000 items (computed on the calling thread) and at 10 001 (handed to
   OpenBLAS's threads), and a subtraction and two whole 70 000-item dots
   against the same sums taken over rows of 10 000. ``Backend.dot`` keeps every NumPy dot of l2loss
   at or below the threshold.
2. How long OpenBLAS's threads stay busy after a two-thread dot returns: the
   process's CPU time per second of wall time while the calling thread
   sleeps, in slices of 20 ms. A spinning thread holds a core that l2loss's
   worker threads (and every other thread) would need; the benchmark pauses
   ``GAP`` seconds between cases for that reason.
3. Which kernels two Python threads run at once: each thread runs the same
   kernel on its own arrays; "speedup" is the throughput of two threads over
   one, and "cpu/wall" the process's CPU time over wall time (2 where both
   run, 1 where one waits for the other, e.g. for the GIL). NumPy releases
   the GIL in ``vecdot`` only for calls over more than 500 rows: l2loss's
   threads cut their tiles into ``Backend.release_rows`` (512) rows.
4. The cost of short rows on one thread: a tile's subtraction and two dots
   as 13 rows of 10 000 items and as 512 rows of 256, per item, in cache
   (why one thread keeps rows of ``_ROW``).
5. l2loss's NumPy path with one worker thread and with one per core, calls
   back to back (no pause, unlike ``run.py --threads``).
6. Memory read rates at N = 1e7 float64 (arrays far larger than the caches):
   the ceiling's two-thread dot, the same sums as single-threaded dots over
   rows of 10 000 (one core), a subtraction tile by tile into a buffer
   that stays in cache (one core, the first kernel of l2loss's tile pass),
   and l2loss's fast path with its default threads.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from run import numpy_variants

import l2loss

Fn = Callable[[], Any]


def _best(fn: Fn, number: int, repeat: int = 7) -> float:
    """Best seconds per call over ``repeat`` runs of ``number`` calls."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter() - t) / number)
    return best


def threshold(rng: np.random.Generator) -> None:
    print("1. a dot after a subtraction (best of 7 x 300 calls)")
    for n in (10_000, 10_001):
        y, r = rng.standard_normal(n), rng.standard_normal(n)

        def sub_dot(y: Any = y, r: Any = r) -> Any:
            d = y - r
            return np.vecdot(d, d)

        print(f"   N = {n}: {_best(sub_dot, 300) * 1e6:6.1f} us")
    n, row = 70_000, 10_000
    y, r, t = (rng.standard_normal(n) for _ in range(3))

    def whole() -> Any:
        d = y - r
        return np.vecdot(d, d), np.vecdot(d, t)

    def rows() -> Any:
        d = (y - r).reshape(-1, row)
        return np.vecdot(d, d).sum(), np.vecdot(d, t.reshape(-1, row)).sum()

    print(
        f"   N = {n}, subtraction and two dots: whole {_best(whole, 300) * 1e6:.1f} us, "
        f"rows of {row} {_best(rows, 300) * 1e6:.1f} us"
    )


def spinning(rng: np.random.Generator) -> None:
    a, b = rng.standard_normal(10**7), rng.standard_normal(10**7)
    np.dot(a, b)
    busy = []
    for _ in range(10):
        c, w = time.process_time(), time.perf_counter()
        time.sleep(0.02)
        busy.append((time.process_time() - c) / (time.perf_counter() - w))
    print("2. cores busy while the caller sleeps, after a two-thread np.dot (20 ms slices):")
    print("   " + " ".join(f"{x:.2f}" for x in busy))


def threads(rng: np.random.Generator) -> None:
    # name: (kernel, shape of its operands). A tile of l2loss's NumPy path is
    # 13 rows of 10 000 items on one thread, 512 rows of 256 on several; NumPy
    # releases the GIL in a gufunc only when its outer loop (the rows) is
    # longer than 500, hence the pair of 500 and 501 rows.
    kernels: dict[str, tuple[Callable[[list[Any]], Any], tuple[int, int]]] = {
        "np.vecdot (13 rows)": (lambda v: np.vecdot(v[0], v[1]), (13, 10_000)),
        "np.vecdot (500 rows)": (lambda v: np.vecdot(v[0], v[1]), (500, 260)),
        "np.vecdot (501 rows)": (lambda v: np.vecdot(v[0], v[1]), (501, 260)),
        "np.vecdot (512 rows)": (lambda v: np.vecdot(v[0], v[1]), (512, 256)),
        "np.subtract(out=)": (lambda v: np.subtract(v[0], v[1], out=v[2]), (13, 10_000)),
        "np.dot (one row)": (lambda v: np.dot(v[0][0], v[1][0]), (13, 10_000)),
        "np.einsum('ij,ij->i')": (lambda v: np.einsum("ij,ij->i", v[0], v[1]), (13, 10_000)),
    }
    print("3. two Python threads, each on its own arrays (speedup over one / cpu per wall):")
    for name, (kernel, shape) in kernels.items():
        arrays = [[rng.standard_normal(shape) for _ in range(3)] for _ in range(2)]
        calls = 2000 if "one row" not in name else 20_000

        def work(
            i: int,
            kernel: Callable[[list[Any]], Any] = kernel,
            calls: int = calls,
            arrays: list[list[Any]] = arrays,
        ) -> None:
            for _ in range(calls):
                kernel(arrays[i])

        work(0)
        runs = []
        for _ in range(3):
            t = time.perf_counter()
            work(0)
            one = time.perf_counter() - t
            other = threading.Thread(target=work, args=(1,))
            t, c = time.perf_counter(), time.process_time()
            other.start()
            work(0)
            other.join()
            two, cpu = time.perf_counter() - t, time.process_time() - c
            runs.append(f"{2 * one / two:.2f}/{cpu / two:.2f}")
        print(f"   {name:24s} " + "  ".join(runs))


def row_length(rng: np.random.Generator) -> None:
    print("4. one thread, one tile in cache: ns per item of a subtraction and two vecdots")
    for rows, row in ((13, 10_000), (512, 256)):
        y, r, t = (rng.standard_normal((rows, row)) for _ in range(3))

        def tile(y: Any = y, r: Any = r, t: Any = t) -> Any:
            d = y - r
            return np.vecdot(d, d), np.vecdot(d, t)

        print(f"   rows of {row:6d}: {_best(tile, 300) / (rows * row) * 1e9:.3f}")


def workers(rng: np.random.Generator) -> None:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"5. l2loss, one worker and {cores} (ms per call / cpu per wall, calls back to back):")
    for n in (3 * 10**6, 10**7, 3 * 10**7):  # from _PARALLEL_MIN (1 Mi)
        y, y_ref, y_dot = (rng.standard_normal(n) for _ in range(3))
        use = numpy_variants(y, y_ref, y_dot, "threads", [1, cores or 1])
        line = []
        for count in (1, cores or 1):
            use[count]()
            calls = max(3, int(2e8 // n))
            l2loss.l2_loss_jvp(y, y_ref, y_dot)
            t, c = time.perf_counter(), time.process_time()
            for _ in range(calls):
                l2loss.l2_loss_jvp(y, y_ref, y_dot)
            wall, cpu = time.perf_counter() - t, time.process_time() - c
            line.append(f"{count}: {wall / calls * 1e3:.2f} / {cpu / wall:.2f}")
        use[-1]()
        print(f"   N = {n:.0e}  " + "   ".join(line))


def bandwidth(rng: np.random.Generator) -> None:
    n, row, tile = 10**7, 10_000, 1 << 17
    a, b, c = rng.standard_normal(n), rng.standard_normal(n), rng.standard_normal(n)
    rows_a, rows_b = a.reshape(-1, row), b.reshape(-1, row)
    buf = np.empty(tile)

    def tiles() -> None:
        for i in range(0, n, tile):
            j = min(i + tile, n)
            np.subtract(a[i:j], b[i:j], out=buf[: j - i])

    # name: (kernel, arrays it reads)
    kernels: dict[str, tuple[Fn, int]] = {
        "np.dot(a, b), two threads": (lambda: np.dot(a, b), 2),
        "np.vecdot over rows, one thread": (lambda: np.vecdot(rows_a, rows_b), 2),
        "subtraction by tiles, one thread": (tiles, 2),
        "l2loss fast path (3 arrays)": (lambda: l2loss.l2_loss_jvp(a, b, c), 3),
    }
    print("6. GB/s read from arrays of 1e7 float64 (best of 7 x 5 calls):")
    for name, (fn, arrays) in kernels.items():
        print(f"   {name:34s} {8 * arrays * n / _best(fn, 5) / 1e9:5.1f}")


def main() -> int:
    rng = np.random.default_rng(0)
    threshold(rng)
    spinning(rng)
    threads(rng)
    row_length(rng)
    workers(rng)
    bandwidth(rng)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
