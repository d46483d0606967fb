"""Bad input raises the documented error class, early, with a message that names
the argument, its shape and dtype, and the fix; validation never reads values."""

from __future__ import annotations

import importlib
import re
from typing import Any

import numpy as np
import pytest
from backends import Backend
from hypothesis import given
from hypothesis import strategies as st
from strategies import calls_with_none, shapes

from l2loss import _api, _traits, l2_loss, l2_loss_grad, l2_loss_jvp, l2_loss_vjp

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
    """Arrays of two libraries are refused, except NumPy arrays beside JAX
    ones, which JAX takes as its own functions do."""
    jax_or_numpy = be.name in ("numpy", "cupy", "jax", "jax-jit")
    other = np.asarray(Y) if not jax_or_numpy else _any_other_library()
    with pytest.raises(TypeError, match=r"one array library.*y: .*y_ref: "):
        l2_loss(arr(be), other)


@given(data=st.data())
def test_none_where_an_array_is_required(be: Backend, data: st.DataObject) -> None:
    """None stands for a structural zero only where a tangent is expected: as a
    primal (from every function, whatever the other arguments) or as the
    pullback's cotangent it is a TypeError naming the argument."""
    shape = data.draw(shapes(max_dims=2))
    function, position, args = data.draw(calls_with_none(shape, "float64"))
    arrays = {k: None if a is None else be.asarray(a) for k, a in args.items()}
    where = arrays.get("where")
    message = rf"{position} must be a"
    y, y_ref = arrays["y"], arrays["y_ref"]
    calls = {
        "l2_loss": lambda: l2_loss(y, y_ref, where=where),
        "l2_loss_jvp": lambda: l2_loss_jvp(
            y, y_ref, arrays.get("y_dot"), arrays.get("y_ref_dot"), where=where
        ),
        "l2_loss_vjp": lambda: l2_loss_vjp(y, y_ref, where=where),
        "pullback": lambda: l2_loss_vjp(y, y_ref)[1](arrays.get("L_bar")),
    }
    with pytest.raises(TypeError, match=message):
        calls[function]()
    if position != "L_bar":  # and l2_loss_grad, which the strategy does not draw
        with pytest.raises(TypeError, match=message):
            l2_loss_grad(arrays["y"], arrays["y_ref"])


def test_the_cast_hint_works(be: Backend) -> None:
    """The dtype error's suggested fix is code of the arrays' library, with the
    argument's name, and it works: evaluated, it gives an array l2loss takes."""
    good, bad = arr(be), arr(be, Y.astype(np.int64))
    for name, call in (
        ("y", lambda a: l2_loss(a, good)),
        ("y_ref_dot", lambda a: l2_loss_jvp(good, good, None, a)),
    ):
        with pytest.raises(TypeError, match=rf"{name} must have a real or complex") as info:
            call(bad)
        hint = str(info.value).split("cast it first: ")[1]
        assert name in hint, hint
        modules = {
            m: importlib.import_module(m)
            for m in re.findall(r"\b(numpy|torch|jax|cupy|array_api_strict)\.", hint)
        }
        if "jax" in modules:
            importlib.import_module("jax.numpy")
        fixed = eval(hint, modules, {name: bad})
        call(fixed)  # no error: the fix is a fix


@pytest.mark.parametrize("flag", ["yes", 1, 0, None])
def test_batched_must_be_a_bool(be: Backend, flag: Any) -> None:
    y = arr(be)
    with pytest.raises(TypeError, match=r"batched must be True or False, got"):
        l2_loss_jvp(y, y, arr(be, np.stack([Y, Y])), batched=flag)


def test_caches_are_bounded() -> None:
    """Argument types made on the fly (subclasses of ndarray) fill neither the
    traits' cache nor the kinds of calls without end."""
    for i in range(700):
        sub = type(f"Sub{i}", (np.ndarray,), {})
        a = np.ones(3).view(sub)
        l2_loss(a, a)
    assert len(_traits._CACHE) <= _traits._CACHE_SIZE
    assert len(_api._KINDS) <= _api._KINDS_SIZE


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
        rf"and dtype .*{dtype}.*cast it first",
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


def test_axis_of_a_scalar(be: Backend) -> None:
    y = arr(be, np.asarray(1.0))
    with pytest.raises(ValueError, match=r"0 dimensions \(a scalar\).*no axes to reduce"):
        l2_loss(y, y, axis=0)
    assert float(be.to_numpy(l2_loss(y, y, axis=()))) == 0.0


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
    with pytest.raises(TypeError, match=r"L_bar must be a real number .*True"):
        pullback(True)


@pytest.mark.parametrize("scalar", [2, 2.0, np.float32(2.0), np.float64(2.0), np.int64(2), "0-d"])
def test_every_real_scalar_cotangent_broadcasts(be: Backend, scalar: Any) -> None:
    """One rule for scalars: a real number (Python or NumPy, integer or
    floating) or a 0-d real floating array stands for that value at every
    loss of a batch."""
    y, r = arr(be), arr(be, np.zeros((2, 3)))
    _, pullback = l2_loss_vjp(y, r, axis=1)
    c = be.asarray(np.asarray(2.0)) if scalar == "0-d" else scalar
    y_bar, y_ref_bar = pullback(c)
    np.testing.assert_array_equal(be.to_numpy(y_bar), 2.0 * Y)
    np.testing.assert_array_equal(be.to_numpy(y_ref_bar), -2.0 * Y)


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
