"""JAX transformations of the public functions.

The rules are plain array code, so JAX can transform them like any other
function: ``jax.jit``, ``jax.vmap`` over a batch of independent problems, and
``jax.grad`` / ``jax.jvp`` of a larger function that calls them. Each result
must match the eager call (or, for derivatives of the rules themselves, the
closed form).

Runs in the jax session (``L2LOSS_BACKEND=jax``) and when no backend is
selected; skipped otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from backends import Backend, session_modules

from l2loss import l2_loss, l2_loss_grad, l2_loss_jvp, l2_loss_vjp

(jax,) = session_modules("jax", "jax", why="the JAX transformation tests run in the jax session")

# The eager JAX backend (its fixture turns on float64); the transformations are the tests'.
pytestmark = pytest.mark.parametrize("be", ["jax"], indirect=True)

B, S, N, K = 4, 3, 17, 2  # problems in a vmap batch, samples, items, tangent directions
RTOL = 1e-12


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _problem(be: Backend, lead: tuple[int, ...] = (), seed: int = 0) -> dict[str, Any]:
    """Arrays of one problem of shape (S, N) (with ``lead`` batch axes in front)."""
    r = _rng(seed)
    shape = (*lead, S, N)
    where = r.random(shape) < 0.7
    y_ref = r.standard_normal(shape)
    y_ref[~where] = np.nan  # missing targets: must take no part, nor poison a gradient
    return {
        "y": be.asarray(r.standard_normal(shape)),
        "y_ref": be.asarray(y_ref),
        "y_dot": be.asarray(r.standard_normal(shape)),
        "y_ref_dot": be.asarray(r.standard_normal(shape)),
        "Y_dot": be.asarray(r.standard_normal((*lead, K, S, N))),
        "Y_ref_dot": be.asarray(r.standard_normal((*lead, K, S, N))),
        "where": be.asarray(where),
        "L_bar": be.asarray(r.standard_normal((*lead, S))),
    }


def _vjp(y: Any, y_ref: Any, L_bar: Any, **kw: Any) -> tuple[Any, Any, Any]:
    L, pullback = l2_loss_vjp(y, y_ref, **kw)
    return (L, *pullback(L_bar if kw.get("axis") is not None else 0.5 * (L_bar[0] + 1.0)))


# name -> f(arrays) calling one public function; every array is an argument,
# so jit traces all of them and vmap maps all of them.
CALLS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "l2_loss": lambda a: l2_loss(a["y"], a["y_ref"], where=a["where"]),
    "l2_loss-axis": lambda a: l2_loss(a["y"], a["y_ref"], axis=-1, where=a["where"]),
    "jvp-fast": lambda a: l2_loss_jvp(a["y"], a["y_ref"], a["y_dot"], where=a["where"]),
    "jvp-full-axis": lambda a: l2_loss_jvp(
        a["y"], a["y_ref"], a["y_dot"], a["y_ref_dot"], axis=1, where=a["where"]
    ),
    "jvp-batched": lambda a: l2_loss_jvp(
        a["y"], a["y_ref"], a["Y_dot"], a["Y_ref_dot"], where=a["where"], batched=True
    ),
    "jvp-batched-axis": lambda a: l2_loss_jvp(
        a["y"], a["y_ref"], a["Y_dot"], None, axis=-1, where=a["where"], batched=True
    ),
    "jvp-no-tangent": lambda a: l2_loss_jvp(a["y"], a["y_ref"], None, None, where=a["where"]),
    "vjp": lambda a: _vjp(a["y"], a["y_ref"], a["L_bar"], where=a["where"]),
    "vjp-axis": lambda a: _vjp(a["y"], a["y_ref"], a["L_bar"], axis=-1, where=a["where"]),
    "grad": lambda a: l2_loss_grad(a["y"], a["y_ref"], where=a["where"]),
    "grad-axis": lambda a: l2_loss_grad(a["y"], a["y_ref"], axis=-1, where=a["where"]),
}


def _leaves(x: Any) -> list[np.ndarray[Any, Any]]:
    return [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(x)]


def _assert_same(got: Any, want: Any) -> None:
    g, w = _leaves(got), _leaves(want)
    assert len(g) == len(w)
    for a, b in zip(g, w, strict=True):
        assert a.shape == b.shape
        assert a.dtype == b.dtype
        assert np.all(np.isfinite(a)), "a masked NaN leaked into a result"
        np.testing.assert_allclose(a, b, rtol=RTOL, atol=RTOL)


@pytest.mark.parametrize("name", CALLS)
def test_jit_matches_eager(be: Backend, name: str) -> None:
    a = _problem(be)
    f = CALLS[name]
    _assert_same(jax.jit(f)(a), f(a))


@pytest.mark.parametrize("name", CALLS)
def test_vmap_over_independent_problems_matches_eager(be: Backend, name: str) -> None:
    batch = _problem(be, (B,))
    f = CALLS[name]
    got = jax.jit(jax.vmap(f))(batch)
    # The eager answer, problem by problem.
    each = [f(jax.tree_util.tree_map(lambda x, i=i: x[i], batch)) for i in range(B)]
    want = jax.tree_util.tree_map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *each)
    _assert_same(got, want)


# -- inside the derivatives of a larger function ---------------------------------


def _model(theta: Any, x: Any) -> Any:
    """A small nonlinear model whose output the loss compares with the targets."""
    return jax.numpy.tanh(x @ theta)


def _plain_loss(y: Any, y_ref: Any, where: Any, axis: Any = None) -> Any:
    """The loss written directly in jax.numpy: JAX's own derivative is the oracle."""
    d = jax.numpy.where(where, y - jax.numpy.where(where, y_ref, 0.0), 0.0)
    return 0.5 * jax.numpy.sum(d * d, axis=axis)


@pytest.mark.parametrize("axis", [None, -1])
@pytest.mark.parametrize("jit", [False, True], ids=["eager", "jit"])
def test_grad_and_jvp_through_l2_loss(be: Backend, axis: Any, jit: bool) -> None:
    r = _rng(1)
    a = _problem(be)
    x = be.asarray(r.standard_normal((S, 5)))
    theta = be.asarray(r.standard_normal((5, N)))
    t = be.asarray(r.standard_normal((5, N)))
    weights = be.asarray(r.standard_normal(S))

    def objective(loss: Callable[..., Any]) -> Callable[[Any], Any]:
        def f(th: Any) -> Any:
            L = loss(_model(th, x), a["y_ref"], where=a["where"], axis=axis)
            return jax.numpy.sum(L * weights) if axis is not None else L

        return jax.jit(f) if jit else f

    ours, plain = objective(l2_loss), objective(_plain_loss)
    _assert_same(jax.grad(ours)(theta), jax.grad(plain)(theta))
    _assert_same(jax.jvp(ours, (theta,), (t,)), jax.jvp(plain, (theta,), (t,)))
    # Second order: JAX differentiates through the rule twice.
    hvp = jax.jvp(jax.grad(ours), (theta,), (t,))[1]
    _assert_same(hvp, jax.jvp(jax.grad(plain), (theta,), (t,))[1])


def test_our_rules_agree_with_jax_autodiff_of_l2_loss(be: Backend) -> None:
    """l2_loss_jvp and l2_loss_grad are JAX's jvp and grad of l2_loss."""
    a = _problem(be)

    def f(y: Any) -> Any:
        return l2_loss(y, a["y_ref"], where=a["where"])

    L, L_dot = jax.jit(lambda y, t: l2_loss_jvp(y, a["y_ref"], t, where=a["where"]))(
        a["y"], a["y_dot"]
    )
    _assert_same((L, L_dot), jax.jvp(f, (a["y"],), (a["y_dot"],)))
    _, y_bar = l2_loss_grad(a["y"], a["y_ref"], where=a["where"])
    _assert_same(y_bar, jax.grad(f)(a["y"]))


def test_grad_through_the_jvp_and_the_pullback(be: Backend) -> None:
    """JAX differentiates through the rules themselves (closed forms).

    ``d/dy [(y - y_ref) . y_dot] = y_dot`` (0 where masked), and the pullback is
    linear in ``L_bar`` with ``d/dy <w, L_bar (y - y_ref)> = L_bar w``.
    """
    a = _problem(be)
    m = np.asarray(a["where"])
    w = a["y_dot"]

    def tangent(y: Any) -> Any:
        return l2_loss_jvp(y, a["y_ref"], a["y_dot"], a["y_ref_dot"], where=a["where"])[1]

    want = np.where(m, np.asarray(a["y_dot"]) - np.asarray(a["y_ref_dot"]), 0.0)
    _assert_same(jax.jit(jax.grad(tangent))(a["y"]), want)

    def through_pullback(y: Any) -> Any:
        _, pullback = l2_loss_vjp(y, a["y_ref"], axis=-1, where=a["where"])
        y_bar, _ = pullback(a["L_bar"])
        return jax.numpy.sum(y_bar * w)

    want = np.where(m, np.asarray(a["L_bar"])[:, None] * np.asarray(w), 0.0)
    _assert_same(jax.jit(jax.grad(through_pullback))(a["y"]), want)
    # Forward mode through the pullback: the same linear map along y_ref_dot.
    got = jax.jvp(through_pullback, (a["y"],), (a["y_ref_dot"],))[1]
    _assert_same(got, np.sum(want * np.asarray(a["y_ref_dot"])))


@pytest.mark.parametrize("strong_first", [True, False])
def test_weak_types_promote_as_jax_does(be: Backend, strong_first: bool) -> None:
    """A weak-typed float64 (a Python number made an array) promotes with float16
    to float16, a strong float64 to float64, whichever l2loss saw first."""
    jnp = jax.numpy
    y = jnp.asarray(np.float16(1.5))
    weak, strong = jnp.asarray(3.0), jnp.asarray(np.float64(3.0))
    assert weak.weak_type
    assert not strong.weak_type
    assert weak.dtype == strong.dtype == jnp.float64  # one cache key, two answers
    order = [(strong, jnp.float64), (weak, jnp.float16)]
    for y_ref, dtype in order if strong_first else order[::-1]:
        assert jnp.result_type(y, y_ref) == dtype  # JAX's own rule
        L, L_dot = l2_loss_jvp(y, y_ref, y_ref)
        assert L.dtype == L_dot.dtype == dtype
        assert float(L) == 1.125


def test_eager_calls_run_as_one_compiled_computation(
    be: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Called eagerly, JAX would run the rule operation by operation; l2loss
    compiles each call instead (``Backend.compile``): the body is traced once
    per shapes and dtypes, then the compiled computation is reused. Under
    ``jax.disable_jit`` it runs as it is, with the same result."""
    from l2loss import _api

    traced: list[bool] = []
    body = _api._jvp

    def spy(k: Any, y: Any, *rest: Any) -> Any:
        traced.append(isinstance(y, jax.core.Tracer))
        return body(k, y, *rest)

    monkeypatch.setattr(_api, "_jvp", spy)
    p = _problem(be)
    args = (p["y"], p["y_ref"], p["y_dot"])
    first = l2_loss_jvp(*args, axis=-1, where=p["where"])
    second = l2_loss_jvp(*args, axis=-1, where=p["where"])
    assert traced == [True]  # traced once, reused by the second call
    with jax.disable_jit():
        plain = l2_loss_jvp(*args, axis=-1, where=p["where"])
    assert traced == [True, False]
    for a, b, c in zip(first, second, plain, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
        np.testing.assert_allclose(np.asarray(a), np.asarray(c), rtol=RTOL)


def test_batched_must_be_a_python_bool(be: Backend) -> None:
    """``batched`` chooses the shapes of the results, so it must be known when
    the call is traced: a JAX boolean is refused with the fix."""
    p = _problem(be)
    with pytest.raises(TypeError, match=r"batched must be True or False, got Array\(True"):
        l2_loss_jvp(p["y"], p["y_ref"], p["Y_dot"], batched=be.xp.asarray(True))


def test_numpy_arrays_beside_jax_arrays(be: Backend) -> None:
    """NumPy targets, weights and masks beside JAX arrays (and tracers, under
    jit, vmap and grad) are taken as JAX takes them: the results are JAX
    arrays, equal to those of all-JAX arguments."""
    rng = _rng(9)
    y, y_ref, w = rng.standard_normal((S, N)), rng.standard_normal((S, N)), rng.random(S)
    keep = rng.random((S, N)) > 0.3
    Y = be.asarray(y)
    want = l2_loss(Y, be.asarray(y_ref), axis=1, where=be.asarray(keep), weights=be.asarray(w))
    got = l2_loss(Y, y_ref, axis=1, where=keep, weights=w)
    assert isinstance(got, jax.Array)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(want))

    def model(p: Any) -> Any:
        return jax.numpy.sum(l2_loss(p * Y, y_ref, axis=1, where=keep, weights=w))

    np.testing.assert_allclose(float(jax.jit(model)(2.0)), float(model(2.0)), rtol=RTOL)
    g = jax.grad(model)(2.0)
    h = 1e-6
    assert abs(float(g) - (float(model(2.0 + h)) - float(model(2.0 - h))) / (2 * h)) < 1e-4 * abs(
        float(g)
    )
    batch = jax.vmap(lambda y: l2_loss(y, y_ref))(be.asarray(np.stack([y, 2 * y])))
    assert batch.shape == (2,)
    _, pullback = l2_loss_vjp(Y, y_ref)
    y_bar, y_ref_bar = pullback(1.0)
    assert isinstance(y_ref_bar, jax.Array)
    np.testing.assert_allclose(np.asarray(y_bar), y - y_ref, rtol=RTOL)
