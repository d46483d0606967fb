"""Training a small PyTorch MLP with ``l2_loss``: the loss of a training loop.

A two-layer network learns ``t = sin(3 x1) + x2^2`` from noisy samples. The
loss is ``l2_loss(pred, target)``, the sum of squared errors halved; PyTorch's
``loss.backward()`` calls l2loss's own pullback (its rules are registered
with autograd), so the loop is the one a user writes with
``0.5 * F.mse_loss(pred, target, reduction="sum")``. The script trains the
same network from the same start with both losses and prints both loss
curves, which agree to rounding.

Run: ``python examples/torch_mlp.py [--samples N] [--steps S]``
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from l2loss import l2_loss


def data(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 2, generator=g, dtype=torch.float64) * 2 - 1
    t = torch.sin(3 * x[:, 0]) + x[:, 1] ** 2 + 0.05 * torch.randn(n, generator=g, dtype=x.dtype)
    return x, t


def train(loss_fn: str, x: torch.Tensor, t: torch.Tensor, steps: int) -> list[float]:
    """Losses per step of Adam on a fresh network (seeded: both runs start alike)."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 1)).double()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        pred = model(x).squeeze(-1)
        if loss_fn == "l2loss":
            loss = l2_loss(pred, t) / len(t)
        else:
            loss = 0.5 * nn.functional.mse_loss(pred, t, reduction="sum") / len(t)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", type=int, default=512)
    p.add_argument("--steps", type=int, default=300)
    args = p.parse_args()
    x, t = data(args.samples)
    ours = train("l2loss", x, t, args.steps)
    theirs = train("mse_loss", x, t, args.steps)
    print(f"{'step':>6} {'l2_loss':>12} {'0.5 mse_loss':>13}")
    for step in sorted({0, 1, 10, args.steps // 2, args.steps - 1}):
        print(f"{step:>6} {ours[step]:12.6f} {theirs[step]:13.6f}")
    gap = max(abs(a - b) / max(abs(b), 1e-300) for a, b in zip(ours, theirs, strict=True))
    print(f"largest relative difference between the curves: {gap:.1e}")
    print(f"loss fell by a factor of {ours[0] / ours[-1]:.1f}")


if __name__ == "__main__":
    main()
