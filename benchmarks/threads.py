"""Threads: NumPy's blocks on one thread per core against the calling thread alone.

Run it as ``python benchmarks/threads.py`` or ``python benchmarks/run.py
--threads`` (``nox -s bench -- --threads``); ``--smoke`` runs small sizes in
seconds (the test suite's check).

Beyond cache, l2loss runs NumPy's blocks on one thread per core
(``Blocking.workers``, from ``Blocking.parallel`` items of ``y``): NumPy
releases the GIL in its kernels. Threads cost a pool, so they are kept only
while they pay. Each case here times the same call with the library's traits
and with ``workers=1`` (set through the seam ``l2loss._traits.override``,
outside the timed loop, and warmed by one call), in interleaved rounds whose
order alternates. ``ratio`` is the median over rounds of ``one-thread time /
pool time`` (> 1: the threads pay), with its min and max; ``pool_ms`` and
``one_ms`` are medians.

``--runs N`` (default 3; smoke 1) runs the cases in ``N`` fresh processes and
keeps per case the median of their ratios (``runs`` lists them), the lowest
``ratio_min``, the highest ``ratio_max`` and the median times.

Writes ``<out>/<name>.json`` (default ``docs/_static/threads-cpu.json``).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import _timing
import numpy as np

import l2loss
from l2loss import _traits

DTYPES = ("float64", "float32")
# (case, shape): the 1-D paths at 1e7 and 3e7 items, and one case of
# each other evaluation that blocks (rows, a mask, the gradient) at 1e7 or more.
CASES = (
    ("1-D fast", (10_000_000,)),
    ("1-D full", (10_000_000,)),
    ("1-D fast", (30_000_000,)),
    ("1-D full", (30_000_000,)),
    ("axis", (16, 1_000_000)),
    ("where", (10_000_000,)),
    ("grad", (10_000_000,)),
)
SMOKE_CASES = tuple(
    (label, (4, 500_000) if label == "axis" else (2_000_000,)) for label, _ in CASES
)
ROUNDS, SMOKE_ROUNDS = 9, 2
BUDGET, SMOKE_BUDGET = 0.3, 0.001
PAUSE = 0.05
# The fields that name a case.
KEY = ("dtype", "case", "shape")

Fn = Callable[[], Any]


def call(case: str, shape: tuple[int, ...], dtype: str) -> Fn:
    """The l2loss call of ``case`` on standard normal inputs (a 90 % mask)."""
    rng = np.random.default_rng(0)
    y, y_ref, y_dot, y_ref_dot = (rng.standard_normal(shape, dtype=dtype) for _ in range(4))
    keep = rng.random(shape) < 0.9
    jvp = l2loss.l2_loss_jvp
    calls: dict[str, Fn] = {
        "1-D fast": lambda: jvp(y, y_ref, y_dot),
        "1-D full": lambda: jvp(y, y_ref, y_dot, y_ref_dot),
        "axis": lambda: jvp(y, y_ref, y_dot, axis=-1),
        "where": lambda: jvp(y, y_ref, y_dot, where=keep),
        "grad": lambda: l2loss.l2_loss_grad(y, y_ref),
    }
    return calls[case]


def numpy_blocking() -> _traits.Blocking:
    blocking = _traits.traits_of(("y",), (np.zeros(1),))[0].blocking
    assert blocking is not None
    return blocking


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    with _traits.override("numpy", blocking=dataclasses.replace(numpy_blocking(), workers=1)):
        yield


def measure(
    case: str, shape: tuple[int, ...], dtype: str, rounds: int, budget: float, pause: float
) -> dict[str, Any]:
    fn = call(case, shape, dtype)
    setting: dict[str, Callable[[], contextlib.AbstractContextManager[None]]] = {
        "pool": contextlib.nullcontext,
        "one": one_thread,
    }
    number = {}
    for name, within in setting.items():
        with within():
            number[name] = _timing.calibrate(fn, budget)
    times: dict[str, list[float]] = {name: [] for name in setting}
    for i in range(rounds):
        if pause and i:
            time.sleep(pause)
        for name in list(setting)[:: 1 if i % 2 == 0 else -1]:
            with setting[name]():
                fn()  # the plan, made anew after the traits changed
                times[name].append(_timing.time_loop(fn, number[name]))
    ratio = _timing.ratios(times["one"], times["pool"])
    return {
        "dtype": dtype,
        "case": case,
        "shape": list(shape),
        "items": int(np.prod(shape)),
        "pool_ms": 1e3 * _timing.median(times["pool"]),
        "one_ms": 1e3 * _timing.median(times["one"]),
        "ratio": ratio["median"],
        "ratio_min": ratio["min"],
        "ratio_max": ratio["max"],
        "runs": [ratio["median"]],
    }


def merge(results: list[dict[str, Any]], command: str) -> dict[str, Any]:
    """One result from several runs: per case the median of the runs' ratios
    and times, and the range over all rounds."""
    out = _timing.merged(results, command)
    out["cases"] = []
    fields = ("ratio", "pool_ms", "one_ms")
    for row, rows in _timing.median_rows([r["cases"] for r in results], KEY, fields):
        row["ratio_min"] = min(r["ratio_min"] for r in rows)
        row["ratio_max"] = max(r["ratio_max"] for r in rows)
        row["runs"] = [r["ratio"] for r in rows]
        out["cases"].append(row)
    return out


def line(row: dict[str, Any]) -> str:
    shape = "x".join(f"{s:.0e}" if s >= 1000 else str(s) for s in row["shape"])
    return (
        f"{row['dtype']:8s} {row['case']:9s} {shape:>10s}  pool {row['pool_ms']:8.2f} ms  "
        f"one thread {row['one_ms']:8.2f} ms  one/pool {row['ratio']:.2f} "
        f"({row['ratio_min']:.2f}-{row['ratio_max']:.2f})"
    )


def summary(result: dict[str, Any]) -> None:
    print("\n".join(line(row) for row in result["cases"]))


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--smoke", action="store_true", help="small sizes, seconds (for the tests)")
    p.add_argument("--dtype", choices=DTYPES, action="append", help="repeatable")
    p.add_argument("--rounds", type=int, help=f"default {ROUNDS}")
    _timing.add_runs(p)
    p.add_argument("--no-plot", action="store_true", help=argparse.SUPPRESS)  # no plot to draw
    p.add_argument("--out", type=Path, default=_timing.ROOT / "docs" / "_static")
    p.add_argument("--name", default="threads-cpu", help="stem of the JSON file")
    args = p.parse_args(argv)
    args.quick = False
    return args


def main(argv: list[str] | None = None, command: str | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    args.runs = _timing.runs_of(args)
    command = command or _timing.command(argv)
    t0 = time.perf_counter()
    if args.runs > 1:
        child = _timing.shared_argv(args)
        for dtype in args.dtype or []:
            child += ["--dtype", dtype]
        merged = merge(_timing.in_processes(__file__, child, args.runs), command)
        return _timing.finish(merged, args, t0, summary=summary)
    rounds = args.rounds or (SMOKE_ROUNDS if args.smoke else ROUNDS)
    budget, pause = (SMOKE_BUDGET, 0.0) if args.smoke else (BUDGET, PAUSE)
    workers = numpy_blocking().workers
    result: dict[str, Any] = {
        "kind": "threads",
        "command": command,
        "date": _timing.today(),
        "commit": _timing.commit(),
        "machine": _timing.machine(),
        "workers": workers,
        "rounds": rounds,
        "runs": 1,
        "conditions": {"start": _timing.conditions()},
        "cases": [],
    }
    if workers == 1:
        print("note: one core here, so the pool is not used and every ratio is about 1")
    for dtype in args.dtype or list(DTYPES):
        for case, shape in SMOKE_CASES if args.smoke else CASES:
            row = measure(case, shape, dtype, rounds, budget, pause)
            result["cases"].append(row)
            print(line(row), flush=True)
            _timing.write(result, args.out, args.name)  # a crash keeps what was measured
    result["conditions"]["end"] = _timing.conditions()
    return _timing.finish(result, args, t0)


if __name__ == "__main__":
    raise SystemExit(main())
