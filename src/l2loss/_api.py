"""The public functions: arguments checked once per kind of call, then the
plan's evaluation of the rule."""

from __future__ import annotations

import functools
import numbers
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import array_api_compat as compat

from . import _rule
from ._dtypes import promote
from ._plan import library_masking, plan
from ._traits import Traits, on_change, refuse, traits_of
from ._validate import (
    check_axis,
    check_batched,
    check_devices,
    check_mask,
    check_shape,
    check_weights,
    describe,
    directions,
    same_shape,
)

__all__ = ["l2_loss", "l2_loss_grad", "l2_loss_jvp", "l2_loss_vjp"]

Array = Any
Pullback = Callable[[Array], tuple[Array, Array]]

_NAMES = ("y", "y_ref", "y_dot", "y_ref_dot", "where", "weights")


class Kind:
    """What every call with the same argument types, dtypes and shapes,
    ``axis`` and ``batched`` shares: its checks, made once, and its plan.

    Attributes
    ----------
    traits, xp
        The library's traits (those of its accelerator, for arrays on one)
        and namespace.
    base, device
        The library's traits for any device, and the type of the device of
        ``y`` where they depend on it (PyTorch), else None.
    adopt
        Positions of NumPy arguments taken into the library (JAX).
    shape, axes, batch
        ``y``'s shape, the reduced axes (sorted, negative), and ``(K,)`` for
        K tangent directions or ``()``.
    lead
        Leading axes of ``y`` the weights cover (-1: no weights).
    primal, full
        The dtypes of ``y``, ``y_ref`` and the weights (those of L, the
        residual and the cotangents), and of every argument (those of L_dot).
    evaluate
        The plan's evaluation, ``evaluate(*arrays, masking) -> (sq, ip)``.
    halve
        The plan's ``halve(sq) -> L``.
    plain
        Whether the arrays go to the evaluation as they are (no mask, guard,
        or weights to expand).
    plain_loss, plain_jvp
        The plan's ``loss`` and ``jvp`` (:class:`~l2loss._plan.Plan`) where
        the arrays go to them as they are (no guard, or weights to expand;
        a mask where they take one); ``plain_jvp`` where its results also
        come out in their dtypes (a tangent given, no half precision to
        return). Else None.
    maskings
        The :class:`~l2loss._rule.Masking` of each dtype and device (eager
        libraries), made once: its 0-d zero is one array per call less.
    whole, recorded
        The plan's (:class:`~l2loss._plan.Plan`): whether its evaluation runs
        over the whole arrays at once, and whether the library's autograd
        records it when arrays require grad, rather than run l2loss's rules.
    loss, jvp, grad
        The same and the plan's ``grad``, for calls that need nothing else:
        no adoption, device check, autodiff or compilation either, once
        ``ready`` (if not None) says so of their arrays (``Traits.ready``, or
        ``Traits.recording`` where ``recorded``). Else None.
    loss_ready
        ``ready`` for ``loss``; None on PyTorch for a call with no mask,
        weights or tangents, whose ``loss`` checks its tensors itself and
        serves those that require grad too (:func:`~l2loss._torch.loss_of`).
    """

    __slots__ = (
        "adopt",
        "axes",
        "base",
        "batch",
        "device",
        "evaluate",
        "full",
        "grad",
        "halve",
        "jvp",
        "lead",
        "loss",
        "loss_ready",
        "maskings",
        "plain",
        "plain_jvp",
        "plain_loss",
        "primal",
        "ready",
        "recorded",
        "shape",
        "traits",
        "whole",
        "xp",
    )

    def __init__(
        self,
        arrays: tuple[Array, ...],
        traits: Traits,
        adopt: tuple[int, ...],
        axis: Any,
        batched: Any,
    ) -> None:
        y, y_ref, y_dot, y_ref_dot, where, weights = arrays
        self.base, self.device = traits, None
        if traits.accelerated is not None:
            # The traits follow the device of y (not part of the kind's key).
            self.device = y.device.type
            if self.device != "cpu":
                traits = traits.accelerated
        xp = traits.xp
        shape = tuple(y.shape)
        check_shape("y_ref", y_ref, shape)
        batch: tuple[int, ...] = ()
        if check_batched(batched):
            batch = directions(y_dot, y_ref_dot, shape)
        else:
            for name, t in (("y_dot", y_dot), ("y_ref_dot", y_ref_dot)):
                if t is not None:
                    check_shape(name, t, shape)
        if where is not None:
            check_mask(xp, where, shape)
        self.lead = -1 if weights is None else check_weights(xp, weights, shape)
        self.axes = check_axis(axis, len(shape))
        if traits.check_devices:
            check_devices(_NAMES, arrays)
        numeric = [(n, a) for n, a in zip(_NAMES, arrays, strict=True) if a is not None]
        numeric = [(n, a) for n, a in numeric if n != "where"]
        primal = [(n, a) for n, a in numeric if n in ("y", "y_ref", "weights")]
        self.full = promote(xp, *_unzip(numeric), traits.cast)
        self.primal = promote(xp, *_unzip(primal), traits.cast)
        if self.full.narrow:
            # Half-precision tangents are widened too, to the primals' working dtype.
            self.primal = replace(self.primal, widen=True, narrow=self.full.narrow)
        self.traits, self.xp, self.adopt = traits, xp, adopt
        self.maskings: dict[tuple[Any, Any], _rule.Masking] = {}
        self.shape, self.batch = shape, batch
        p = plan(
            traits, self.full, self.primal, shape, self.axes, batch, self.lead, where is not None
        )
        self.evaluate, self.halve = p.evaluate, p.halve
        # Weights of y's shape need no expanding; the plan's closures take a
        # mask where they can (else they are None).
        simple = self.lead in (-1, len(shape)) and traits.guard is None
        self.plain = where is None and simple
        tangent = y_dot is not None or y_ref_dot is not None
        self.plain_loss = p.loss if simple else None
        self.plain_jvp = p.jvp if simple and tangent and not self.full.widen else None
        # Calls that need nothing but the evaluation of their arrays as they
        # are, always or once the library's quick check passes.
        checks = traits.check_devices or traits.autodiff is not None
        self.whole, self.recorded = p.whole, p.recorded
        ready = traits.recording if self.recorded else traits.ready
        self.ready = ready if checks else None
        direct = not (adopt or traits.compile or (checks and self.ready is None))
        self.loss = self.plain_loss if direct else None
        self.loss_ready = self.ready
        if (
            self.loss is not None
            and traits.autodiff is not None
            and self.lead == -1
            and self.plain
            and not tangent
        ):
            # l2_loss's training step, whose checks the closure makes (_torch.loss_of).
            self.loss, self.loss_ready = _autodiff_module().loss_of(self), None
        self.jvp = self.plain_jvp if direct else None
        self.grad = p.grad if direct and simple else None

    @property
    def loss_shape(self) -> tuple[int, ...]:
        reduced = {len(self.shape) + ax for ax in self.axes}
        return tuple(s for i, s in enumerate(self.shape) if i not in reduced)

    @property
    def spread(self) -> tuple[Any, ...]:
        """The index that gives an array of L's shape size-1 axes where L was
        reduced, by indexing with None (reshape and expand_dims need every
        size, and Dask's may be unknown)."""
        reduced = {len(self.shape) + ax for ax in self.axes}
        return tuple(None if i in reduced else slice(None) for i in range(len(self.shape)))


def _unzip(pairs: list[tuple[str, Array]]) -> tuple[tuple[str, ...], tuple[Array, ...]]:
    return tuple(n for n, _ in pairs), tuple(a for _, a in pairs)


# Kinds of calls by their key (see _kind), bounded: a program that sees ever
# new shapes must not grow it without end.
_KINDS: dict[tuple[Any, ...], Kind] = {}
_KINDS_SIZE = 512
_LOCK = threading.Lock()
on_change(_KINDS.clear)
_MISS = object()  # a part of a key that no stored kind has


def _axis_key(axis: Any) -> Any:
    """``axis`` where it can key a kind (None, an exact int or a tuple of
    them: ``True``, ``1.0`` and ``1`` hash alike, but only ``1`` is an axis)."""
    if type(axis) is tuple and all(type(a) is int for a in axis):
        return axis
    return _MISS


def _kind(
    y: Array,
    y_ref: Array,
    y_dot: Array,
    y_ref_dot: Array,
    where: Array,
    weights: Array,
    axis: Any,
    batched: Any,
) -> Kind:
    """The :class:`Kind` of a call: one dictionary lookup once it has been seen."""
    key: tuple[Any, ...] | None
    try:
        key = (
            axis if axis is None or type(axis) is int else _axis_key(axis),
            batched if type(batched) is bool else _MISS,
            type(y),
            y.dtype,
            y.shape,
            type(y_ref),
            y_ref.dtype,
            y_ref.shape,
            None if y_dot is None else (type(y_dot), y_dot.dtype, y_dot.shape),
            None if y_ref_dot is None else (type(y_ref_dot), y_ref_dot.dtype, y_ref_dot.shape),
            None if where is None else (type(where), where.dtype, where.shape),
            None if weights is None else (type(weights), weights.dtype, weights.shape),
        )
        return _KINDS[key]
    except KeyError:
        pass
    except Exception:  # not arrays, or traced devices: what is wrong is said below
        key = None
    arrays = (y, y_ref, y_dot, y_ref_dot, where, weights)
    for name, a in zip(_NAMES[:2], arrays[:2], strict=True):
        if a is None:
            refuse(name, a)
    traits, adopt = traits_of(_NAMES, arrays)
    if adopt:
        arrays = _adopted(traits, adopt, arrays)
    kind = Kind(arrays, traits, adopt, axis, batched)
    # JAX's weakly typed arrays (Python scalars made arrays) promote unlike
    # strong ones of the same dtype, which the key cannot tell apart.
    mixed = kind.traits.compile and len({a.dtype for a in arrays if a is not None}) > 1
    if key is not None and not mixed:
        with _LOCK:
            if len(_KINDS) >= _KINDS_SIZE:
                _KINDS.clear()
            _KINDS[key] = kind
    return kind


def _adopted(
    traits: Traits, adopt: tuple[int, ...], arrays: tuple[Array, ...]
) -> tuple[Array, ...]:
    assert traits.adopts is not None
    return tuple(traits.adopts(a) if i in adopt else a for i, a in enumerate(arrays))


# -- what a call computes, given its Kind and its arrays -----------------------


def _expanded(weights: Array, ndim: int) -> Array:
    """Weights of ``y``'s leading axes given size-1 trailing axes (a view)."""
    k = weights.ndim
    return weights if k == ndim else weights[(..., *([None] * (ndim - k)))]


def _values(
    k: Kind, y: Array, y_ref: Array, y_dot: Array, y_ref_dot: Array, mask: Array, weights: Array
) -> tuple[Array, Array]:
    """``(sq, ip)`` of the rule, by the plan's evaluation."""
    masking = None
    if not k.plain:
        masking = masking_of(k, mask, y, k.primal.real_work)
        y, weights = _prepared(k, y, y_ref, y_dot, y_ref_dot, mask, weights)
    return k.evaluate(y, y_ref, y_dot, y_ref_dot, mask, weights, masking)


def masking_of(k: Kind, mask: Array, like: Array, dtype: Any) -> _rule.Masking | None:
    """The :data:`~l2loss._rule.Masking` of ``mask`` (None without one): the
    library's ``keep`` with a 0-d zero of ``dtype`` on ``like``'s device."""
    if mask is None:
        return None
    traits = k.traits
    if traits.blocking is None:  # lazy libraries: nothing traced or lazy is kept
        return library_masking(traits, dtype, compat.device(like))
    key = (dtype, getattr(like, "device", None))
    masking = k.maskings.get(key)
    if masking is None:
        masking = k.maskings[key] = library_masking(traits, dtype, compat.device(like))
    return masking


def _prepared(
    k: Kind, y: Array, y_ref: Array, y_dot: Array, y_ref_dot: Array, mask: Array, weights: Array
) -> tuple[Array, Array]:
    """``y`` guarded by the checks its library makes when it computes
    (``Traits.guard``), and the weights expanded to ``y``'s dimensions."""
    if weights is not None:
        weights = _expanded(weights, len(k.shape))
    guard = k.traits.guard
    if guard is not None:
        # The arguments of y's dimensions (a batched tangent by its first direction).
        others = [("y_ref", y_ref)]
        for name, t in (("y_dot", y_dot), ("y_ref_dot", y_ref_dot)):
            if t is not None:
                others.append((name, t[0] if k.batch else t))
        others += [(n, a) for n, a in (("where", mask), ("weights", weights)) if a is not None]
        y = guard(y, tuple(others))
    return y, weights


def _loss(k: Kind, *arrays: Array) -> Array:
    if k.plain_loss is not None:  # PyTorch's autograd records these calls too
        y, y_ref, _, _, where, weights = arrays
        return k.plain_loss(y, y_ref, weights, where)
    return k.halve(_values(k, *arrays)[0])


def _jvp(k: Kind, *arrays: Array) -> tuple[Array, Array]:
    xp = k.xp
    if k.plain_jvp is not None:
        y, y_ref, y_dot, y_ref_dot, where, weights = arrays
        out: tuple[Array, Array] = k.plain_jvp(y, y_ref, y_dot, y_ref_dot, weights, where)
        return out
    sq, ip = _values(k, *arrays)
    L = k.halve(sq)
    out = k.full.out
    if ip is None:
        # Both tangents are structural zeros: so is L_dot.
        shape = (*k.batch, *L.shape)
        ip = xp.zeros(shape, dtype=out, device=compat.device(arrays[0]))
        if not shape:
            ip = ip[()]  # the library's own 0-d result (NumPy: a scalar)
    elif k.full.widen and ip.dtype != out:
        ip = xp.astype(ip, out)
    return L, ip


def _like(k: Kind, a: Array, primal: Array) -> Array:
    """The cotangent ``a`` in its primal's dtype (the real part for a real
    primal) and, on Dask, in its primal's chunks."""
    xp = k.xp
    if a.dtype != primal.dtype:
        if k.primal.complex and not xp.isdtype(primal.dtype, "complex floating"):
            a = xp.real(a)
        a = xp.astype(a, primal.dtype)
    chunks = getattr(primal, "chunks", None)
    if chunks is not None and a.chunks != chunks:
        a = a.rechunk(chunks)
    return a


def _cotangents(
    k: Kind,
    y: Array,
    y_ref: Array,
    y_dot: Array,
    y_ref_dot: Array,
    mask: Array,
    weights: Array,
    L_bar: Any,
    both: bool = True,
) -> tuple[Array, Array]:
    """``(y_bar, y_ref_bar)`` for the cotangent ``L_bar`` (a Python float, or
    an array of L's shape or 0-d); ``y_ref_bar`` is None unless ``both``."""
    xp, dt = k.xp, k.primal
    scale = L_bar
    if not isinstance(L_bar, float):
        scale = L_bar if L_bar.dtype == dt.real_work else xp.astype(L_bar, dt.real_work)
        if L_bar.ndim:
            scale = scale[k.spread]
    masking = masking_of(k, mask, y, dt.real_work)
    g, w = _prepared(k, y, y_ref, y_dot, y_ref_dot, mask, weights)
    d = _rule.cotangent(xp, dt, g, y_ref, mask, w, masking, scale)
    return _like(k, d, y), (_like(k, -d, y_ref) if both else None)


def _grad(
    k: Kind, y: Array, y_ref: Array, y_dot: Array, y_ref_dot: Array, mask: Array, weights: Array
) -> tuple[Array, Array]:
    """``(L, w d)`` from one residual ``d``: the plan's evaluation sums it as
    :func:`l2_loss` sums ``y - y_ref`` (the same bits), and ``w d`` is the
    gradient."""
    masking = masking_of(k, mask, y, k.primal.real_work)
    g, w = _prepared(k, y, y_ref, None, None, mask, weights)
    d, grad = _rule.gradient(k.xp, k.primal, g, y_ref, mask, w, masking)
    if w is None:  # d is masked already; only weights would need the mask again
        mask = masking = None
    L = k.halve(k.evaluate(d, None, None, None, mask, w, masking)[0])
    return L, _like(k, grad, y)


_Op = Callable[..., Any]


def _call(k: Kind, op: _Op, arrays: tuple[Array, ...], *extra: Any) -> Any:
    """``op(kind, *arrays, *extra)`` as the library needs it run: through its
    automatic differentiation, or compiled whole."""
    if k.adopt:
        arrays = _adopted(k.traits, k.adopt, arrays)
    host = k.traits.host
    if host is None or not host(*arrays):
        if k.device is not None and arrays[0].device.type != k.device:
            k = Kind(arrays, k.base, k.adopt, k.axes, bool(k.batch))  # arrays on another device
        if k.traits.check_devices:
            check_devices(_NAMES, arrays)
    traits = k.traits
    if traits.autodiff is not None and traits.autodiff(arrays):
        return _autodiff()(k, op, arrays, *extra)
    if traits.compile:
        return _compiled(op)(*arrays, *extra, axis=k.axes, batched=bool(k.batch))
    return op(k, *arrays, *extra)


@functools.cache
def _autodiff() -> _Op:
    """``_torch.call``, imported once it is needed (PyTorch is optional)."""
    return _autodiff_module().call  # type: ignore[no-any-return]


def _autodiff_module() -> Any:
    from . import _torch

    return _torch


@functools.cache
def _compiled(op: _Op) -> _Op:
    """``op`` as one ``jax.jit`` computation, checked again while it is traced
    (once per shapes, dtypes, ``axis`` and ``batched``). Under an outer
    ``jax.jit`` it is inlined; under ``jax.disable_jit`` it runs as it is."""
    import jax

    def traced(*args: Any, axis: Any, batched: bool) -> Any:
        y, y_ref, y_dot, y_ref_dot, mask, weights = args[:6]
        k = _kind(y, y_ref, y_dot, y_ref_dot, mask, weights, axis, batched)
        return op(k, *args)

    jitted: _Op = jax.jit(traced, static_argnames=("axis", "batched"))
    return jitted


def _checked_cotangent(k: Kind, L_bar: Any, y: Array) -> Any:
    """``L_bar`` as :func:`_cotangents` takes it: a real number becomes a
    Python float; an array must be real floating, of ``y``'s library and
    device, and of L's shape (or 0-d, which broadcasts like a number)."""
    if type(L_bar) is float:  # the commonest cotangent, 1.0, needs no other check
        return L_bar
    number = isinstance(L_bar, numbers.Number)
    if number and type(L_bar) is not bool and isinstance(L_bar, numbers.Real):
        return float(L_bar)
    if L_bar is None or number:
        real = isinstance(L_bar, numbers.Real)
        kind = repr(L_bar) if real or L_bar is None else f"the complex number {L_bar!r}"
        raise TypeError(
            f"L_bar must be a real number or a real floating array of L's shape, got "
            f"{kind}; pass e.g. 1.0, or an array of "
            f"shape {k.loss_shape}"
        )
    traits_of(("y", "L_bar"), (y, L_bar))
    if k.traits.check_devices:
        check_devices(("y", "L_bar"), (y, L_bar))
    if not k.xp.isdtype(L_bar.dtype, "real floating"):
        raise TypeError(
            f"L_bar must be a real floating array (the loss is real), got {describe(L_bar)}; "
            f"pass a real array of L's shape, {k.loss_shape}"
        )
    if L_bar.ndim and not same_shape(tuple(L_bar.shape), k.loss_shape):
        raise ValueError(
            f"L_bar must have the shape of L, {k.loss_shape} (or be 0-d), got {describe(L_bar)}"
        )
    return L_bar


# -- the public functions ------------------------------------------------------


def l2_loss(
    y: Array, y_ref: Array, /, *, axis: Any = None, where: Array = None, weights: Array = None
) -> Array:
    r"""The squared L2 loss :math:`L = \tfrac12 \sum w \lvert y - y_{ref} \rvert^2`.

    Parameters
    ----------
    y, y_ref
        Arrays of one shape and one array library, real or complex floating.
        Complex inputs give the real loss :math:`\tfrac12 \sum |y - y_{ref}|^2`.
    axis
        Axes to reduce, as in ``sum(axis=...)``: None reduces over all of
        them; an int or a tuple keeps the others as a batch of per-sample
        losses; ``()`` reduces none (one loss per entry).
    where
        Optional boolean array of ``y``'s shape; entries where it is False take
        no part in the loss, even when they hold NaN or inf.
    weights
        Optional real floating array of ``y``'s shape, or of its leading axes
        (one weight per sample, the same along the trailing axes): the loss is
        :math:`\tfrac12 \sum w \lvert y - y_{ref}\rvert^2`. Weights are data
        (they have no tangent); negative ones are the caller's responsibility.

    Returns
    -------
    L
        Array of the input library and device, of shape ``y.shape`` without
        ``axis``, of the real floating dtype that ``y``, ``y_ref`` and the
        weights promote to (half precision is accumulated in float32 and
        returned as given). On NumPy a 0-d result is a NumPy scalar, as NumPy's
        own reductions return.

    Raises
    ------
    TypeError
        For non-arrays (None included), mixed array libraries, non-floating
        dtypes or a non-boolean ``where``.
    ValueError
        For mismatched shapes or devices and an invalid ``axis``.

    Examples
    --------
    >>> import numpy as np
    >>> y, y_ref = np.array([[1.0, 2.0], [3.0, 5.0]]), np.array([[1.0, 1.0], [1.0, 1.0]])
    >>> float(l2_loss(y, y_ref))  # (0 + 1 + 4 + 16) / 2
    10.5
    >>> l2_loss(y, y_ref, axis=1)  # one loss per row
    array([ 0.5, 10. ])
    >>> l2_loss(y, y_ref, axis=1, weights=np.array([2.0, 0.5]))  # one weight per row
    array([1., 5.])
    >>> y_ref[0, 1] = np.nan  # a missing target, left out by the mask
    >>> float(l2_loss(y, y_ref, where=~np.isnan(y_ref)))
    10.0
    """
    k = _kind(y, y_ref, None, None, where, weights, axis, False)
    loss = k.loss
    ready = k.loss_ready
    if loss is not None and (ready is None or ready(y, y_ref, weights, where)):
        return loss(y, y_ref, weights, where)
    return _call(k, _loss, (y, y_ref, None, None, where, weights))


def l2_loss_jvp(
    y: Array,
    y_ref: Array,
    y_dot: Array,
    y_ref_dot: Array = None,
    /,
    *,
    axis: Any = None,
    where: Array = None,
    weights: Array = None,
    batched: bool = False,
) -> tuple[Array, Array]:
    r"""The loss and its pushforward (forward-mode derivative, JVP).

    .. math::

        L = \tfrac12 \sum w \lvert y - y_{ref} \rvert^2, \qquad
        \dot L = \operatorname{Re} \sum w\, \overline{(y - y_{ref})} (\dot y - \dot y_{ref}),

    that is :math:`\dot L = (y - y_{ref})^T (\dot y - \dot y_{ref})` for real
    inputs without weights. ``y_ref_dot=None`` is a structural zero, the usual
    case of a fixed reference: it is never read and costs nothing, so
    :math:`\dot L = d^T \dot y` in one pass over three arrays. ``y_dot=None``
    is a structural zero too.

    Parameters
    ----------
    y, y_ref
        Primal arrays, as for :func:`l2_loss`.
    y_dot, y_ref_dot
        Tangents of ``y`` and ``y_ref``, of their shape; None is zero. With
        ``batched=True`` each carries one extra leading axis of K directions.
    axis, where, weights
        As for :func:`l2_loss`; ``where`` masks the tangents too.
    batched
        Whether the tangents carry a leading axis of K directions: ``L_dot``
        then has shape ``(K, *L.shape)``, computed in one pass over the data.

    Returns
    -------
    L, L_dot
        The loss, as :func:`l2_loss` computes it (in the dtype of ``y``,
        ``y_ref`` and the weights: the tangents' dtypes promote ``L_dot``
        alone), and its derivative along the tangents (real, of the dtype all
        arguments promote to; zeros when both tangents are None).

    Examples
    --------
    >>> import numpy as np
    >>> y, y_ref = np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 1.0])
    >>> L, L_dot = l2_loss_jvp(y, y_ref, np.array([1.0, 1.0, 1.0]))  # (0, 1, 2) . (1, 1, 1)
    >>> float(L), float(L_dot)
    (2.5, 3.0)
    >>> directions = np.eye(3)  # K = 3 directions at once: the gradient
    >>> l2_loss_jvp(y, y_ref, directions, batched=True)[1]
    array([0., 1., 2.])
    """
    k = _kind(y, y_ref, y_dot, y_ref_dot, where, weights, axis, batched)
    jvp = k.jvp
    if jvp is not None and (k.ready is None or k.ready(y, y_ref, y_dot, y_ref_dot, weights, where)):
        return jvp(y, y_ref, y_dot, y_ref_dot, weights, where)
    out: tuple[Array, Array] = _call(k, _jvp, (y, y_ref, y_dot, y_ref_dot, where, weights))
    return out


def l2_loss_vjp(
    y: Array, y_ref: Array, /, *, axis: Any = None, where: Array = None, weights: Array = None
) -> tuple[Array, Pullback]:
    r"""The loss and its pullback (reverse-mode derivative, VJP).

    .. math::

        \bar y = \bar L\, w\, (y - y_{ref}), \qquad \bar y_{ref} = -\bar y,

    with :math:`\bar L` broadcast over the reduced axes, and both cotangents
    exactly 0 where ``where`` is False. For complex inputs the cotangents are
    those of the real inner product :math:`\langle a, b\rangle =
    \operatorname{Re}\sum \bar a b`, so that :math:`\dot L \bar L = \langle
    \bar y, \dot y\rangle + \langle \bar y_{ref}, \dot y_{ref}\rangle`
    (PyTorch's convention; JAX's ``grad`` returns the conjugate).

    Returns
    -------
    L, pullback
        The loss, as :func:`l2_loss` computes it, and ``pullback(L_bar) ->
        (y_bar, y_ref_bar)``. ``L_bar`` is a real floating array of ``L``'s
        shape, or a real number or 0-d array, which stands for that value at
        every loss. The pullback holds references to ``y`` and ``y_ref``, not
        an N-sized residual; ``y_bar`` has ``y``'s dtype and ``y_ref_bar`` has
        ``y_ref``'s.

    Examples
    --------
    >>> import numpy as np
    >>> y, y_ref = np.array([[1.0, 2.0], [3.0, 5.0]]), np.ones((2, 2))
    >>> L, pullback = l2_loss_vjp(y, y_ref, axis=1)
    >>> y_bar, y_ref_bar = pullback(np.array([1.0, 0.5]))  # L_bar per row
    >>> y_bar
    array([[0., 1.],
           [1., 2.]])
    """
    k = _kind(y, y_ref, None, None, where, weights, axis, False)
    arrays = (y, y_ref, None, None, where, weights)
    loss = k.loss
    if loss is not None and (k.ready is None or k.ready(y, y_ref, weights, where)):
        L = loss(y, y_ref, weights, where)
    else:
        L = _call(k, _loss, arrays)

    def pullback(L_bar: Array) -> tuple[Array, Array]:
        r"""``(y_bar, y_ref_bar) = (L_bar w d, -L_bar w d)`` with ``d = y - y_ref``."""
        out: tuple[Array, Array] = _call(k, _cotangents, arrays, _checked_cotangent(k, L_bar, y))
        return out

    return L, pullback


def l2_loss_grad(
    y: Array, y_ref: Array, /, *, axis: Any = None, where: Array = None, weights: Array = None
) -> tuple[Array, Array]:
    r"""The loss and its gradient with respect to ``y``: ``(L, w (y - y_ref))``.

    The pullback of :func:`l2_loss_vjp` at :math:`\bar L = 1`, the common case
    of gradient descent: :math:`\nabla_y L = w\,(y - y_{ref})` (0 where
    ``where`` is False). With ``axis``, it is the gradient of the sum of the
    per-sample losses. The gradient with respect to ``y_ref`` is its negative,
    and is not computed.

    Examples
    --------
    >>> import numpy as np
    >>> L, grad = l2_loss_grad(np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 1.0]))
    >>> grad
    array([0., 1., 2.])
    """
    k = _kind(y, y_ref, None, None, where, weights, axis, False)
    grad = k.grad
    if grad is not None and (k.ready is None or k.ready(y, y_ref, weights, where)):
        return grad(y, y_ref, weights, where)
    out: tuple[Array, Array] = _call(k, _grad, (y, y_ref, None, None, where, weights))
    return out
