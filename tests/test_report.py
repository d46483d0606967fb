"""benchmarks/report.py: the docs' figures come from the benchmark JSON.

The renderers run on small JSON written here in the benchmarks' schemas; the
end-to-end tests build a repository in a temporary folder (pages with marked
blocks, JSON in docs/_static) and run the script's ``main`` on it.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("report", ROOT / "benchmarks" / "report.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["report"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


report = _load()

MACHINE = {
    "cpu": "AMD EPYC",
    "cores": 2,
    "python": "3.11.7",
    "numpy": "2.4.6",
    "torch": "2.13.0+cpu",
}


def _parity_case(backend: str, dtype: str, group: str, path: str, ratio: float) -> dict[str, Any]:
    shape, k = (
        ([1000, 100], None) if group == "axis" else ([100000], 8 if group == "batched" else None)
    )
    return {
        "backend": backend,
        "dtype": dtype,
        "group": group,
        "path": path,
        "shape": shape,
        "k": k,
        "items": 100000,
        "plain_us": 100.0 * ratio,
        "l2loss_us": 100.0,
        "ratio": ratio,
        "ratio_min": ratio - 0.1,
        "ratio_max": ratio + 0.1,
    }


PARITY: dict[str, Any] = {
    "kind": "parity",
    "command": "python benchmarks/parity.py",
    "date": "2026-12-01",
    "commit": "abc1234",
    "machine": MACHINE,
    "rounds": 9,
    "cases": [
        _parity_case("numpy", "float64", "1-D", "fast", 1.52),
        _parity_case("torch", "float64", "1-D", "fast", 1.31),
        _parity_case("numpy", "float32", "1-D", "fast", 1.25),
        _parity_case("numpy", "float64", "axis", "fast", 0.93),
        _parity_case("torch", "float64", "axis", "fast", 1.02),
        _parity_case("numpy", "float64", "batched", "fast", 2.4),
    ],
}

TRAINING: dict[str, Any] = {
    "kind": "training",
    "command": "python benchmarks/training.py",
    "date": "2026-12-02",
    "commit": "def5678",
    "machine": {**MACHINE, "torch": None},
    "rounds": 7,
    "cases": [
        {
            "dtype": "float32",
            "n": n,
            "mse_loss_us": 30.0 * r,
            "plain_us": 40.0 * r,
            "l2loss_us": 20.0 * r,
            "ratio_mse": 1.5,
            "ratio_plain": 2.0,
        }
        for n, r in ((1000, 1.0), (10_000_000, 1000.0))
    ],
}


THREADS: dict[str, Any] = {
    "kind": "threads",
    "command": "python benchmarks/threads.py",
    "date": "2026-12-01",
    "commit": "abc1234",
    "machine": MACHINE,
    "workers": 2,
    "rounds": 9,
    "runs": 3,
    "cases": [
        {
            "dtype": "float64",
            "case": "axis",
            "shape": [16, 1_000_000],
            "items": 16_000_000,
            "pool_ms": 30.25,
            "one_ms": 56.0,
            "ratio": 1.8512,
            "ratio_min": 1.7,
            "ratio_max": 1.9,
            "runs": [1.8, 1.85, 1.9],
        }
    ],
}


def _gpu_entry(n: int, dtype: str) -> dict[str, Any]:
    return {
        "n": n,
        "dtype": dtype,
        "ceiling_GBps": n / 1e6,
        "fraction": {"l2loss-cupy": 0.5, "cupy-plain": 0.6, "some-new-peer": 0.25},
    }


GPU: dict[str, Any] = {
    "machine": {
        "python": "3.12.3",
        "numpy": "2.5.2",
        "cupy_version": "14.2.0",
        "torch_version": "2.11.0+cu130",
        "jax_version": "0.11.2",
        "gpu": "NVIDIA H200, 580.159.04, 143771 MiB, 3201 MHz",
        "l2_bytes": 62914560,
        "sms": 132,
    },
    "rounds": 7,
    "seconds": 100.7,
    "float64": [_gpu_entry(1000, "float64"), _gpu_entry(100_000_000, "float64")],
    "float32": [_gpu_entry(1000, "float32")],
    "batched-float64": [
        {"n": 1_000_000, "k": 8, "dtype": "float64", "fraction": {"l2loss-torch-batched": 3.36}}
    ],
    "axis-float64": [
        {"shape": [1000, 100000], "dtype": "float64", "fraction": {"l2loss-cupy": 0.54}}
    ],
    "parts-float64": {"100000000": {"cupy subtract": 4329.2, "torch dot": 4320.9}},
    "tiles-float64": {"100000000": {"cupy-33554432": 0.54, "torch-4611686018427387904": 0.97}},
}


def _rows(markdown: str) -> list[list[str]]:
    """The cells of a Markdown table, the header first, without the alignment row."""
    lines = [ln for ln in markdown.strip().splitlines() if not re.fullmatch(r"\|[-:|]+\|", ln)]
    return [[cell.strip() for cell in ln.strip("|").split("|")] for ln in lines]


def render(name: str, data: dict[str, Any], **args: str) -> str:
    return str(report.RENDERERS[name].render(data, **args))


# -- formatting ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n", "text"), [(12, "12"), (1000, "1e3"), (30_000_000, "3e7"), (1_048_576, "1.05e6")]
)
def test_size(n: int, text: str) -> None:
    assert report.size(n) == text


def test_table_aligns_numbers_right() -> None:
    text = report.table(["case", "a", "b"], [["x", "1", "2"]])
    assert text.splitlines() == ["| case | a | b |", "|:---|---:|---:|", "| x | 1 | 2 |"]


# -- renderers ------------------------------------------------------------------------


def test_parity_pivots_backends_and_dtypes() -> None:
    rows = _rows(render("parity", PARITY))
    assert rows[0] == ["case", "shape", "NumPy f64", "PyTorch f64", "NumPy f32"]
    by_case = {(r[0], r[1]): r[2:] for r in rows[1:]}
    assert by_case["1-D fast", "1e5"] == ["1.52", "1.31", "1.25"]
    assert by_case["axis fast", "1e3\u00d71e2"] == ["0.93", "1.02", ""]
    assert by_case["batched fast", "1e5, K=8"] == ["2.40", "", ""]
    assert len(rows) == 1 + 3


def test_parity_filtered_shows_times_and_range() -> None:
    rows = _rows(render("parity", PARITY, backend="numpy", dtype="float64"))
    assert rows[0] == ["case", "shape", "plain µs", "l2loss µs", "ratio", "range"]
    assert rows[1] == ["1-D fast", "1e5", "152", "100", "1.52", "1.42\u20131.62"]
    assert len(rows) == 1 + 3
    # Filtering one of the two keeps the other as a column.
    assert _rows(render("parity", PARITY, backend="torch"))[0][2] == "dtype"
    with pytest.raises(report.ReportError, match="no case"):
        render("parity", PARITY, backend="cupy")


def test_parity_groups_gives_medians_and_lowest() -> None:
    rows = _rows(render("parity-groups", PARITY))
    assert rows[0] == ["cases", "NumPy f64", "PyTorch f64", "NumPy f32"]
    by_group = {r[0]: r[1:] for r in rows[1:]}
    assert by_group["1-D, N <= 1e5"] == ["1.52 (1.52)", "1.31 (1.31)", "1.25 (1.25)"]
    assert by_group["per sample (`axis=-1`)"] == ["0.93 (0.93)", "1.02 (1.02)", ""]
    assert by_group["K directions"] == ["2.40 (2.40)", "", ""]


def test_parity_summary_names_the_slowest_cases() -> None:
    text = render("parity-summary", PARITY)
    assert text.startswith("Over 6 cases,")
    assert "median of 1.28 and ranges from 0.93 to 2.40;" in text
    assert "slower in 1, the most in NumPy float64 axis fast 1e3\u00d71e2 (0.93)" in text
    faster = copy.deepcopy(PARITY)
    faster["cases"] = [c for c in faster["cases"] if c["ratio"] >= 1]
    assert render("parity-summary", faster).endswith("or faster in every case.")


def test_machine_sentence() -> None:
    text = render("parity-machine", PARITY)
    assert text == (
        "Measured on 2026-12-01 at commit `abc1234` with `python benchmarks/parity.py`: "
        "AMD EPYC, 2 cores, Python 3.11.7, NumPy 2.4.6, PyTorch 2.13.0+cpu; "
        "medians of 9 interleaved rounds."
    )
    assert "PyTorch" not in render("training-machine", TRAINING)  # torch: null


def test_training() -> None:
    rows = _rows(render("training", TRAINING))
    assert rows == [
        ["dtype", "N", "l2loss µs", "vs `mse_loss`", "vs plain"],
        ["float32", "1e3", "20", "1.50", "2.00"],
        ["float32", "1e7", "20000", "1.50", "2.00"],
    ]
    with pytest.raises(report.ReportError, match="no list 'func_grad'"):
        render("training", TRAINING, cases="func_grad")


def test_threads() -> None:
    assert _rows(render("threads", THREADS)) == [
        ["dtype", "call", "shape", "pool ms", "one thread ms", "one / pool"],
        ["float64", "axis", "16\u00d71e6", "30.2", "56", "1.85"],
    ]
    assert render("threads-machine", THREADS).endswith("and the median of 3 processes.")


def test_gpu_tables_hold_what_the_json_holds() -> None:
    rows = _rows(render("gpu", GPU))
    assert rows[0] == ["", "1e3", "1e8"]
    assert rows[1:] == [
        ["l2loss, CuPy", "0.50", "0.50"],
        ["plain CuPy", "0.60", "0.60"],
        ["`some-new-peer`", "0.25", "0.25"],  # an unknown key still shows
        ["ceiling GB/s", "0.001", "100"],
    ]
    assert _rows(render("gpu", GPU, dtype="float32"))[0] == ["", "1e3"]
    assert _rows(render("gpu-batched", GPU))[1] == ["l2loss, PyTorch", "3.36"]
    assert _rows(render("gpu-axis", GPU))[0] == ["", "1e3\u00d71e5"]
    assert _rows(render("gpu-kernels", GPU))[1:] == [
        ["CuPy, `subtract`", "4329"],
        ["PyTorch, `dot`", "4321"],
    ]
    assert _rows(render("gpu-tiles", GPU))[1:] == [
        ["CuPy, 32 Mi", "0.54"],
        ["PyTorch, untiled", "0.97"],
    ]
    text = render("gpu-machine", GPU)
    assert text.startswith("Measured on an NVIDIA H200 (132 SMs, 60 MiB L2) with CuPy 14.2.0,")


def test_tables_stay_narrow() -> None:
    """A table of at most 8 columns fits the page (wider ones scroll)."""
    real_gpu = json.loads((ROOT / "docs" / "_static" / "bench-gpu.json").read_text())
    sources = {
        "parity-cpu.json": PARITY,
        "training-cpu.json": TRAINING,
        "threads-cpu.json": THREADS,
        "bench-gpu.json": GPU,
    }
    for name, r in report.RENDERERS.items():
        for data in (sources[r.source], *([real_gpu] if r.source == "bench-gpu.json" else [])):
            text = r.render(data)
            if text.startswith("|"):
                assert max(len(row) for row in _rows(text)) <= 8, name


# -- blocks and the command line ----------------------------------------------------------


def _repo(tmp_path: Path) -> Path:
    """A repository with a README and a docs page holding stale blocks, and the JSON."""
    static = tmp_path / "docs" / "_static"
    static.mkdir(parents=True)
    for name, data in (("parity-cpu", PARITY), ("training-cpu", TRAINING), ("bench-gpu", GPU)):
        (static / f"{name}.json").write_text(json.dumps(data), encoding="utf-8")
    (tmp_path / "README.md").write_text(
        "# Title\n\nText before.\n\n<!-- report: parity-summary -->\nold\n"
        "<!-- /report: parity-summary -->\n\nText after.\n",
        encoding="utf-8",
    )
    (tmp_path / "docs" / "performance.md").write_text(
        "# Performance\n\n<!-- report: parity backend=torch -->\n"
        "<!-- /report: parity -->\n\n## GPU\n\n<!-- report: gpu dtype=float32 -->\n\n"
        + render("gpu", GPU, dtype="float32")
        + "\n\n<!-- /report: gpu -->\n",
        encoding="utf-8",
    )
    return tmp_path


def test_check_names_stale_blocks_and_rewrite_fixes_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _repo(tmp_path)
    before = (root / "docs" / "performance.md").read_text(encoding="utf-8")
    assert report.main(["--check", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "README.md:5: block 'parity-summary' differs from docs/_static/parity-cpu.json" in out
    assert "docs/performance.md:3: block 'parity backend=torch' differs" in out
    assert "gpu dtype=float32" not in out  # that block is up to date
    assert (root / "docs" / "performance.md").read_text(encoding="utf-8") == before

    assert report.main(["--root", str(root)]) == 0
    assert report.main(["--check", "--root", str(root)]) == 0
    assert "3 report block(s) match their JSON" in capsys.readouterr().out
    readme = (root / "README.md").read_text(encoding="utf-8")
    summary = render("parity-summary", PARITY)
    assert readme == (
        "# Title\n\nText before.\n\n<!-- report: parity-summary -->\n\n"
        f"{summary}\n\n<!-- /report: parity-summary -->\n\nText after.\n"
    )
    page = (root / "docs" / "performance.md").read_text(encoding="utf-8")
    assert render("parity", PARITY, backend="torch") in page

    # New figures in the JSON make the page stale again, and name the block.
    PARITY_NEW = copy.deepcopy(PARITY)
    PARITY_NEW["cases"][1]["ratio"] = 1.11
    (root / "docs" / "_static" / "parity-cpu.json").write_text(json.dumps(PARITY_NEW))
    assert report.main(["--check", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert "'parity backend=torch' differs" in out
    assert "'parity-summary' differs" in out


@pytest.mark.parametrize(
    ("page", "line", "message"),
    [
        ("<!-- report: nothing -->\n<!-- /report: nothing -->\n", 1, "no renderer 'nothing'"),
        ("<!-- report: gpu -->\n", 1, "block 'gpu' has no <!-- /report: gpu -->"),
        ("<!-- report: gpu colour=red -->\n<!-- /report: gpu -->\n", 1, "'colour'"),
        ("<!-- report: gpu float32 -->\n<!-- /report: gpu -->\n", 1, "are KEY=VALUE"),
        ("<!-- report: gpu dtype=float16 -->\n<!-- /report: gpu -->\n", 1, "no 'float16'"),
        (
            "<!-- report: gpu -->\n<!-- report: gpu-axis -->\n<!-- /report: gpu-axis -->\n"
            "<!-- /report: gpu -->\n",
            2,
            "block 'gpu-axis' starts inside another block",
        ),
    ],
)
def test_bad_blocks_are_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], page: str, line: int, message: str
) -> None:
    root = _repo(tmp_path)
    (root / "docs" / "bad.md").write_text(page, encoding="utf-8")
    assert report.main(["--check", "--root", str(root)]) == 1
    err = capsys.readouterr().err
    assert f"error: docs/bad.md:{line}: " in err
    assert message in err


def test_missing_json_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = _repo(tmp_path)
    (root / "docs" / "_static" / "training-cpu.json").unlink()
    (root / "docs" / "t.md").write_text(
        "<!-- report: training -->\n<!-- /report: training -->\n", encoding="utf-8"
    )
    assert report.main(["--root", str(root)]) == 1
    assert "docs/_static/training-cpu.json does not exist" in capsys.readouterr().err


def test_the_docs_match_their_json(capsys: pytest.CaptureFixture[str]) -> None:
    """What the docs build checks: every block of this repository is up to date."""
    assert report.main(["--check"]) == 0, capsys.readouterr()
