"""Parity grid: l2loss against the best plain expression on the same backend.

Run it as ``python benchmarks/parity.py`` or ``python benchmarks/run.py
--parity`` (``nox -s bench -- --parity``); ``--quick`` keeps N <= 1e6 and
fewer rounds, ``--smoke`` runs tiny sizes in seconds (the test suite's check).

Each case pairs an l2loss call with the expression a user would write
instead, on NumPy or PyTorch (CPU, default threads), in float64 or float32:

========  ===================================  =======================================
group     l2loss                               plain expression (``d = y - y_ref``)
========  ===================================  =======================================
1-D fast  ``l2_loss_jvp(y, y_ref, y_dot)``     ``d @ d / 2, d @ y_dot``
1-D full  ``... y_dot, y_ref_dot)``            ``d @ d / 2, d @ y_dot - d @ y_ref_dot``
axis      ``..., axis=-1``                     ``einsum('ij,ij->i', d, d) / 2, ...`` or
                                               ``(d * d).sum(-1) / 2, ...``: the faster
batched   ``..., T, batched=True``             ``d @ d / 2, T @ d``
where     ``..., where=m``                     ``d = where(m, y - y_ref, 0)``, then 1-D
weights   ``..., weights=w``                   ``wd = w * d; wd @ d / 2, wd @ y_dot``
whole     ``l2_loss_jvp(y, y_ref, y_dot)``     ``d = ravel(d); d @ d / 2, d @ ravel(y_dot)``
          of a matrix, reduced whole           or ``sum(d * d) / 2, ...``: the faster
leading   ``..., axis=0``                      ``einsum('ij,ij->j', d, d) / 2, ...`` or
                                               ``(d * d).sum(0) / 2, ...``: the faster
grad      ``l2_loss_grad(y, y_ref)``           ``d @ d / 2, d``
trans-    ``..., y_dot)``, ``axis=-1`` too,    ``einsum('ij,ij->', d, d) / 2, ...`` or
posed     on transposed (Fortran-order) views  ``sum(d * d) / 2, ...`` (rows as ``axis``)
middle    ``..., axis=(0, 2)`` or ``axis=1``   ``einsum('ijk,ijk->j', d, d) / 2, ...`` or
          of a 3-D array                       ``(d * d).sum((0, 2)) / 2, ...``
========  ===================================  =======================================

Where a group has two candidate plain expressions, both are timed for a few
rounds first and the faster is the baseline (the JSON names it). Before any
timing, the plain expression and l2loss are checked to give the same numbers.

Timing (``_timing``): both callables are calibrated once to last about 50 ms
per timing; then, in each of ``--rounds`` rounds, they are timed back to back,
alternating which goes first. ``ratio`` is the median over rounds of
``plain time / l2loss time`` (> 1: l2loss is faster), with its min and max;
``plain_us`` and ``l2loss_us`` are medians; ``overhead_us`` is the median of
``l2loss - plain`` per round, the figure that matters for tiny inputs (the
target: at most 1 us more than a plain expression that takes under 20 us).
``items`` is the number of elements of ``y``.

A process's allocator and page placement move a case's times by more than
its rounds do, so ``--runs N`` runs the grid in ``N`` fresh processes, one
after another, and keeps per case the median of their ratios (``runs`` lists
them), the lowest ``ratio_min`` and the highest ``ratio_max``, and the median
times; one run is ``--runs 1``.

Writes ``<out>/<name>.json`` and ``<out>/<name>.png`` (default
``docs/_static/parity-cpu``).
"""

from __future__ import annotations

import argparse
import functools
import inspect
import math
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import _timing
import numpy as np

import l2loss

BACKENDS = ("numpy", "torch")
DTYPES = ("float64", "float32")
GROUPS = (
    "1-D",
    "axis",
    "batched",
    "where",
    "weights",
    "whole",
    "leading",
    "grad",
    "transposed",
    "middle",
)

SIZES = [10, 100, 1_000, 10_000, 100_000, 1_000_000, 10_000_000, 30_000_000]
AXIS_SHAPES = [(32, 784), (100_000, 10), (1000, 1000), (256, 10_000), (16, 1_000_000)]
BATCHED_K = [8, 32]
BATCHED_N = [10_000, 100_000, 1_000_000]
WHERE_N = [10_000, 1_000_000]
WHOLE_SHAPES = [(32, 784), (1000, 1000)]
LEADING_SHAPES = [(1000, 1000), (100_000, 10)]
GRAD_N = [1_000, 100_000, 1_000_000, 10_000_000]
# Inputs that are the transpose of C-ordered arrays (Fortran order), reduced
# whole ("whole") and per row ("axis"); and axes in the middle of a 3-D array.
TRANSPOSED_SHAPES = [(1000, 1000), (3000, 3000)]
MIDDLE_SHAPES = [(100, 100, 100)]
MIDDLE_AXES = {"axis=(0,2)": (0, 2), "axis=1": 1}
QUICK_MAX = 1_000_000

# Tiny sizes for --smoke: every group and code path, in seconds.
SMOKE_SIZES = [100]
SMOKE_AXIS = [(4, 8)]
SMOKE_BATCHED = ([2], [100])
SMOKE_WHERE = [100]
SMOKE_WHOLE, SMOKE_LEADING, SMOKE_GRAD = [(4, 8)], [(8, 4)], [100]
SMOKE_TRANSPOSED, SMOKE_MIDDLE = [(4, 8)], [(3, 4, 5)]

BUDGET, SMOKE_BUDGET = 0.05, 0.001
ROUNDS, QUICK_ROUNDS, SMOKE_ROUNDS = 11, 5, 2
PAUSE = 0.05
# Rounds spent choosing between two candidate plain expressions.
CHOOSE_ROUNDS = 3
# Tiny cases: l2loss may cost at most this much more than a plain expression
# that takes under SMALL_US.
OVERHEAD_US, SMALL_US = 1.0, 20.0

Fn = Callable[[], Any]


@dataclass(frozen=True)
class Case:
    """One point of the grid (without its backend and dtype)."""

    group: str
    path: str
    shape: tuple[int, ...]
    k: int | None = None

    @property
    def items(self) -> int:
        return math.prod(self.shape)

    @property
    def label(self) -> str:
        if len(self.shape) > 1:
            size = "x".join(_short(s) for s in self.shape)
        else:
            size = f"N={_short(self.items)}"
        path = self.path if self.group in ("1-D", "transposed", "middle") else ""
        parts = [self.group, path, size]
        if self.k is not None:
            parts.append(f"K={self.k}")
        return " ".join(p for p in parts if p)


def _short(n: int) -> str:
    """``30000000`` -> ``3e7``; small or irregular numbers as they are."""
    if n >= 1000:
        exp = int(math.log10(n))
        mant = n / 10**exp
        if mant == int(mant):
            return f"{int(mant)}e{exp}"
    return str(n)


def grid(groups: list[str], *, quick: bool, smoke: bool) -> Iterator[Case]:
    """The cases of ``groups``, sizes limited by ``quick`` / ``smoke``."""
    sizes, axis, (ks, bn), where = SIZES, AXIS_SHAPES, (BATCHED_K, BATCHED_N), WHERE_N
    whole, leading, grad = WHOLE_SHAPES, LEADING_SHAPES, GRAD_N
    transposed, middle = TRANSPOSED_SHAPES, MIDDLE_SHAPES
    if smoke:
        sizes, axis, (ks, bn), where = SMOKE_SIZES, SMOKE_AXIS, SMOKE_BATCHED, SMOKE_WHERE
        whole, leading, grad = SMOKE_WHOLE, SMOKE_LEADING, SMOKE_GRAD
        transposed, middle = SMOKE_TRANSPOSED, SMOKE_MIDDLE

    def keep(items: int) -> bool:
        return not quick or items <= QUICK_MAX

    for group in groups:
        if group == "1-D":
            # Fast and full at one N next to each other: they share the data.
            yield from (Case(group, p, (n,)) for n in sizes if keep(n) for p in ("fast", "full"))
        elif group == "axis":
            yield from (Case(group, "fast", s) for s in axis if keep(math.prod(s)))
        elif group == "batched":
            yield from (Case(group, "fast", (n,), k) for n in bn if keep(n) for k in ks)
        elif group == "where":
            yield from (Case(group, "fast", (n,)) for n in where if keep(n))
        elif group == "weights":
            yield from (Case(group, "fast", (n,)) for n in sizes if keep(n))
        elif group in ("whole", "leading"):
            shapes = whole if group == "whole" else leading
            yield from (Case(group, "fast", s) for s in shapes if keep(math.prod(s)))
        elif group == "grad":
            yield from (Case(group, "fast", (n,)) for n in grad if keep(n))
        elif group == "transposed":
            yield from (
                Case(group, p, s)
                for s in transposed
                if keep(math.prod(s))
                for p in ("whole", "axis")
            )
        elif group == "middle":
            yield from (
                Case(group, p, s) for s in middle if keep(math.prod(s)) for p in MIDDLE_AXES
            )


def has_weights() -> bool:
    """Whether this l2loss takes ``weights=`` (the keyword is being added)."""
    return "weights" in inspect.signature(l2loss.l2_loss_jvp).parameters


# -- data ---------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _data(shape: tuple[int, ...], dtype: str, k: int | None) -> dict[str, np.ndarray[Any, Any]]:
    """NumPy inputs of one case: y, y_ref, y_dot, y_ref_dot (standard normal),
    T (K tangents), w (weights in [0.5, 1.5)), m (a mask, 90 % True).

    The arrays are made once per (shape, dtype, k) and shared by the cases
    that need them (1-D fast and full, NumPy and PyTorch) without copies.
    """
    rng = np.random.default_rng(0)
    out = {
        name: rng.standard_normal(shape, dtype=dtype)
        for name in ("y", "y_ref", "y_dot", "y_ref_dot")
    }
    if k is not None:
        out["T"] = rng.standard_normal((k, *shape), dtype=dtype)
    out["w"] = (rng.random(shape, dtype=dtype) + 0.5).astype(dtype)
    out["m"] = rng.random(shape) < 0.9
    return out


def _inputs(case: Case, backend: str, dtype: str) -> tuple[Any, dict[str, Any]]:
    """The backend's module (``np`` or ``torch``) and the case's arrays in it
    (PyTorch tensors share NumPy's memory: contiguous, CPU, eager)."""
    if case.group == "transposed":
        # The transpose of C-ordered data: a view in Fortran order.
        data = {name: a.T for name, a in _data(case.shape[::-1], dtype, case.k).items()}
    else:
        data = _data(case.shape, dtype, case.k)
    if backend == "numpy":
        return np, dict(data)
    import torch

    return torch, {name: torch.from_numpy(a) for name, a in data.items()}


# -- the callables ------------------------------------------------------------


def plain_candidates(case: Case, mod: Any, a: dict[str, Any]) -> dict[str, Fn]:
    """The plain expression(s) for ``case``: ``{text: callable}``."""
    y, y_ref, t, s, T, w, m = (
        a.get(k) for k in ("y", "y_ref", "y_dot", "y_ref_dot", "T", "w", "m")
    )
    if case.group == "1-D" and case.path == "fast":

        def fast() -> Any:
            d = y - y_ref
            return d @ d / 2, d @ t

        return {"d = y - y_ref; d @ d / 2, d @ y_dot": fast}
    if case.group == "1-D":

        def full() -> Any:
            d = y - y_ref
            return d @ d / 2, d @ t - d @ s

        return {"d = y - y_ref; d @ d / 2, d @ y_dot - d @ y_ref_dot": full}
    if case.group == "axis":
        return _rows_or_columns(mod, y, y_ref, t, "i", -1)
    if case.group == "batched":

        def batched() -> Any:
            d = y - y_ref
            return d @ d / 2, T @ d

        return {"d = y - y_ref; d @ d / 2, T @ d": batched}
    if case.group == "where":

        def masked() -> Any:
            d = mod.where(m, y - y_ref, 0)
            return d @ d / 2, d @ t

        return {"d = where(m, y - y_ref, 0); d @ d / 2, d @ y_dot": masked}
    if case.group == "whole":

        def flat() -> Any:
            d = (y - y_ref).reshape(-1)
            return d @ d / 2, d @ t.reshape(-1)

        def summed() -> Any:
            d = y - y_ref
            return (d * d).sum() / 2, (d * t).sum()

        return {
            "d = (y - y_ref).reshape(-1); d @ d / 2, d @ y_dot.reshape(-1)": flat,
            "d = y - y_ref; (d * d).sum() / 2, (d * y_dot).sum()": summed,
        }
    if case.group == "leading":
        return _rows_or_columns(mod, y, y_ref, t, "j", 0)
    if case.group == "transposed" and case.path == "axis":
        return _rows_or_columns(mod, y, y_ref, t, "i", -1)
    if case.group == "transposed":
        return _reduced(mod, y, y_ref, t, "ij,ij->", None)
    if case.group == "middle":
        axes = MIDDLE_AXES[case.path]
        kept = "j" if axes == (0, 2) else "ik"
        return _reduced(mod, y, y_ref, t, f"ijk,ijk->{kept}", axes)
    if case.group == "grad":

        def gradient() -> Any:
            d = y - y_ref
            return d @ d / 2, d

        return {"d = y - y_ref; d @ d / 2, d": gradient}
    if case.group == "weights":

        def weighted() -> Any:
            d = y - y_ref
            wd = w * d
            return wd @ d / 2, wd @ t

        return {"d = y - y_ref; wd = w * d; wd @ d / 2, wd @ y_dot": weighted}
    raise ValueError(case.group)


def _rows_or_columns(mod: Any, y: Any, y_ref: Any, t: Any, kept: str, axis: int) -> dict[str, Fn]:
    """The two plain expressions of a reduction of a matrix's columns (``kept``
    "i", ``axis`` -1: one result per row) or rows ("j", 0: one per column)."""
    name, spec = ("np" if mod is np else "torch"), f"ij,ij->{kept}"

    def einsum() -> Any:
        d = y - y_ref
        return mod.einsum(spec, d, d) / 2, mod.einsum(spec, d, t)

    def summed() -> Any:
        d = y - y_ref
        return (d * d).sum(axis) / 2, (d * t).sum(axis)

    return {
        f"d = y - y_ref; {name}.einsum('{spec}', d, d) / 2, {name}.einsum('{spec}', d, y_dot)": (
            einsum
        ),
        f"d = y - y_ref; (d * d).sum({axis}) / 2, (d * y_dot).sum({axis})": summed,
    }


def _reduced(mod: Any, y: Any, y_ref: Any, t: Any, spec: str, axis: Any) -> dict[str, Fn]:
    """The two plain expressions of a reduction over ``axis`` (None: every
    axis): an ``einsum`` by ``spec``, and a sum of products."""
    name = "np" if mod is np else "torch"

    def einsum() -> Any:
        d = y - y_ref
        return mod.einsum(spec, d, d) / 2, mod.einsum(spec, d, t)

    def summed() -> Any:
        d = y - y_ref
        if axis is None:
            return (d * d).sum() / 2, (d * t).sum()
        return (d * d).sum(axis) / 2, (d * t).sum(axis)

    where = "" if axis is None else str(axis)
    return {
        f"d = y - y_ref; {name}.einsum('{spec}', d, d) / 2, {name}.einsum('{spec}', d, y_dot)": (
            einsum
        ),
        f"d = y - y_ref; (d * d).sum({where}) / 2, (d * y_dot).sum({where})": summed,
    }


def l2loss_call(case: Case, a: dict[str, Any]) -> Fn:
    """The l2loss call for ``case``."""
    jvp = l2loss.l2_loss_jvp
    y, y_ref, t = a["y"], a["y_ref"], a["y_dot"]
    if case.group == "1-D" and case.path == "full":
        s = a["y_ref_dot"]
        return lambda: jvp(y, y_ref, t, s)
    if case.group == "1-D":
        return lambda: jvp(y, y_ref, t)
    if case.group == "axis":
        return lambda: jvp(y, y_ref, t, axis=-1)
    if case.group == "batched":
        T = a["T"]
        return lambda: jvp(y, y_ref, T, batched=True)
    if case.group == "where":
        m = a["m"]
        return lambda: jvp(y, y_ref, t, where=m)
    if case.group == "weights":
        w = a["w"]
        return lambda: jvp(y, y_ref, t, weights=w)
    if case.group == "whole":
        return lambda: jvp(y, y_ref, t)
    if case.group == "leading":
        return lambda: jvp(y, y_ref, t, axis=0)
    if case.group == "grad":
        return lambda: l2loss.l2_loss_grad(y, y_ref)
    if case.group == "transposed":
        axis = -1 if case.path == "axis" else None
        return lambda: jvp(y, y_ref, t, axis=axis)
    if case.group == "middle":
        axes = MIDDLE_AXES[case.path]
        return lambda: jvp(y, y_ref, t, axis=axes)
    raise ValueError(case.group)


def check_same(case: Case, dtype: str, plain: Fn, mine: Fn) -> None:
    """Raise if the plain expression and l2loss disagree: a baseline that
    computes something else would make the ratio meaningless. The tolerance
    is relative to the size of L (summation order differs, float32 most)."""
    rtol = 1e-3 if dtype == "float32" else 1e-9
    want, got = plain(), mine()
    scale = float(np.max(np.abs(np.asarray(want[0])))) + 1.0
    for name, p, g in zip(
        ("L", "L_dot" if case.group != "grad" else "grad"), want, got, strict=True
    ):
        p, g = np.asarray(p, dtype=np.float64), np.asarray(g, dtype=np.float64)
        if p.shape != g.shape or not np.allclose(p, g, rtol=rtol, atol=rtol * scale):
            raise AssertionError(f"{case.label} {dtype}: plain and l2loss disagree on {name}")


def measure(
    case: Case, backend: str, dtype: str, rounds: int, budget: float, pause: float
) -> dict[str, Any]:
    """One row of the JSON: the case timed against its plain expression."""
    mod, a = _inputs(case, backend, dtype)
    cands = plain_candidates(case, mod, a)
    mine = l2loss_call(case, a)
    for fn in cands.values():
        check_same(case, dtype, fn, mine)
    text, plain = _timing.fastest(cands, CHOOSE_ROUNDS, budget, pause)
    times = _timing.interleaved({"plain": plain, "l2loss": mine}, rounds, budget, pause)
    r = _timing.ratios(times["plain"], times["l2loss"])
    diff = [b - p for p, b in zip(times["plain"], times["l2loss"], strict=True)]
    return {
        "backend": backend,
        "dtype": dtype,
        "group": case.group,
        "path": case.path,
        "shape": list(case.shape),
        "k": case.k,
        "items": case.items,
        "plain": text,
        "plain_us": 1e6 * _timing.median(times["plain"]),
        "l2loss_us": 1e6 * _timing.median(times["l2loss"]),
        "ratio": r["median"],
        "ratio_min": r["min"],
        "ratio_max": r["max"],
        "overhead_us": 1e6 * _timing.median(diff),
        "runs": [r["median"]],
    }


# -- output -------------------------------------------------------------------

HEADER = (
    f"{'backend':<7} {'dtype':<7} {'case':<22} {'plain us':>10} {'l2loss us':>10} "
    f"{'ratio':>6} {'(min-max)':>11} {'+us':>8}  flags"
)


def flags(row: dict[str, Any]) -> list[str]:
    """``slower`` below ratio 1.0; ``+>1us`` where a plain expression under
    20 us is beaten by more than 1 us of l2loss overhead."""
    out = []
    if row["ratio"] < 1.0:
        out.append("slower")
    if row["plain_us"] < SMALL_US and row["overhead_us"] > OVERHEAD_US:
        out.append(f"+>{OVERHEAD_US:g}us")
    return out


def overhead_target(cases: list[dict[str, Any]]) -> dict[str, Any]:
    """The tiny-input target: among cases whose plain expression takes under
    ``SMALL_US``, how many cost l2loss more than ``OVERHEAD_US`` extra."""
    small = [c for c in cases if c["plain_us"] < SMALL_US]
    return {
        "max_extra_us": OVERHEAD_US,
        "where_plain_under_us": SMALL_US,
        "cases": len(small),
        "missed": sum(c["overhead_us"] > OVERHEAD_US for c in small),
    }


def line(case: Case, row: dict[str, Any]) -> str:
    return (
        f"{row['backend']:<7} {row['dtype']:<7} {case.label:<22} {row['plain_us']:>10.2f} "
        f"{row['l2loss_us']:>10.2f} {row['ratio']:>6.2f} "
        f"({row['ratio_min']:>4.2f}-{row['ratio_max']:<4.2f}) {row['overhead_us']:>+8.2f}  "
        + " ".join(flags(row))
    )


def case_label(row: dict[str, Any]) -> str:
    return Case(row["group"], row["path"], tuple(row["shape"]), row["k"]).label


def plot(result: dict[str, Any], path: Path) -> None:
    """Dot plot: one panel per backend x dtype, one row per case, the median
    ratio with a bar from min to max, and a line at 1.0."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cases = result["cases"]
    if not cases:
        return
    labels = list(dict.fromkeys(case_label(c) for c in cases))
    panels = list(dict.fromkeys((c["backend"], c["dtype"]) for c in cases))
    colors = {g: f"C{i}" for i, g in enumerate(GROUPS)}
    extremes = [r for c in cases for r in (c["ratio_min"], c["ratio_max"])]
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(2.2 + 2.6 * len(panels), 1.2 + 0.2 * len(labels)),
        sharey=True,
        squeeze=False,
    )
    for ax, (backend, dtype) in zip(axes[0], panels, strict=True):
        for c in cases:
            if (c["backend"], c["dtype"]) != (backend, dtype):
                continue
            yi = labels.index(case_label(c))
            err = [[c["ratio"] - c["ratio_min"]], [c["ratio_max"] - c["ratio"]]]
            ax.errorbar(c["ratio"], yi, xerr=err, fmt="o", ms=4, color=colors[c["group"]])
        ax.axvline(1.0, color="k", lw=1)
        _timing.ratio_axis(ax, "x", extremes)
        ax.set_title(f"{backend} {dtype}", fontsize=9)
        ax.set_xlabel("plain time / l2loss time", fontsize=8)
        ax.grid(True, axis="x", which="both", alpha=0.3)
        ax.tick_params(labelsize=7)
    axes[0][0].set_yticks(range(len(labels)), labels)
    axes[0][0].invert_yaxis()
    fig.suptitle("l2loss vs the plain expression (> 1: l2loss faster)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def merge(results: list[dict[str, Any]], command: str) -> dict[str, Any]:
    """One result from the results of several runs of the same grid: per case,
    the median of the runs' ratios and times, and the range over all rounds."""
    out = _timing.merged(results, command)
    out["notes"] = sorted({n for r in results for n in r["notes"]})
    out["cases"] = []
    fields = ("ratio", "plain_us", "l2loss_us", "overhead_us")
    for row, rows in _timing.median_rows([r["cases"] for r in results], KEY, fields):
        row["ratio_min"] = min(r["ratio_min"] for r in rows)
        row["ratio_max"] = max(r["ratio_max"] for r in rows)
        row["runs"] = [r["ratio"] for r in rows]
        out["cases"].append(row)
    out["overhead_target"] = overhead_target(out["cases"])
    return out


# The fields that name a case.
KEY = ("backend", "dtype", "group", "path", "shape", "k")


def child_argv(args: argparse.Namespace) -> list[str]:
    """The arguments of one run of the grid that ``args`` asks for."""
    argv = _timing.shared_argv(args)
    for flag in ("backend", "dtype", "group"):
        for value in getattr(args, flag) or []:
            argv += [f"--{flag}", value]
    return argv


def run_several(args: argparse.Namespace, command: str) -> int:
    """``--runs N`` with N > 1: the grid in N fresh processes, then merged."""
    t0 = time.perf_counter()
    result = merge(_timing.in_processes(__file__, child_argv(args), args.runs), command)
    return _timing.finish(result, args, t0, plot, summary)


def summary(result: dict[str, Any]) -> None:
    slower = sum(r["ratio"] < 1.0 for r in result["cases"])
    target = result["overhead_target"]
    print(
        f"{len(result['cases'])} cases, {slower} with l2loss slower than plain; "
        f"of the {target['cases']} where plain takes under {SMALL_US:g} us, "
        f"{target['missed']} cost l2loss more than {OVERHEAD_US:g} us extra"
    )


# -- main ---------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="N <= 1e6, fewer rounds")
    mode.add_argument("--smoke", action="store_true", help="tiny sizes, seconds (for the tests)")
    p.add_argument("--backend", choices=BACKENDS, action="append", help="repeatable")
    p.add_argument("--dtype", choices=DTYPES, action="append", help="repeatable")
    p.add_argument("--group", choices=GROUPS, action="append", help="repeatable")
    p.add_argument(
        "--torch-threads",
        type=int,
        help="torch.set_num_threads (default: PyTorch's own, what a user gets)",
    )
    p.add_argument("--rounds", type=int, help=f"default {ROUNDS} (quick {QUICK_ROUNDS})")
    _timing.add_runs(p)
    p.add_argument("--no-plot", action="store_true", help="write the JSON only")
    p.add_argument("--out", type=Path, default=_timing.ROOT / "docs" / "_static")
    p.add_argument("--name", default="parity-cpu", help="stem of the JSON and PNG files")
    return p.parse_args(argv)


def main(argv: list[str] | None = None, command: str | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse(argv)
    args.runs = _timing.runs_of(args)
    if args.runs > 1:
        return run_several(args, command or _timing.command(argv))
    _timing.set_torch_threads(args.torch_threads)
    rounds = args.rounds or (SMOKE_ROUNDS if args.smoke else QUICK_ROUNDS if args.quick else ROUNDS)
    budget = SMOKE_BUDGET if args.smoke else BUDGET
    pause = 0.0 if args.smoke else PAUSE
    notes: list[str] = []
    backends = args.backend or list(BACKENDS)
    if "torch" in backends and _timing.optional_torch() is None:
        if args.backend:
            raise SystemExit("--backend torch: PyTorch is not installed")
        backends.remove("torch")
        notes.append("torch backend skipped: PyTorch is not installed")
    groups = args.group or list(GROUPS)
    if "weights" in groups and not has_weights():
        groups.remove("weights")
        notes.append("weights group skipped: l2loss.l2_loss_jvp has no weights= parameter")
    result: dict[str, Any] = {
        "kind": "parity",
        "command": command or _timing.command(argv),
        "date": _timing.today(),
        "commit": _timing.commit(),
        "machine": _timing.machine(),
        "rounds": rounds,
        "runs": 1,
        "conditions": {"start": _timing.conditions()},
        "notes": notes,
        "cases": [],
    }
    load = result["conditions"]["start"]["loadavg_1min"]
    if load is not None and load > 0.5:
        notes.append(
            f"1-minute load average {load:.2f} at the start on {_timing.cores()} cores: "
            "other work shared the cores"
        )
    for note in notes:
        print(f"note: {note}")
    print(HEADER, flush=True)
    t0 = time.perf_counter()
    for dtype in args.dtype or list(DTYPES):
        for case in grid(groups, quick=args.quick, smoke=args.smoke):
            # Backends innermost: they share the case's data and are timed
            # close together.
            for backend in backends:
                row = measure(case, backend, dtype, rounds, budget, pause)
                result["cases"].append(row)
                print(line(case, row), flush=True)
                _timing.write(result, args.out, args.name)  # a crash keeps what was measured
    _data.cache_clear()
    result["conditions"]["end"] = _timing.conditions()
    result["overhead_target"] = overhead_target(result["cases"])
    return _timing.finish(result, args, t0, plot, summary)


if __name__ == "__main__":
    sys.exit(main())
