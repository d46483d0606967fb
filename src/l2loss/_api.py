"""The public functions: argument handling around ``_evaluate``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import array_api_compat as compat

from ._evaluate import evaluate
from ._namespace import Backend, backend_of, present
from ._rule import residual
from ._validate import (
    Dtypes,
    check_axis,
    check_devices,
    check_mask,
    check_shape,
    dtypes_of,
    same_shape,
)

__all__ = ["l2_loss", "l2_loss_grad", "l2_loss_jvp", "l2_loss_vjp"]

Array = Any
Pullback = Callable[[Array], tuple[Array, Array]]


_NAMES = ("y", "y_ref", "y_dot", "y_ref_dot", "where")

# (types of the five arguments, dtypes of the four arrays) -> (backend, working
# dtypes of the call, working dtypes of y and y_ref alone). Namespace
# resolution, dtype promotion and classification run once per combination,
# and a call pays one dictionary lookup.
_RESOLVED: dict[tuple[Any, ...], tuple[Backend, Dtypes, Dtypes]] = {}


def _resolve(
    y: Array, y_ref: Array, y_dot: Array, y_ref_dot: Array, where: Array
) -> tuple[Backend, Dtypes, Dtypes]:
    """The backend and working dtypes of one call, and those of its primals
    alone (validated)."""
    key: tuple[Any, ...] | None
    try:
        key = (
            type(y),
            type(y_ref),
            type(y_dot),
            type(y_ref_dot),
            type(where),
            getattr(y, "dtype", None),
            getattr(y_ref, "dtype", None),
            getattr(y_dot, "dtype", None),
            getattr(y_ref_dot, "dtype", None),
        )
        known = _RESOLVED.get(key)
    except Exception:
        # A non-array whose dtype raises or cannot be hashed: backend_of
        # below says what is wrong with it.
        key, known = None, None
    if known is not None:
        return known
    backend = backend_of(_NAMES, (y, y_ref, y_dot, y_ref_dot, where))
    names, given = present(_NAMES[:4], (y, y_ref, y_dot, y_ref_dot))
    dt = dtypes_of(backend, names, given)
    # L and the residual have the dtype of y and y_ref alone; L_dot that of
    # every input (tangents of a higher precision promote L_dot, not L).
    primal = dtypes_of(backend, ("y", "y_ref"), (y, y_ref))
    if backend.float64 is not None and primal.work == backend.xp.float64:
        # Every product reads the residual: its dtype chooses the traits.
        backend = backend.float64
    known = (backend, dt, primal)
    # Only combinations that passed validation are remembered, and on JAX only
    # those of one dtype: its weak types (Python scalars made arrays) promote
    # differently from strong arrays of the same dtype, and the key cannot
    # tell them apart without costing every call.
    if key is not None and (backend.name != "jax" or len({a.dtype for a in given}) == 1):
        _RESOLVED[key] = known
    return known


class _Call:
    """One validated call: namespace, dtypes, reduced axes, the arrays."""

    __slots__ = ("axes", "backend", "batch", "dt", "mask", "primal", "xp", "y", "y_ref", "zero")

    def __init__(
        self,
        y: Array,
        y_ref: Array,
        y_dot: Array,
        y_ref_dot: Array,
        axis: Any,
        where: Array,
        batched: bool,
    ) -> None:
        backend, self.dt, self.primal = _resolve(y, y_ref, y_dot, y_ref_dot, where)
        if backend.accelerated is not None and y.device.type != "cpu":
            backend = backend.accelerated
        shape = y.shape
        if y_ref.shape != shape:
            check_shape("y_ref", y_ref, tuple(shape), "y")
        batch: tuple[int, ...] = ()
        if batched:
            batch = _batch_size(y_dot, y_ref_dot, tuple(shape))
        else:
            if y_dot is not None and y_dot.shape != shape:
                check_shape("y_dot", y_dot, tuple(shape), "y")
            if y_ref_dot is not None and y_ref_dot.shape != shape:
                check_shape("y_ref_dot", y_ref_dot, tuple(shape), "y")
        if where is not None:
            check_mask(backend, where, tuple(shape))
        if backend.check_devices:
            check_devices(_NAMES, (y, y_ref, y_dot, y_ref_dot, where))
        self.axes = check_axis(axis, len(shape))
        self.backend = backend
        self.xp = backend.xp
        self.y, self.y_ref, self.mask, self.batch = y, y_ref, where, batch
        # The 0-d zero that masked entries take. A call that JAX compiles
        # makes it inside the compiled computation (see _compiled): made here
        # as well, outside, it would cost an eager dispatch (64 us) for nothing.
        self.zero = None
        if where is not None and not backend.compile:
            self.zero = self.make_zero()

    def make_zero(self) -> Array:
        """The 0-d zero of the residual's dtype: masking ``y`` and ``y_ref``
        with it leaves that dtype as it is (a zero of the tangents' higher
        precision would promote the residual and change L's bits)."""
        return self.xp.zeros((), dtype=self.primal.work, device=compat.device(self.y))

    def loss(self, sq: Array) -> Array:
        """``L = sq / 2`` in the real dtype of ``y`` and ``y_ref``."""
        L, out = sq * 0.5, self.primal.out
        return L if L.dtype == out else self.xp.astype(L, out)


def _batch_size(y_dot: Array, y_ref_dot: Array, shape: tuple[int, ...]) -> tuple[int, ...]:
    """``(K,)`` from tangents of shape ``(K, *shape)``."""
    batch: tuple[int, ...] = ()
    for name, t in (("y_dot", y_dot), ("y_ref_dot", y_ref_dot)):
        if t is None:
            continue
        if t.ndim != len(shape) + 1 or not same_shape(tuple(t.shape[1:]), shape):
            raise ValueError(
                f"with batched=True, {name} must have shape (K, *y.shape) = (K, *{shape}), "
                f"got shape {tuple(t.shape)} and dtype {t.dtype}; stack the K tangent "
                "directions along a new leading axis"
            )
        if batch and t.shape[0] != batch[0]:
            raise ValueError(
                f"y_dot and y_ref_dot must carry the same number of directions K, "
                f"got shapes {tuple(y_dot.shape)} and {tuple(t.shape)}"
            )
        batch = (t.shape[0],)
    if not batch:
        raise ValueError(
            "batched=True needs at least one tangent array to take the number of "
            "directions K from; got y_dot=None and y_ref_dot=None"
        )
    return batch


def l2_loss(y: Array, y_ref: Array, /, *, axis: Any = None, where: Array = None) -> Array:
    r"""The squared L2 loss :math:`L = \tfrac12 \lVert y - y_{ref} \rVert_2^2`.

    Parameters
    ----------
    y, y_ref
        Arrays of one shape and one array library, real or complex floating.
        Complex inputs give the real loss :math:`\tfrac12 \sum |y - y_{ref}|^2`.
    axis
        Axes to reduce, as in ``sum(axis=...)``: None reduces over all of them;
        an int or tuple keeps the others as a batch of per-sample losses.
    where
        Optional boolean array of ``y``'s shape; entries where it is False take
        no part in the loss, even when they hold NaN or inf.

    Returns
    -------
    L
        Array of the input library and device, of shape ``y.shape`` without
        ``axis``, of the real floating dtype that ``y`` and ``y_ref`` promote to
        (half precision is accumulated in float32 and returned as given).

    Raises
    ------
    TypeError
        For non-arrays, mixed array libraries, non-floating dtypes or a
        non-boolean ``where``.
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
    >>> y_ref[0, 1] = np.nan  # a missing target, left out by the mask
    >>> float(l2_loss(y, y_ref, where=~np.isnan(y_ref)))
    10.0
    """
    c = _Call(y, y_ref, None, None, axis, where, False)
    return _run(_loss, c, y, y_ref, None, None, where)


def _loss(c: _Call, y: Array, y_ref: Array, y_dot: Array, y_ref_dot: Array, where: Array) -> Array:
    sq, _ = evaluate(c.backend, c.dt, y, y_ref, None, None, where, c.zero, c.axes, False)
    return c.loss(sq)


def l2_loss_jvp(
    y: Array,
    y_ref: Array,
    y_dot: Array,
    y_ref_dot: Array = None,
    /,
    *,
    axis: Any = None,
    where: Array = None,
    batched: bool = False,
) -> tuple[Array, Array]:
    r"""The loss and its pushforward (forward-mode derivative, JVP).

    .. math::

        L = \tfrac12 \lVert y - y_{ref} \rVert_2^2, \qquad
        \dot L = (y - y_{ref})^T (\dot y - \dot y_{ref})
               = \operatorname{Re} \sum \overline{(y - y_{ref})} (\dot y - \dot y_{ref}).

    ``y_ref_dot=None`` is a structural zero, the usual case of a fixed
    reference: it is never read and costs nothing, so :math:`\dot L = d^T \dot y`
    with one pass over three arrays. ``y_dot=None`` is a structural zero too.

    Parameters
    ----------
    y, y_ref
        Primal arrays, as for :func:`l2_loss`.
    y_dot, y_ref_dot
        Tangents of ``y`` and ``y_ref``, of their shape; None is zero.
        With ``batched=True`` each carries one extra leading axis of K
        directions.
    axis, where
        As for :func:`l2_loss`; ``where`` masks the tangents too.
    batched
        Whether the tangents carry a leading axis of K directions: ``L_dot``
        then has shape ``(K, *L.shape)``, computed in one pass over the data.

    Returns
    -------
    L, L_dot
        The loss, as :func:`l2_loss` computes it (in the real dtype of ``y``
        and ``y_ref``: the tangents' dtypes promote ``L_dot`` alone), and its
        derivative along the tangents (real, of the dtype all inputs promote
        to; zeros when both tangents are None).

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
    c = _Call(y, y_ref, y_dot, y_ref_dot, axis, where, batched)
    out: tuple[Array, Array] = _run(_jvp, c, y, y_ref, y_dot, y_ref_dot, where)
    return out


def _jvp(
    c: _Call, y: Array, y_ref: Array, y_dot: Array, y_ref_dot: Array, where: Array
) -> tuple[Array, Array]:
    tangent = y_dot is not None or y_ref_dot is not None
    sq, ip = evaluate(
        c.backend, c.dt, y, y_ref, y_dot, y_ref_dot, where, c.zero, c.axes, tangent, bool(c.batch)
    )
    L = c.loss(sq)
    if ip is None:
        xp = c.xp
        return L, xp.zeros((*c.batch, *L.shape), dtype=c.dt.out, device=compat.device(y))
    return L, ip if ip.dtype == c.dt.out else c.xp.astype(ip, c.dt.out)


def l2_loss_vjp(
    y: Array, y_ref: Array, /, *, axis: Any = None, where: Array = None
) -> tuple[Array, Pullback]:
    r"""The loss and its pullback (reverse-mode derivative, VJP).

    .. math::

        \bar y = \bar L \, (y - y_{ref}), \qquad \bar y_{ref} = -\bar L \, (y - y_{ref}),

    with :math:`\bar L` broadcast over the reduced axes, and both cotangents
    exactly 0 where ``where`` is False. For complex inputs the cotangents are
    those of the real inner product :math:`\langle a, b\rangle = \operatorname{Re}\sum
    \bar a b`, so that :math:`\dot L \bar L = \langle \bar y, \dot y\rangle +
    \langle \bar y_{ref}, \dot y_{ref}\rangle` (PyTorch's convention; JAX's
    ``grad`` returns the conjugate).

    Returns
    -------
    L, pullback
        The loss, as :func:`l2_loss` computes it, and ``pullback(L_bar) ->
        (y_bar, y_ref_bar)``, where ``L_bar`` is a real array of ``L``'s shape
        (or a Python number). The pullback holds references to ``y`` and
        ``y_ref``, not an N-sized residual; ``y_bar`` has ``y``'s dtype and
        ``y_ref_bar`` has ``y_ref``'s.

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
    c = _Call(y, y_ref, None, None, axis, where, False)
    L = _run(_loss, c, y, y_ref, None, None, where)
    return L, _pullback(c, tuple(L.shape))


def l2_loss_grad(
    y: Array, y_ref: Array, /, *, axis: Any = None, where: Array = None
) -> tuple[Array, Array]:
    r"""The loss and its gradient with respect to ``y``: ``(L, y - y_ref)``.

    The pullback of :func:`l2_loss_vjp` at :math:`\bar L = 1`, the common case
    of gradient descent: :math:`\nabla_y L = y - y_{ref}` (0 where ``where`` is
    False). With ``axis``, it is the gradient of the sum of the per-sample
    losses. The gradient with respect to ``y_ref`` is its negative.

    Examples
    --------
    >>> import numpy as np
    >>> L, grad = l2_loss_grad(np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 1.0]))
    >>> grad
    array([0., 1., 2.])
    """
    L, pullback = l2_loss_vjp(y, y_ref, axis=axis, where=where)
    y_bar, _ = pullback(1.0)
    return L, y_bar


_Body = Callable[..., Any]


def _run(
    body: _Body, c: _Call, y: Array, y_ref: Array, y_dot: Array, y_ref_dot: Array, where: Array
) -> Any:
    """``body(c, y, y_ref, y_dot, y_ref_dot, where)``, as one compiled
    computation on backends that compile (``Backend.compile``)."""
    if c.backend.compile:
        return _compiled(body)(
            y, y_ref, y_dot, y_ref_dot, where, axis=c.axes, batched=bool(c.batch)
        )
    return body(c, y, y_ref, y_dot, y_ref_dot, where)


@functools.cache
def _compiled(body: _Body) -> _Body:
    """``body(c, y, y_ref, y_dot, y_ref_dot, where)`` as one ``jax.jit``
    computation (see ``Backend.compile``), validated again while it is
    traced (once per shapes, dtypes, ``axis`` and ``batched``). Under an
    outer ``jax.jit`` it is inlined; under ``jax.disable_jit`` it runs as it
    is."""
    import jax

    def traced(
        y: Array,
        y_ref: Array,
        y_dot: Array,
        y_ref_dot: Array,
        where: Array,
        *,
        axis: Any,
        batched: bool,
    ) -> Any:
        c = _Call(y, y_ref, y_dot, y_ref_dot, axis, where, batched)
        if where is not None:
            c.zero = c.make_zero()
        return body(c, y, y_ref, y_dot, y_ref_dot, where)

    jitted: _Body = jax.jit(traced, static_argnames=("axis", "batched"))
    return jitted


def _pullback(c: _Call, shape: tuple[int, ...]) -> Pullback:
    xp, dt, y, y_ref, mask = c.xp, c.dt, c.y, c.y_ref, c.mask
    # L_bar broadcasts over the reduced axes: it gets size-1 axes there, by
    # indexing with None (not reshape or expand_dims, which need every size:
    # Dask shapes may be unknown until compute).
    reduced = {y.ndim + ax for ax in c.axes}
    broadcast = tuple(None if i in reduced else slice(None) for i in range(y.ndim))
    if mask is not None and c.zero is None:  # a compiled call left it to its computation
        c.zero = c.make_zero()

    def pullback(L_bar: Array) -> tuple[Array, Array]:
        r"""``(y_bar, y_ref_bar) = (L_bar d, -L_bar d)`` with ``d = y - y_ref``."""
        if isinstance(L_bar, (int, float)) and not isinstance(L_bar, bool):
            scale: Any = float(L_bar)  # a Python number broadcasts as it is
        else:
            _check_cotangent(c, L_bar, shape)
            scale = xp.astype(L_bar, dt.real_work)[broadcast]
        d = residual(xp, dt, y, y_ref, mask, c.zero)
        # In place: d is ours, and this saves an N-sized temporary on eager
        # backends (immutable ones rebind instead).
        d *= scale
        if mask is not None:
            # An infinite L_bar times a masked 0 would be NaN: left-out entries
            # get exactly 0 whatever L_bar is.
            d = xp.where(mask, d, c.zero)
        return _like_primal(c, d, y), _like_primal(c, -d, y_ref)

    return pullback


def _like_primal(c: _Call, a: Array, primal: Array) -> Array:
    """The cotangent ``a`` in its primal's dtype (a real primal takes the real
    part: the real inner product's cotangent of a real input) and, on Dask, in
    its primal's chunks (broadcasting against a differently chunked ``L_bar``,
    ``where`` or other primal would otherwise re-chunk it)."""
    xp = c.xp
    if a.dtype != primal.dtype:
        if c.dt.complex and not xp.isdtype(primal.dtype, "complex floating"):
            a = xp.real(a)
        a = xp.astype(a, primal.dtype)
    if c.backend.name == "dask" and a.chunks != primal.chunks:
        a = a.rechunk(primal.chunks)
    return a


def _check_cotangent(c: _Call, L_bar: Array, shape: tuple[int, ...]) -> None:
    if isinstance(L_bar, complex):
        raise TypeError(
            f"L_bar must be real (the loss is real), got the complex number {L_bar!r}; "
            "pass a real number or a real array of L's shape"
        )
    backend_of(("y", "L_bar"), (c.y, L_bar))
    if c.backend.check_devices:
        check_devices(("y", "L_bar"), (c.y, L_bar))
    if not c.xp.isdtype(L_bar.dtype, "real floating"):
        raise TypeError(
            f"L_bar must be a real floating array (the loss is real), got shape "
            f"{tuple(L_bar.shape)} and dtype {L_bar.dtype}; pass a real array of L's shape"
        )
    if not same_shape(tuple(L_bar.shape), shape):
        raise ValueError(
            f"L_bar must have the shape of L, {shape}, got shape {tuple(L_bar.shape)} "
            f"and dtype {L_bar.dtype}"
        )
