"""Fixtures: ``be`` (the backend under test) and ``xp`` (its namespace).

A run selected with ``L2LOSS_BACKEND`` fails if no test really ran on that
backend, so a session can never pass by skipping everything.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from typing import Any

import pytest
from backends import Backend, get, selected
from hypothesis import HealthCheck, settings

settings.register_profile(
    "default",
    deadline=None,
    max_examples=40,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))

_RAN: dict[str, int] = {}


@pytest.fixture(scope="session", params=selected())
def be(request: pytest.FixtureRequest) -> Backend:
    try:
        return get(request.param)
    except ImportError as e:
        if os.environ.get("L2LOSS_BACKEND"):
            raise  # a session asked for this backend: it must be there
        pytest.skip(f"{request.param} is not installed: {e}")


@pytest.fixture
def dask_may_compute() -> Iterator[None]:
    """Dask computes with its default scheduler, as its users' would: a run of
    every backend in one process has installed the dask tests' refusing one."""
    if "dask" not in sys.modules:
        yield
        return
    import dask

    with dask.config.set(scheduler=None):
        yield


@pytest.fixture(scope="session")
def xp(be: Backend) -> Any:
    return be.xp


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    be = getattr(item, "funcargs", {}).get("be")
    if call.when == "call" and report.passed and isinstance(be, Backend):
        _RAN[be.name] = _RAN.get(be.name, 0) + 1
    return report


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    chosen = os.environ.get("L2LOSS_BACKEND")
    ran = any(_RAN.get(name) for name in selected())
    if chosen and exitstatus == 0 and not session.config.option.collectonly and not ran:
        print(f"\nno test passed on backend {chosen!r}: failing the run")
        session.exitstatus = 1
