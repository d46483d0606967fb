"""Timing and bookkeeping shared by the benchmark scripts.

Methodology (every script):

* a callable is *calibrated* once: one untimed warm-up call, then loops of
  growing length until one lasts long enough to time, from which follows the
  number of calls that lasts about ``budget`` seconds;
* a *timing* runs the callable that many times back to back under
  ``time.perf_counter`` with the garbage collector disabled, and reports
  seconds per call;
* *interleaved rounds*: in each round every callable of a case is timed once,
  back to back, and the order rotates from round to round (for two callables:
  alternates which goes first), so a drift of the machine's load hits them
  alike; ratios are taken pair by pair within a round and summarised by their
  median, min and max over rounds.

It also finds the facts every JSON records: the command line, the date, the
git commit of the l2loss being measured and the machine.
"""

from __future__ import annotations

import datetime
import gc
import json
import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
Fn = Callable[[], Any]

# A calibration loop this long is timed well above perf_counter's resolution
# and the jitter of one call.
_CALIBRATE_MIN = 0.005


def time_loop(fn: Fn, number: int) -> float:
    """Seconds per call of ``fn`` over ``number`` back-to-back calls, with the
    garbage collector off (a collection inside the loop would be charged to
    whichever callable happened to trigger it)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        return (time.perf_counter() - t0) / number
    finally:
        if enabled:
            gc.enable()


def calibrate(fn: Fn, budget: float) -> int:
    """The number of calls of ``fn`` that lasts about ``budget`` seconds
    (at least one), after one untimed warm-up call."""
    fn()
    number = 1
    while True:
        elapsed = time_loop(fn, number) * number
        if elapsed >= min(_CALIBRATE_MIN, budget):
            break
        number *= 10
    return max(1, round(budget * number / max(elapsed, 1e-9)))


def interleaved(
    fns: Mapping[str, Fn], rounds: int, budget: float, pause: float
) -> dict[str, list[float]]:
    """Seconds per call of every callable of ``fns``, ``rounds`` times.

    Each callable is calibrated once to last about ``budget`` seconds per
    timing. In round ``r`` the callables are timed back to back starting from
    the ``r``-th (mod their count), and ``pause`` seconds separate rounds (the
    thread pools of BLAS and PyTorch spin for a while after their last call;
    the pause lets the next round start from a quiet machine).
    """
    names = list(fns)
    numbers = {k: calibrate(fns[k], budget) for k in names}
    out: dict[str, list[float]] = {k: [] for k in names}
    for r in range(rounds):
        if pause and r:
            time.sleep(pause)
        start = r % len(names)
        for k in names[start:] + names[:start]:
            out[k].append(time_loop(fns[k], numbers[k]))
    return out


def fastest(
    candidates: Mapping[str, Fn], rounds: int, budget: float, pause: float
) -> tuple[str, Fn]:
    """The candidate with the lowest median time over a few interleaved rounds
    (the only one, untimed, where there is one): the baseline a user who
    tried them all would keep."""
    if len(candidates) == 1:
        return next(iter(candidates.items()))
    times = interleaved(candidates, rounds, budget, pause)
    best = min(times, key=lambda k: median(times[k]))
    return best, candidates[best]


def ratios(num: list[float], den: list[float]) -> dict[str, float]:
    """Median, min and max over rounds of ``num[i] / den[i]`` (one round's pair)."""
    r = [a / b for a, b in zip(num, den, strict=True)]
    return {"median": statistics.median(r), "min": min(r), "max": max(r)}


def median(xs: list[float]) -> float:
    return float(statistics.median(xs))


# Fresh processes a script's measurements run in: a process's memory
# allocator moves a case by more than its rounds do.
RUNS = 3


def add_runs(parser: Any) -> None:
    """The ``--runs`` option of a script that :func:`in_processes` runs."""
    parser.add_argument(
        "--runs",
        type=int,
        help=f"fresh processes it runs in, merged per case (default {RUNS}; quick and smoke 1)",
    )


def runs_of(args: Any) -> int:
    """``--runs``, or its default: one process for ``--quick`` and ``--smoke``."""
    runs: int = args.runs or (1 if args.quick or args.smoke else RUNS)
    if runs < 1:
        raise SystemExit("--runs must be at least 1")
    return runs


def shared_argv(args: Any) -> list[str]:
    """The options every script's runs share: mode, threads and rounds."""
    argv = ["--quick"] if args.quick else ["--smoke"] if args.smoke else []
    for flag in ("torch_threads", "rounds"):
        if getattr(args, flag, None) is not None:
            argv += [f"--{flag.replace('_', '-')}", str(getattr(args, flag))]
    return argv


def in_processes(script: str, argv: list[str], runs: int) -> list[dict[str, Any]]:
    """The JSON of ``runs`` runs of ``script`` with ``argv``, each in a fresh
    process, one after another."""
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(runs):
            print(f"run {i + 1} of {runs}", flush=True)
            name = f"run{i}"
            extra = ["--runs", "1", "--out", tmp, "--name", name, "--no-plot"]
            subprocess.run([sys.executable, script, *argv, *extra], check=True)
            results.append(json.loads((Path(tmp) / f"{name}.json").read_text()))
    return results


def merged(results: list[dict[str, Any]], command: str) -> dict[str, Any]:
    """The header of several runs' results as one: the first run's, with the
    conditions at the start of the first and the end of the last."""
    first = results[0]
    out = {**first, "command": command, "runs": len(results)}
    out["conditions"] = {
        "start": first["conditions"]["start"],
        "end": results[-1]["conditions"]["end"],
    }
    return out


def median_rows(
    runs: list[list[dict[str, Any]]], key: tuple[str, ...], medians: tuple[str, ...]
) -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Each case of several runs (the rows of each, in the same order) as
    ``(row, its rows in every run)``: the first run's row with the median over
    runs of each field of ``medians``."""
    out = []
    for rows in zip(*runs, strict=True):
        names = {tuple(str(row[k]) for k in key) for row in rows}
        assert len(names) == 1, f"the runs measured different cases: {names}"
        row = {**rows[0], **{f: statistics.median(r[f] for r in rows) for f in medians}}
        out.append((row, list(rows)))
    return out


def write(result: dict[str, Any], out: Path, name: str) -> Path:
    """``result`` as ``<out>/<name>.json``; its path."""
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{name}.json"
    path.write_text(json.dumps(result, indent=1) + "\n")
    return path


def finish(
    result: dict[str, Any],
    args: Any,
    t0: float,
    plot: Callable[[dict[str, Any], Path], None] | None = None,
    summary: Callable[[dict[str, Any]], None] | None = None,
) -> int:
    """The end of a script's run, started at ``t0``: its JSON (and its plot,
    unless ``--no-plot``) in ``--out`` as ``--name``, its summary, and where
    they went; the exit status."""
    path = write(result, args.out, args.name)
    drawn = plot is not None and not args.no_plot
    if drawn:
        assert plot is not None
        plot(result, args.out / f"{args.name}.png")
    if summary is not None:
        summary(result)
    print(f"wrote {path}{' and its plot' if drawn else ''} in {time.perf_counter() - t0:.0f} s")
    return 0


def command(argv: list[str]) -> str:
    """The command line that ran this script, as a user would type it, less
    ``--out``: where the files went says nothing of how they were measured."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = script.relative_to(Path.cwd()).as_posix()
    except ValueError:
        shown = script.as_posix()
    kept: list[str] = []
    args = iter(argv)
    for arg in args:
        if arg == "--out":
            next(args, None)  # its value
        elif not arg.startswith("--out="):
            kept.append(arg)
    return shlex.join(["python", shown, *kept])


def today() -> str:
    return datetime.date.today().isoformat()


def _git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()


def commit() -> str:
    """Short sha of the git checkout that holds the l2loss being measured
    (``+dirty`` when it has uncommitted changes, untracked files included), or
    of this script's checkout when l2loss lives outside git; ``unknown``
    without git."""
    import l2loss

    for where in (Path(l2loss.__file__).resolve().parent, ROOT):
        try:
            sha = _git(where, "rev-parse", "--short", "HEAD")
        except (OSError, subprocess.SubprocessError):
            continue
        # No optional locks: status must not write the index of a checkout
        # that someone else may be committing in.
        dirty = _git(where, "--no-optional-locks", "status", "--porcelain")
        return sha + ("+dirty" if dirty else "")
    return "unknown"


def cpu_name() -> str:
    """The CPU's model name, with its family and model numbers (a virtual
    machine may name only the vendor's line)."""
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if not key.strip():
                    break  # the first processor is enough
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = fields.get("model name") or platform.processor() or platform.machine()
    if "cpu family" in fields and "model" in fields:
        name += f" (family {fields['cpu family']}, model {fields['model']})"
    return name


def cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def optional_torch() -> Any:
    """The torch module, or None where it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def machine() -> dict[str, Any]:
    """The ``machine`` record of every JSON: cpu, cores, python, numpy, torch."""
    import numpy as np

    torch = optional_torch()
    return {
        "cpu": cpu_name(),
        "cores": cores(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "torch": torch.__version__ if torch is not None else None,
    }


def set_torch_threads(n: int | None) -> None:
    """``torch.set_num_threads(n)`` where asked (default: leave PyTorch's
    own choice, what a user gets)."""
    torch = optional_torch()
    if n is not None and torch is not None:
        torch.set_num_threads(n)


# Variables that set the thread pools of BLAS, OpenMP and PyTorch.
THREAD_ENV = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_WAIT_POLICY")


def conditions() -> dict[str, Any]:
    """What the run ran under, beyond ``machine``: PyTorch's intra-op threads,
    the 1-minute load average (others' work on a shared machine; a load near
    the core count means the timings shared the cores) and the thread
    variables that are set."""
    torch = optional_torch()
    return {
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "loadavg_1min": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "thread_env": {k: os.environ[k] for k in THREAD_ENV if k in os.environ},
    }


_RATIO_TICKS = (0.001, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 50, 100, 1000)


def ratio_axis(ax: Any, which: str, values: list[float]) -> None:
    """A log axis (``which``: ``"x"`` or ``"y"``) for ratios: its limits take
    in ``values`` and 1.0, labelled at round ratios (0.2, 0.5, 1, 2, ...)."""
    from matplotlib.ticker import NullFormatter

    lo, hi = min(1.0, *values) / 1.25, max(1.0, *values) * 1.25
    ticks = [t for t in _RATIO_TICKS if lo <= t <= hi]
    if len(ticks) > 7:  # a wide range: label the decades only, or the labels collide
        ticks = [t for t in ticks if math.log10(t).is_integer()]
    axis = ax.xaxis if which == "x" else ax.yaxis
    getattr(ax, f"set_{which}scale")("log")
    getattr(ax, f"set_{which}lim")(lo, hi)
    getattr(ax, f"set_{which}ticks")(ticks, [f"{t:g}" for t in ticks])
    axis.set_minor_formatter(NullFormatter())
