"""GPU benchmark: l2loss on CuPy and on PyTorch (CUDA) against the GPU peers
and the GPU's read-bandwidth ceiling.

``bash benchmarks/gpu.sh`` runs it (after the test suite) on a machine with an
NVIDIA GPU; alone: ``python benchmarks/gpu.py --out DIR [--tiles]``. Without
CuPy and a GPU, ``--dry`` runs the same code on small host arrays (NumPy in
CuPy's place), to check the script, not to measure anything.

* The ceiling is ``cupy.dot(a, b)`` (cuBLAS) on two arrays of N items of the
  dtype under test: the GPU's read rate. A call that must read ``B`` bytes
  (3N items for the fast path, 4N full, (K + 2) N batched) is credited with
  ``B / t``; its fraction of the ceiling is ``(B / t) / (2 N s / t_dot)``,
  ``s`` the item size.
* A timed run calls its case ``number`` times back to back (about ``budget``
  seconds in all), then waits with the library's own synchronisation
  (``cupy.cuda.Stream.synchronize``, ``torch.cuda.synchronize``,
  ``jax.block_until_ready``) before the host clock is read. Each round times
  every case once, after one untimed run of it; figures are medians over
  rounds, and ratios are taken pair by pair within a round.
* The results of the main table's cases (l2loss's and its peers') and of
  l2loss's batched cases are checked against float64 on the host; the
  relative errors are recorded.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from array_api_compat import array_namespace

import l2loss
from l2loss.testing import to_numpy

Fn = Callable[[], Any]
K = 8  # directions of the batched cases
SIZES = [10**3, 10**4, 10**5, 10**6, 10**7, 3 * 10**7, 10**8]
BATCHED_SIZES = [10**6, 10**7]
TILE_SIZES = [10**7, 10**8]
TILES = [1 << 22, 1 << 23, 1 << 24, 1 << 25, 1 << 26, 1 << 62]
PART_SIZES = [10**7, 10**8]
# Per-sample losses (``axis=-1``): (samples, items per sample), 1e8 items each.
AXIS_SHAPES = [(1000, 100_000), (100_000, 1000)]


@dataclasses.dataclass
class Lib:
    """One array library on the GPU: how arrays get there, how to wait."""

    name: str
    put: Callable[[Any], Any]
    sync: Callable[[Any], None]
    mod: Any


def libraries(dry: bool) -> dict[str, Lib]:
    """CuPy (or NumPy with ``dry``), PyTorch and JAX on the GPU (host if ``dry``)."""
    import torch

    libs: dict[str, Lib] = {}
    if dry:
        libs["cupy"] = Lib("numpy", np.asarray, lambda r: None, np)
    else:
        import cupy

        libs["cupy"] = Lib(
            "cupy", cupy.asarray, lambda r: cupy.cuda.get_current_stream().synchronize(), cupy
        )
    dev = "cpu" if dry else "cuda"
    libs["torch"] = Lib(
        "torch",
        lambda a: torch.from_dlpack(a).to(dev) if not dry else torch.from_numpy(a),
        (lambda r: None) if dry else (lambda r: torch.cuda.synchronize()),
        torch,
    )
    import jax

    jax.config.update("jax_enable_x64", True)
    libs["jax"] = Lib(
        "jax", lambda a: jax.device_put(np.asarray(to_numpy(a))), jax.block_until_ready, jax
    )
    return libs


def timer(fn: Fn, sync: Callable[[Any], None], budget: float) -> Callable[[], float]:
    """A closure timing ``fn`` over enough calls to last about ``budget`` s."""
    sync(fn())
    t0 = time.perf_counter()
    sync(fn())
    one = max(time.perf_counter() - t0, 1e-7)
    number = max(1, min(100_000, int(budget / one)))

    def timed() -> float:
        t = time.perf_counter()
        for _ in range(number):
            r = fn()
        sync(r)
        return (time.perf_counter() - t) / number

    return timed


def measure(
    cases: dict[str, tuple[Fn, Callable[[Any], None]]], rounds: int, budget: float
) -> dict[str, list[float]]:
    """Seconds per call of each case, ``rounds`` times, cases interleaved."""
    timers = {k: timer(f, s, budget) for k, (f, s) in cases.items()}
    out: dict[str, list[float]] = {k: [] for k in cases}
    for _ in range(rounds):
        for k, t in timers.items():
            t()  # untimed: caches, clocks and queues in their steady state
            out[k].append(t())
    return out


def _ratio(num: list[float], den: list[float]) -> float:
    return float(np.median(np.asarray(num) / np.asarray(den)))


def _rel(got: Any, want: float) -> float:
    return abs(float(np.asarray(to_numpy(got))) - want) / max(abs(want), 1e-300)


def _inputs(libs: dict[str, Lib], n: int, dtype: str, seed: int) -> dict[str, Any]:
    """Six arrays of ``n`` items (y, y_ref, y_dot, y_ref_dot, a, b) per library."""
    xp = libs["cupy"].mod
    rng = xp.random.default_rng(seed)
    base = [rng.standard_normal(n).astype(dtype) for _ in range(6)]
    return {"cupy": base, "torch": [libs["torch"].put(a) for a in base[:4]]} | {
        "jax": [libs["jax"].put(a) for a in base[:4]]
    }


def _reference(arrays: list[Any]) -> tuple[float, float, float]:
    """Host float64 ``L``, ``L_dot`` (fast path) and ``L_dot`` (full path)."""
    y, r, t, u = (to_numpy(a).astype(np.float64) for a in arrays[:4])
    d = y - r
    return 0.5 * float(d @ d), float(d @ t), float(d @ t - d @ u)


def cases_at(
    libs: dict[str, Lib], n: int, dtype: str, arrays: dict[str, Any]
) -> dict[str, tuple[Fn, Callable[[Any], None], int, int]]:
    """``name -> (call, sync, items read, path)``; path 0: returns (L, L_dot)
    fast path, 1: full path, 2: the ceiling."""
    cp, torch, jax = libs["cupy"], libs["torch"], libs["jax"]
    y, r, t, u, a, b = arrays["cupy"]
    ty, tr, tt, _ = arrays["torch"]
    jy, jr, jt, _ = arrays["jax"]
    jnp = jax.mod.numpy
    out: dict[str, tuple[Fn, Callable[[Any], None], int, int]] = {
        "ceiling": (lambda: cp.mod.dot(a, b), cp.sync, 2 * n, 2),
        "l2loss-cupy": (lambda: l2loss.l2_loss_jvp(y, r, t), cp.sync, 3 * n, 0),
        "l2loss-cupy-full": (lambda: l2loss.l2_loss_jvp(y, r, t, u), cp.sync, 4 * n, 1),
    }

    def cupy_plain() -> Any:
        d = y - r
        return 0.5 * cp.mod.dot(d, d), cp.mod.dot(d, t)

    def torch_loss(v: Any) -> Any:
        return 0.5 * ((v - tr) ** 2).sum()

    def torch_plain() -> Any:
        d = ty - tr
        return 0.5 * torch.mod.dot(d, d), torch.mod.dot(d, tt)

    @jax.mod.jit
    def jax_jvp(y: Any, r: Any, t: Any) -> Any:
        return jax.mod.jvp(lambda v: 0.5 * jnp.sum((v - r) ** 2), (y,), (t,))

    l2loss_jit = jax.mod.jit(l2loss.l2_loss_jvp)
    out |= {
        "cupy-plain": (cupy_plain, cp.sync, 3 * n, 0),
        "l2loss-torch": (lambda: l2loss.l2_loss_jvp(ty, tr, tt), torch.sync, 3 * n, 0),
        "torch-func-jvp": (
            lambda: torch.mod.func.jvp(torch_loss, (ty,), (tt,)),
            torch.sync,
            3 * n,
            0,
        ),
        "torch-plain": (torch_plain, torch.sync, 3 * n, 0),
        "jax-jit-jvp": (lambda: jax_jvp(jy, jr, jt), jax.sync, 3 * n, 0),
        "l2loss-jax-jit": (lambda: l2loss_jit(jy, jr, jt), jax.sync, 3 * n, 0),
        "l2loss-jax": (lambda: l2loss.l2_loss_jvp(jy, jr, jt), jax.sync, 3 * n, 0),
    }
    return out


def bench_sizes(
    libs: dict[str, Lib], sizes: list[int], dtype: str, rounds: int, budget: float
) -> list[dict[str, Any]]:
    rows = []
    for n in sizes:
        arrays = _inputs(libs, n, dtype, seed=n)
        cases = cases_at(libs, n, dtype, arrays)
        ref = _reference(arrays["cupy"])
        errors = {}
        for k, (f, _, _, path) in cases.items():
            if path < 2:
                L, Ld = f()
                errors[k] = max(_rel(L, ref[0]), _rel(Ld, ref[1 + path]))
        times = measure({k: (f, s) for k, (f, s, _, _) in cases.items()}, rounds, budget)
        tc = times["ceiling"]
        row: dict[str, Any] = {
            "n": n,
            "dtype": dtype,
            "ceiling_GBps": 2 * n * np.dtype(dtype).itemsize / float(np.median(tc)) / 1e9,
            "seconds": {k: float(np.median(v)) for k, v in times.items()},
            "fraction": {
                k: _ratio([c * items / (2 * n) for c in tc], times[k])
                for k, (_, _, items, _) in cases.items()
                if k != "ceiling"
            },
            "speedup_cupy": {
                k: _ratio(times[k], times["l2loss-cupy"])
                for k in times
                if k not in ("ceiling", "l2loss-cupy", "l2loss-cupy-full")
            },
            "rel_error": errors,
        }
        rows.append(row)
        print(_line(row), flush=True)
        del arrays, cases
    return rows


def _line(row: dict[str, Any]) -> str:
    fr = row["fraction"]
    return (
        f"{row['dtype']:>7} N={row['n']:.0e} ceiling {row['ceiling_GBps']:7.1f} GB/s  "
        + "  ".join(f"{k}={v:.2f}" for k, v in fr.items())
    )


def bench_batched(
    libs: dict[str, Lib], sizes: list[int], dtype: str, rounds: int, budget: float
) -> list[dict[str, Any]]:
    """``batched=True`` with K directions against the cuBLAS matrix-vector
    product of the plain expression and ``jax.jit(jax.vmap(jax.jvp))``."""
    rows = [_batched_at(libs, n, dtype, rounds, budget) for n in sizes]
    for row in rows:
        print(
            f"batched K={K} {dtype} N={row['n']:.0e}  "
            + "  ".join(f"{k}={v:.2f}" for k, v in row["fraction"].items()),
            flush=True,
        )
    return rows


def _batched_at(
    libs: dict[str, Lib], n: int, dtype: str, rounds: int, budget: float
) -> dict[str, Any]:
    cp, torch, jax = libs["cupy"], libs["torch"], libs["jax"]
    jnp = jax.mod.numpy
    rng = cp.mod.random.default_rng(n + 1)
    y, r, a, b = (rng.standard_normal(n).astype(dtype) for _ in range(4))
    T = rng.standard_normal((K, n)).astype(dtype)
    ty, tr, tT = (torch.put(v) for v in (y, r, T))
    jy, jr, jT = (jax.put(v) for v in (y, r, T))

    def plain() -> Any:
        d = y - r
        return 0.5 * cp.mod.dot(d, d), T @ d

    @jax.mod.jit
    def jax_vmap(y: Any, r: Any, T: Any) -> Any:
        def f(v: Any) -> Any:
            return 0.5 * jnp.sum((v - r) ** 2)

        return jax.mod.vmap(lambda t: jax.mod.jvp(f, (y,), (t,)))(T)

    cases: dict[str, tuple[Fn, Callable[[Any], None]]] = {
        "ceiling": (lambda: cp.mod.dot(a, b), cp.sync),
        "l2loss-cupy-batched": (lambda: l2loss.l2_loss_jvp(y, r, T, batched=True), cp.sync),
        "cupy-plain-batched": (plain, cp.sync),
        "l2loss-torch-batched": (lambda: l2loss.l2_loss_jvp(ty, tr, tT, batched=True), torch.sync),
        "jax-jit-vmap-jvp": (lambda: jax_vmap(jy, jr, jT), jax.sync),
    }
    d = to_numpy(y).astype(np.float64) - to_numpy(r).astype(np.float64)
    want = to_numpy(T).astype(np.float64) @ d
    err = {
        k: float(np.max(np.abs(to_numpy(cases[k][0]()[1]) - want)) / np.max(np.abs(want)))
        for k in ("l2loss-cupy-batched", "l2loss-torch-batched")
    }
    times = measure(cases, rounds, budget)
    tc = times["ceiling"]
    return {
        "n": n,
        "k": K,
        "dtype": dtype,
        "fraction": {
            k: _ratio([c * (K + 2) / 2 for c in tc], times[k]) for k in cases if k != "ceiling"
        },
        "seconds": {k: float(np.median(v)) for k, v in times.items()},
        "rel_error": err,
    }


def bench_parts(
    libs: dict[str, Lib], n: int, dtype: str, rounds: int, budget: float
) -> dict[str, float]:
    """GB/s moved by each kernel the eager rule is made of, on CuPy and
    PyTorch: the subtraction (reads 2N items, writes N) and the inner
    products a library offers (each reads 2N; ``sum(a * b)`` also writes
    and reads back its product, counted as 2N items here, not 4N)."""
    arrays = _inputs(libs, n, dtype, seed=11)
    y, r, t, _, _, _ = arrays["cupy"]
    ty, tr, tt, _ = arrays["torch"]
    cp, torch = libs["cupy"], libs["torch"]
    cases: dict[str, tuple[Fn, Callable[[Any], None]]] = {
        "cupy subtract": (lambda: y - r, cp.sync),
        "cupy dot": (lambda: cp.mod.dot(y, t), cp.sync),
        # CuPy has no vecdot of its own: array-api-compat's, as l2loss calls it
        "cupy vecdot": (lambda: array_namespace(y).vecdot(y, t), cp.sync),
        "cupy sum(a*b)": (lambda: cp.mod.sum(y * t), cp.sync),
        "cupy einsum": (lambda: cp.mod.einsum("i,i->", y, t), cp.sync),
        "torch subtract": (lambda: ty - tr, torch.sync),
        "torch dot": (lambda: torch.mod.dot(ty, tt), torch.sync),
        "torch sum(a*b)": (lambda: torch.mod.sum(ty * tt), torch.sync),
    }
    times = measure(cases, rounds, budget)
    size = np.dtype(dtype).itemsize
    out = {
        k: (3 if k.endswith("subtract") else 2) * n * size / float(np.median(v)) / 1e9
        for k, v in times.items()
    }
    print(f"parts {dtype} N={n:.0e} GB/s: " + "  ".join(f"{k}={v:.0f}" for k, v in out.items()))
    return out


def bench_axis(
    libs: dict[str, Lib], shape: tuple[int, int], dtype: str, rounds: int, budget: float
) -> dict[str, Any]:
    """Per-sample losses and tangents (``axis=-1`` over rows of ``shape``),
    fast path, against the plain expressions and ``jax.jit(jax.jvp)``; the
    ceiling is the cuBLAS dot over as many items as one input."""
    cp, torch, jax = libs["cupy"], libs["torch"], libs["jax"]
    jnp = jax.mod.numpy
    n = shape[0] * shape[1]
    rng = cp.mod.random.default_rng(n + 2)
    y, r, t = (rng.standard_normal(shape).astype(dtype) for _ in range(3))
    a, b = (rng.standard_normal(n).astype(dtype) for _ in range(2))
    ty, tr, tt = (torch.put(v) for v in (y, r, t))
    jy, jr, jt = (jax.put(v) for v in (y, r, t))

    def cupy_plain() -> Any:
        d = y - r
        return 0.5 * cp.mod.sum(d * d, axis=-1), cp.mod.sum(d * t, axis=-1)

    def torch_plain() -> Any:
        d = ty - tr
        return 0.5 * torch.mod.sum(d * d, -1), torch.mod.sum(d * tt, -1)

    @jax.mod.jit
    def jax_jvp(y: Any, r: Any, t: Any) -> Any:
        return jax.mod.jvp(lambda v: 0.5 * jnp.sum((v - r) ** 2, axis=-1), (y,), (t,))

    cases: dict[str, tuple[Fn, Callable[[Any], None]]] = {
        "ceiling": (lambda: cp.mod.dot(a, b), cp.sync),
        "l2loss-cupy": (lambda: l2loss.l2_loss_jvp(y, r, t, axis=-1), cp.sync),
        "cupy-plain": (cupy_plain, cp.sync),
        "l2loss-torch": (lambda: l2loss.l2_loss_jvp(ty, tr, tt, axis=-1), torch.sync),
        "torch-plain": (torch_plain, torch.sync),
        "jax-jit-jvp": (lambda: jax_jvp(jy, jr, jt), jax.sync),
    }
    d = to_numpy(y).astype(np.float64) - to_numpy(r).astype(np.float64)
    want = (0.5 * np.sum(d * d, axis=-1), np.sum(d * to_numpy(t).astype(np.float64), axis=-1))
    err = {}
    for k, (f, _) in cases.items():
        if k != "ceiling":
            got = f()
            err[k] = max(
                float(np.max(np.abs(to_numpy(g) - w) / np.maximum(np.abs(w), 1e-300)))
                for g, w in zip(got, want, strict=True)
            )
    times = measure(cases, rounds, budget)
    tc = times["ceiling"]
    row: dict[str, Any] = {
        "shape": list(shape),
        "dtype": dtype,
        "fraction": {
            k: _ratio([c * 1.5 for c in tc], v) for k, v in times.items() if k != "ceiling"
        },
        "seconds": {k: float(np.median(v)) for k, v in times.items()},
        "rel_error": err,
    }
    print(
        f"axis=-1 {dtype} {shape}: "
        + "  ".join(f"{k}={v:.2f}" for k, v in row["fraction"].items()),
        flush=True,
    )
    return row


def bench_tiles(
    libs: dict[str, Lib], n: int, dtype: str, rounds: int, budget: float
) -> dict[str, float]:
    """Fraction of the ceiling of the fast path on CuPy and PyTorch (CUDA) at
    ``n`` for each block size (``1 << 62``: no blocks, the plain expression's
    temporaries), set through the traits' seam (``l2loss._traits.override``)."""
    from l2loss._traits import Blocking, override

    arrays = _inputs(libs, n, dtype, seed=7)
    y, r, t, _, a, b = arrays["cupy"]
    ty, tr, tt, _ = arrays["torch"]
    calls = {
        libs["cupy"].name: (lambda: l2loss.l2_loss_jvp(y, r, t), libs["cupy"].sync),
        "torch": (lambda: l2loss.l2_loss_jvp(ty, tr, tt), libs["torch"].sync),
    }
    ceiling = (lambda: libs["cupy"].mod.dot(a, b), libs["cupy"].sync)
    out: dict[str, float] = {}
    for tile in TILES:
        blocking = Blocking(whole=tile, block=tile, piece=tile)
        for name, case in calls.items():
            with override(name, blocking=blocking):
                times = measure({"ceiling": ceiling, "l2loss": case}, rounds, budget)
            out[f"{name}-{tile}"] = _ratio([c * 1.5 for c in times["ceiling"]], times["l2loss"])
    print(
        f"tiles {dtype} N={n:.0e}: " + "  ".join(f"{k}={v:.2f}" for k, v in out.items()), flush=True
    )
    return out


def machine(libs: dict[str, Lib]) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "l2loss": l2loss.__version__,
        **{f"{k}_version": v.mod.__version__ for k, v in libs.items()},
    }
    try:
        info["gpu"] = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=name,driver_version,memory.total,clocks.max.memory",
                "--format=csv,noheader",
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as e:
        info["gpu"] = f"none ({e})"
    if libs["cupy"].name == "cupy":
        props = libs["cupy"].mod.cuda.runtime.getDeviceProperties(0)
        info["l2_bytes"] = props["l2CacheSize"]
        info["sms"] = props["multiProcessorCount"]
    return info


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=Path("."), help="folder for bench-gpu.json/.png")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--budget", type=float, default=0.02, help="seconds per timed run")
    p.add_argument("--tiles", action="store_true", help="also sweep the GPU tile size")
    p.add_argument("--parts", action="store_true", help="also time the kernels the rule is made of")
    p.add_argument("--dry", action="store_true", help="no GPU: small host arrays, no figures")
    args = p.parse_args(argv)
    libs = libraries(args.dry)
    sizes = [n for n in SIZES if n <= 10**5] if args.dry else SIZES
    small = (lambda ns: [min(n, 10**5) for n in ns]) if args.dry else (lambda ns: ns)

    def small_shape(shape: tuple[int, int]) -> tuple[int, int]:
        return (min(shape[0], 100), min(shape[1], 1000)) if args.dry else shape

    result: dict[str, Any] = {
        "machine": machine(libs),
        "rounds": args.rounds,
        "budget": args.budget,
    }
    print(json.dumps(result["machine"]), flush=True)
    t0 = time.perf_counter()
    for dtype in ("float64", "float32"):
        result[dtype] = bench_sizes(libs, sizes, dtype, args.rounds, args.budget)
        result[f"batched-{dtype}"] = bench_batched(
            libs, small(BATCHED_SIZES), dtype, args.rounds, args.budget
        )
        result[f"axis-{dtype}"] = [
            bench_axis(libs, small_shape(s), dtype, args.rounds, args.budget) for s in AXIS_SHAPES
        ]
        if args.parts:
            result[f"parts-{dtype}"] = {
                str(n): bench_parts(libs, n, dtype, args.rounds, args.budget)
                for n in small(PART_SIZES)
            }
        if args.tiles:
            result[f"tiles-{dtype}"] = {
                str(n): bench_tiles(libs, n, dtype, args.rounds, args.budget)
                for n in small(TILE_SIZES)
            }
    result["seconds"] = time.perf_counter() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench-gpu.json").write_text(json.dumps(result, indent=1))
    plot(result, args.out / "bench-gpu.png")
    print(summary(result))
    return 0


def summary(result: dict[str, Any]) -> str:
    lines = [f"GPU: {result['machine'].get('gpu')}  ({result['seconds']:.0f} s)"]
    for dtype in ("float64", "float32"):
        lines.append(f"{dtype}: fraction of the ceiling; l2loss-cupy speed-up over peers")
        for row in result[dtype]:
            fr, sp = row["fraction"], row["speedup_cupy"]
            lines.append(
                f"  N={row['n']:.0e} ceil {row['ceiling_GBps']:6.0f} GB/s"
                f" | cupy {fr['l2loss-cupy']:.2f}"
                f" full {fr['l2loss-cupy-full']:.2f} torch {fr['l2loss-torch']:.2f}"
                f" jax-jit {fr['l2loss-jax-jit']:.2f} | x plain {sp['cupy-plain']:.2f}"
                f" x torch.func {sp['torch-func-jvp']:.2f} x jax.jit(jvp) {sp['jax-jit-jvp']:.2f}"
                f" | rel. error {row['rel_error']['l2loss-cupy']:.1e}"
            )
        for row in result[f"axis-{dtype}"]:
            fr = row["fraction"]
            lines.append(
                f"  axis=-1 {tuple(row['shape'])}: "
                + " ".join(f"{k} {v:.2f}" for k, v in fr.items())
                + f" | rel. error {max(row['rel_error'].values()):.1e}"
            )
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    """Throughput against N, one panel per dtype, the ceiling as a line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, dtype in zip(axes, ("float64", "float32"), strict=True):
        rows = result[dtype]
        ns = [row["n"] for row in rows]
        ceil = [row["ceiling_GBps"] for row in rows]
        ax.plot(ns, ceil, "k--", label="ceiling (cupy.dot)")
        for case in rows[0]["fraction"]:
            ax.plot(
                ns,
                [c * row["fraction"][case] for c, row in zip(ceil, rows, strict=True)],
                marker="o",
                ms=3,
                label=case,
            )
        ax.set(xscale="log", yscale="log", xlabel="N", title=dtype)
    axes[0].set_ylabel("GB/s read")
    axes[1].legend(fontsize=7)
    fig.suptitle(result["machine"].get("gpu", ""), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    raise SystemExit(main())
