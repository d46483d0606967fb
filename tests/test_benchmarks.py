"""The benchmark scripts run, and write JSON of the schema the docs render.

``benchmarks/parity.py --smoke``, ``benchmarks/training.py --smoke`` and
``benchmarks/threads.py --smoke`` run in subprocesses on tiny sizes (the
figures mean nothing; the check is that every case runs, agrees with its
baseline, and is recorded in full).
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import math
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from backends import selected

import l2loss

# Timing scripts, not backend behaviour: once, in the NumPy session (or a run
# of every backend).
pytestmark = pytest.mark.skipif(
    "numpy" not in selected(), reason="the benchmark scripts' smoke run: numpy session"
)

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks"
TIMEOUT = 300


# Found, not imported: importing PyTorch here would cost this process seconds.
HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
HAS_WEIGHTS = "weights" in inspect.signature(l2loss.l2_loss_jvp).parameters

MACHINE = {"cpu": str, "cores": int, "python": str, "numpy": str}
PARITY_CASE = {
    "backend": str,
    "dtype": str,
    "group": str,
    "path": str,
    "shape": list,
    "k": (int, type(None)),
    "items": int,
    "plain": str,
    "plain_us": float,
    "l2loss_us": float,
    "ratio": float,
    "ratio_min": float,
    "ratio_max": float,
    "overhead_us": float,
    "runs": list,
}
TRAINING_CASE = {
    "dtype": str,
    "n": int,
    "plain": str,
    "mse_loss_us": float,
    "plain_us": float,
    "l2loss_us": float,
    "ratio_mse": float,
    "ratio_plain": float,
    "runs_mse": list,
    "runs_plain": list,
}
THREADS_CASE = {
    "dtype": str,
    "case": str,
    "shape": list,
    "items": int,
    "pool_ms": float,
    "one_ms": float,
    "ratio": float,
    "ratio_min": float,
    "ratio_max": float,
    "runs": list,
}


def _env() -> dict[str, str]:
    """The checkout's l2loss first, as pytest's ``pythonpath`` has it; one
    thread per library (the two runs share the cores, and a smoke run's
    figures are not read), so spinning thread pools do not slow them down."""
    env = dict(os.environ)
    env.update(dict.fromkeys(("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), "1"))
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p
    )
    return env


def _start(out: Path, script: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(BENCH / script), "--smoke", "--out", str(out), *extra],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The smoke runs, side by side (the machine has two cores), and their JSON."""
    out = tmp_path_factory.mktemp("bench")
    # The training plot (a second matplotlib start-up) is left out to keep the
    # check short; the parity plot is drawn where matplotlib is installed.
    # Two runs of the grid, to check their merge.
    parity = ["parity.py", "--runs", "2"]
    scripts = {
        "parity": parity if HAS_MATPLOTLIB else [*parity, "--no-plot"],
        "threads": ["threads.py", "--runs", "2"],
    }
    if HAS_TORCH:
        scripts["training"] = ["training.py", "--no-plot", "--runs", "2"]
    procs = {kind: _start(out, *args) for kind, args in scripts.items()}
    found: dict[str, Any] = {"out": out}
    for kind, proc in procs.items():
        try:
            log, _ = proc.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
        assert proc.returncode == 0, f"{scripts[kind][0]} --smoke failed:\n{log}"
        found[kind] = json.loads((out / f"{kind}-cpu.json").read_text())
    return found


def _check_fields(row: dict[str, Any], fields: dict[str, Any]) -> None:
    assert set(row) == set(fields), f"keys {sorted(row)} != {sorted(fields)}"
    for key, kind in fields.items():
        # JSON has no float type of its own for whole numbers: allow ints.
        want = (float, int) if kind is float else kind
        assert isinstance(row[key], want), f"{key}={row[key]!r} is not {kind}"


def _check_header(result: dict[str, Any], kind: str) -> None:
    assert result["kind"] == kind
    assert result["command"].startswith("python ")
    assert "--smoke" in result["command"]
    assert "--out" not in result["command"]  # run with --out: not how it measured
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", result["date"])
    assert re.fullmatch(r"[0-9a-f]{4,40}(\+dirty)?|unknown", result["commit"])
    assert isinstance(result["rounds"], int)
    assert result["rounds"] >= 1
    machine = result["machine"]
    assert set(machine) == {*MACHINE, "torch"}
    for key, want in MACHINE.items():
        assert isinstance(machine[key], want), key
    assert isinstance(machine["torch"], str if HAS_TORCH else type(None))


def _positive(x: float) -> bool:
    return math.isfinite(x) and x > 0


def test_parity_json(results: dict[str, Any]) -> None:
    result = results["parity"]
    _check_header(result, "parity")
    cases = result["cases"]
    assert cases
    for row in cases:
        _check_fields(row, PARITY_CASE)
        for key in ("ratio", "ratio_min", "ratio_max", "plain_us", "l2loss_us"):
            assert _positive(row[key]), f"{key}={row[key]} in {row}"
        assert row["ratio_min"] <= row["ratio"] <= row["ratio_max"]
        assert len(row["runs"]) == result["runs"] == 2
        assert row["ratio"] == statistics.median(row["runs"])
        assert all(row["ratio_min"] <= r <= row["ratio_max"] for r in row["runs"])
        assert math.isfinite(row["overhead_us"])
        assert row["items"] == math.prod(row["shape"])
        paths = {"transposed": ("whole", "axis"), "middle": ("axis=(0,2)", "axis=1")}
        assert row["path"] in paths.get(row["group"], ("fast", "full")), row
        assert (row["k"] is not None) == (row["group"] == "batched")
    groups = {"1-D", "axis", "batched", "where", "whole", "leading", "grad", "transposed", "middle"}
    groups |= {"weights"} if HAS_WEIGHTS else set()
    backends = {"numpy", "torch"} if HAS_TORCH else {"numpy"}
    got = {(r["backend"], r["dtype"], r["group"]) for r in cases}
    want = {(b, d, g) for b in backends for d in ("float64", "float32") for g in groups}
    assert got == want
    if not HAS_WEIGHTS:
        assert any("weights" in note for note in result["notes"])
    png = results["out"] / "parity-cpu.png"
    assert png.stat().st_size > 0 if HAS_MATPLOTLIB else not png.exists()


@pytest.mark.skipif(not HAS_TORCH, reason="the training benchmark needs PyTorch")
def test_training_json(results: dict[str, Any]) -> None:
    result = results["training"]
    _check_header(result, "training")
    assert result["cases"]
    for key in ("cases", "func_grad"):
        for row in result[key]:
            _check_fields(row, TRAINING_CASE)
            for name in ("ratio_mse", "ratio_plain", "mse_loss_us", "plain_us", "l2loss_us"):
                assert _positive(row[name]), f"{name}={row[name]} in {row}"
            for name in ("mse", "plain"):
                assert len(row[f"runs_{name}"]) == result["runs"] == 2
                assert row[f"ratio_{name}"] == statistics.median(row[f"runs_{name}"])
    assert {r["dtype"] for r in result["cases"]} == {"float32", "float64"}
    # Only a run that reaches N = 3e7 measures linearity.
    assert result["linearity"] == result["linearity_mse"] == {}
    assert result["runs_linearity"] == [{}, {}]


def _training_module() -> Any:
    """``benchmarks/training.py`` as a module (its ``_timing`` beside it)."""
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location("training", BENCH / "training.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(BENCH))
    return module


def test_training_linearity_is_each_process_ratio() -> None:
    """The merged linearity is the median of each process's ratio of its own
    times at 3e7 and 1e7, not a ratio of times taken from different processes
    (here 80 / 20 = 4.0, where the processes measured 8.0, 3.0 and 2.9)."""
    training = _training_module()
    runs = []
    for (l1, l3), (m1, m3) in zip(
        [(10.0, 80.0), (20.0, 60.0), (30.0, 87.0)],
        [(5.0, 15.0), (6.0, 24.0), (7.0, 14.0)],
        strict=True,
    ):
        cases = [
            {
                "dtype": "float64",
                "n": n,
                "plain": "p",
                "l2loss_us": l2,
                "mse_loss_us": mse,
                "plain_us": 1.0,
                "ratio_mse": mse / l2,
                "ratio_plain": 1.0 / l2,
            }
            for n, l2, mse in ((10_000_000, l1, m1), (30_000_000, l3, m3))
        ]
        run = {"conditions": {"start": {}, "end": {}}, "cases": cases}
        for key, field in training.LINEARITIES.items():
            run[key] = training.linearity(cases, field)
        runs.append(run)
    merged = training.merge(runs, "python benchmarks/training.py")
    assert merged["runs_linearity"] == [{"float64": 8.0}, {"float64": 3.0}, {"float64": 2.9}]
    assert merged["linearity"] == {"float64": 3.0}
    assert merged["linearity_mse"] == {"float64": 3.0}


def test_threads_json(results: dict[str, Any]) -> None:
    result = results["threads"]
    _check_header(result, "threads")
    assert isinstance(result["workers"], int)
    assert result["workers"] >= 1
    for row in result["cases"]:
        _check_fields(row, THREADS_CASE)
        for key in ("ratio", "ratio_min", "ratio_max", "pool_ms", "one_ms"):
            assert _positive(row[key]), f"{key}={row[key]} in {row}"
        assert len(row["runs"]) == result["runs"] == 2
        assert row["ratio"] == statistics.median(row["runs"])
        assert row["items"] == math.prod(row["shape"])
    got = {(r["dtype"], r["case"]) for r in result["cases"]}
    calls = {"1-D fast", "1-D full", "axis", "where", "grad"}
    assert got == {(d, c) for d in ("float64", "float32") for c in calls}


def test_run_dispatch_takes_one_mode() -> None:
    """``run.py`` hands ``--parity`` / ``--training`` / ``--threads`` to their
    scripts, one at a time."""
    proc = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--parity", "--training"],
        cwd=ROOT,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert proc.returncode != 0
    assert "choose one of --parity, --training, --threads" in proc.stderr
