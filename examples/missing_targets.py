"""Missing targets with ``where=``: fitting lines to sensors with gaps.

S sensors report at T times; each sensor s follows its own line
``a[s] + b[s] * time``, and about a fifth of the readings are missing, stored
as NaN. The per-sensor losses

    L[s] = 1/2 sum_{t observed} (a[s] + b[s] time[t] - readings[t, s])^2

are ``l2_loss(pred, readings, axis=0, where=observed)``: the NaN entries take no
part in the loss or in any derivative (l2loss selects with ``where``, so
``0 * NaN`` never happens). Gradient descent on all sensors at once, with the
gradient from the pullback, must give the same lines as a least-squares fit of
each sensor's observed readings alone.

Run: ``python examples/missing_targets.py [--sensors S] [--times T] [--missing F]``
"""

from __future__ import annotations

import argparse

import numpy as np

from l2loss import l2_loss, l2_loss_vjp


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sensors", type=int, default=8)
    parser.add_argument("--times", type=int, default=200)
    parser.add_argument("--missing", type=float, default=0.2, help="fraction lost")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    time = np.linspace(-1.0, 1.0, args.times)[:, None]  # (T, 1)
    a_true = rng.uniform(-1.0, 1.0, args.sensors)
    b_true = rng.uniform(-2.0, 2.0, args.sensors)
    readings = a_true + b_true * time + 0.05 * rng.standard_normal((args.times, args.sensors))
    readings[rng.random(readings.shape) < args.missing] = np.nan
    observed = ~np.isnan(readings)
    counts = observed.sum(axis=0)
    print(f"{args.sensors} sensors, {args.times} times, {np.sum(~observed)} readings missing")

    # Without the mask the NaNs poison every loss they touch; multiplying by the
    # mask does not help either, since 0 * NaN is NaN.
    zeros = np.zeros_like(readings)
    unmasked = l2_loss(zeros, readings, axis=0)
    multiplied = 0.5 * np.sum((observed * (zeros - readings)) ** 2, axis=0)
    print(
        f"sensors with a NaN loss: without where= {np.sum(np.isnan(unmasked))}, "
        f"multiplying by the mask {np.sum(np.isnan(multiplied))}"
    )

    a, b = np.zeros(args.sensors), np.zeros(args.sensors)
    for step in range(args.steps):
        pred = a + b * time
        L, pullback = l2_loss_vjp(pred, readings, axis=0, where=observed)
        # L_bar = 1 / count per sensor: the gradient of each sensor's mean loss.
        pred_bar, _ = pullback(1.0 / counts)
        a -= np.sum(pred_bar, axis=0)
        b -= np.sum(time * pred_bar, axis=0)
        if step % max(1, args.steps // 4) == 0:
            print(
                f"step {step:4d}: total loss {np.sum(L):.6f}, NaN in gradient: "
                f"{bool(np.any(np.isnan(pred_bar)))}"
            )

    # Reference: each sensor's own least-squares line through its observed readings.
    reference = np.array(
        [
            np.polyfit(time[observed[:, s], 0], readings[observed[:, s], s], 1)[::-1]
            for s in range(args.sensors)
        ]
    )
    fitted = np.stack([a, b], axis=1)
    np.set_printoptions(precision=4, suppress=True)
    print(f"fitted (a, b) per sensor:\n{fitted}")
    print(f"max |fitted - per-sensor least squares| = {np.max(np.abs(fitted - reference)):.3e}")
    truth = np.stack([a_true, b_true], axis=1)
    print(f"max |fitted - true|                     = {np.max(np.abs(fitted - truth)):.3e}")


if __name__ == "__main__":
    main()
