"""PyTorch's autodiff of every public function on tensors that require grad
(or under torch.func), both ways it happens: in cache PyTorch records the
plan's few operations and differentiates them itself; beyond, the calls go
through autograd Functions whose backward is l2loss's pullback and whose jvp
is its pushforward (forced here on small inputs by a plan with no in-cache
size, the ``path`` fixture). Checked with
gradcheck and gradgradcheck (forward mode, batched gradients, forward over
reverse), torch.func's transforms against autodiff of the plain expression,
torch.compile, half precision, and the memory of a training step.

Runs in the torch session (and when no backend is selected)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from backends import session_modules

from l2loss import l2_loss, l2_loss_grad, l2_loss_jvp, l2_loss_vjp
from l2loss._traits import Blocking, override

(torch,) = session_modules("torch", "torch", why="PyTorch's autodiff: torch session")

pytestmark = pytest.mark.parametrize("be", ["torch"], indirect=True)

SHAPE = (3, 4)


@pytest.fixture(params=["recorded", "rules"])
def path(request: pytest.FixtureRequest) -> Iterator[str]:
    """``recorded``: the default plan, in cache for these inputs. ``rules``:
    a plan with no in-cache size, so every call takes blocks and the Functions."""
    if request.param == "recorded":
        yield request.param
        return
    with override("torch", blocking=Blocking(whole=0, block=1 << 12, piece=1 << 12)):
        yield request.param


def _inputs(dtype: Any, batched: bool, seed: int = 0) -> tuple[Any, ...]:
    g = torch.Generator().manual_seed(seed)

    def mk(*shape: int) -> Any:
        return torch.randn(*shape, dtype=dtype, generator=g).requires_grad_(True)

    lead = (2,) if batched else ()
    return mk(*SHAPE), mk(*SHAPE), mk(*lead, *SHAPE), mk(*lead, *SHAPE)


def _options(dtype: Any, axis: Any, where: bool, weights: str | None) -> dict[str, Any]:
    real = torch.float64 if dtype in (torch.float64, torch.complex128) else torch.float32
    g = torch.Generator().manual_seed(7)
    w = None
    if weights == "sample":
        w = torch.rand(SHAPE[0], dtype=real, generator=g)
    elif weights == "full":
        w = torch.rand(SHAPE, dtype=real, generator=g)
    mask = (torch.rand(SHAPE, generator=g) > 0.3) if where else None
    return {"axis": axis, "where": mask, "weights": w}


@pytest.mark.parametrize(
    ("axis", "where", "weights", "batched"),
    [
        (None, False, None, False),
        (1, True, "sample", False),
        (None, True, "full", False),
        (1, False, "full", True),
        (None, True, "sample", True),
    ],
)
@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_gradcheck_and_gradgradcheck(
    be: Any, path: str, dtype: str, axis: Any, where: bool, weights: str | None, batched: bool
) -> None:
    """Every public function, its first and second derivatives in both modes
    and with batched gradients, against finite differences."""
    dt = getattr(torch, dtype)
    y, r, t, u = _inputs(dt, batched)
    kw = _options(dt, axis, where, weights)
    check = {"check_forward_ad": True, "check_batched_grad": True}
    check2 = {"check_fwd_over_rev": True, "check_batched_grad": True}

    def jvp(y: Any, r: Any, t: Any, u: Any) -> Any:
        return l2_loss_jvp(y, r, t, u, batched=batched, **kw)

    assert torch.autograd.gradcheck(jvp, (y, r, t, u), check_batched_forward_grad=True, **check)
    assert torch.autograd.gradgradcheck(jvp, (y, r, t, u), **check2)
    if batched:
        return
    real = torch.float64
    c = torch.randn(l2_loss(y, r, **kw).shape, dtype=real).requires_grad_(True)

    def vjp(y: Any, r: Any, c: Any) -> Any:
        L, pullback = l2_loss_vjp(y, r, **kw)
        return (L, *pullback(c))

    for f, args in (
        (lambda y, r: l2_loss(y, r, **kw), (y, r)),
        (lambda y, r: l2_loss_grad(y, r, **kw), (y, r)),
        (vjp, (y, r, c)),
    ):
        assert torch.autograd.gradcheck(f, args, **check)
        assert torch.autograd.gradgradcheck(f, args, **check2)


def _plain(y: Any, r: Any) -> Any:
    return 0.5 * torch.sum(torch.abs(y - r) ** 2)


@pytest.mark.parametrize("dtype", ["float64", "complex128"])
def test_torch_func_transforms_agree_with_autodiff(be: Any, path: str, dtype: str) -> None:
    """grad, jvp, vjp, vmap, jacrev, jacfwd and hessian of l2_loss equal those
    of the plain expression, which PyTorch differentiates itself."""
    dt = getattr(torch, dtype)
    y, r, t, _ = (a.detach() for a in _inputs(dt, False, seed=3))
    func = torch.func

    def ours(y: Any) -> Any:
        return l2_loss(y, r)

    def plain(y: Any) -> Any:
        return _plain(y, r)

    def same(a: Any, b: Any) -> None:
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)

    same(func.grad(ours)(y), func.grad(plain)(y))
    for a, b in zip(func.jvp(ours, (y,), (t,)), func.jvp(plain, (y,), (t,)), strict=True):
        same(a, b)
    (va,) = func.vjp(ours, y)[1](torch.tensor(1.5, dtype=torch.float64))
    (vb,) = func.vjp(plain, y)[1](torch.tensor(1.5, dtype=torch.float64))
    same(va, vb)
    stack = torch.stack([y, 2 * y, 3 * y])
    same(func.vmap(ours)(stack), func.vmap(plain)(stack))
    same(func.vmap(func.grad(ours))(stack), func.vmap(func.grad(plain))(stack))
    if dtype == "float64":  # PyTorch's jacobians and hessian of real outputs
        same(func.jacrev(ours)(y), func.jacrev(plain)(y))
        same(func.jacfwd(ours)(y), func.jacfwd(plain)(y))
        same(func.hessian(ours)(y), func.hessian(plain)(y))
        # forward over reverse: jvp of the gradient
        same(
            func.jvp(func.grad(ours), (y,), (t,))[1],
            func.jvp(func.grad(plain), (y,), (t,))[1],
        )
    # The jvp and the pullback are themselves differentiated by torch.func.
    same(
        func.grad(lambda y: l2_loss_jvp(y, r, t)[1])(y),
        func.grad(lambda y: func.jvp(plain, (y,), (t,))[1])(y),
    )


def test_create_graph_differentiates_the_backward(be: Any, path: str) -> None:
    """``backward(create_graph=True)`` records l2loss's pullback, so the
    gradient can be differentiated again (a gradient penalty)."""
    y, r, _, _ = _inputs(torch.float64, False, seed=4)
    (g,) = torch.autograd.grad(l2_loss(y, r), y, create_graph=True)
    (gg,) = torch.autograd.grad(torch.sum(g**2), y)
    # g = y - r, so d/dy sum(g^2) = 2 (y - r)
    torch.testing.assert_close(gg, 2 * (y - r).detach(), rtol=1e-12, atol=0)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_gradients(be: Any, path: str, dtype: str) -> None:
    dt = getattr(torch, dtype)
    y = torch.linspace(-1, 1, 50, dtype=dt).requires_grad_(True)
    r = torch.zeros(50, dtype=dt)
    L = l2_loss(y, r)
    L.backward()
    assert L.dtype == dt
    assert y.grad is not None
    assert y.grad.dtype == dt
    torch.testing.assert_close(y.grad, y.detach(), rtol=0, atol=0)


# PyTorch's notices while Dynamo traces (about array-api-compat, and its own internals).
@pytest.mark.filterwarnings("ignore::UserWarning")
def test_torch_compile_runs_and_agrees(be: Any, path: str) -> None:
    """A compiled training step gives the eager step's loss and gradient. The
    graph breaks at l2loss's Functions (Dynamo does not trace a Function with
    a custom jvp), which then run as they do eagerly."""
    y0 = torch.randn(1000, dtype=torch.float64)
    r = torch.randn(1000, dtype=torch.float64)

    def step(y: Any) -> Any:
        loss = l2_loss(y, r)
        (g,) = torch.autograd.grad(loss, y)
        return loss, g

    compiled = torch.compile(step, backend="eager")
    y = y0.clone().requires_grad_(True)
    L, g = compiled(y)
    L_eager, g_eager = step(y0.clone().requires_grad_(True))
    torch.testing.assert_close(L, L_eager, rtol=1e-15, atol=0)
    torch.testing.assert_close(g, g_eager, rtol=1e-15, atol=0)


def test_nothing_is_recorded_without_grad(be: Any, path: str) -> None:
    """Tensors that require no grad take the plain evaluation: no graph. With
    grad, ``l2_loss`` runs its Function at every size; the other functions
    PyTorch's own operations in cache, l2loss's Functions beyond."""
    y, r = torch.randn(10), torch.randn(10)
    assert l2_loss(y, r).grad_fn is None
    y.requires_grad_(True)
    node = type(l2_loss(y, r).grad_fn).__name__
    assert node == "_LossBackward", node
    node = type(l2_loss_jvp(y, r, torch.ones(10))[0].grad_fn).__name__
    assert (node == "_ValuesBackward") == (path == "rules"), node
    with torch.no_grad():
        assert l2_loss(y, r).grad_fn is None


@pytest.mark.parametrize(("dtype", "jvp_items"), [("float64", 1 << 16), ("float32", 1 << 17)])
def test_autograd_records_small_calls(be: Any, dtype: str, jvp_items: int) -> None:
    """Autograd records the plan's operations of ``l2_loss_jvp`` on at most
    512 KiB of ``y``; beyond (in cache still) it runs l2loss's Functions,
    whose pullback reads the inputs once. ``l2_loss`` runs its Function at
    every size, its operations never recorded. The loss, its tangent and the
    gradient for any cotangent agree bit for bit across each boundary."""
    dt = getattr(torch, dtype)
    cases = [
        (lambda y, r: l2_loss(y, r), 1, "_LossBackward", "_LossBackward"),
        (
            lambda y, r: l2_loss_jvp(y, r, y.detach())[0],
            jvp_items,
            "MulBackward0",
            "_ValuesBackward",
        ),
    ]
    for f, n, recorded, rules in cases:
        for size, node in ((n, recorded), (n + 1, rules)):
            y = torch.linspace(-1.0, 1.0, size, dtype=dt, requires_grad=True)
            r = torch.linspace(0.5, -0.25, size, dtype=dt)
            L = f(y, r)
            assert type(L.grad_fn).__name__ == node, (size, node)
            torch.testing.assert_close(L.detach(), l2_loss(y.detach(), r), rtol=0, atol=0)
            L_bar = torch.tensor(3.0, dtype=dt)
            (g,) = torch.autograd.grad(L, y, L_bar)
            torch.testing.assert_close(g, (y.detach() - r) * L_bar, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "complex64", "float64"])
def test_loss_pullback(be: Any, dtype: str) -> None:
    """``l2_loss``'s Function: its pullback ``L_bar (y - y_ref)``
    in the primals' dtypes (half precision worked in single, complex by
    PyTorch's conjugate convention) for a scalar cotangent, for a cotangent
    that is itself differentiated (``create_graph``), and for a batch of
    cotangents under ``vmap``, as autograd gives for the plain expression."""
    dt = getattr(torch, dtype)
    g = torch.Generator().manual_seed(3)
    n = 1 << 15
    y = torch.randn(n, generator=g).to(dt).requires_grad_(True)
    r = torch.randn(n, generator=g).to(dt).requires_grad_(True)
    L = l2_loss(y, r)
    assert type(L.grad_fn).__name__ == "_LossBackward"
    work = torch.float32 if dt in (torch.float16, torch.bfloat16) else dt
    d = y.detach().to(work) - r.detach().to(work)
    want = (2.5 * d).to(dt)
    g_y, g_r = torch.autograd.grad(L, (y, r), torch.tensor(2.5, dtype=L.dtype))
    torch.testing.assert_close(g_y, want)
    torch.testing.assert_close(g_r, -want)
    if dtype == "float64":
        g_y, _ = torch.autograd.grad(l2_loss(y, r), (y, r), create_graph=True)
        (h,) = torch.autograd.grad(g_y.sum(), y)  # d/dy of sum(y - r): ones
        torch.testing.assert_close(h, torch.ones_like(h), rtol=0, atol=0)

        def pullback(L_bar: Any) -> Any:
            return torch.autograd.grad(l2_loss(y, r), y, L_bar, retain_graph=True)[0]

        bars = torch.tensor([1.0, -2.0, 0.5], dtype=dt)
        got = torch.func.vmap(pullback)(bars)
        torch.testing.assert_close(got, bars[:, None] * d, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("shape", "axis"), [((6, 5), -1), ((6, 5), 0), ((2, 3, 4), (0, 2))])
def test_loss_pullback_of_several_losses(be: Any, dtype: str, shape: Any, axis: Any) -> None:
    """``l2_loss`` with ``axis`` under grad: its Function's pullback spreads
    the cotangent of each loss over the items it sums, in the residual's place,
    bit for bit ``L_bar d`` with size-1 reduced axes; the inputs are untouched;
    where the cotangent is itself differentiated (``create_graph``) or
    batched (``vmap``) it takes the out-of-place rule, with the same values."""
    dt = getattr(torch, dtype)
    g = torch.Generator().manual_seed(5)
    y = torch.randn(shape, generator=g, dtype=dt, requires_grad=True)
    r = torch.randn(shape, generator=g, dtype=dt, requires_grad=True)
    before = (y.detach().clone(), r.detach().clone())
    L = l2_loss(y, r, axis=axis)
    assert type(L.grad_fn).__name__ == "_LossBackward"
    L_bar = torch.randn(L.shape, generator=g, dtype=dt)
    spread = L_bar.reshape(
        [
            1 if i in {a % len(shape) for a in np.atleast_1d(axis)} else n
            for i, n in enumerate(shape)
        ]
    )
    want = (y.detach() - r.detach()) * spread
    g_y, g_r = torch.autograd.grad(L, (y, r), L_bar)
    torch.testing.assert_close(g_y, want, rtol=0, atol=0)
    torch.testing.assert_close(g_r, -want, rtol=0, atol=0)
    torch.testing.assert_close((y.detach(), r.detach()), before, rtol=0, atol=0)
    L_bar.requires_grad_(True)
    g_y, _ = torch.autograd.grad(l2_loss(y, r, axis=axis), (y, r), L_bar, create_graph=True)
    torch.testing.assert_close(g_y, want, rtol=0, atol=0)
    (h,) = torch.autograd.grad(g_y.sum(), L_bar)  # d/dL_bar of sum(L_bar d): the losses' sums of d
    torch.testing.assert_close(h, torch.sum(y.detach() - r.detach(), dim=axis))

    def pullback(c: Any) -> Any:
        return torch.autograd.grad(l2_loss(y, r, axis=axis), y, c)[0]

    bars = torch.stack([L_bar.detach(), -2 * L_bar.detach()])
    got = torch.func.vmap(pullback)(bars)
    torch.testing.assert_close(got, torch.stack([want, -2 * want]))


_MEMORY = textwrap.dedent(
    """
    import json, resource, sys, torch
    from l2loss import l2_loss
    n = int(sys.argv[1])
    torch.manual_seed(0)
    pred = torch.randn(n, dtype=torch.float64, requires_grad=True)
    target = torch.randn(n, dtype=torch.float64)
    l2_loss(pred[:1000], target[:1000]).backward()  # import and warm up outside the count
    pred.grad = None
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    loss = l2_loss(pred, target)
    loss.backward()
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps({"peak_kib": after - before, "grad_kib": pred.grad.numel() * 8 // 1024}))
    """
)


def test_training_step_memory(be: Any) -> None:
    """Forward and backward at N = 1e7 float64 raise the process's peak memory
    by at most the gradient's size and 8 MiB: nothing N-sized is saved for
    backward, and the backward scales its residual in place."""
    out = subprocess.run(
        [sys.executable, "-c", _MEMORY, str(10_000_000)],
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    m = json.loads(out.stdout)
    assert m["peak_kib"] <= m["grad_kib"] + 8 * 1024, m


def test_results_match_numpy(be: Any) -> None:
    """The Function's forward is l2loss's evaluation: the same bits as the
    call on tensors that require no grad."""
    y = torch.from_numpy(np.random.default_rng(1).standard_normal(300_001))
    r = torch.zeros_like(y)
    plain = l2_loss(y, r)
    assert torch.equal(l2_loss(y.clone().requires_grad_(True), r).detach(), plain)
