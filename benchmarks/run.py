"""Benchmark l2loss against its peers and the read-bandwidth ceiling.

Run it as ``nox -s bench`` (or ``python benchmarks/run.py``); ``--quick``
finishes in under a minute. Every figure is a median over repeated rounds; in
each round the ceiling and every implementation are timed back to back, so
ratios are taken pair by pair within one round and are robust to the machine's
load drifting between rounds.

The ceiling is a BLAS dot ``np.dot(a, b)`` of two float64 arrays of size N
(default threads), i.e. the rate at which this machine reads memory. A call
that must read ``B`` bytes is credited with ``B / t`` bytes per second:

* ``L, L_dot = l2_loss_jvp(y, y_ref, y_dot)`` (fast path) reads 3N items,
* ``l2_loss_jvp(y, y_ref, y_dot, y_ref_dot)`` (full path) reads 4N,
* ``batched=True`` with K directions reads (K + 2) N,

and its fraction of the ceiling is ``(B / t) / (16 N / t_dot)``.

It also times a call on 10 elements against the bare NumPy calls and a jitted
JAX call, and float32 at N = 1e7 for speed and accuracy (against
``math.fsum``). Only l2loss's public API is used.

Writes ``docs/_static/bench-cpu.json`` and ``docs/_static/bench-cpu.png``
unless told otherwise (``--out``).

``--parity`` runs ``benchmarks/parity.py`` instead (l2loss against the plain
expression over a grid of shapes, backends and dtypes), ``--training``
runs ``benchmarks/training.py`` (a PyTorch forward + backward step) and
``--threads`` runs ``benchmarks/threads.py`` (NumPy's blocks on a pool
against one thread); the other options are then theirs:
``nox -s bench -- --parity --quick``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import _timing
import numpy as np

import l2loss

ROOT = _timing.ROOT
Fn = Callable[[], Any]


# Pause before each timed case: the thread pools of the case timed before it
# keep spinning on the cores after their last call (OpenBLAS's threads hold a
# core for a while after a two-thread np.dot;
# OpenMP and XLA pools may do the same), and the next case would find one core
# taken. After the pause the case runs once untimed for as long as its timed
# run (caches, clock, thread wake-up), so every case is timed in its own
# steady state. ``--gap 0.002`` gives the busier machine of earlier versions
# of this script.
GAP = 0.15

# Seconds each timed run lasts (at least one call). On the shared 2-core CI
# machine the second core is now and then not there for a while (a two-thread
# np.dot ran with cpu / wall 1.00 in whole single-call samples); runs of
# several calls average that out better than one call each.
BUDGET, QUICK_BUDGET = 0.05, 0.002


def measure(
    cases: dict[str, Fn], rounds: int, budget: float, gap: float | None = None
) -> dict[str, list[float]]:
    """Seconds per call of every case, ``rounds`` times, cases interleaved,
    each after ``gap`` seconds (default ``GAP``) of pause and an untimed run."""
    gap = GAP if gap is None else gap
    numbers = {k: _timing.calibrate(f, budget) for k, f in cases.items()}
    out: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):
        for k, f in cases.items():
            time.sleep(gap)
            _timing.time_loop(f, numbers[k])
            out[k].append(_timing.time_loop(f, numbers[k]))
    return out


def median_ratio(num: list[float], den: list[float]) -> float:
    """Median over rounds of ``num[i] / den[i]`` (pairs from one round)."""
    return float(np.median(np.asarray(num) / np.asarray(den)))


def _jax() -> Any:
    try:
        import jax
    except ImportError:
        return None
    jax.config.update("jax_enable_x64", True)
    return jax


def _torch() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


def _jax_jvp_case(y: Any, y_ref: Any, y_dot: Any) -> Fn | None:
    """``jax.jit(jax.jvp)`` of the loss written in ``jax.numpy`` (None without JAX)."""
    jax = _jax()
    if jax is None:
        return None
    import jax.numpy as jnp

    @jax.jit
    def jvp(y: Any, y_ref: Any, y_dot: Any) -> Any:
        return jax.jvp(lambda v: 0.5 * jnp.sum((v - y_ref) ** 2), (y,), (y_dot,))

    jy, jr, jd = (jax.device_put(v) for v in (y, y_ref, y_dot))
    return lambda: jax.block_until_ready(jvp(jy, jr, jd))


def cases_for(n: int, rng: np.random.Generator, k: int) -> tuple[dict[str, Fn], dict[str, int]]:
    """The float64 cases at size ``n`` and the items each must read."""
    y, y_ref, y_dot, y_ref_dot, a, b = (rng.standard_normal(n) for _ in range(6))
    cases: dict[str, Fn] = {
        "ceiling": lambda: np.dot(a, b),
        "l2loss": lambda: l2loss.l2_loss_jvp(y, y_ref, y_dot),
        "l2loss-full": lambda: l2loss.l2_loss_jvp(y, y_ref, y_dot, y_ref_dot),
    }
    reads = {"ceiling": 2 * n, "l2loss": 3 * n, "l2loss-full": 4 * n}

    def plain() -> Any:
        d = y - y_ref
        return 0.5 * (d @ d), d @ y_dot

    cases["numpy-plain"] = plain
    reads["numpy-plain"] = 3 * n
    if k:
        y_dots = rng.standard_normal((k, n))
        cases["l2loss-batched"] = lambda: l2loss.l2_loss_jvp(y, y_ref, y_dots, batched=True)
        reads["l2loss-batched"] = (k + 2) * n
    jax_case = _jax_jvp_case(y, y_ref, y_dot)
    if jax_case is not None:
        cases["jax-jit-jvp"] = jax_case
        reads["jax-jit-jvp"] = 3 * n
    torch = _torch()
    if torch is not None:
        import torch.func

        ty, tr, td = (torch.from_numpy(v) for v in (y, y_ref, y_dot))

        def loss(v: Any) -> Any:
            return 0.5 * ((v - tr) ** 2).sum()

        def torch_plain() -> Any:
            d = ty - tr
            return 0.5 * torch.dot(d, d), torch.dot(d, td)

        cases["torch-func-jvp"] = lambda: torch.func.jvp(loss, (ty,), (td,))
        cases["torch-plain"] = torch_plain
        cases["l2loss-torch"] = lambda: l2loss.l2_loss_jvp(ty, tr, td)
        reads.update({"torch-func-jvp": 3 * n, "torch-plain": 3 * n, "l2loss-torch": 3 * n})
    return cases, reads


def bench_sizes(sizes: list[int], rounds: int, budget: float, k: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    rows = []
    for n in sizes:
        cases, reads = cases_for(n, rng, k if n == 1_000_000 else 0)
        times = measure(cases, rounds, budget)
        ceil = times["ceiling"]
        row: dict[str, Any] = {"n": n, "seconds": {}, "gbps": {}, "of_ceiling": {}, "speedup": {}}
        for name, ts in times.items():
            row["seconds"][name] = float(np.median(ts))
            row["gbps"][name] = 8 * reads[name] / float(np.median(ts)) / 1e9
            # (bytes / t) / (bytes_dot / t_dot), pair by pair.
            scaled = [tc * reads[name] / reads["ceiling"] for tc in ceil]
            row["of_ceiling"][name] = median_ratio(scaled, ts)
        for peer, mine in [
            ("numpy-plain", "l2loss"),
            ("jax-jit-jvp", "l2loss"),
            ("torch-func-jvp", "l2loss-torch"),
            ("torch-plain", "l2loss-torch"),
        ]:
            if peer in times:
                row["speedup"][f"{mine} vs {peer}"] = median_ratio(times[peer], times[mine])
        rows.append(row)
        print(_line(row), flush=True)
    return rows


def _line(row: dict[str, Any]) -> str:
    parts = [f"N={row['n']:<9.0e}"]
    for name, r in row["of_ceiling"].items():
        if name != "ceiling":
            parts.append(f"{name}={r:.2f}")
    parts.append(f"ceiling={row['gbps']['ceiling']:.1f}GB/s")
    return "  ".join(parts)


def bench_overhead(rounds: int, budget: float) -> dict[str, Any]:
    """N = 10: l2loss against the bare NumPy calls and a jitted JAX call."""
    rng = np.random.default_rng(1)
    y, y_ref, y_dot = (rng.standard_normal(10) for _ in range(3))

    def bare() -> Any:
        d = y - y_ref
        return d @ d, d @ y_dot

    cases: dict[str, Fn] = {
        "bare-numpy": bare,
        "l2loss": lambda: l2loss.l2_loss_jvp(y, y_ref, y_dot),
    }
    cases["l2loss-loss"] = lambda: l2loss.l2_loss(y, y_ref)
    jax_case = _jax_jvp_case(y, y_ref, y_dot)
    if jax_case is not None:
        cases["jax-jit-jvp"] = jax_case
    times = measure(cases, rounds, budget)
    out: dict[str, Any] = {"us": {k: 1e6 * float(np.median(v)) for k, v in times.items()}}
    out["l2loss / bare-numpy"] = median_ratio(times["l2loss"], times["bare-numpy"])
    if "jax-jit-jvp" in times:
        out["l2loss / jax-jit-jvp"] = median_ratio(times["l2loss"], times["jax-jit-jvp"])
    print(
        f"N=10: l2loss {out['us']['l2loss']:.2f} us = {out['l2loss / bare-numpy']:.2f} x bare "
        f"NumPy ({out['us']['bare-numpy']:.2f} us), "
        f"{out.get('l2loss / jax-jit-jvp', float('nan')):.2f} x jitted JAX",
        flush=True,
    )
    return out


def bench_float32(n: int, rounds: int, budget: float) -> dict[str, Any]:
    """float32 at ``n``: speed against the ceiling and accuracy against math.fsum."""
    rng = np.random.default_rng(2)
    y, y_ref, y_dot = (rng.standard_normal(n).astype(np.float32) for _ in range(3))
    a, b = (rng.standard_normal(n) for _ in range(2))
    times = measure(
        {"ceiling": lambda: np.dot(a, b), "l2loss": lambda: l2loss.l2_loss_jvp(y, y_ref, y_dot)},
        rounds,
        budget,
    )
    # float32 reads 3 n * 4 bytes; the float64 ceiling reads 2 n * 8.
    frac = median_ratio([tc * 12 / 16 for tc in times["ceiling"]], times["l2loss"])
    L, L_dot = l2loss.l2_loss_jvp(y, y_ref, y_dot)
    d = y.astype(np.float64) - y_ref.astype(np.float64)
    exact_L = 0.5 * math.fsum((d * d).tolist())
    exact_dot = math.fsum((d * y_dot.astype(np.float64)).tolist())
    dot32 = np.float32(0.5) * np.dot(y - y_ref, y - y_ref)
    out = {
        "n": n,
        "of_ceiling": frac,
        "rel_err_L": abs(float(L) - exact_L) / exact_L,
        "rel_err_L_dot_scaled": abs(float(L_dot) - exact_dot)
        / math.fsum(np.abs(d * y_dot).tolist()),
        "rel_err_L_plain_float32_dot": abs(float(dot32) - exact_L) / exact_L,
    }
    print(
        f"float32 N={n:.0e}: {frac:.2f} of ceiling, rel. error of L {out['rel_err_L']:.2e} "
        f"(plain float32 dot: {out['rel_err_L_plain_float32_dot']:.2e})",
        flush=True,
    )
    return out


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "l2loss": l2loss.__version__,
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
    }
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        keep = ("Model name", "CPU(s)", "Thread(s) per core", "L1d", "L2", "L3")
        info["lscpu"] = [ln.strip() for ln in lscpu.splitlines() if ln.startswith(keep)]
    except (OSError, subprocess.CalledProcessError):
        pass
    try:
        from threadpoolctl import threadpool_info

        info["blas"] = [
            {k: p.get(k) for k in ("internal_api", "version", "num_threads", "architecture")}
            for p in threadpool_info()
        ]
    except ImportError:
        pass
    for name, get in (("jax", _jax), ("torch", _torch)):
        mod = get()
        if mod is not None:
            info[name] = mod.__version__
    torch = _torch()
    if torch is not None:
        info["torch_threads"] = torch.get_num_threads()
    return info


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = result["sizes"]
    ns = [r["n"] for r in rows]
    fig, ax = plt.subplots(figsize=(7.5, 4.5), dpi=120)
    ax.plot(ns, [r["gbps"]["ceiling"] for r in rows], "k--", lw=2, label="ceiling: np.dot(a, b)")
    style = {
        "l2loss": ("C0", "o-", "l2loss, NumPy"),
        "l2loss-full": ("C0", "o:", "l2loss, NumPy, full path"),
        "l2loss-torch": ("C1", "s-", "l2loss, PyTorch"),
        "numpy-plain": ("C2", "^-", "plain NumPy expression"),
        "jax-jit-jvp": ("C3", "v-", "jax.jit(jax.jvp)"),
        "torch-func-jvp": ("C4", "D-", "torch.func.jvp"),
        "torch-plain": ("C5", "x-", "plain PyTorch expression"),
    }
    for name, (color, fmt, label) in style.items():
        if name in rows[0]["gbps"]:
            ax.plot(ns, [r["gbps"][name] for r in rows], fmt, color=color, label=label, ms=4)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("N (float64 items per array)")
    ax.set_ylabel("GB/s of the bytes the call must read")
    ax.set_title("L, L_dot = l2_loss_jvp(y, y_ref, y_dot): read throughput")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


MODES = {"--parity": "parity", "--training": "training", "--threads": "threads"}


def dispatch(argv: list[str]) -> int | None:
    """Run ``parity.py``, ``training.py`` or ``threads.py`` when ``argv`` names
    one (``--parity`` / ``--training`` / ``--threads``, with that script's own
    options)."""
    chosen = [flag for flag in MODES if flag in argv]
    if not chosen:
        return None
    if len(chosen) > 1:
        raise SystemExit(f"choose one of {', '.join(MODES)}")
    rest = [a for a in argv if a != chosen[0]]
    module = importlib.import_module(MODES[chosen[0]])
    return int(module.main(rest, command=_timing.command(argv)))


def main(argv: list[str] | None = None) -> int:
    global GAP
    argv = sys.argv[1:] if argv is None else argv
    delegated = dispatch(argv)
    if delegated is not None:
        return delegated
    p = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="--parity [options]: the parity grid (benchmarks/parity.py --help); "
        "--training [options]: the training step (benchmarks/training.py --help); "
        "--threads [options]: NumPy's threads (benchmarks/threads.py --help).",
    )
    p.add_argument("--quick", action="store_true", help="fewer sizes and rounds (< 1 minute)")
    p.add_argument("--rounds", type=int, help="rounds per size (default 15, quick 5)")
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "_static", help="output folder")
    p.add_argument("--name", default="bench-cpu", help="stem of the JSON and PNG files")
    p.add_argument(
        "--gap",
        type=float,
        help=f"seconds of pause before each case (default {GAP})",
    )
    args = p.parse_args(argv)
    GAP = args.gap if args.gap is not None else GAP
    rounds = args.rounds or (5 if args.quick else 15)
    budget = QUICK_BUDGET if args.quick else BUDGET
    if args.quick:
        sizes = [10, 1_000, 100_000, 1_000_000, 10_000_000]
    else:
        sizes = [10, 100, 1_000, 10_000, 100_000, 300_000, 1_000_000, 3_000_000, 10_000_000]
        sizes.append(30_000_000)
    t0 = time.perf_counter()
    result: dict[str, Any] = {
        "kind": "peers",
        "command": _timing.command(argv),
        "date": _timing.today(),
        "commit": _timing.commit(),
        "rounds": rounds,
        "gap_seconds": GAP,
        "budget_seconds": budget,
        "machine": machine(),
        "overhead_n10": bench_overhead(rounds, budget),
        "sizes": bench_sizes(sizes, rounds, budget, k=8),
        "float32": bench_float32(10_000_000, rounds, budget),
    }
    result["wall_seconds"] = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    json_path = args.out / f"{args.name}.json"
    json_path.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, args.out / f"{args.name}.png")
    print(f"wrote {json_path} and {args.name}.png in {result['wall_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
