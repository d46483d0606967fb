"""A small thread pool that maps a function over items, in order."""

from __future__ import annotations

import contextvars
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

__all__ = ["ordered_map"]

T = TypeVar("T")

_POOL: ThreadPoolExecutor | None = None
_SIZE = 0
_LOCK = threading.Lock()


def _pool(workers: int) -> ThreadPoolExecutor:
    """The shared pool, grown to ``workers`` threads on demand (a smaller old
    pool is left to finish what it holds; its idle threads exit with it)."""
    global _POOL, _SIZE
    with _LOCK:
        if _POOL is None or workers > _SIZE:
            _POOL, _SIZE = ThreadPoolExecutor(workers, thread_name_prefix="l2loss"), workers
        return _POOL


def _forget_pool() -> None:
    """After ``fork`` the child has none of the parent's threads: start afresh."""
    global _POOL, _SIZE, _LOCK
    _POOL, _SIZE, _LOCK = None, 0, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


def ordered_map(fn: Callable[[Any], T], items: Sequence[Any], workers: int) -> list[T]:
    """``[fn(item) for item in items]``, on up to ``workers`` threads.

    The calling thread works too, and every thread takes the next item left
    until none is: a thread that starts late, or a core another process
    holds, only takes fewer items, and the caller never waits for a thread
    that has not started. Results are in ``items`` order whichever thread
    computed them. The threads run in copies of the caller's context (NumPy
    keeps ``errstate`` there). An exception in any item stops the others from
    taking more and reaches the caller.
    """
    workers = min(workers, len(items))
    if workers <= 1:
        return [fn(item) for item in items]
    out: list[Any] = [None] * len(items)
    claim = iter(range(len(items)))
    lock = threading.Lock()

    def run() -> None:
        while True:
            with lock:
                i = next(claim, -1)
            if i < 0:
                return
            try:
                out[i] = fn(items[i])
            except BaseException:
                with lock:
                    for _ in claim:  # the call has failed: nobody takes another item
                        pass
                raise

    pool = _pool(workers - 1)
    futures = [pool.submit(contextvars.copy_context().run, run) for _ in range(workers - 1)]
    try:
        run()
    finally:
        for f in futures:
            if not f.cancel():  # a thread not started by now has nothing left to take
                f.result()
    return out
