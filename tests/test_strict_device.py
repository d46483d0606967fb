"""array-api-strict with its strictest flags, on non-default devices.

array-api-strict refuses anything outside the standard (and, with the flags
below, boolean indexing, data-dependent shapes and the optional extensions)
and refuses to combine arrays of different devices. Every result of every
public function must be an array on the inputs' device, including the arrays
the library creates itself (the mask's zero, a Python ``L_bar``, the zeros of
``L_dot`` without tangents). The ``no_float64`` device has no float64 at all,
so any hidden float64 temporary fails there.

Runs in the strict session (``L2LOSS_BACKEND=strict``) and when no backend is
selected; skipped otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from backends import Backend, session_modules

from l2loss import l2_loss, l2_loss_grad, l2_loss_jvp, l2_loss_vjp

(xps,) = session_modules(
    "strict", "array_api_strict", why="the array-api-strict tests run in the strict session"
)

pytestmark = pytest.mark.parametrize("be", ["strict"], indirect=True)

S, N, K = 3, 40, 2


@pytest.fixture(autouse=True)
def strictest() -> Iterator[None]:
    """The strictest flags, for this test only: no boolean indexing, no
    data-dependent shapes, no optional extension (and the installed version's
    default standard, its latest)."""
    with xps.ArrayAPIStrictFlags(
        boolean_indexing=False,
        data_dependent_shapes=False,
        enabled_extensions=(),
    ):
        yield


# (device, real dtype, complex dtype): every non-default device, each with the
# widest dtypes it holds.
DEVICES = [
    ("device1", "float64", "complex128"),
    ("device2", "float64", "complex128"),
    ("no_float64", "float32", "complex64"),
]
RTOL = {"float64": 1e-12, "float32": 2e-5}


class Problem:
    """NumPy data of one problem, the same data on a strict device, and checks."""

    def __init__(self, device: str, dtype: str, complex_dtype: str, *, complex_: bool) -> None:
        self.device = xps.Device(device)
        self.dtype = complex_dtype if complex_ else dtype
        self.real = dtype
        r = np.random.default_rng(3)

        def data(*shape: int) -> np.ndarray[Any, Any]:
            x = r.standard_normal(shape)
            if complex_:
                x = x + 1j * r.standard_normal(shape)
            return x.astype(self.dtype)

        self.np = {
            "y": data(S, N),
            "y_ref": data(S, N),
            "y_dot": data(S, N),
            "y_ref_dot": data(S, N),
            "Y_dot": data(K, S, N),
            "where": r.random((S, N)) < 0.7,
            "L_bar": r.standard_normal(S).astype(dtype),
        }
        self.np["y_ref"][~self.np["where"]] = np.nan
        self.x = {k: xps.asarray(v, device=self.device) for k, v in self.np.items()}

    def check(self, got: Any, want: Any, dtype: str) -> None:
        """``got``: a strict array on this device, of ``dtype``, equal to NumPy's ``want``."""
        assert type(got) is type(self.x["y"]), f"got {type(got)}, not a strict array"
        assert got.device == self.device, f"result on {got.device}, inputs on {self.device}"
        assert got.dtype == getattr(xps, dtype)
        host = np.asarray(xps.asarray(got, device=xps.Device("CPU_DEVICE")))
        np.testing.assert_allclose(host, want, rtol=RTOL[self.real], atol=RTOL[self.real])

    # NumPy references, in float64/complex128.
    def d(self) -> np.ndarray[Any, Any]:
        n = self.np
        d = n["y"].astype(np.complex128) - n["y_ref"].astype(np.complex128)
        return np.where(n["where"], d, 0.0)

    def sq(self, axis: Any) -> np.ndarray[Any, Any]:
        d = self.d()
        return 0.5 * np.sum((d.conj() * d).real, axis=axis)

    def ip(self, t: np.ndarray[Any, Any], axis: Any) -> np.ndarray[Any, Any]:
        t = np.where(self.np["where"], t.astype(np.complex128), 0.0)
        red = (-2, -1) if axis is None else -1
        return np.sum((self.d().conj() * t).real, axis=red)


@pytest.fixture(params=DEVICES, ids=[d[0] for d in DEVICES])
def device(request: pytest.FixtureRequest) -> tuple[str, str, str]:
    return request.param  # type: ignore[no-any-return]


@pytest.mark.parametrize("complex_", [False, True], ids=["real", "complex"])
@pytest.mark.parametrize("axis", [None, -1], ids=["all", "per-sample"])
def test_results_stay_on_the_device(
    be: Backend, device: tuple[str, str, str], complex_: bool, axis: Any
) -> None:
    p = Problem(*device, complex_=complex_)
    x, real = p.x, p.real

    p.check(l2_loss(x["y"], x["y_ref"], axis=axis, where=x["where"]), p.sq(axis), real)

    L, L_dot = l2_loss_jvp(x["y"], x["y_ref"], x["y_dot"], axis=axis, where=x["where"])
    p.check(L, p.sq(axis), real)
    p.check(L_dot, p.ip(p.np["y_dot"], axis), real)

    _, L_dot = l2_loss_jvp(
        x["y"], x["y_ref"], x["y_dot"], x["y_ref_dot"], axis=axis, where=x["where"]
    )
    p.check(L_dot, p.ip(p.np["y_dot"] - p.np["y_ref_dot"], axis), real)

    _, L_dot = l2_loss_jvp(
        x["y"], x["y_ref"], x["Y_dot"], None, axis=axis, where=x["where"], batched=True
    )
    p.check(L_dot, p.ip(p.np["Y_dot"], axis), real)

    # No tangent at all: the zeros are made by the library, on the device.
    _, L_dot = l2_loss_jvp(x["y"], x["y_ref"], None, None, axis=axis, where=x["where"])
    p.check(L_dot, np.zeros_like(p.sq(axis)), real)

    L, pullback = l2_loss_vjp(x["y"], x["y_ref"], axis=axis, where=x["where"])
    p.check(L, p.sq(axis), real)
    # A strict array cotangent on the device, and a Python number the library
    # turns into one.
    L_bar = x["L_bar"] if axis is not None else x["L_bar"][0]
    lb = p.np["L_bar"][:, None] if axis is not None else p.np["L_bar"][0]
    for cot, scale in ((L_bar, lb), (2.0, 2.0)):
        y_bar, y_ref_bar = pullback(cot)
        p.check(y_bar, scale * p.d(), p.dtype)
        p.check(y_ref_bar, -scale * p.d(), p.dtype)

    _, y_bar = l2_loss_grad(x["y"], x["y_ref"], axis=axis, where=x["where"])
    p.check(y_bar, p.d(), p.dtype)


def test_arrays_on_two_devices_are_refused(be: Backend) -> None:
    y = xps.asarray(np.ones(4), device=xps.Device("device1"))
    y_ref = xps.asarray(np.zeros(4), device=xps.Device("device2"))
    with pytest.raises(ValueError, match="device"):
        l2_loss(y, y_ref)
