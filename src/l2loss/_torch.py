"""PyTorch's automatic differentiation calls l2loss's rules.

A call whose tensors require grad, or that runs under a ``torch.func``
transform, goes through the autograd Functions here: their ``forward`` is
l2loss's evaluation (nothing of it is recorded), their ``backward`` the
pullback and their ``jvp`` the pushforward, each written with the rule of
``_rule.py`` in PyTorch operations, so that they are differentiable in turn
(``create_graph``, ``torch.func.hessian``). Only references to the inputs
are saved: the residual is recomputed in one pass when it is needed. While
``y`` is small, calls other than a plain ``l2_loss(y, y_ref)`` on the CPU
are differentiated by PyTorch itself instead (the plan's evaluation is then
a few operations; see :func:`_recorded`; on the CPU such a call runs as its
evaluation without coming here, ``Traits.recording``).
"""

from __future__ import annotations

from typing import Any

import torch

from . import _api, _rule
from ._plan import _axes_inner

__all__ = ["call"]

Tensor = Any


def _weights(k: Any, weights: Tensor) -> Tensor:
    return None if weights is None else _api._expanded(weights, len(k.shape))


def _broadcast(k: Any, L_bar: Any) -> Any:
    """``L_bar`` (of L's shape, with a leading axis of directions or not; or
    0-d; or a number) with size-1 axes where L was reduced."""
    if not isinstance(L_bar, torch.Tensor) or L_bar.ndim == 0:
        return L_bar
    return L_bar[(..., *k.spread)]  # a leading axis of directions or not


# Bound once: the training step's calls check them every time.
_BATCHED = torch._C._functorch.is_batchedtensor
_LEGACY_BATCHED = torch._C._functorch.is_legacy_batchedtensor
_UNWRAP = torch._C._functorch.unwrap_if_dead  # a tensor escaped from a transform
_grad_enabled = torch.is_grad_enabled


def _vmapped(t: Tensor) -> bool:
    """Whether ``t`` is batched by ``torch.func.vmap`` (or the older vmap that
    ``gradcheck`` uses)."""
    return bool(_BATCHED(t) or _LEGACY_BATCHED(t))


def _scaled(k: Any, a: Tensor, a_ref: Tensor, L_bar: Any, mask: Tensor, w: Tensor) -> Tensor:
    """``L_bar w (a - a_ref)``, 0 where ``mask`` is False (None: zero)."""
    if a is None:
        if a_ref is None:
            return None
        return -_scaled(k, a_ref, None, L_bar, mask, w)
    masking = _api.masking_of(k, mask, a, k.full.real_work)
    scale = _broadcast(k, L_bar)
    # In place (saving an N-sized temporary) only when nothing is recorded
    # and the residual has the product's shape: not under vmap, whose
    # batched cotangent would have more elements.
    in_place = not _grad_enabled() and (
        not isinstance(scale, torch.Tensor) or (scale.ndim <= a.ndim and not _vmapped(scale))
    )
    return _rule.cotangent(k.xp, k.full, a, a_ref, mask, w, masking, scale, in_place=in_place)


def _inner(
    k: Any, a: Tensor, a_ref: Tensor, t: Tensor, t_ref: Tensor, mask: Tensor, w: Tensor
) -> Tensor:
    """``Re sum_axes w conj(a - a_ref) (t - t_ref)`` (None: zero; tangents
    may carry a leading axis of directions)."""
    if (a is None and a_ref is None) or (t is None and t_ref is None):
        return None
    sign = 1
    if a is None:
        a, a_ref, sign = a_ref, None, -1
    masking = _api.masking_of(k, mask, a, k.full.real_work)
    inner = _axes_inner(k.xp, k.full, k.axes, k.traits.sum)
    _, ip = _rule.sums(k.xp, k.full, inner, a, a_ref, t, t_ref, mask, w, masking)
    return ip if sign > 0 else -ip


def _add(a: Tensor, b: Tensor) -> Tensor:
    return b if a is None else a if b is None else a + b


def _neg(a: Tensor) -> Tensor:
    return None if a is None else -a


def _like(k: Any, a: Tensor, primal: Tensor) -> Tensor:
    return None if a is None or primal is None else _api._like(k, a, primal)


class _Values(torch.autograd.Function):  # type: ignore[misc]
    """``(L, L_dot)`` of ``l2_loss_jvp(y, y_ref, y_dot, y_ref_dot)``, or ``L``
    alone where both tangents are None: a zero ``L_dot`` would cost more than
    the loss at small sizes, and its gradient is never needed."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        y: Tensor,
        y_ref: Tensor,
        y_dot: Tensor,
        y_ref_dot: Tensor,
        mask: Tensor,
        weights: Tensor,
        k: Any,
    ) -> Any:
        if y_dot is None and y_ref_dot is None:
            return _api._loss(k, y, y_ref, None, None, mask, weights)
        return _api._jvp(k, y, y_ref, y_dot, y_ref_dot, mask, weights)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        *tensors, k = inputs
        ctx.k = k
        ctx.save_for_backward(*tensors)
        ctx.save_for_forward(*tensors)
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx: Any, L_bar: Tensor, L_dot_bar: Tensor = None) -> tuple[Any, ...]:
        y, y_ref, y_dot, y_ref_dot, mask, weights = ctx.saved_tensors
        k, need = ctx.k, ctx.needs_input_grad
        w = _weights(k, weights)
        y_bar = t_bar = None
        if need[0] or need[1]:
            if L_bar is not None:
                y_bar = _scaled(k, y, y_ref, L_bar, mask, w)
            if L_dot_bar is not None:
                part = _scaled(k, y_dot, y_ref_dot, L_dot_bar, mask, w)
                if part is not None and k.batch:
                    part = torch.sum(part, dim=0)
                y_bar = _add(y_bar, part)
        if (need[2] or need[3]) and L_dot_bar is not None:
            t_bar = _scaled(k, y, y_ref, L_dot_bar, mask, w)
        return (
            _like(k, y_bar, y) if need[0] else None,
            _like(k, _neg(y_bar), y_ref) if need[1] else None,
            _like(k, t_bar, y_dot) if need[2] else None,
            _like(k, _neg(t_bar), y_ref_dot) if need[3] else None,
            None,
            None,
            None,
        )

    @staticmethod
    def jvp(
        ctx: Any, y_t: Tensor, y_ref_t: Tensor, y_dot_t: Tensor, y_ref_dot_t: Tensor, *_: Any
    ) -> Any:
        y, y_ref, y_dot, y_ref_dot, mask, weights = ctx.saved_tensors
        k = ctx.k
        w = _weights(k, weights)
        # L_t = <d, y_t - y_ref_t>; L_dot_t = <y_t - y_ref_t, t> + <d, y_dot_t - y_ref_dot_t>.
        L_t = _inner(k, y, y_ref, y_t, y_ref_t, mask, w)
        if y_dot is None and y_ref_dot is None:
            return _tangent(L_t, k.loss_shape, k.primal.out, y)
        Ld_t = _add(
            _inner(k, y_t, y_ref_t, y_dot, y_ref_dot, mask, w),
            _inner(k, y, y_ref, y_dot_t, y_ref_dot_t, mask, w),
        )
        shape = k.loss_shape
        return (
            _tangent(L_t, shape, k.primal.out, y),
            _tangent(Ld_t, (*k.batch, *shape), k.full.out, y),
        )


class _Loss(torch.autograd.Function):  # type: ignore[misc]
    """``L`` of ``l2_loss(y, y_ref)`` without a mask or weights, the call of a
    training step: :class:`_Values` with less to do around the rule on every
    call."""

    generate_vmap_rule = True

    @staticmethod
    def forward(y: Tensor, y_ref: Tensor, k: Any, spread: Any) -> Tensor:
        return k.plain_loss(y, y_ref, None, None)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        y, y_ref, ctx.k, ctx.spread = inputs
        ctx.save_for_backward(y, y_ref)
        ctx.save_for_forward(y, y_ref)

    @staticmethod
    def backward(ctx: Any, L_bar: Tensor) -> tuple[Any, ...]:
        y, y_ref = ctx.saved_tensors
        k, need, spread = ctx.k, ctx.needs_input_grad, ctx.spread
        if spread is not False and not _grad_enabled() and not _vmapped(L_bar):
            # A training step's pullback: _scaled's in-place case, whose
            # checks the kind (spread) and autograd (L_bar has L's shape and dtype) made.
            y_bar = (y - y_ref).mul_(L_bar if spread is None else L_bar[spread])
            return y_bar if need[0] else None, -y_bar if need[1] else None, None, None
        y_bar = _scaled(k, y, y_ref, L_bar, None, None)
        return (
            _api._like(k, y_bar, y) if need[0] else None,
            _api._like(k, -y_bar, y_ref) if need[1] else None,
            None,
            None,
        )

    @staticmethod
    def jvp(ctx: Any, y_t: Tensor, y_ref_t: Tensor, *_: Any) -> Tensor:
        y, y_ref = ctx.saved_tensors
        k = ctx.k
        L_t = _inner(k, y, y_ref, y_t, y_ref_t, None, None)
        return _tangent(L_t, k.loss_shape, k.primal.out, y)


def _tangent(t: Tensor, shape: tuple[int, ...], dtype: Any, like: Tensor) -> Tensor:
    """The tangent of an output in its dtype (zeros for a structural zero)."""
    if t is None:
        return torch.zeros(shape, dtype=dtype, device=like.device)
    return t if t.dtype == dtype else t.to(dtype)


class _Cotangent(torch.autograd.Function):  # type: ignore[misc]
    """``y_bar = L_bar w (y - y_ref)``, the pullback of the loss."""

    generate_vmap_rule = True

    @staticmethod
    def forward(
        y: Tensor, y_ref: Tensor, L_bar: Any, mask: Tensor, weights: Tensor, k: Any
    ) -> Tensor:
        y_bar, _ = _api._cotangents(k, y, y_ref, None, None, mask, weights, L_bar, False)
        return y_bar

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Any) -> None:
        y, y_ref, L_bar, mask, weights, k = inputs
        ctx.k = k
        ctx.L_bar_number = None if isinstance(L_bar, torch.Tensor) else L_bar
        tensors = (y, y_ref, L_bar if isinstance(L_bar, torch.Tensor) else None, mask, weights)
        ctx.save_for_backward(*tensors)
        ctx.save_for_forward(*tensors)
        ctx.set_materialize_grads(False)

    @staticmethod
    def backward(ctx: Any, g: Tensor) -> tuple[Any, ...]:
        y, y_ref, L_bar, mask, weights = ctx.saved_tensors
        k, need = ctx.k, ctx.needs_input_grad
        if g is None:
            return (None,) * 6
        L_bar = ctx.L_bar_number if L_bar is None else L_bar
        w = _weights(k, weights)
        g_y = _scaled(k, g, None, L_bar, mask, w) if need[0] or need[1] else None
        g_L = None
        if need[2]:
            g_L = _inner(k, y, y_ref, g, None, mask, w)
            if L_bar.ndim == 0 and g_L.ndim:
                g_L = torch.sum(g_L)
            g_L = g_L.to(L_bar.dtype)
        return (
            _like(k, g_y, y) if need[0] else None,
            _like(k, _neg(g_y), y_ref) if need[1] else None,
            g_L,
            None,
            None,
            None,
        )

    @staticmethod
    def jvp(ctx: Any, y_t: Tensor, y_ref_t: Tensor, L_bar_t: Tensor, *_: Any) -> Tensor:
        y, y_ref, L_bar, mask, weights = ctx.saved_tensors
        k = ctx.k
        L_bar = ctx.L_bar_number if L_bar is None else L_bar
        w = _weights(k, weights)
        t = _scaled(k, y_t, y_ref_t, L_bar, mask, w)
        if L_bar_t is not None:
            t = _add(t, _scaled(k, y, y_ref, L_bar_t, mask, w))
        if t is None:
            return torch.zeros_like(y)
        return _api._like(k, t, y)


def _apply(fn: Any, *args: Any) -> Any:
    """``fn.apply(*args)``. Outside ``torch.func`` transforms and
    ``torch.compile`` it goes straight to autograd's C entry: ``Function.apply``
    binds the arguments through ``inspect.signature`` on every call, which costs
    more than the loss itself at small sizes, and every argument here is
    positional."""
    if torch._C._are_functorch_transforms_active() or torch.compiler.is_compiling():
        return fn.apply(*args)
    unwrap = _UNWRAP
    return _C_APPLY[fn](*[unwrap(a) if isinstance(a, torch.Tensor) else a for a in args])


_C_APPLY = {fn: super(torch.autograd.Function, fn).apply for fn in (_Values, _Cotangent, _Loss)}


def loss_of(k: Any) -> Any:
    """``k.loss`` for :func:`~l2loss.l2_loss` without a mask or weights, which
    makes ``Traits.recording``'s checks itself: for CPU tensors outside
    ``torch.func`` transforms, :class:`_Loss` called without the layers of
    :func:`call` where an input requires grad (at any size: its pullback costs
    less than autograd's of the recorded operations), else the plan's loss;
    otherwise the call as :func:`~l2loss._api._call` makes it."""
    plain = k.plain_loss
    apply, compiling, spread = _C_APPLY[_Loss], torch.compiler.is_compiling, _spread(k)
    transforming = torch._C._are_functorch_transforms_active

    def loss(y: Tensor, y_ref: Tensor, weights: None, where: None) -> Tensor:
        if transforming() or not (y.is_cpu and y_ref.is_cpu):
            return _api._call(k, _api._loss, (y, y_ref, None, None, where, weights))
        if _grad_enabled() and (y.requires_grad or y_ref.requires_grad):
            if compiling():
                return _Loss.apply(y, y_ref, k, spread)
            return apply(_UNWRAP(y), _UNWRAP(y_ref), k, spread)
        return plain(y, y_ref, weights, where)

    return loss


def _spread(k: Any) -> Any:
    """How :meth:`_Loss.backward` spreads its cotangent over ``y``'s axes to
    scale the residual in place: None for one loss (as it is), the index
    that gives it size-1 reduced axes for several; False where it cannot,
    since ``L``'s dtype (which autograd gives the cotangent) is not that of
    ``y`` and ``y_ref``, or they are complex."""
    full = k.full
    if full.complex or full.widen or full.mixed:
        return False
    return (..., *k.spread) if k.loss_shape else None


def _recorded(k: Any) -> bool:
    """Whether PyTorch differentiates the plan's evaluation itself: in cache,
    where it is a few operations (blocks would be recorded block by block),
    and, outside ``torch.func`` (whose custom Functions cost more per call),
    on at most ``Traits.records`` bytes of ``y`` (``Kind.recorded``)."""
    return bool(k.recorded or (k.whole and torch._C._are_functorch_transforms_active()))


def call(k: Any, op: Any, arrays: tuple[Tensor, ...], *extra: Any) -> Any:
    """``op(k, operands, *extra)`` of ``_api`` through the Functions above."""
    y, y_ref, y_dot, y_ref_dot, mask, weights = arrays
    if op is not _api._cotangents and _recorded(k):
        return op(k, *arrays)
    if op is _api._cotangents:
        y_bar = _apply(_Cotangent, y, y_ref, extra[0], mask, weights, k)
        both = extra[1] if len(extra) > 1 else True
        return y_bar, (_api._like(k, -y_bar, y_ref) if both else None)
    if op is _api._loss and mask is None and weights is None and k.plain_loss is not None:
        return _apply(_Loss, y, y_ref, k, _spread(k))
    out = _apply(_Values, y, y_ref, y_dot, y_ref_dot, mask, weights, k)
    if op is _api._jvp:
        if y_dot is None and y_ref_dot is None:
            return out, _tangent(None, (*k.batch, *k.loss_shape), k.full.out, y)
        return out
    if op is _api._loss:
        return out
    if op is _api._grad:
        return out, _apply(_Cotangent, y, y_ref, 1.0, mask, weights, k)
    raise AssertionError(op)
