"""Linear regression by gradient descent, with the gradient from l2loss's pullback.

The model predicts ``y = X @ beta + beta0`` for targets ``t``; the loss is

    L(beta, beta0) = 1/2 ||X beta + beta0 - t||^2.

``l2_loss_vjp`` gives ``L`` and the pullback ``L_bar -> (y_bar, t_bar)`` with
``y_bar = L_bar (y - t)``; the chain rule through the model then gives

    beta_bar = X^T y_bar,    beta0_bar = sum(y_bar).

With ``L_bar = 1/n`` these are the gradients of the mean loss, so one step size
works for any number of samples. The script prints the fitted and the true
coefficients, the distance to the least-squares solution (which gradient
descent converges to) and to the truth (limited by the noise).

Run: ``python examples/linear_regression.py [--samples N] [--features P] [--steps S]``
"""

from __future__ import annotations

import argparse

import numpy as np

from l2loss import l2_loss_vjp


def make_data(
    rng: np.random.Generator, n: int, p: int, noise: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Features, targets and the true coefficients of ``t = X beta + beta0 + noise``."""
    X = rng.standard_normal((n, p))
    beta = rng.uniform(-2.0, 2.0, p)
    beta0 = 0.5
    t = X @ beta + beta0 + noise * rng.standard_normal(n)
    return X, t, beta, beta0


def gradient_step(
    X: np.ndarray, t: np.ndarray, beta: np.ndarray, beta0: float, lr: float
) -> tuple[float, np.ndarray, float]:
    """One step of gradient descent on the mean loss; returns the loss before it."""
    n = X.shape[0]
    L, pullback = l2_loss_vjp(X @ beta + beta0, t)
    y_bar, _ = pullback(1.0 / n)  # the targets' cotangent is not needed
    return float(L) / n, beta - lr * (X.T @ y_bar), beta0 - lr * float(np.sum(y_bar))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--features", type=int, default=5)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--lr", type=float, default=0.5, help="step size")
    parser.add_argument("--noise", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    X, t, beta_true, beta0_true = make_data(rng, args.samples, args.features, args.noise)

    beta, beta0 = np.zeros(args.features), 0.0
    for step in range(args.steps):
        loss, beta, beta0 = gradient_step(X, t, beta, beta0, args.lr)
        if step % max(1, args.steps // 5) == 0:
            print(f"step {step:4d}: mean loss {loss:.6f}")

    # The minimiser of the loss, for comparison: least squares with an intercept column.
    ones = np.ones((args.samples, 1))
    solution = np.linalg.lstsq(np.hstack([X, ones]), t, rcond=None)[0]
    fitted = np.append(beta, beta0)
    truth = np.append(beta_true, beta0_true)

    np.set_printoptions(precision=4, suppress=True)
    print(f"fitted coefficients: {fitted}")
    print(f"true coefficients:   {truth}")
    print(f"max |fitted - least squares| = {np.max(np.abs(fitted - solution)):.3e}")
    print(f"max |fitted - true|          = {np.max(np.abs(fitted - truth)):.3e}")


if __name__ == "__main__":
    main()
