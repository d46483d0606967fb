"""Check derivative rules against finite differences, on any array backend.

Modelled on ChainRulesTestUtils' ``test_frule``/``test_rrule``:

- :func:`check_jvp` compares a pushforward ``(f(x), J t)`` with ``f(x)`` and
  with the central difference ``(f(x + h t) - f(x - h t)) / 2h``, along the
  given tangents or along several random directions;
- :func:`check_vjp` compares a pullback with the same finite differences
  through the dot-product test ``<J t, c> = <t, J^T c>`` for several random
  tangent-cotangent pairs, in the real inner product ``<a, b> = Re sum(conj(a) b)``.

Tangents given as None are structural zeros: that primal is not perturbed.

The finite differences are of fourth order, ``(8 D(h) - D(2h)) / 12h`` with
``D(h) = f(x + h t) - f(x - h t)``. They evaluate ``fun`` in float64
(complex128 for complex primals) on the primals' own library and device where
it has that dtype and ``fun`` accepts it, and in the primals' precision
otherwise; the moved points are rounded so that they are exact in that
precision wherever the move is no larger than the primal. Tolerances are
relative to the magnitudes involved: ``rtol |J t|`` for truncation and for
the rule's own rounding, ``eps |f(x +- h t)| / h`` for the rounding of ``f``,
``eps |g| |t|`` (``|g|`` the gradient's norm, measured along random
directions) for a ``J t`` that cancels, and ``|c| |H| |t|`` where a primal far
smaller than its move makes ``x +- h t`` round, so that the points are
centred at ``x + c`` (``|c|`` exact, about ``eps h |t|``; ``|H|`` the
Hessian's norm, measured from the second differences along the same
directions); none is an absolute floor, except the smallest normal number per
term for what underflows.

Both functions raise ``AssertionError`` with the numbers on failure, among
them an output of the wrong shape, of a complex dtype where ``fun``'s is real
(or the reverse), or one that is not an array of the primals' library and
device; they return a :class:`Check` with the largest error seen, relative to
its tolerance. They read values back to the host: they are for tests, not for
``jax.jit`` or lazy graphs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import array_api_compat as compat
import numpy as np

__all__ = ["Check", "check_jvp", "check_vjp", "to_numpy"]

Array = Any
Host = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Check:
    """Outcome of a check: ``error <= tolerance`` held for every comparison.

    Attributes
    ----------
    error
        Largest absolute error seen, divided by its tolerance (so <= 1 passes).
    eps
        Machine epsilon of the working precision (that of the narrowest primal).
    fd_eps
        Machine epsilon of the precision the finite differences ran in:
        float64's where the backend and ``fun`` allow it, else ``eps``.
    """

    error: float
    eps: float
    fd_eps: float


def to_numpy(x: Array) -> np.ndarray[Any, Any]:
    """A NumPy copy of ``x`` from any backend (computes Dask graphs, copies
    device arrays to the host)."""
    if compat.is_dask_array(x):
        x = x.compute()
    if compat.is_torch_array(x):
        x = x.detach().cpu().resolve_conj()
        if str(x.dtype) == "torch.bfloat16":
            x = x.float()  # NumPy has no bfloat16
        return np.asarray(x.numpy())
    if compat.is_cupy_array(x):
        return np.asarray(x.get())
    if compat.is_jax_array(x) or compat.is_numpy_array(x):
        return np.asarray(x)
    xp = compat.array_namespace(x)
    if hasattr(xp, "Device"):  # array-api-strict: only its CPU device converts
        x = xp.asarray(x, device=xp.Device())
    return np.asarray(x)


# -- dtypes ------------------------------------------------------------------


def _is_complex(x: Array) -> bool:
    return bool(compat.array_namespace(x).isdtype(x.dtype, "complex floating"))


def _is_floating(x: Array) -> bool:
    return bool(compat.array_namespace(x).isdtype(x.dtype, ("real floating", "complex floating")))


def _finfo(x: Array) -> Any:
    return compat.array_namespace(x).finfo(x.dtype)


def _eps(arrays: Sequence[Array]) -> float:
    """Machine epsilon of the narrowest floating array: tolerances follow it."""
    return max([float(_finfo(a).eps) for a in arrays if _is_floating(a)], default=0.0)


def _tiny(arrays: Sequence[Array]) -> float:
    """The smallest normal number of the narrowest floating array: how far a
    result that underflows may be off, as libraries that flush subnormals to
    zero (XLA on CPU, GPUs) round it to 0."""
    return max([float(_finfo(a).smallest_normal) for a in arrays if _is_floating(a)], default=0.0)


def _wide_dtype(x: Array) -> Any:
    """float64 (complex128 for a complex ``x``) of ``x``'s library where
    ``x``'s device has it, else None (JAX without x64, PyTorch on MPS)."""
    xp = compat.array_namespace(x)
    kind = "complex floating" if _is_complex(x) else "real floating"
    try:
        dtypes = xp.__array_namespace_info__().dtypes(device=compat.device(x), kind=kind)
    except (AttributeError, TypeError, ValueError):  # no inspection API: assume none
        return None
    return dtypes.get("complex128" if kind == "complex floating" else "float64")


def _sum_terms(n: int) -> float:
    """Units of eps by which a sum of ``n`` terms, pairwise or blocked, can
    round relative to the sum of their magnitudes (with the products and
    differences that form them)."""
    return 2.0 + math.log2(n + 1)


# Host arithmetic meets NaN and inf as data (masked-out entries, overflow);
# the comparisons handle them, so NumPy's warnings about them are noise.
_quiet = np.errstate(invalid="ignore", over="ignore", divide="ignore")


# -- moving between the host and the backend -----------------------------------


def _like(x: Array, a: Host, dtype: Any = None) -> Array:
    """Host data ``a`` as an array of ``x``'s library, device and chunks, of
    ``dtype`` (default ``x``'s). ``a`` must hold values exact in that dtype
    where exactness matters; complex data never becomes real here."""
    xp = compat.array_namespace(x)
    dtype = x.dtype if dtype is None else dtype
    if np.iscomplexobj(a) and not xp.isdtype(dtype, "complex floating"):
        raise TypeError(f"complex data cannot become an array of real dtype {dtype}")
    a = np.asarray(a, dtype=np.complex128 if np.iscomplexobj(a) else np.float64)
    if compat.is_dask_array(x):
        import dask.array as da

        out = da.from_array(a, chunks=x.chunks)
    elif compat.is_torch_array(x):
        import torch

        out = torch.from_numpy(a).to(x.device)
    else:
        out = xp.asarray(a, device=compat.device(x))
    if xp.isdtype(dtype, "complex floating") and not xp.isdtype(out.dtype, "complex floating"):
        out = out + 0j  # a real tangent for a complex primal
    return xp.astype(out, dtype)


def _random(rng: np.random.Generator, shape: tuple[int, ...], complex_: bool) -> Host:
    """Standard normal entries (real and imaginary parts each, when complex)."""
    a = rng.standard_normal(shape)
    if complex_:
        a = a + 1j * rng.standard_normal(shape)
    return np.asarray(a)


def _host_array(a: Host) -> Host:
    """``a`` as float64 or complex128 (exact for every float dtype)."""
    return np.asarray(a, dtype=np.complex128 if np.iscomplexobj(a) else np.float64)


def _reads(*xs: Array) -> list[Host]:
    """:func:`to_numpy` of each of ``xs``, computing Dask graphs in one pass."""
    lazy = [i for i, x in enumerate(xs) if compat.is_dask_array(x)]
    if lazy:
        import dask

        done = dict(zip(lazy, dask.compute(*[xs[i] for i in lazy]), strict=True))
        xs = tuple(done.get(i, x) for i, x in enumerate(xs))
    return [to_numpy(x) for x in xs]


def _hosts(*xs: Array) -> list[Host]:
    """Each of ``xs`` on the host as float64 or complex128, in one pass."""
    return [_host_array(a) for a in _reads(*xs)]


@_quiet
def _norm(a: Host | None) -> float:
    """2-norm over the finite entries (NaN entries are masked-out data)."""
    if a is None:
        return 0.0
    a = np.abs(a)
    return float(np.sqrt(np.sum(np.where(np.isfinite(a), a, 0.0) ** 2)))


@_quiet
def _real_dot(a: Host, b: Host) -> float:
    """``Re sum(conj(a) b)``, the real inner product."""
    return float(np.real(np.vdot(a.astype(np.complex128), b.astype(np.complex128))))


# -- checking what a rule returns -------------------------------------------


def _kind(x: Array) -> str:
    return "complex" if _is_complex(x) else "real" if _is_floating(x) else "non-floating"


def _check_output(what: str, got: Any, want: Array, *, same_dtype: bool) -> None:
    """``got`` is an array of ``want``'s library, device, shape and kind of
    dtype (and dtype, with ``same_dtype``): an imaginary part is never dropped."""
    if not compat.is_array_api_obj(got):
        raise AssertionError(f"{what} is a {type(got).__name__}, not an array")
    if compat.array_namespace(got) is not compat.array_namespace(want):
        raise AssertionError(
            f"{what} is an array of {compat.array_namespace(got).__name__}, "
            f"the primals of {compat.array_namespace(want).__name__}"
        )
    if compat.device(got) != compat.device(want):
        raise AssertionError(
            f"{what} is on {compat.device(got)}, the primals on {compat.device(want)}"
        )
    if tuple(got.shape) != tuple(want.shape):
        raise AssertionError(f"{what} has shape {tuple(got.shape)}, expected {tuple(want.shape)}")
    if _kind(got) != _kind(want):
        raise AssertionError(
            f"{what} has the {_kind(got)} dtype {got.dtype} where {_kind(want)} values are "
            f"expected (like {want.dtype}): a rule must not return a complex value for a real "
            "function, nor drop the imaginary part of a complex one"
        )
    if same_dtype and got.dtype != want.dtype:
        raise AssertionError(f"{what} has dtype {got.dtype}, the function's output {want.dtype}")


@_quiet
def _compare(what: str, got: Host, want: Host, tol: Host | float) -> float:
    """The worst ``|got - want| / tol``; AssertionError above 1. NaN matches
    NaN and an infinity the same infinity."""
    err = np.abs(got - want)
    both_nan = np.isnan(got) & np.isnan(want)
    same_inf = np.isinf(got) & (got == want)
    err = np.where(both_nan | same_inf, 0.0, err)
    ratio = np.where(err == 0, 0.0, err / np.asarray(tol))
    ratio = np.where(np.isnan(ratio), np.inf, ratio)
    worst = float(np.max(ratio, initial=0.0))
    if worst > 1.0:
        raise AssertionError(
            f"{what} differs: got {got!r}, expected {want!r}, "
            f"error/tolerance = {worst:.3g} (tolerance {tol!r})"
        )
    return worst


# -- finite differences --------------------------------------------------------


def _exact_step(x: Host, s: Host) -> Host:
    """The step ``s`` rounded so that ``x + s`` and ``x - s`` are exact in
    ``x``'s dtype wherever ``|s| <= |x|``: the difference is then centred on
    ``x`` itself, which matters where ``f`` is flat (``y == y_ref``).
    Elsewhere their rounding moves the centre by at most an ulp of ``s``,
    which :func:`_centre_shift` measures for the tolerance."""
    if np.iscomplexobj(x):
        part = x.real.dtype
        re = _exact_step(x.real, np.asarray(s.real, dtype=part))
        im = _exact_step(x.imag, np.asarray(s.imag, dtype=part))
        return np.asarray(re + 1j * im, dtype=x.dtype)
    s = np.asarray(s, dtype=x.dtype)
    ax, step = np.abs(x), np.abs(s)
    near = np.isfinite(x) & np.isfinite(s) & (step <= ax)
    with np.errstate(all="ignore"):
        ulp = np.spacing(ax)  # x is a whole number of these
        k = np.rint(s / ulp)
        # Above 2**e > |x| the spacing doubles: a move that crosses it lands
        # on a float only if x / ulp and k have one parity.
        top = np.ldexp(np.ones_like(ax), np.frexp(ax)[1])
        odd = np.fmod(np.abs(x / ulp), 2) != np.fmod(np.abs(k), 2)
        k = np.where((step >= top - ax) & odd, k - np.sign(k), k)
        return np.asarray(np.where(near, k * ulp, s), dtype=x.dtype)


@_quiet
def _centre_shift(xs: Sequence[Host], steps: Sequence[Host | None]) -> float:
    """The norm of ``c``, where the rounded points ``x + s`` and ``x - s`` are
    centred at ``x + c``. Knuth's TwoSum gives each rounding exactly (a
    complex sum rounds its real and imaginary parts apart); non-finite moves
    are masked-out entries."""
    total = 0.0
    for x, s in zip(xs, steps, strict=True):
        if s is None or not np.issubdtype(x.dtype, np.inexact):
            continue
        off = np.zeros(x.shape, dtype=np.complex128 if np.iscomplexobj(x) else np.float64)
        for d in (s, -s):
            moved = x + d
            back = moved - x
            off = off + ((x - (moved - back)) + (d - back))  # (x + d) - moved
        total += _norm(off / 2) ** 2
    return math.sqrt(total)


@dataclass
class _Plan:
    """Where one finite difference evaluates ``fun``: step ``h``, the four
    ``points`` (host primals), and the tangent ``t`` they move along;
    ``shift`` bounds how far the rounding of the points moved their centre
    (``(4 |c_h| + |c_2h|) / 3``), and ``t_norm`` is ``|t|``."""

    h: float
    points: list[list[Host]]
    t: list[Host | None]
    shift: float
    t_norm: float


@dataclass
class _Diff:
    """One finite difference: ``jt`` along the tangents ``t`` it really moved
    along, and the bound ``rounding`` on its error from the rounding of f."""

    jt: Host
    t: list[Host | None]
    rounding: Host


class _Differences:
    """Finite differences of ``fun`` at ``primals``, in float64 where possible."""

    def __init__(self, fun: Callable[..., Array], primals: Sequence[Array]) -> None:
        self.fun, self.primals = fun, list(primals)
        self.floating = [_is_floating(p) for p in self.primals]
        self.complex = [
            f and _is_complex(p) for p, f in zip(self.primals, self.floating, strict=True)
        ]
        self.y = fun(*self.primals)
        self.n = sum(math.prod(p.shape) for p in self.primals)
        own = _reads(*self.primals)
        # NumPy dtypes of the primals' values, to round tangents as the backend does.
        self.host_dtypes = [a.dtype for a in own]
        self.dtypes: list[Any] = [p.dtype for p in self.primals]
        wide = [
            _wide_dtype(p) if f else p.dtype
            for p, f in zip(self.primals, self.floating, strict=True)
        ]
        y_fd, widened = self.y, False
        if all(w is not None for w in wide):
            try:
                y_wide = fun(*self._arrays(own, wide))
            except Exception:  # fun takes only its own precision (fixed float32 data)
                y_wide = None
            same = y_wide is not None and tuple(y_wide.shape) == tuple(self.y.shape)
            if same and _kind(y_wide) == _kind(self.y):
                y_fd, widened, self.dtypes = y_wide, True, wide
        # The primals in the differences' precision, in which the moves are exact.
        self.x = [
            np.asarray(a, dtype=np.complex128 if c else np.float64) if widened and f else a
            for a, f, c in zip(own, self.floating, self.complex, strict=True)
        ]
        # fun's values at x, read back with the first evaluations.
        self.y_fd = y_fd
        self.read = False
        self.y_host: Host = np.empty(0)
        self.f0: Host = np.empty(0)
        self.fx: Host = np.empty(0)
        self.eps = float(_finfo(y_fd).eps) if _is_floating(y_fd) else _eps(self.primals)
        self.tiny = _tiny([y_fd]) if _is_floating(y_fd) else _tiny(self.primals)
        moving = [x for x, f in zip(self.x, self.floating, strict=True) if f]
        info = [np.finfo(x.dtype) for x in moving] or [np.finfo(np.float64)]
        self.step_eps = max(float(i.eps) for i in info)
        # Steps stay normal and finite in the narrowest precision.
        self.step_range = (
            max(float(i.smallest_normal) for i in info),
            min(float(i.max) for i in info),
        )
        scale = max([_max_abs(x) for x in moving], default=0.0)
        self.scale = scale if scale > 0 else 1.0

    def _arrays(self, host: Sequence[Host], dtypes: Sequence[Any]) -> list[Array]:
        return [
            _like(p, a, d) if f else p
            for p, a, d, f in zip(self.primals, host, dtypes, self.floating, strict=True)
        ]

    def evaluate(self, plans: Sequence[_Plan], *extra: Array) -> tuple[list[_Diff], list[Host]]:
        """``J t`` for each plan by the fourth-order central difference
        ``(8 D(h) - D(2h)) / 12h``, ``D(h) = f(x + h t) - f(x - h t)``; and the
        host copies of ``extra``, read back in the same pass (one Dask
        computation for everything)."""
        outputs = [self.fun(*self._arrays(moved, self.dtypes)) for p in plans for moved in p.points]
        first = [] if self.read else [self.y, self.y_fd]
        values = _hosts(*first, *outputs, *extra)
        if first:
            self.y_host, self.fx, self.read = values[0], values[1], True
            self.f0 = np.abs(self.fx)
            values = values[2:]
        at = [values[4 * i : 4 * i + 4] for i in range(len(plans))]
        curvature = self._curvature(plans, at)
        diffs = [self._combine(p, v, curvature) for p, v in zip(plans, at, strict=True)]
        return diffs, values[4 * len(plans) :]

    @_quiet
    def _curvature(self, plans: Sequence[_Plan], at: Sequence[Sequence[Host]]) -> Host:
        """The Hessian's norm per output, from ``E (t^T H t)^2 >= 2 |H|^2``
        for standard normal ``t``: the r.m.s. of the second differences
        ``(f(x + k t) + f(x - k t) - 2 f(x)) / k^2`` of every plan."""
        second = np.abs(
            [
                (plus + minus - 2 * self.fx) / k / k  # k * k may overflow or underflow
                for p, (p1, m1, p2, m2) in zip(plans, at, strict=True)
                for plus, minus, k in ((p1, m1, p.h), (p2, m2, 2 * p.h))
            ]
        )
        second = np.where(np.isfinite(second), second, 0.0)
        # Scaled by the largest, so that squaring cannot overflow.
        top = np.max(second, axis=0)
        unit = np.where(top > 0, top, 1.0)
        return np.asarray(top * np.sqrt(np.mean((second / unit) ** 2, axis=0)))

    @_quiet
    def plan(self, tangents: Sequence[Host | None]) -> _Plan:
        """The step ``h``, a power of two that balances truncation (h^4)
        against rounding (eps / h); the points ``x + h t, x - h t, x + 2h t,
        x - 2h t``, rounded to be exact; and the tangent really moved along."""
        tmax = max([_max_abs(t) for t in tangents if t is not None], default=0.0)
        lo, hi = self.step_range
        h = min(
            max(self.step_eps ** (1 / 5) * self.scale / (tmax or 1.0), lo), hi / 8 / (tmax or 1.0)
        )
        h = 2.0 ** round(math.log2(h))
        s1, s2 = (
            [
                None if t is None else _exact_step(x, np.asarray(k * h * t))
                for x, t in zip(self.x, tangents, strict=True)
            ]
            for k in (1.0, 2.0)
        )
        points = [
            [x if d is None else x + sign * d for x, d in zip(self.x, s, strict=True)]
            for s, sign in ((s1, 1.0), (s1, -1.0), (s2, 1.0), (s2, -1.0))
        ]
        # s2 is 2 s1 up to the rounding that made the moves exact: the
        # first-order part of the difference is J (8 s1 - s2) / 6h, exactly.
        moved_along = [
            None if a is None or b is None else (8 * _host_array(a) - _host_array(b)) / (6 * h)
            for a, b in zip(s1, s2, strict=True)
        ]
        # Where |s| > |x| the points round and their centre moves off x by c:
        # the difference is then J at x + c, off by about c^T H t (H the
        # Hessian), as the combination weighs (4 c_h - c_2h) / 3.
        shift = (4 * _centre_shift(self.x, s1) + _centre_shift(self.x, s2)) / 3
        t_norm = math.sqrt(sum(_norm(t) ** 2 for t in moved_along if t is not None))
        return _Plan(h, points, moved_along, shift, t_norm)

    @_quiet
    def _combine(self, plan: _Plan, values: Sequence[Host], curvature: Host) -> _Diff:
        h, t = plan.h, plan.t
        p1, m1, p2, m2 = values
        jt = (8 * (p1 - m1) - (p2 - m2)) / (12 * h)
        big = np.max(np.abs([p1, m1, p2, m2, self.f0]), axis=0)
        # f's rounding at the four points weighs (8 + 8 + 1 + 1) / 12 over h;
        # each of its n terms may also underflow (to 0, where flushed).
        big = np.where(np.isfinite(big), big, 0.0)
        rounding = 4 * _sum_terms(self.n) * self.eps * big + self.n * self.tiny
        # The rounded points' centre shift c costs |c^T H t| <= |c| |H| |t|;
        # four times the measured |H|, as a few random directions may miss it.
        moved = 4 * curvature * plan.t_norm * plan.shift
        return _Diff(jt, t, 1.5 * rounding / h + moved)


def _compare_primal(got: Host, d: _Differences) -> float:
    """The rule's ``f(x)`` against ``fun``'s, to a few eps of it."""
    tol = 64 * _eps([d.y]) * np.abs(d.y_host) + (d.n + 1) * _tiny([d.y])
    return _compare("primal output", got, d.y_host, tol)


def _max_abs(a: Host) -> float:
    """Largest finite magnitude in ``a`` (NaN entries are masked-out data)."""
    m = np.abs(a)
    return float(np.max(m[np.isfinite(m)], initial=0.0))


def _random_tangents(
    rng: np.random.Generator, d: _Differences, moved: Sequence[bool]
) -> list[Host | None]:
    """Standard normal tangents for the floating primals marked ``moved``."""
    return [
        _random(rng, tuple(p.shape), c) if m and f else None
        for p, m, f, c in zip(d.primals, moved, d.floating, d.complex, strict=True)
    ]


# -- the checkers ---------------------------------------------------------------


@_quiet
def _gradient_norm(probes: Sequence[_Diff]) -> Host:
    """``|g|`` per output, from ``E (J t)^2 = |g|^2`` for standard normal ``t``."""
    sq = [np.where(np.isfinite(d.jt), np.abs(d.jt), 0.0) ** 2 for d in probes]
    return np.asarray(np.sqrt(np.mean(sq, axis=0)))


@_quiet
def _jvp_tolerance(
    diff: _Diff, rule_t: Sequence[Host | None], gnorm: Host, rtol: float, eps: float, n: int
) -> Host:
    """``rtol |J t|``, f's rounding, the rule's rounding of a ``J t`` that
    cancels (``eps |g| |t|``, by Cauchy-Schwarz) and ``J (t_moved - t_rule)``
    for the rule's tangents rounded to their dtype."""
    mismatch = math.sqrt(
        sum(
            _norm(np.where(np.isfinite(t), t - m, 0.0)) ** 2
            for t, m in zip(rule_t, diff.t, strict=True)
            if t is not None and m is not None
        )
    )
    size = math.sqrt(sum(_norm(t) ** 2 for t in rule_t))
    cancels = gnorm * (4 * _sum_terms(n) * eps * size + 2 * mismatch)
    return np.asarray(rtol * np.abs(diff.jt) + diff.rounding + cancels)


def check_jvp(
    fun: Callable[..., Array],
    jvp_rule: Callable[..., tuple[Array, Array]],
    primals: Sequence[Array],
    tangents: Sequence[Array | None] | None = None,
    *,
    rtol: float | None = None,
    seed: int = 0,
    directions: int = 3,
) -> Check:
    """Check a pushforward ``jvp_rule(*primals, *tangents) -> (f(x), J t)``.

    The primal output must be an array of ``fun(*primals)``'s dtype and
    shape, equal to it to ``64 eps`` relative. The tangent output must be an
    array of that shape and kind (real or complex) and match the central
    difference of ``fun`` to ``rtol |J t|`` plus the rounding of ``f``
    (``eps |f(x +- h t)| / h``), of a ``J t`` that cancels (``eps |g| |t|``,
    ``|g|`` the gradient's norm measured along ``directions`` random ones) and
    of the points ``x +- h t`` where a primal is far smaller than its move
    (``|c| |H| |t|``, see the module's docstring): the step is sized by the
    largest primal, so an output that depends only on tiny ones is checked
    only as closely as the difference at that step can resolve it.

    Detection power, which ``test_detection_power`` in ``tests/test_testing.py``
    asserts on every backend: on random problems (standard normal ``y`` and
    ``y_ref`` of 1 to 60 elements, each floating dtype, the default random
    directions), a pushforward whose ``J t`` is off by a relative 1e-3 either
    way in single precision, or 1e-7 in double, fails in every seed tested
    (40 on NumPy, 4 on PyTorch, JAX and array-api-strict, 1 on Dask), and so
    does one off by 1e-2 where ``fun`` refuses float64 and the differences run
    in single precision; the correct rule passes in every one. A tangent
    output with a complex dtype for a real ``fun`` (whatever its imaginary
    part) always fails.

    Parameters
    ----------
    fun
        The primal function, ``fun(*primals) -> y``.
    jvp_rule
        Called as ``jvp_rule(*primals, *tangents)``.
    primals
        Arrays of one library.
    tangents
        One per primal (None is a structural zero, which ``jvp_rule`` is given
        as None; that primal is not moved); ``directions`` random standard
        normal ones when omitted.
    rtol
        Relative tolerance of ``J t``; by default ``eps ** (1/2)`` of the
        primals' dtype (3.5e-4 in float32, 1.5e-8 in float64).
    seed
        Seed of the random directions.
    directions
        Number of random directions: those checked when ``tangents`` is
        omitted, and those that measure the gradient's norm.
    """
    if tangents is not None and len(tangents) != len(primals):
        raise ValueError(f"{len(primals)} primals but {len(tangents)} tangents")
    if directions < 1:
        raise ValueError(f"directions must be at least 1, got {directions}")
    rng = np.random.default_rng(seed)
    diffs = _Differences(fun, primals)
    eps = _eps(primals)
    rtol = rtol if rtol is not None else math.sqrt(eps)
    moved = [True] * len(primals) if tangents is None else [t is not None for t in tangents]
    probes = [diffs.plan(_random_tangents(rng, diffs, moved)) for _ in range(directions)]
    cases: list[tuple[list[Array | None], list[Host | None]]] = []
    if tangents is None:
        # The rule gets the tangents moved along, rounded to the primals' dtypes.
        checked = probes
        for plan in probes:
            rounded = [
                None if t is None else np.asarray(t, dtype=hd)
                for t, hd in zip(plan.t, diffs.host_dtypes, strict=True)
            ]
            rule_t = [
                None if t is None else _like(p, t) for p, t in zip(primals, rounded, strict=True)
            ]
            cases.append((rule_t, [None if t is None else _host_array(t) for t in rounded]))
    else:
        read = iter(_hosts(*[t for t in tangents if t is not None]))
        given = [None if t is None else next(read) for t in tangents]
        for i, (p, t) in enumerate(zip(primals, given, strict=True)):
            wrong_kind = t is not None and np.iscomplexobj(t) and not diffs.complex[i]
            if t is not None and (wrong_kind or t.shape != tuple(p.shape)):
                raise ValueError(
                    f"tangent {i} must have primal {i}'s shape {tuple(p.shape)} (and be real "
                    f"if the primal is); got shape {t.shape} and dtype {t.dtype}"
                )
        checked = [diffs.plan(given)]
        cases.append((list(tangents), given))
    # What the rule returns is checked before any value is read.
    outputs = [jvp_rule(*primals, *rule_t) for rule_t, _ in cases]
    for got_y, got_dot in outputs:
        _check_output("tangent output (J t)", got_dot, diffs.y, same_dtype=False)
        _check_output("primal output", got_y, diffs.y, same_dtype=True)
    plans = probes if tangents is None else [*probes, *checked]
    found, read_back = diffs.evaluate(plans, *[a for out in outputs for a in out])
    gnorm = _gradient_norm(found[:directions])
    err = 0.0
    for k, ((_, host_t), diff, (_, got_dot)) in enumerate(
        zip(cases, found[len(plans) - len(checked) :], outputs, strict=True)
    ):
        host_y, host_dot = read_back[2 * k : 2 * k + 2]
        err = max(err, _compare_primal(host_y, diffs))
        tol = _jvp_tolerance(diff, host_t, gnorm, rtol, max(eps, _eps([got_dot])), diffs.n)
        tol = tol + (diffs.n + 1) * _tiny([got_dot, *primals])
        err = max(err, _compare("tangent output (J t)", host_dot, diff.jt, tol))
    return Check(err, eps, diffs.eps)


@_quiet
def _dot_tolerance(
    diff: _Diff, c: Host, bars_t: Sequence[tuple[Host, Host]], rtol: float, eps: float, n: int
) -> float:
    """``sum (rtol |J t| + f's rounding) |c|`` and the pullback's rounding,
    ``eps sum |J^T c| |t|``."""
    fd = _real_dot(rtol * np.abs(diff.jt) + diff.rounding, np.abs(c))
    pulled = sum(_real_dot(np.abs(b), np.abs(t)) for b, t in bars_t)
    return fd + 4 * _sum_terms(n) * eps * pulled


def _norm1(a: Host | None) -> float:
    return 0.0 if a is None else float(np.sum(np.abs(a)))


def check_vjp(
    fun: Callable[..., Array],
    vjp_rule: Callable[..., tuple[Array, Callable[[Array], Sequence[Array | None]]]],
    primals: Sequence[Array],
    cotangent: Array | None = None,
    *,
    rtol: float | None = None,
    seed: int = 0,
    pairs: int = 3,
) -> Check:
    """Check a pullback by the dot-product test ``<J t, c> = <t, J^T c>``.

    ``vjp_rule(*primals) -> (f(x), pullback)``; ``pullback(c)`` returns one
    cotangent per primal: an array of its primal's shape and kind (real or
    complex), or None for a structural zero. For each of ``pairs`` pairs,
    ``t`` is random standard normal and ``J t`` comes from central finite
    differences, ``c`` is random standard normal of the output's shape and
    kind unless given, and the two sides must agree to ``rtol`` times
    ``sum |J t| |c|`` plus the rounding of ``f`` and of the moved points (as
    in :func:`check_jvp`) and of the pullback (``eps sum |J^T c| |t|``). The
    primal output is checked as in :func:`check_jvp`.

    Detection power, which ``test_detection_power`` in ``tests/test_testing.py``
    asserts on every backend: on random problems (standard normal ``y`` and
    ``y_ref`` of 1 to 60 elements, each floating dtype, the default pairs), a
    pullback whose cotangents are off by a relative 1e-3 either way in single
    precision, or 1e-7 in double, or that flips the sign of ``y_ref``'s
    cotangent, fails in every seed tested (40 on NumPy, 4 on PyTorch, JAX and
    array-api-strict, 1 on Dask), and so does one off by 1e-2 where ``fun``
    refuses float64; the correct rule passes in every one. A complex
    cotangent for a real primal, or a real one for a complex primal, always
    fails.

    Parameters
    ----------
    rtol
        Relative tolerance; by default ``eps ** (1/2)`` of the primals' dtype.
    seed
        Seed of the random tangents and cotangents.
    pairs
        Number of tangent-cotangent pairs (with a given ``cotangent``, the
        number of tangents it is tested with).
    """
    if pairs < 1:
        raise ValueError(f"pairs must be at least 1, got {pairs}")
    rng = np.random.default_rng(seed)
    diffs = _Differences(fun, primals)
    eps = _eps(primals)
    rtol = rtol if rtol is not None else math.sqrt(eps)
    got_y, pullback = vjp_rule(*primals)
    _check_output("primal output", got_y, diffs.y, same_dtype=True)
    y_shape, y_complex = tuple(diffs.y.shape), _is_complex(diffs.y)
    cots = [
        cotangent if cotangent is not None else _like(got_y, _random(rng, y_shape, y_complex))
        for _ in range(pairs)
    ]
    # What the pullback returns is checked before any value is read.
    pulled = [list(pullback(c)) for c in cots]
    for bars in pulled:
        if len(bars) != len(primals):
            raise AssertionError(f"pullback gave {len(bars)} cotangents for {len(primals)} primals")
        for i, (p, b) in enumerate(zip(primals, bars, strict=True)):
            if b is not None:
                _check_output(f"cotangent {i}", b, p, same_dtype=False)
    plans = [diffs.plan(_random_tangents(rng, diffs, [True] * len(primals))) for _ in cots]
    extra = [got_y] + [
        a for c, bars in zip(cots, pulled, strict=True) for a in (c, *bars) if a is not None
    ]
    found, read_back = diffs.evaluate(plans, *extra)
    err = _compare_primal(read_back[0], diffs)
    values = iter(read_back[1:])
    for diff, bars in zip(found, pulled, strict=True):
        host_c = next(values)
        host_bars = [None if b is None else next(values) for b in bars]
        present = [b for b in bars if b is not None]
        pairs_bt = [
            (b, t)
            for b, t in zip(host_bars, diff.t, strict=True)
            if b is not None and t is not None
        ]
        lhs = _real_dot(diff.jt, host_c)
        rhs = sum(_real_dot(b, t) for b, t in pairs_bt)
        tol = _dot_tolerance(diff, host_c, pairs_bt, rtol, max(eps, _eps(present)), diffs.n)
        tol += _tiny([*primals, *present]) * (diffs.n + sum(_norm1(t) for t in diff.t))
        err = max(err, _compare("<J t, c> vs <t, J^T c>", np.asarray(rhs), np.asarray(lhs), tol))
    return Check(err, eps, diffs.eps)
