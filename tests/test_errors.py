"""Bad input raises the documented error class, early, with a message that names
the argument, its shape and dtype, and the fix; validation never reads values."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pytest
from backends import Backend

from l2loss import l2_loss, l2_loss_jvp, l2_loss_vjp

Y = np.arange(6.0).reshape(2, 3)


def arr(be: Backend, a: Any = Y, dtype: str | None = None) -> Any:
    return be.asarray(np.asarray(a), dtype=dtype)


def test_non_array_input(be: Backend) -> None:
    with pytest.raises(TypeError, match=r"y_ref must be an array .*got builtins\.list"):
        l2_loss(arr(be), [[0.0, 1.0, 2.0], [3.0, 4.0, 5.0]])
    with pytest.raises(TypeError, match=r"y must be an array .*got builtins\.float"):
        l2_loss(1.0, arr(be))
    with pytest.raises(TypeError, match=r"y_dot must be an array"):
        l2_loss_jvp(arr(be), arr(be), "tangent")


class _Impostor:
    """Not an array, though it has a shape and a dtype that cannot be hashed."""

    shape = (2, 3)

    @property
    def dtype(self) -> Any:
        return []


class _RaisingDtype(_Impostor):
    @property
    def dtype(self) -> Any:
        raise RuntimeError("no dtype here")


@pytest.mark.parametrize("impostor", [_Impostor, _RaisingDtype])
def test_array_lookalikes_get_the_non_array_error(be: Backend, impostor: type) -> None:
    """The per-call cache reads dtypes before validation; a dtype that cannot be
    read or hashed must still end in the documented TypeError."""
    with pytest.raises(TypeError, match=r"y must be an array .*got test_errors\._"):
        l2_loss(impostor(), arr(be))
    with pytest.raises(TypeError, match=r"y_ref_dot must be an array"):
        l2_loss_jvp(arr(be), arr(be), arr(be), impostor())


def test_mixed_libraries(be: Backend) -> None:
    other = np.asarray(Y) if be.name not in ("numpy", "cupy") else _any_other_library()
    with pytest.raises(TypeError, match=r"one array library.*y: .*y_ref: "):
        l2_loss(arr(be), other)


def _any_other_library() -> Any:
    try:
        import array_api_strict as xps
    except ImportError:
        pytest.skip("needs a second array library to mix with NumPy")
    return xps.asarray(Y)


@pytest.mark.parametrize("dtype", ["int64", "int32", "bool"])
def test_integer_and_bool_dtypes(be: Backend, dtype: str) -> None:
    good = arr(be)
    bad = arr(be, Y.astype(dtype))
    with pytest.raises(
        TypeError,
        match=rf"y must have a real or complex floating dtype, got shape \(2, 3\) "
        rf"and dtype .*{dtype}.*astype",
    ):
        l2_loss(bad, good)
    with pytest.raises(TypeError, match=r"y_ref_dot must have a real or complex floating dtype"):
        l2_loss_jvp(good, good, good, bad)


def test_shape_mismatch_is_never_broadcast(be: Backend) -> None:
    y = arr(be)
    with pytest.raises(
        ValueError, match=r"y_ref must have the shape of y, \(2, 3\), got shape \(3,\).*broadcast"
    ):
        l2_loss(y, arr(be, Y[0]))
    with pytest.raises(
        ValueError, match=r"y_ref must have the shape of y, \(2, 3\), got shape \(1, 3\)"
    ):
        l2_loss(y, arr(be, Y[:1]))
    with pytest.raises(
        ValueError, match=r"y_dot must have the shape of y, \(2, 3\), got shape \(3, 2\)"
    ):
        l2_loss_jvp(y, y, arr(be, Y.T.copy()))
    with pytest.raises(ValueError, match=r"y_ref_dot must have the shape of y"):
        l2_loss_jvp(y, y, None, arr(be, Y[0]))


def test_batched_shapes(be: Backend) -> None:
    y = arr(be)
    with pytest.raises(ValueError, match=r"batched=True, y_dot must have shape \(K, \*y.shape\)"):
        l2_loss_jvp(y, y, y, batched=True)
    k2 = arr(be, np.stack([Y, Y]))
    k3 = arr(be, np.stack([Y, Y, Y]))
    with pytest.raises(ValueError, match=r"same number of directions K"):
        l2_loss_jvp(y, y, k2, k3, batched=True)
    with pytest.raises(ValueError, match=r"needs at least one tangent"):
        l2_loss_jvp(y, y, None, None, batched=True)


@pytest.mark.parametrize(
    ("axis", "message"),
    [
        (2, r"axis 2 is out of bounds for y with 2 dimensions"),
        (-3, r"axis -3 is out of bounds"),
        ((0, 0), r"names the same axis twice"),
        ((0, -2), r"names the same axis twice"),
        (1.0, r"axis must be None, an int or a tuple of ints, got 1.0"),
        ([0], r"axis must be None, an int or a tuple of ints, got \[0\]"),
        (True, r"got True"),
        ("0", r"got '0'"),
    ],
)
def test_bad_axis(be: Backend, axis: Any, message: str) -> None:
    y = arr(be)
    with pytest.raises(ValueError, match=message):
        l2_loss(y, y, axis=axis)
    with pytest.raises(ValueError, match=message):
        l2_loss_vjp(y, y, axis=axis)


def test_bad_mask(be: Backend) -> None:
    y = arr(be)
    with pytest.raises(
        TypeError, match=r"where must be a boolean array, got shape \(2, 3\) and dtype .*float"
    ):
        l2_loss(y, y, where=y)
    with pytest.raises(
        ValueError, match=r"where must have the shape of y, \(2, 3\), got shape \(3,\)"
    ):
        l2_loss(y, y, where=arr(be, np.ones(3, dtype=bool)))
    with pytest.raises(TypeError, match=r"where must be an array"):
        l2_loss(y, y, where=True)


def test_bad_cotangent(be: Backend) -> None:
    y = arr(be)
    _, pullback = l2_loss_vjp(y, y, axis=1)
    with pytest.raises(
        ValueError, match=r"L_bar must have the shape of L, \(2,\) \(or be 0-d\), got shape \(3,\)"
    ):
        pullback(arr(be, np.ones(3)))
    with pytest.raises(TypeError, match=r"L_bar must be a real floating array"):
        pullback(arr(be, np.ones(2, dtype=np.complex128)))
    with pytest.raises(TypeError, match=r"L_bar must be an array"):
        pullback("one")
    with pytest.raises(TypeError, match=r"L_bar must be a real number .*complex number"):
        pullback(1j)


def test_mismatched_devices() -> None:
    xps = pytest.importorskip("array_api_strict")
    y = xps.asarray(Y, device=xps.Device("device1"))
    r = xps.asarray(Y, device=xps.Device("device2"))
    with pytest.raises(
        ValueError, match=re.escape("y_ref is on device") + r".*device2.*device1.*move it"
    ):
        l2_loss(y, r)


@pytest.mark.parametrize("name", ["y_ref_dot", "where"])
def test_mismatched_device_after_a_structural_zero(name: str) -> None:
    """A tangent given as None is skipped, not taken as a device: the
    arguments after it are still checked."""
    xps = pytest.importorskip("array_api_strict")
    one, two = xps.Device("device1"), xps.Device("device2")
    y = xps.asarray(Y, device=one)
    args = {
        "y_ref_dot": xps.asarray(Y, device=two if name == "y_ref_dot" else one),
        "where": xps.asarray(Y > 0, device=two if name == "where" else one),
    }
    with pytest.raises(ValueError, match=rf"{name} is on device .*device2.*device1.*move it"):
        l2_loss_jvp(y, y, None, args["y_ref_dot"], where=args["where"])


def test_cotangent_on_another_device() -> None:
    xps = pytest.importorskip("array_api_strict")
    y = xps.asarray(Y, device=xps.Device("device1"))
    _, pullback = l2_loss_vjp(y, y, axis=1)
    with pytest.raises(ValueError, match=r"L_bar is on device .*device2.*move it"):
        pullback(xps.ones(2, device=xps.Device("device2")))


def test_validation_reads_no_values(be: Backend) -> None:
    """Errors come from metadata alone: NaN-filled inputs give the same errors."""
    y = arr(be, np.full((2, 3), np.nan))
    with pytest.raises(ValueError, match=r"y_ref must have the shape of y"):
        l2_loss(y, arr(be, np.full(3, np.nan)))


@pytest.mark.parametrize("n", [3, 20_000])  # the small path and the tiles
def test_numpy_masked_arrays_are_refused(n: int) -> None:
    """NumPy's masked arrays would lose their mask in some kernels: they get a
    TypeError that says how to pass the mask, whatever their size or role."""
    a = np.ma.masked_array(np.ones(n), mask=np.arange(n) % 2 == 0)
    plain = np.zeros(n)
    fix = r"pass its data and the mask as `where`"
    with pytest.raises(
        TypeError, match=rf"y is a numpy\.ma\.MaskedArray \(shape \({n},\), dtype float64\).*{fix}"
    ):
        l2_loss(a, plain)
    with pytest.raises(TypeError, match=rf"y_dot is a numpy\.ma\.MaskedArray.*{fix}"):
        l2_loss_jvp(plain, plain, a)
    with pytest.raises(TypeError, match=r"where is a numpy\.ma\.MaskedArray"):
        l2_loss(plain, plain, where=np.ma.masked_array(np.ones(n, dtype=bool)))
    _, pullback = l2_loss_vjp(plain, plain)
    with pytest.raises(TypeError, match=r"L_bar is a numpy\.ma\.MaskedArray"):
        pullback(np.ma.masked_array(np.ones(())))
