"""The array backends the tests run on, with what each needs to be tested fairly.

``L2LOSS_BACKEND`` (set by the nox session) picks one; without it, every
backend importable here is used. ``L2LOSS_DEVICE`` (default ``cpu``) is the
PyTorch device the torch backend's arrays live on. Each backend knows how to make arrays from
NumPy ones, how to read results back, and how to call a function the way its
users do: JAX also under ``jax.jit``, Dask with computing forbidden.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import array_api_compat as compat
import numpy as np
import pytest

from l2loss.testing import to_numpy

NAMES = ("numpy", "strict", "torch", "jax", "jax-jit", "dask", "cupy")
_MODULE = {
    "numpy": "numpy",
    "strict": "array_api_strict",
    "torch": "torch",
    "jax": "jax",
    "jax-jit": "jax",
    "dask": "dask",
    "cupy": "cupy",
}


class EarlyCompute(AssertionError):
    """Raised when something computes a Dask graph before the test asked."""


def _forbidden_scheduler(*args: Any, **kwargs: Any) -> Any:
    raise EarlyCompute("a Dask graph was computed before the test asked for it")


@dataclass
class Backend:
    """One array library under test."""

    name: str
    xp: Any
    device: Any = None
    jit: bool = False
    lazy: bool = False
    has_complex: bool = True
    low_precision: tuple[str, ...] = ()
    computes: int = field(default=0)

    def __str__(self) -> str:
        return self.name

    # -- arrays in and out -------------------------------------------------
    def asarray(self, a: Any, dtype: str | None = None, chunks: Any = "auto") -> Any:
        """The backend array holding NumPy data ``a`` (optionally cast to ``dtype``)."""
        a = np.asarray(a)
        if dtype is not None:
            a = a.astype(dtype)
        if self.name == "dask":
            import dask.array as da

            if chunks == "auto":
                # Several chunks per axis, so reductions really combine chunks.
                chunks = tuple(max(1, -(-s // 3)) for s in a.shape)
            return da.from_array(a, chunks=chunks)
        if self.name == "torch":
            import torch

            return torch.from_numpy(a.copy()).to(self.device)
        if self.name == "strict":
            return self.xp.asarray(a, device=self.device)
        return self.xp.asarray(a)

    def dtype(self, name: str) -> Any:
        """The backend's dtype called ``name`` (Dask's namespace only lists the
        standard ones; its arrays take NumPy dtypes)."""
        return getattr(self.xp, name, None) or np.dtype(name)

    @contextlib.contextmanager
    def computing(self) -> Iterator[None]:
        """Allow Dask to compute inside the block (reading results back)."""
        if self.name != "dask":
            yield
            return
        import dask

        with dask.config.set(scheduler="sync"):
            yield

    def to_numpy(self, x: Any) -> np.ndarray[Any, Any]:
        """Host copy of backend array ``x`` (computes Dask graphs; bfloat16 -> float32)."""
        with self.computing():
            return to_numpy(x)

    # -- calling the library the way users do ------------------------------
    def call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """``fn(*args, **kwargs)``; under ``jax.jit`` for the jit backend, with
        every array argument traced (keyword ones included)."""
        if not self.jit:
            return fn(*args, **kwargs)
        import jax

        arrays = {k: v for k, v in kwargs.items() if compat.is_array_api_obj(v)}
        static = {k: v for k, v in kwargs.items() if k not in arrays}
        return jax.jit(lambda a, k: fn(*a, **k, **static))(args, arrays)

    def check_array(self, x: Any, like: Any) -> None:
        """``x`` is an array of ``like``'s library and device (never a host value)."""
        assert compat.is_array_api_obj(x), f"expected an array, got {type(x)}"
        assert compat.array_namespace(x) is compat.array_namespace(like), (
            f"result of {type(x)} is not in the input's namespace"
        )
        if self.name == "dask":
            import dask.array as da

            assert isinstance(x, da.Array), "Dask results must stay lazy Dask arrays"
        if not self.jit:
            assert compat.device(x) == compat.device(like), (
                f"result on {compat.device(x)}, input on {compat.device(like)}"
            )


def _make(name: str) -> Backend:
    if name == "numpy":
        return Backend(name, compat.array_namespace(np.empty(0)), low_precision=("float16",))
    if name == "strict":
        import array_api_strict as xps

        xps.set_array_api_strict_flags(data_dependent_shapes=False, boolean_indexing=False)
        # A non-default device: results must stay on it.
        return Backend(name, xps, device=xps.Device("device1"))
    if name == "torch":
        import torch

        # L2LOSS_DEVICE=cuda runs the torch tests on the GPU (benchmarks/gpu.sh).
        device = torch.device(os.environ.get("L2LOSS_DEVICE", "cpu"))
        torch.empty(0, device=device)  # raises where that device is not usable
        return Backend(
            name,
            compat.array_namespace(torch.empty(0)),
            device=device,
            low_precision=("float16", "bfloat16"),
        )
    if name in ("jax", "jax-jit"):
        import jax

        jax.config.update("jax_enable_x64", True)
        import jax.numpy as jnp

        return Backend(name, jnp, jit=name == "jax-jit", low_precision=("float16", "bfloat16"))
    if name == "dask":
        import dask
        import dask.array as da

        dask.config.set(scheduler=_forbidden_scheduler)
        return Backend(
            name, compat.array_namespace(da.empty(0)), lazy=True, low_precision=("float16",)
        )
    if name == "cupy":
        import cupy

        cupy.cuda.runtime.getDeviceCount()  # raises without a CUDA device
        return Backend(name, compat.array_namespace(cupy.empty(0)), low_precision=("float16",))
    raise ValueError(name)


def session_modules(backend: str, *modules: str, why: str) -> list[Any]:
    """For a test module that belongs to ``backend``'s session: skip it (with
    ``why``) where that backend is not selected, and import ``modules``. In the
    backend's own session they must import (a missing one is an error, never a
    skip); in a run of every backend a missing one skips the module."""
    if backend not in selected():
        pytest.skip(why, allow_module_level=True)
    if os.environ.get("L2LOSS_BACKEND") == backend:
        return [importlib.import_module(m) for m in modules]
    return [pytest.importorskip(m) for m in modules]


def selected() -> list[str]:
    """Backend names for this run: ``L2LOSS_BACKEND``, or every importable one."""
    chosen = os.environ.get("L2LOSS_BACKEND")
    if chosen:
        names = [n for n in NAMES if n == chosen or (chosen == "jax" and n == "jax-jit")]
        if not names:
            raise ValueError(f"L2LOSS_BACKEND={chosen!r} is not one of {NAMES}")
        return names
    return [n for n in NAMES if n != "cupy" and importlib.util.find_spec(_MODULE[n])]


@functools.cache
def get(name: str) -> Backend:
    return _make(name)
