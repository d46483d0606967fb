"""l2loss.testing: passes on correct rules, catches wrong ones, on every backend;
and the project's own rules pass it.

``test_detection_power`` is the evidence for the detection power that the
docstrings of ``check_jvp`` and ``check_vjp`` state: keep the two in step.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from backends import Backend
from hypothesis import given, settings
from hypothesis import strategies as st
from strategies import (
    FLOATING,
    adversarial_values,
    axes,
    complex_junk,
    nonfinite_where_masked,
    shapes,
    values,
)

from l2loss import l2_loss, l2_loss_jvp, l2_loss_vjp
from l2loss.testing import check_jvp, check_vjp

DTYPES = ["float32", "float64", "complex64", "complex128"]
COMPLEX_OF = {"float32": "complex64", "float64": "complex128"}


def problem(be: Backend, dtype: str, shape: tuple[int, ...] = (3, 5), seed: int = 11) -> list[Any]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(2):
        a = rng.standard_normal(shape)
        if "complex" in dtype:
            a = a + 1j * rng.standard_normal(shape)
        out.append(be.asarray(a, dtype=dtype))
    return out


def eager_only(be: Backend) -> None:
    """The checkers call rules eagerly and read values back: under the
    jax-jit backend they run exactly as under jax, so long tests skip it."""
    if be.jit:
        pytest.skip("the checkers run eagerly: the jax backend covers this")


def as_complex(be: Backend, x: Any) -> Any:
    """``x`` in the complex dtype of its precision (array-api-strict adds no
    Python complex to a real array)."""
    name = str(be.to_numpy(x).dtype)
    return be.xp.astype(x, be.dtype(COMPLEX_OF.get(name, name)))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("axis", [None, 1, (0, 1)])
def test_rules_pass_their_own_checks(be: Backend, dtype: str, axis: Any) -> None:
    y, r = problem(be, dtype)
    with be.computing():
        check_jvp(
            lambda y, r: l2_loss(y, r, axis=axis),
            lambda y, r, t, u: l2_loss_jvp(y, r, t, u, axis=axis),
            [y, r],
        )
        # The structural zero: y_ref_dot=None means y_ref is held fixed.
        check_jvp(
            lambda y, r: l2_loss(y, r, axis=axis),
            lambda y, r, t, u: l2_loss_jvp(y, r, t, u, axis=axis),
            [y, r],
            [problem(be, dtype)[0], None],
        )
        c = check_vjp(
            lambda y, r: l2_loss(y, r, axis=axis), lambda y, r: l2_loss_vjp(y, r, axis=axis), [y, r]
        )
        # The report: the dtype's precision, the differences' (float64's),
        # and the worst error over its tolerance.
        assert c.eps == float(np.finfo(np.dtype(dtype)).eps)
        assert c.fd_eps == float(np.finfo(np.float64).eps)
        assert 0.0 <= c.error <= 1.0


@given(data=st.data())
def test_correct_rules_pass_on_drawn_problems(be: Backend, data: st.DataObject) -> None:
    """Shapes with 0-d and empty arrays, every axis, values over many decades,
    constant and alternating ones, subnormal ones, and masked entries holding
    NaN or inf in y_ref and in the tangents, with the differences in float64
    or, for a ``fun`` that refuses it, in the primals' precision: a correct
    rule never fails."""
    eager_only(be)
    dtype = data.draw(st.sampled_from(FLOATING), label="dtype")
    shape = data.draw(shapes(), label="shape")
    axis = data.draw(axes(len(shape)), label="axis")
    y, r = (
        data.draw(st.one_of(values(shape, dtype), adversarial_values(shape, dtype)), label=name)
        for name in ("y", "y_ref")
    )
    where, t = None, None
    if data.draw(st.booleans(), label="masked"):
        r, where = data.draw(nonfinite_where_masked(shape, dtype), label="y_ref, where")
        t, _ = data.draw(nonfinite_where_masked(shape, dtype, where), label="y_dot")
    seed = data.draw(st.integers(0, 2**32 - 1), label="seed")
    own_precision = data.draw(st.booleans(), label="fun refuses float64")
    mask = None if where is None else be.asarray(where)
    primals = [be.asarray(y), be.asarray(r)]

    def fun(y: Any, r: Any) -> Any:
        if own_precision and str(y.dtype).rsplit(".", 1)[-1] != dtype:
            raise TypeError(f"this function takes {dtype} only, not {y.dtype}")
        return l2_loss(y, r, axis=axis, where=mask)

    def jvp(y: Any, r: Any, t: Any, u: Any) -> Any:
        return l2_loss_jvp(y, r, t, u, axis=axis, where=mask)

    def vjp(y: Any, r: Any) -> Any:
        return l2_loss_vjp(y, r, axis=axis, where=mask)

    with be.computing():
        check_jvp(fun, jvp, primals, seed=seed)
        if t is not None:
            check_jvp(fun, jvp, primals, [be.asarray(t), None], seed=seed)
        check_vjp(fun, vjp, primals, seed=seed)


def test_tiny_entries_beside_a_large_one(be: Backend) -> None:
    """Found by the test above: residuals of 1e-18 beside one of 1, one loss
    per entry. The step, sized by the largest primal, is far above 1e-18, so
    the moved points ``1e-18 + h t`` round in float64 and their centre moves
    off the primals by up to 3e-20, a few % of the residual: the difference
    is off by that much where the rule is right (the old tolerance, for the
    rounding of f alone, failed it on every backend)."""
    y = be.asarray(np.array([1.0, 0.0, 0.0]), dtype="float32")
    r = be.asarray(np.full(3, 1e-18), dtype="float32")

    def fun(y: Any, r: Any) -> Any:
        return l2_loss(y, r, axis=())

    def jvp(y: Any, r: Any, t: Any, u: Any) -> Any:
        return l2_loss_jvp(y, r, t, u, axis=())

    with be.computing():
        assert check_jvp(fun, jvp, [y, r], seed=28372614).error <= 1.0
        check_vjp(fun, lambda y, r: l2_loss_vjp(y, r, axis=()), [y, r], seed=28372614)
        # The allowance is for the entries whose points rounded: the large
        # one still catches a rule off by the single-precision power.
        for factor in (1 + POWER["float32"], 1 - POWER["float32"]):

            def scaled(y: Any, r: Any, t: Any, u: Any, factor: float = factor) -> Any:
                L, L_dot = jvp(y, r, t, u)
                return L, L_dot * factor

            with pytest.raises(AssertionError, match=r"tangent output \(J t\) differs"):
                check_jvp(fun, scaled, [y, r], seed=28372614)


# The detection power the docstrings state: relative errors of J t and of the
# cotangents that are caught in every seed, with the differences in float64,
# and where ``fun`` refuses float64 and they run in single precision.
POWER = {"float32": 1e-3, "complex64": 1e-3, "float64": 1e-7, "complex128": 1e-7}
POWER_SINGLE = 1e-2  # where fun refuses float64


def seeds(be: Backend) -> range:
    """40 seeds on NumPy; fewer where each check costs more (10 to 40 ms on
    PyTorch, JAX and array-api-strict; 0.3 s on Dask, which builds a graph
    per call). The checkers' arithmetic is the same host code on all."""
    return range({"numpy": 40, "dask": 1}.get(be.name, 4))


def random_problem(be: Backend, dtype: str, seed: int) -> list[Any]:
    rng = np.random.default_rng(1000 + seed)
    return problem(be, dtype, (int(rng.integers(1, 61)),), seed=seed)


def scaled_jvp(factor: float) -> Any:
    def rule(y: Any, r: Any, t: Any, u: Any) -> Any:
        L, L_dot = l2_loss_jvp(y, r, t, u)
        return L, L_dot * factor

    return rule


def scaled_vjp(factor_y: float, factor_ref: float) -> Any:
    def rule(y: Any, r: Any) -> Any:
        L, pullback = l2_loss_vjp(y, r)

        def wrong(c: Any) -> Any:
            y_bar, r_bar = pullback(c)
            return y_bar * factor_y, r_bar * factor_ref

        return L, wrong

    return rule


@pytest.mark.parametrize("dtype", DTYPES)
def test_detection_power(be: Backend, dtype: str) -> None:
    """In every seed: correct rules pass, and rules off by the stated relative
    error (either way), or with a sign error in y_ref's cotangent, fail."""
    eager_only(be)
    delta = POWER[dtype]
    single = dtype in ("float32", "complex64")
    eps64 = float(np.finfo(np.float64).eps)

    def own_precision(y: Any, r: Any) -> Any:
        """The function of a user whose data is fixed in the primals' dtype."""
        if str(y.dtype).rsplit(".", 1)[-1] != dtype:
            raise TypeError(f"this function takes {dtype} only, not {y.dtype}")
        return l2_loss(y, r)

    with be.computing():
        for seed in seeds(be):
            y, r = random_problem(be, dtype, seed)
            assert check_jvp(l2_loss, l2_loss_jvp, [y, r], seed=seed).fd_eps == eps64
            assert check_vjp(l2_loss, l2_loss_vjp, [y, r], seed=seed).fd_eps == eps64
            for factor in (1 + delta, 1 - delta):
                with pytest.raises(AssertionError, match=r"tangent output \(J t\) differs"):
                    check_jvp(l2_loss, scaled_jvp(factor), [y, r], seed=seed)
                with pytest.raises(AssertionError, match="<J t, c> vs <t, J\\^T c> differs"):
                    check_vjp(l2_loss, scaled_vjp(factor, factor), [y, r], seed=seed)
            with pytest.raises(AssertionError, match="<J t, c> vs <t, J\\^T c> differs"):
                check_vjp(l2_loss, scaled_vjp(1.0, -1.0), [y, r], seed=seed)
            if not single:
                continue  # float64 primals: the differences run in float64 anyway
            eps = float(np.finfo(np.dtype(dtype)).eps)
            assert check_jvp(own_precision, l2_loss_jvp, [y, r], seed=seed).fd_eps == eps
            assert check_vjp(own_precision, l2_loss_vjp, [y, r], seed=seed).fd_eps == eps
            for factor in (1 + POWER_SINGLE, 1 - POWER_SINGLE):
                with pytest.raises(AssertionError, match=r"tangent output \(J t\) differs"):
                    check_jvp(own_precision, scaled_jvp(factor), [y, r], seed=seed)
                with pytest.raises(AssertionError, match="<J t, c> vs <t, J\\^T c> differs"):
                    check_vjp(own_precision, scaled_vjp(factor, factor), [y, r], seed=seed)


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=10)  # the kind is checked before any value: a few suffice
@given(junk=complex_junk())
def test_an_output_of_the_wrong_kind_fails(be: Backend, dtype: str, junk: complex) -> None:
    """A complex value where fun's is real (any imaginary part, zero too) or
    a real cotangent for a complex primal fails, and never by a warning."""
    eager_only(be)
    y, r = problem(be, dtype)

    def junk_tangent(y: Any, r: Any, t: Any, u: Any) -> Any:
        L, L_dot = l2_loss_jvp(y, r, t, u)
        return L, as_complex(be, L_dot) + junk

    def junk_value(y: Any, r: Any, t: Any, u: Any) -> Any:
        L, L_dot = l2_loss_jvp(y, r, t, u)
        return as_complex(be, L) + junk, L_dot

    def junk_cotangent(y: Any, r: Any) -> Any:
        L, pullback = l2_loss_vjp(y, r)
        if "complex" in dtype:  # the imaginary part dropped
            return L, lambda c: tuple(be.xp.real(b) for b in pullback(c))
        return L, lambda c: tuple(as_complex(be, b) + junk for b in pullback(c))

    with be.computing():
        with pytest.raises(AssertionError, match=r"tangent output \(J t\) has the complex"):
            check_jvp(l2_loss, junk_tangent, [y, r])
        with pytest.raises(AssertionError, match="primal output has the complex"):
            check_jvp(l2_loss, junk_value, [y, r])
        with pytest.raises(AssertionError, match="primal output has the complex"):
            check_vjp(l2_loss, lambda y, r: (junk_value(y, r, None, None)[0], None), [y, r])
        kind = "real" if "complex" in dtype else "complex"
        with pytest.raises(AssertionError, match=f"cotangent 0 has the {kind}"):
            check_vjp(l2_loss, junk_cotangent, [y, r])


@pytest.mark.parametrize("dtype", DTYPES)
def test_wrong_jvp_is_caught(be: Backend, dtype: str) -> None:
    y, r = problem(be, dtype)

    def twice(y: Any, r: Any, t: Any, u: Any) -> Any:
        L, Ld = l2_loss_jvp(y, r, t, u)
        return L, 2 * Ld

    def forgets_y_ref_dot(y: Any, r: Any, t: Any, u: Any) -> Any:
        return l2_loss_jvp(y, r, t, None)

    def wrong_value(y: Any, r: Any, t: Any, u: Any) -> Any:
        L, Ld = l2_loss_jvp(y, r, t, u)
        return L * (1 + 1e-5), Ld

    def flat(y: Any, r: Any, t: Any, u: Any) -> Any:
        L, Ld = l2_loss_jvp(y, r, t, u)
        return L, be.xp.reshape(Ld, (1,))

    def host_float(y: Any, r: Any, t: Any, u: Any) -> Any:
        L, Ld = l2_loss_jvp(y, r, t, u)
        return L, float(be.to_numpy(Ld))

    with be.computing():
        for rule in (twice, forgets_y_ref_dot, wrong_value):
            with pytest.raises(AssertionError, match="differs"):
                check_jvp(l2_loss, rule, [y, r])
        with pytest.raises(AssertionError, match=r"has shape \(1,\), expected \(\)"):
            check_jvp(l2_loss, flat, [y, r])
        with pytest.raises(AssertionError, match="is a float, not an array"):
            check_jvp(l2_loss, host_float, [y, r])


@pytest.mark.parametrize("dtype", DTYPES)
def test_wrong_vjp_is_caught(be: Backend, dtype: str) -> None:
    y, r = problem(be, dtype)

    def same_sign(y: Any, r: Any) -> Any:
        L, pb = l2_loss_vjp(y, r)
        return L, lambda c: (pb(c)[0], pb(c)[0])

    def conjugated(y: Any, r: Any) -> Any:
        L, pb = l2_loss_vjp(y, r)
        xp = be.xp
        return L, lambda c: tuple(xp.conj(b) for b in pb(c))

    def forgets_y_ref(y: Any, r: Any) -> Any:
        L, pb = l2_loss_vjp(y, r)
        return L, lambda c: (pb(c)[0], None)  # None: a structural zero, here wrong

    rules = [same_sign, forgets_y_ref] + ([conjugated] if "complex" in dtype else [])
    with be.computing():
        for rule in rules:
            with pytest.raises(AssertionError, match="differs"):
                check_vjp(l2_loss, rule, [y, r])


def test_several_directions_and_pairs_are_checked(be: Backend) -> None:
    """A rule right along the first direction only (or for the first
    cotangent only) fails: the checkers do not trust one projection."""
    y, r = problem(be, "float64")
    calls = {"jvp": 0, "vjp": 0}

    def right_once_jvp(y: Any, r: Any, t: Any, u: Any) -> Any:
        calls["jvp"] += 1
        L, L_dot = l2_loss_jvp(y, r, t, u)
        return L, L_dot if calls["jvp"] == 1 else 1.5 * L_dot

    def right_once_vjp(y: Any, r: Any) -> Any:
        L, pullback = l2_loss_vjp(y, r)

        def wrong_later(c: Any) -> Any:
            calls["vjp"] += 1
            y_bar, r_bar = pullback(c)
            return (y_bar, r_bar) if calls["vjp"] == 1 else (1.5 * y_bar, r_bar)

        return L, wrong_later

    with be.computing():
        check_jvp(l2_loss, right_once_jvp, [y, r], directions=1)
        check_vjp(l2_loss, right_once_vjp, [y, r], pairs=1)
        calls.update(jvp=0, vjp=0)
        with pytest.raises(AssertionError, match="differs"):
            check_jvp(l2_loss, right_once_jvp, [y, r])
        with pytest.raises(AssertionError, match="differs"):
            check_vjp(l2_loss, right_once_vjp, [y, r])
        assert calls == {"jvp": 3, "vjp": 3}  # every direction and pair is asked for
        # The directions follow the seed: the same seed, the same numbers.
        a, b = (check_jvp(l2_loss, l2_loss_jvp, [y, r], seed=s) for s in (5, 5))
        assert a == b
        assert check_jvp(l2_loss, l2_loss_jvp, [y, r], seed=6) != a


def test_cotangent_shape_is_checked(be: Backend) -> None:
    y, r = problem(be, "float64")

    def flat(y: Any, r: Any) -> Any:
        L, pb = l2_loss_vjp(y, r)
        return L, lambda c: tuple(be.xp.reshape(b, (-1,)) for b in pb(c))

    def one(y: Any, r: Any) -> Any:
        L, pb = l2_loss_vjp(y, r)
        return L, lambda c: pb(c)[:1]

    with be.computing():
        with pytest.raises(AssertionError, match=r"cotangent 0 has shape \(15,\)"):
            check_vjp(l2_loss, flat, [y, r])
        with pytest.raises(AssertionError, match="pullback gave 1 cotangents for 2 primals"):
            check_vjp(l2_loss, one, [y, r])


def test_low_precision_rules_pass(be: Backend) -> None:
    """float16 and bfloat16, where the backend has them: the differences run
    in float64 and the tolerance follows the primals' precision."""
    for low in be.low_precision:
        y, r = (be.xp.astype(a, be.dtype(low)) for a in problem(be, "float32"))
        with be.computing():
            check_jvp(l2_loss, l2_loss_jvp, [y, r])
            c = check_vjp(l2_loss, l2_loss_vjp, [y, r])
        assert c.fd_eps == float(np.finfo(np.float64).eps)


def test_bad_arguments_raise(be: Backend) -> None:
    y, r = problem(be, "float32")
    with be.computing():
        with pytest.raises(ValueError, match="2 primals but 1 tangents"):
            check_jvp(l2_loss, l2_loss_jvp, [y, r], [y])
        with pytest.raises(ValueError, match="directions must be at least 1"):
            check_jvp(l2_loss, l2_loss_jvp, [y, r], directions=0)
        with pytest.raises(ValueError, match="pairs must be at least 1"):
            check_vjp(l2_loss, l2_loss_vjp, [y, r], pairs=0)
        with pytest.raises(ValueError, match="tangent 0 must have primal 0's shape"):
            check_jvp(l2_loss, l2_loss_jvp, [y, r], [as_complex(be, y), None])
