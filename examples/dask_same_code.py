"""The same code on NumPy and on Dask: gradient descent for linear regression.

``gradient_step`` is written once against the array API: the namespace comes
from the arrays (``array_api_compat.array_namespace``), and l2loss does the
same inside. Given NumPy arrays it computes; given chunked Dask arrays it only
builds a task graph, which is computed once per step together with the loss
(``dask.compute``). To show that nothing computes early, the graph is built
under a Dask scheduler that refuses to run. With ``--distributed`` the steps
run on a local ``dask.distributed`` cluster instead of Dask's threads.

Both runs start from the same point and take the same steps, so they must end
at the same coefficients up to rounding, and at the least-squares solution.

Run: ``python examples/dask_same_code.py [--samples N] [--chunks C] [--distributed]``
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Iterator
from typing import Any

import array_api_compat
import dask
import dask.array as da
import numpy as np

from l2loss import l2_loss_vjp


def gradient_step(X: Any, t: Any, beta: Any, lr: float) -> tuple[Any, Any]:
    """Mean loss at ``beta`` and the coefficients after one step, in X's library."""
    xp = array_api_compat.array_namespace(X, t)
    n = X.shape[0]
    L, pullback = l2_loss_vjp(xp.matmul(X, beta), t)
    y_bar, _ = pullback(1.0 / n)
    return L / n, beta - lr * xp.matmul(X.T, y_bar)


def _refuse(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("a Dask graph was computed while the step was being built")


def fit(X: Any, t: Any, steps: int, lr: float) -> tuple[np.ndarray, float, int]:
    """Run ``steps`` steps from beta = 0; return beta, the last loss and the
    number of tasks in one step's graph (0 on NumPy)."""
    beta = np.zeros(X.shape[1])
    lazy = isinstance(X, da.Array)
    tasks = 0
    for _ in range(steps):
        if lazy:
            with dask.config.set(scheduler=_refuse):
                loss, beta_next = gradient_step(X, t, da.from_array(beta), lr)
            tasks = len(dict(beta_next.__dask_graph__()))
            loss, beta = dask.compute(loss, beta_next)  # the one computation of the step
        else:
            loss, beta = gradient_step(X, t, beta, lr)
    return np.asarray(beta), float(loss), tasks


@contextlib.contextmanager
def scheduler(distributed: bool) -> Iterator[str]:
    """Dask's default threads, or a local distributed cluster for the block."""
    if not distributed:
        yield "dask threads"
        return
    from dask.distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=":0"
        ) as cluster,
        Client(cluster),
    ):
        yield "dask.distributed LocalCluster, 2 workers"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=100_000)
    parser.add_argument("--features", type=int, default=4)
    parser.add_argument("--chunks", type=int, default=4, help="row chunks of the Dask arrays")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--lr", type=float, default=0.5)
    parser.add_argument("--distributed", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    rng = np.random.default_rng(args.seed)
    X = rng.standard_normal((args.samples, args.features))
    beta_true = rng.uniform(-2.0, 2.0, args.features)
    t = X @ beta_true + 0.1 * rng.standard_normal(args.samples)

    start = time.perf_counter()
    beta_np, loss_np, _ = fit(X, t, args.steps, args.lr)
    print(f"numpy: loss {loss_np:.8f} in {time.perf_counter() - start:.2f} s")

    rows = -(-args.samples // args.chunks)
    X_da = da.from_array(X, chunks=(rows, args.features))
    t_da = da.from_array(t, chunks=rows)
    with scheduler(args.distributed) as where:
        start = time.perf_counter()
        beta_da, loss_da, tasks = fit(X_da, t_da, args.steps, args.lr)
        elapsed = time.perf_counter() - start
    print(f"dask ({where}, {len(X_da.chunks[0])} chunks): loss {loss_da:.8f} in {elapsed:.2f} s")
    print(f"tasks in one step's graph: {tasks}, computed once per step")

    solution = np.linalg.lstsq(X, t, rcond=None)[0]
    np.set_printoptions(precision=6, suppress=True)
    print(f"numpy coefficients: {beta_np}")
    print(f"dask coefficients:  {beta_da}")
    print(f"max |dask - numpy|          = {np.max(np.abs(beta_da - beta_np)):.3e}")
    print(f"max |dask - least squares|  = {np.max(np.abs(beta_da - solution)):.3e}")


if __name__ == "__main__":
    main()
