"""Training step benchmark: forward + backward of the loss in PyTorch (CPU).

Run it as ``python benchmarks/training.py`` or ``python benchmarks/run.py
--training`` (``nox -s bench -- --training``); ``--quick`` keeps N <= 1e6
and fewer rounds, ``--smoke`` runs tiny sizes in seconds (the tests' check).

What a training loop does with a regression loss, timed per step with
``pred`` a leaf tensor that requires grad and its gradient reset the way a
loop resets it (``pred.grad = None``):

* l2loss: ``l2_loss(pred, target).backward()``;
* mse_loss: ``(0.5 * torch.nn.functional.mse_loss(pred, target,
  reduction="sum")).backward()``;
* plain: ``d = pred - target; (0.5 * (d * d).sum()).backward()`` or
  ``(0.5 * (d @ d)).backward()``, whichever is faster at that size (timed
  for a few rounds first; the JSON names it).

The same three losses under ``torch.func.grad`` (no autograd graph on
tensors; a functional transform) are the ``func_grad`` cases.

Timing (``_timing``): each callable is calibrated once to last about 50 ms per
timing; in each round the three are timed back to back, the order rotating
from round to round. ``ratio_mse`` is the median over rounds of ``mse_loss
time / l2loss time`` and ``ratio_plain`` that of ``plain time / l2loss time``
(> 1: l2loss is faster); times are medians. ``linearity`` is l2loss's time at
N = 3e7 over its time at N = 1e7 (3.0 for a cost proportional to N), for the
runs that measure both, and ``linearity_mse`` that of ``mse_loss``: each a
ratio of two times of one process, as the speed ratios are.

As ``parity.py``, it runs in three fresh processes by default (``--runs``)
and keeps per case the median of their ratios and times (``runs_mse`` and
``runs_plain`` list each process's ratios), and the median of the processes'
linearities (``runs_linearity`` lists them).

Writes ``<out>/<name>.json`` and ``<out>/<name>.png`` (default
``docs/_static/training-cpu``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import _timing

import l2loss

DTYPES = ("float32", "float64")
SIZES = [100, 10_000, 1_000_000, 10_000_000, 30_000_000]
QUICK_MAX = 1_000_000
SMOKE_SIZES = [100]
BUDGET, SMOKE_BUDGET = 0.05, 0.001
ROUNDS, QUICK_ROUNDS, SMOKE_ROUNDS = 11, 5, 2
PAUSE = 0.05
CHOOSE_ROUNDS = 3
LINEARITY = (10_000_000, 30_000_000)

Fn = Callable[[], Any]


def losses(torch: Any, target: Any) -> dict[str, dict[str, Callable[[Any], Any]]]:
    """The losses of ``pred``, by role; ``plain`` has two candidates."""
    F = torch.nn.functional

    def squares(p: Any) -> Any:
        d = p - target
        return 0.5 * (d * d).sum()

    def dot(p: Any) -> Any:
        d = p - target
        return 0.5 * (d @ d)

    return {
        "l2loss": {"l2_loss(pred, target)": lambda p: l2loss.l2_loss(p, target)},
        "mse_loss": {
            "0.5 * F.mse_loss(pred, target, reduction='sum')": lambda p: (
                0.5 * F.mse_loss(p, target, reduction="sum")
            )
        },
        "plain": {
            "d = pred - target; 0.5 * (d * d).sum()": squares,
            "d = pred - target; 0.5 * (d @ d)": dot,
        },
    }


def backward_step(pred: Any, loss: Callable[[Any], Any]) -> Fn:
    """One training step's loss work: reset the gradient, forward, backward."""

    def step() -> Any:
        pred.grad = None
        loss(pred).backward()
        return pred.grad

    return step


def func_grad_step(torch: Any, x: Any, loss: Callable[[Any], Any]) -> Fn:
    """``torch.func.grad`` of the loss at ``x`` (the transform is built once)."""
    grad = torch.func.grad(loss)
    return lambda: grad(x)


def check(torch: Any, name: str, step: Fn, want: Any, dtype: str) -> None:
    """Raise unless ``step`` returns the gradient ``pred - target``."""
    got = step()
    tol = 1e-5 if dtype == "float32" else 1e-12
    if not torch.allclose(got, want, rtol=tol, atol=tol):
        raise AssertionError(f"{name}: wrong gradient")


def measure(
    torch: Any,
    n: int,
    dtype: str,
    functional: bool,
    rounds: int,
    budget: float,
    pause: float,
) -> dict[str, Any]:
    """One case: l2loss, mse_loss and the plain expression at ``n`` items."""
    gen = torch.Generator().manual_seed(0)
    dt = getattr(torch, dtype)
    pred = torch.randn(n, dtype=dt, generator=gen)
    target = torch.randn(n, dtype=dt, generator=gen)
    want = pred - target
    if not functional:
        pred.requires_grad_(True)
    steps: dict[str, dict[str, Fn]] = {}
    for role, cands in losses(torch, target).items():
        steps[role] = {
            text: func_grad_step(torch, pred, f) if functional else backward_step(pred, f)
            for text, f in cands.items()
        }
        for text, step in steps[role].items():
            check(torch, text, step, want, dtype)
    chosen = {role: _timing.fastest(c, CHOOSE_ROUNDS, budget, pause) for role, c in steps.items()}
    times = _timing.interleaved({r: fn for r, (_, fn) in chosen.items()}, rounds, budget, pause)
    return {
        "dtype": dtype,
        "n": n,
        "plain": chosen["plain"][0],
        "mse_loss_us": 1e6 * _timing.median(times["mse_loss"]),
        "plain_us": 1e6 * _timing.median(times["plain"]),
        "l2loss_us": 1e6 * _timing.median(times["l2loss"]),
        "ratio_mse": _timing.ratios(times["mse_loss"], times["l2loss"])["median"],
        "ratio_plain": _timing.ratios(times["plain"], times["l2loss"])["median"],
    }


# The fields that name a case, and those whose median over runs is kept.
KEY = ("dtype", "n")
MEDIANS = ("mse_loss_us", "plain_us", "l2loss_us", "ratio_mse", "ratio_plain")


def merge(results: list[dict[str, Any]], command: str) -> dict[str, Any]:
    """One result from several runs: per case the median over runs of its
    times and ratios, with each run's ratios."""
    out = _timing.merged(results, command)
    for key in ("cases", "func_grad"):
        if key not in out:
            continue
        out[key] = []
        for row, rows in _timing.median_rows([r[key] for r in results], KEY, MEDIANS):
            row["runs_mse"] = [r["ratio_mse"] for r in rows]
            row["runs_plain"] = [r["ratio_plain"] for r in rows]
            out[key].append(row)
    for key in LINEARITIES:
        by_dtype = [r[key] for r in results]
        out[key] = {
            dt: statistics.median(run[dt] for run in by_dtype if dt in run)
            for dt in dict.fromkeys(dt for run in by_dtype for dt in run)
        }
    out["runs_linearity"] = [r["linearity"] for r in results]
    return out


def child_argv(args: argparse.Namespace) -> list[str]:
    """The arguments of one run that ``args`` asks for."""
    argv = _timing.shared_argv(args)
    for value in args.dtype or []:
        argv += ["--dtype", value]
    return argv + (["--no-func-grad"] if args.no_func_grad else [])


# The linearity of each loss's step: the key in the result, the time's field.
LINEARITIES = {"linearity": "l2loss_us", "linearity_mse": "mse_loss_us"}


def linearity(cases: list[dict[str, Any]], field: str = "l2loss_us") -> dict[str, float]:
    """A loss's time (``field``) at 3e7 over that at 1e7, per dtype measured at both."""
    us = {(c["dtype"], c["n"]): c[field] for c in cases}
    small, large = LINEARITY
    return {
        dt: us[dt, large] / us[dt, small]
        for dt in dict.fromkeys(c["dtype"] for c in cases)
        if (dt, small) in us and (dt, large) in us
    }


HEADER = (
    f"{'kind':<9} {'dtype':<7} {'N':>9} {'l2loss us':>11} {'mse us':>11} {'plain us':>11} "
    f"{'mse/l2':>7} {'plain/l2':>8}"
)


def line(kind: str, row: dict[str, Any]) -> str:
    flag = "  slower" if min(row["ratio_mse"], row["ratio_plain"]) < 1.0 else ""
    return (
        f"{kind:<9} {row['dtype']:<7} {row['n']:>9.0e} {row['l2loss_us']:>11.1f} "
        f"{row['mse_loss_us']:>11.1f} {row['plain_us']:>11.1f} {row['ratio_mse']:>7.2f} "
        f"{row['ratio_plain']:>8.2f}{flag}"
    )


def plot(result: dict[str, Any], path: Path) -> None:
    """Ratios against N: one panel per dtype, lines for mse_loss and plain,
    backward and func.grad, and a line at 1.0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dtypes = list(dict.fromkeys(c["dtype"] for c in result["cases"]))
    if not dtypes:
        return
    fig, axes = plt.subplots(1, len(dtypes), figsize=(4.5 * len(dtypes), 3.6), squeeze=False)
    rows = [c for key in ("cases", "func_grad") for c in result.get(key, [])]
    ratios = [c[k] for c in rows for k in ("ratio_mse", "ratio_plain")]
    for ax, dt in zip(axes[0], dtypes, strict=True):
        for key, style in (("cases", "-"), ("func_grad", ":")):
            rows = [c for c in result.get(key, []) if c["dtype"] == dt]
            ns = [c["n"] for c in rows]
            kind = "backward" if key == "cases" else "func.grad"
            for peer, marker, color in (("mse", "o", "C0"), ("plain", "s", "C1")):
                ratio = [c[f"ratio_{peer}"] for c in rows]
                ax.plot(ns, ratio, marker + style, c=color, label=f"{peer}, {kind}")
        ax.axhline(1.0, color="k", lw=1)
        ax.set_xscale("log")
        _timing.ratio_axis(ax, "y", ratios)
        ax.set_xlabel("N")
        ax.set_ylabel("peer time / l2loss time")
        ax.set_title(f"forward + backward, torch CPU {dt}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def summary(result: dict[str, Any]) -> None:
    for dt, r in result["linearity"].items():
        mse = result["linearity_mse"][dt]
        print(f"linearity {dt}: time at 3e7 / at 1e7 = {r:.2f}, mse_loss {mse:.2f} (linear: 3)")


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="N <= 1e6, fewer rounds")
    mode.add_argument("--smoke", action="store_true", help="tiny sizes, seconds (for the tests)")
    p.add_argument("--dtype", choices=DTYPES, action="append", help="repeatable")
    p.add_argument("--no-func-grad", action="store_true", help="skip the torch.func.grad cases")
    p.add_argument("--no-plot", action="store_true", help="write the JSON only")
    p.add_argument(
        "--torch-threads",
        type=int,
        help="torch.set_num_threads (default: PyTorch's own, what a user gets)",
    )
    p.add_argument("--rounds", type=int, help=f"default {ROUNDS} (quick {QUICK_ROUNDS})")
    _timing.add_runs(p)
    p.add_argument("--out", type=Path, default=_timing.ROOT / "docs" / "_static")
    p.add_argument("--name", default="training-cpu", help="stem of the JSON and PNG files")
    return p.parse_args(argv)


def main(argv: list[str] | None = None, command: str | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    torch = _timing.optional_torch()
    if torch is None:
        raise SystemExit("the training benchmark needs PyTorch, which is not installed")
    args.runs = _timing.runs_of(args)
    if args.runs > 1:
        t0 = time.perf_counter()
        runs = _timing.in_processes(__file__, child_argv(args), args.runs)
        result = merge(runs, command or _timing.command(argv))
        return _timing.finish(result, args, t0, plot, summary)
    _timing.set_torch_threads(args.torch_threads)

    rounds = args.rounds or (SMOKE_ROUNDS if args.smoke else QUICK_ROUNDS if args.quick else ROUNDS)
    budget = SMOKE_BUDGET if args.smoke else BUDGET
    pause = 0.0 if args.smoke else PAUSE
    sizes = SMOKE_SIZES if args.smoke else [n for n in SIZES if not args.quick or n <= QUICK_MAX]
    result: dict[str, Any] = {
        "kind": "training",
        "command": command or _timing.command(argv),
        "date": _timing.today(),
        "commit": _timing.commit(),
        "machine": _timing.machine(),
        "rounds": rounds,
        "runs": 1,
        "conditions": {"start": _timing.conditions()},
        "cases": [],
        "linearity": {},
        "linearity_mse": {},
    }
    if not args.no_func_grad:
        result["func_grad"] = []
    load = result["conditions"]["start"]["loadavg_1min"]
    if load is not None and load > 0.5:
        print(f"note: 1-minute load average {load:.2f} at the start: the cores were shared")
    print(HEADER, flush=True)
    t0 = time.perf_counter()
    for dtype in args.dtype or list(DTYPES):
        for n in sizes:
            for key in ("cases", "func_grad"):
                if key not in result:
                    continue
                row = measure(torch, n, dtype, key == "func_grad", rounds, budget, pause)
                row["runs_mse"], row["runs_plain"] = [row["ratio_mse"]], [row["ratio_plain"]]
                result[key].append(row)
                print(line("backward" if key == "cases" else "func.grad", row), flush=True)
                for lin, field in LINEARITIES.items():
                    result[lin] = linearity(result["cases"], field)
                _timing.write(result, args.out, args.name)  # a crash keeps what was measured
    result["conditions"]["end"] = _timing.conditions()
    return _timing.finish(result, args, t0, plot, summary)


if __name__ == "__main__":
    sys.exit(main())
