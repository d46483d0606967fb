"""``python -m l2loss``: run the loss and both rules on every installed array
library, check them against finite differences and the library's own autodiff,
print a table, and exit non-zero if any check fails."""

from __future__ import annotations

import argparse
import contextlib
import importlib
import sys
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import __version__, l2_loss, l2_loss_jvp, l2_loss_vjp
from .testing import check_jvp, check_vjp, to_numpy

DTYPES = ("float32", "float64", "complex64", "complex128")


@dataclass
class Row:
    backend: str
    dtype: str
    L: float | None = None
    L_dot: float | None = None
    error: float | None = None
    autodiff: str = "-"
    status: str = "pass"


def _numpy() -> tuple[Any, Callable[[np.ndarray[Any, Any]], Any]]:
    import array_api_compat.numpy as xp

    return xp, np.asarray


def _strict() -> tuple[Any, Callable[[np.ndarray[Any, Any]], Any]]:
    xp = importlib.import_module("array_api_strict")
    return xp, xp.asarray


def _torch() -> tuple[Any, Callable[[np.ndarray[Any, Any]], Any]]:
    torch = importlib.import_module("torch")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch, lambda a: torch.from_numpy(a).to(device)


def _jax() -> tuple[Any, Callable[[np.ndarray[Any, Any]], Any]]:
    jax = importlib.import_module("jax")
    jax.config.update("jax_enable_x64", True)
    return jax.numpy, jax.numpy.asarray


def _dask() -> tuple[Any, Callable[[np.ndarray[Any, Any]], Any]]:
    da = importlib.import_module("dask.array")
    return da, lambda a: da.from_array(a, chunks=max(1, a.shape[0] // 4))


def _cupy() -> tuple[Any, Callable[[np.ndarray[Any, Any]], Any]]:
    cupy = importlib.import_module("cupy")
    cupy.cuda.runtime.getDeviceCount()  # raises without a CUDA device
    return cupy, cupy.asarray


BACKENDS: dict[str, Callable[[], tuple[Any, Callable[[np.ndarray[Any, Any]], Any]]]] = {
    "numpy": _numpy,
    "array_api_strict": _strict,
    "torch": _torch,
    "jax": _jax,
    "dask": _dask,
    "cupy": _cupy,
}


# torch.func.jvp scripts a helper of its own with torch.jit.script, which warns
# that TorchScript is deprecated (a DeprecationWarning up to torch 2.13, a
# FutureWarning from 2.14, another text on Python 3.14): nothing a user of
# l2loss can act on, and it would print above the table.
_TORCHSCRIPT = r"`torch\.jit\.script` is (deprecated|not supported in Python 3\.14\+)"


@contextlib.contextmanager
def _torchscript_quiet() -> Iterator[None]:
    """Ignore exactly torch.jit.script's deprecation warning inside the block."""
    with warnings.catch_warnings():
        for category in (DeprecationWarning, FutureWarning):
            warnings.filterwarnings("ignore", message=_TORCHSCRIPT, category=category)
        yield


def _autodiff(name: str, arrays: list[Any], L_dot: Any) -> str | None:
    """Compare L_dot with the library's own forward-mode autodiff of
    ``0.5 * sum(|y - y_ref|^2)``; None when the library has none."""
    y, r, t, u = arrays
    if name == "jax":
        import jax
        import jax.numpy as jnp

        def f(y: Any, r: Any) -> Any:
            return 0.5 * jnp.sum(jnp.abs(y - r) ** 2)

        _, want = jax.jvp(f, (y, r), (t, u))
    elif name == "torch":
        import torch

        def g(y: Any, r: Any) -> Any:
            return 0.5 * torch.sum(torch.abs(y - r) ** 2)

        with _torchscript_quiet():
            _, want = torch.func.jvp(g, (y, r), (t, u))
    else:
        return None
    got, ref = float(to_numpy(L_dot)), float(to_numpy(want))
    info = np.finfo(to_numpy(L_dot).dtype)
    # Both round by a few eps of the sum of the products' magnitudes; what
    # underflows is off by at most the smallest normal number per term.
    d, w = to_numpy(y) - to_numpy(r), to_numpy(t) - to_numpy(u)
    scale = float(np.sum(np.abs(d) * np.abs(w)))
    tol = 64 * float(info.eps) * scale + (d.size + 1) * float(info.smallest_normal)
    ok = abs(got - ref) <= tol
    return f"{'ok' if ok else 'FAIL'} ({abs(got - ref):.1e})"


def _run(name: str, dtype: str, n: int, rng: np.random.Generator) -> Row:
    row = Row(name, dtype)
    try:
        _, make = BACKENDS[name]()
    except ModuleNotFoundError:
        row.dtype, row.status = "-", "skipped: not installed"
        return row
    except Exception as e:  # installed but unusable (e.g. CuPy without a GPU): say so
        row.dtype = "-"
        row.status = f"skipped: {type(e).__name__}: {str(e).splitlines()[0][:60]}"
        return row
    host = []
    for _ in range(4):
        a = rng.standard_normal(n)
        if dtype.startswith("complex"):
            a = a + 1j * rng.standard_normal(n)
        host.append(a.astype(dtype))
    arrays = [make(a) for a in host]
    try:
        L, L_dot = l2_loss_jvp(*arrays)
        row.L, row.L_dot = float(to_numpy(L)), float(to_numpy(L_dot))
        jvp = check_jvp(l2_loss, l2_loss_jvp, arrays[:2], arrays[2:])
        vjp = check_vjp(l2_loss, l2_loss_vjp, arrays[:2])
        row.error = max(jvp.error, vjp.error)
        ad = _autodiff(name, arrays, L_dot)
        if ad is not None:
            row.autodiff = ad
            if ad.startswith("FAIL"):
                row.status = "FAIL"
    except Exception as e:  # a wrong number or a crash fails this row, not the table
        row.status = "FAIL"
        print(f"{name} {dtype}: {type(e).__name__}: {e}", file=sys.stderr)
    return row


def _table(rows: list[Row]) -> str:
    head = ("backend", "dtype", "L", "L_dot", "err/tol", "autodiff", "status")
    body = [
        (
            r.backend,
            r.dtype,
            "" if r.L is None else f"{r.L:.6g}",
            "" if r.L_dot is None else f"{r.L_dot:.6g}",
            "" if r.error is None else f"{r.error:.2g}",
            r.autodiff,
            r.status,
        )
        for r in rows
    ]
    widths = [max(len(x[i]) for x in (head, *body)) for i in range(len(head))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(x, widths, strict=True)).rstrip()
        for x in (head, *body)
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _natural(text: str) -> int:
    """argparse type: a whole number >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m l2loss",
        description="Check l2_loss, its JVP and its VJP on every installed array library "
        "against finite differences and the library's own autodiff.",
    )
    parser.add_argument(
        "--n",
        type=_natural,
        default=1000,
        help="elements per input, 0 or more (default 1000; 0 checks empty arrays, whose "
        "loss and derivatives are 0)",
    )
    parser.add_argument(
        "--seed", type=_natural, default=0, help="seed of the random inputs, 0 or more (default 0)"
    )
    args = parser.parse_args(argv)
    rng = np.random.default_rng(args.seed)
    print(
        f"l2loss {__version__}: L = 1/2 ||y - y_ref||^2, L_dot = (y - y_ref)^T (y_dot - y_ref_dot)"
    )
    print(f"N = {args.n}; err/tol is the worst finite-difference error over its tolerance (<= 1)")
    if args.n == 0:
        print("Empty arrays: L and L_dot are 0, so this checks only that each library takes them.")
    print()
    rows = []
    for name in BACKENDS:
        for dtype in DTYPES:
            row = _run(name, dtype, args.n, rng)
            rows.append(row)
            if row.status.startswith("skipped"):
                break  # one row says why a library is missing
    print(_table(rows))
    failed = [r for r in rows if r.status == "FAIL"]
    ran = [r for r in rows if r.status == "pass"]
    print(f"\n{len(ran)} passed, {len(failed)} failed")
    return 1 if failed or not ran else 0


if __name__ == "__main__":
    sys.exit(main())
