"""Directional derivatives and a forward-mode Jacobian with ``batched=True``.

B measured series ``t[b, :]`` at times ``s`` are compared with an
exponential-decay model with P = 3 parameters, shifted by a known covariate
``c[b]`` per series:

    f[b, r](theta) = theta0 * exp(-theta1 * s[r]) + theta2 * c[b]
    L[b](theta)    = 1/2 sum_r (f[b, r] - t[b, r])^2      (l2_loss(..., axis=1))

Forward mode pushes a tangent ``theta_dot`` through the model,
``f_dot = sum_p df/dtheta_p theta_dot[p]``, and then through the loss with
``l2_loss_jvp``. Stacking the P coordinate directions as a batch of tangents
(``batched=True``) gives the whole P x B Jacobian ``dL[b]/dtheta[p]`` in one
call of the loss's pushforward; it is checked against central finite
differences. One random direction gives a directional derivative, checked
against the gradient from the pullback.

Run: ``python examples/jacobian.py [--series B] [--times R]``
"""

from __future__ import annotations

import argparse

import numpy as np

from l2loss import l2_loss, l2_loss_jvp, l2_loss_vjp


def model(theta: np.ndarray, s: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Predictions of shape (B, R)."""
    return theta[0] * np.exp(-theta[1] * s)[None, :] + theta[2] * c[:, None]


def model_jacobian(theta: np.ndarray, s: np.ndarray, c: np.ndarray) -> np.ndarray:
    """``df/dtheta`` of shape (P, B, R): row p is the model's tangent along e_p."""
    decay = np.exp(-theta[1] * s)
    shape = (c.shape[0], s.shape[0])
    return np.stack(
        [
            np.broadcast_to(decay, shape),
            np.broadcast_to(-theta[0] * s * decay, shape),
            np.broadcast_to(c[:, None], shape),
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=6, help="B, the number of losses")
    parser.add_argument("--times", type=int, default=50, help="R, points per series")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    s = np.linspace(0.0, 4.0, args.times)
    c = rng.uniform(-1.0, 1.0, args.series)
    t = model(np.array([2.0, 0.7, 0.3]), s, c) + 0.05 * rng.standard_normal((args.series, s.size))
    theta = np.array([1.5, 1.0, 0.0])  # where the derivatives are taken

    def losses(theta: np.ndarray) -> np.ndarray:
        return l2_loss(model(theta, s, c), t, axis=1)

    y = model(theta, s, c)
    F_dot = model_jacobian(theta, s, c)  # (P, B, R): P tangents of the predictions

    # All P directions in one pushforward: L_dot[p, b] = dL[b]/dtheta[p].
    # y_ref_dot is left out: the data do not depend on theta (a structural zero).
    L, L_dot = l2_loss_jvp(y, t, F_dot, batched=True, axis=1)
    jacobian = L_dot.T  # (B, P)

    h = 1e-6
    eye = np.eye(theta.size)
    fd = np.stack([(losses(theta + h * e) - losses(theta - h * e)) / (2 * h) for e in eye], 1)

    np.set_printoptions(precision=5, suppress=True)
    print(f"losses L[b]: {L}")
    print(f"forward-mode Jacobian dL[b]/dtheta[p] (B x P = {jacobian.shape}):")
    print(jacobian)
    rel = np.max(np.abs(jacobian - fd)) / np.max(np.abs(fd))
    print(f"max |J - J_fd| / max |J_fd| = {rel:.3e}")

    # One direction v: the directional derivatives of all B losses, J v.
    v = rng.standard_normal(theta.size)
    _, directional = l2_loss_jvp(y, t, np.tensordot(v, F_dot, axes=1), axis=1)
    print(f"directional derivatives J v: {directional}")
    print(f"max |J v - (J_fd) v| = {np.max(np.abs(directional - fd @ v)):.3e}")

    # Reverse mode for the total sum_b L[b]: pull back L_bar = 1 per series, then
    # through the model, theta_bar[p] = sum_{b,r} df[b,r]/dtheta[p] y_bar[b,r].
    _, pullback = l2_loss_vjp(y, t, axis=1)
    y_bar, _ = pullback(np.ones(args.series))
    gradient = np.tensordot(F_dot, y_bar, axes=2)
    total = float(np.sum(directional))
    print(f"sum_b (J v)[b] = {total:.10f}")
    print(f"gradient . v   = {float(gradient @ v):.10f}")


if __name__ == "__main__":
    main()
