"""The docs' benchmark figures, generated from the benchmark JSON.

In README.md and docs/*.md, a generated block sits between two markers::

    <!-- report: NAME [KEY=VALUE ...] -->
    (generated Markdown: a table or a sentence)
    <!-- /report: NAME -->

NAME is a renderer of :data:`RENDERERS`: it reads one JSON file of
``docs/_static`` (written by a benchmark script) and returns Markdown; the
``KEY=VALUE`` pairs are its keyword arguments (``dtype=float32``).

    python benchmarks/report.py            # rewrite every block
    python benchmarks/report.py --check    # exit 1, naming each block that differs
    python benchmarks/report.py --list     # the renderers and their JSON

The docs build runs ``--check``, so a figure in the docs is always the one its
JSON gives: rerun a benchmark, then this script, and commit both.
"""

from __future__ import annotations

import argparse
import inspect
import json
import re
import statistics
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
STATIC = Path("docs") / "_static"

Render = Callable[..., str]


@dataclass(frozen=True)
class Renderer:
    """Turns the JSON file ``source`` (in docs/_static) into Markdown."""

    source: str
    render: Render

    @property
    def summary(self) -> str:
        return (inspect.getdoc(self.render) or "").splitlines()[0]


RENDERERS: dict[str, Renderer] = {}


def renderer(name: str, source: str) -> Callable[[Render], Render]:
    """Register ``fn(data, **args) -> str`` as the renderer NAME of JSON ``source``."""

    def register(fn: Render) -> Render:
        RENDERERS[name] = Renderer(source, fn)
        return fn

    return register


class ReportError(Exception):
    """A block that cannot be generated: say which, and why."""


# -- formatting ---------------------------------------------------------------


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table: the first column left-aligned, the others (numbers) right."""
    lines = ["| " + " | ".join(header) + " |"]
    lines.append("|" + "|".join([":---", *["---:"] * (len(header) - 1)]) + "|")
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def size(n: float) -> str:
    """1000 -> 1e3, 30000000 -> 3e7, 12 -> 12: the sizes the benchmarks use."""
    if n < 100:
        return f"{n:g}"
    mantissa, exponent = f"{n:.2e}".split("e")
    return f"{float(mantissa):g}e{int(exponent)}"


# The multiplication sign and the en dash of the tables (escaped: ruff flags the glyphs).
TIMES, DASH = "\u00d7", "\u2013"


def shape(dims: Sequence[int]) -> str:
    """(1000, 100000) -> 1e3 x 1e5, with a multiplication sign."""
    return TIMES.join(size(d) for d in dims)


def ratio(x: float) -> str:
    return f"{x:.2f}"


def num(x: float) -> str:
    """Three significant figures, no exponent: 0.912, 12.3, 456, 78901."""
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:.0f}"


def dtype_short(dtype: str) -> str:
    return dtype.replace("float", "f").replace("complex", "c")


LIBRARIES = {"numpy": "NumPy", "torch": "PyTorch", "cupy": "CuPy", "jax": "JAX", "dask": "Dask"}


def machine(data: dict[str, Any]) -> str:
    """The sentence every CPU benchmark's JSON gives: where, when and how it ran."""
    m = data["machine"]
    versions = ", ".join(
        f"{LIBRARIES.get(key, key)} {m[key]}" for key in ("numpy", "torch") if m.get(key)
    )
    return (
        f"Measured on {data['date']} at commit `{data['commit']}` with `{data['command']}`: "
        f"{m['cpu']}, {m['cores']} cores, Python {m['python']}, {versions}; "
        f"medians of {data['rounds']} interleaved rounds"
        + (f", and the median of {runs} processes." if (runs := data.get("runs", 1)) > 1 else ".")
    )


# -- parity: l2loss against the plain expression (benchmarks/parity.py) -----------


def _case(c: dict[str, Any]) -> tuple[str, str]:
    """(case, shape) labels of a parity case: ``1-D fast``, ``1e3 x 1e4, K=8``."""
    where = shape(c["shape"]) + (f", K={c['k']}" if c.get("k") is not None else "")
    return f"{c['group']} {c['path']}", where


@renderer("parity", "parity-cpu.json")
def parity(data: dict[str, Any], backend: str | None = None, dtype: str | None = None) -> str:
    """Plain time / l2loss time (> 1: l2loss faster), one column per backend and dtype;
    with ``backend=`` or ``dtype=``, those cases with their times and the ratio's range."""
    cases = [
        c for c in data["cases"] if backend in (None, c["backend"]) and dtype in (None, c["dtype"])
    ]
    if not cases:
        raise ReportError(f"no case with backend={backend} dtype={dtype}")
    if backend is None and dtype is None:
        columns = list(dict.fromkeys((c["backend"], c["dtype"]) for c in cases))
        cells: dict[tuple[str, str], dict[tuple[str, str], str]] = {}
        for c in cases:
            cells.setdefault(_case(c), {})[c["backend"], c["dtype"]] = ratio(c["ratio"])
        header = ["case", "shape", *(f"{LIBRARIES[b]} {dtype_short(d)}" for b, d in columns)]
        rows = [[*key, *(row.get(col, "") for col in columns)] for key, row in cells.items()]
        return table(header, rows)
    extra = [] if backend else ["backend"]
    extra += [] if dtype else ["dtype"]
    header = ["case", "shape", *extra, "plain µs", "l2loss µs", "ratio", "range"]
    rows = [
        [
            *_case(c),
            *(LIBRARIES.get(c[k], c[k]) for k in extra),
            num(c["plain_us"]),
            num(c["l2loss_us"]),
            ratio(c["ratio"]),
            f"{ratio(c['ratio_min'])}{DASH}{ratio(c['ratio_max'])}",
        ]
        for c in cases
    ]
    return table(header, rows)


def _group(c: dict[str, Any]) -> str:
    """The row of a case in the compact table: its group, 1-D cases by size."""
    if c["group"] != "1-D":
        return {
            "axis": "per sample (`axis=-1`)",
            "batched": "K directions",
            "whole": "a matrix reduced whole",
            "leading": "over leading axes (`axis=0`)",
            "grad": "`l2_loss_grad`",
            "transposed": "transposed inputs, middle axes",
            "middle": "transposed inputs, middle axes",
        }.get(c["group"], f"`{c['group']}=`")
    return "1-D, N <= 1e5" if c["items"] <= 100_000 else "1-D, N >= 1e6"


@renderer("parity-groups", "parity-cpu.json")
def parity_groups(data: dict[str, Any]) -> str:
    """A compact table: per group of cases (rows) and backend and dtype (columns),
    the median ratio and, in brackets, the lowest."""
    cases = data["cases"]
    if not cases:
        raise ReportError("the parity JSON holds no case")
    columns = list(dict.fromkeys((c["backend"], c["dtype"]) for c in cases))
    groups: dict[str, dict[tuple[str, str], list[float]]] = {}
    for c in cases:
        groups.setdefault(_group(c), {}).setdefault((c["backend"], c["dtype"]), []).append(
            c["ratio"]
        )
    header = ["cases", *(f"{LIBRARIES[b]} {dtype_short(d)}" for b, d in columns)]
    rows = [
        [
            name,
            *(
                f"{ratio(statistics.median(r))} ({ratio(min(r))})" if (r := row.get(col)) else ""
                for col in columns
            ),
        ]
        for name, row in groups.items()
    ]
    return table(header, rows)


@renderer("parity-summary", "parity-cpu.json")
def parity_summary(data: dict[str, Any]) -> str:
    """One sentence: how many cases, the median ratio, and where l2loss is slower."""
    cases = data["cases"]
    if not cases:
        raise ReportError("the parity JSON holds no case")
    slower = sorted((c for c in cases if c["ratio"] < 1.0), key=lambda c: c["ratio"])
    text = (
        f"Over {len(cases)} cases, plain time / l2loss time has a median of "
        f"{ratio(statistics.median(c['ratio'] for c in cases))} and ranges from "
        f"{ratio(min(c['ratio'] for c in cases))} to {ratio(max(c['ratio'] for c in cases))}; "
    )
    if not slower:
        return text + "l2loss is as fast as the plain expression or faster in every case."
    worst = ", ".join(
        f"{LIBRARIES.get(c['backend'], c['backend'])} {c['dtype']} {' '.join(_case(c))} "
        f"({ratio(c['ratio'])})"
        for c in slower[:3]
    )
    return text + f"l2loss is slower in {len(slower)}, the most in {worst}."


@renderer("parity-machine", "parity-cpu.json")
def parity_machine(data: dict[str, Any]) -> str:
    """Where, when and how the parity grid ran."""
    return machine(data)


# -- training: a PyTorch forward + backward step (benchmarks/training.py) -------------


@renderer("training", "training-cpu.json")
def training(data: dict[str, Any], cases: str = "cases") -> str:
    """l2loss's time per step and the ratios ``mse_loss`` / l2loss and plain / l2loss
    (> 1: l2loss faster); ``cases=`` names another list of the JSON."""
    if cases not in data:
        raise ReportError(f"the training JSON has no list {cases!r}")
    header = ["dtype", "N", "l2loss µs", "vs `mse_loss`", "vs plain"]
    rows = [
        [
            c["dtype"],
            size(c["n"]),
            num(c["l2loss_us"]),
            ratio(c["ratio_mse"]),
            ratio(c["ratio_plain"]),
        ]
        for c in data[cases]
    ]
    return table(header, rows)


@renderer("training-machine", "training-cpu.json")
def training_machine(data: dict[str, Any]) -> str:
    """Where, when and how the training step ran."""
    return machine(data)


# -- threads: NumPy's blocks on a pool against one thread (benchmarks/threads.py) -----


@renderer("threads", "threads-cpu.json")
def threads(data: dict[str, Any]) -> str:
    """NumPy's blocks on one thread per core and on one thread: times and the ratio
    one thread / pool (> 1: the threads pay)."""
    header = ["dtype", "call", "shape", "pool ms", "one thread ms", "one / pool"]
    rows = [
        [
            c["dtype"],
            c["case"],
            shape(c["shape"]),
            num(c["pool_ms"]),
            num(c["one_ms"]),
            ratio(c["ratio"]),
        ]
        for c in data["cases"]
    ]
    return table(header, rows)


@renderer("threads-machine", "threads-cpu.json")
def threads_machine(data: dict[str, Any]) -> str:
    """Where, when and how the threads ran."""
    return machine(data)


# -- the GPU benchmark (benchmarks/gpu.py) ------------------------------------------

GPU_LABELS = {
    "ceiling": "ceiling (cuBLAS dot)",
    "l2loss-cupy": "l2loss, CuPy",
    "l2loss-cupy-full": "l2loss, CuPy, full path",
    "cupy-plain": "plain CuPy",
    "l2loss-torch": "l2loss, PyTorch",
    "torch-plain": "plain PyTorch",
    "torch-func-jvp": "`torch.func.jvp`",
    "jax-jit-jvp": "`jax.jit(jax.jvp)`",
    "l2loss-jax-jit": "l2loss under `jax.jit`",
    "l2loss-jax": "l2loss on JAX, eager",
    "l2loss-cupy-batched": "l2loss, CuPy",
    "cupy-plain-batched": "plain CuPy, `T @ d`",
    "l2loss-torch-batched": "l2loss, PyTorch",
    "jax-jit-vmap-jvp": "`jax.jit(jax.vmap(jax.jvp))`",
}
UNTILED = 2**62  # the tile sweep's "no tiles" size


def _label(key: str) -> str:
    return GPU_LABELS.get(key, f"`{key}`")


def _by_key(
    columns: Sequence[str],
    values: Sequence[dict[str, float]],
    fmt: Callable[[float], str] = ratio,
    label: Callable[[str], str] = _label,
) -> str:
    """One row per key of ``values`` (in first-seen order), one column per entry."""
    keys = list(dict.fromkeys(k for v in values for k in v))
    rows = [[label(k), *(fmt(v[k]) if k in v else "" for v in values)] for k in keys]
    return table(["", *columns], rows)


def _gpu_entries(data: dict[str, Any], key: str) -> list[dict[str, Any]]:
    if key not in data:
        raise ReportError(f"the GPU JSON has no {key!r}; it has {sorted(data)}")
    entries: list[dict[str, Any]] = data[key]
    return entries


@renderer("gpu", "bench-gpu.json")
def gpu(data: dict[str, Any], dtype: str = "float64") -> str:
    """Fraction of the ceiling against N (higher is faster), and the ceiling in GB/s."""
    entries = _gpu_entries(data, dtype)
    body = _by_key([size(e["n"]) for e in entries], [e["fraction"] for e in entries])
    ceiling = "| ceiling GB/s | " + " | ".join(num(e["ceiling_GBps"]) for e in entries) + " |"
    return body + "\n" + ceiling


@renderer("gpu-batched", "bench-gpu.json")
def gpu_batched(data: dict[str, Any], dtype: str = "float64") -> str:
    """``batched=True``: fraction of the ceiling for N items and K directions."""
    entries = _gpu_entries(data, f"batched-{dtype}")
    columns = [f"{size(e['n'])}, K={e['k']}" for e in entries]
    return _by_key(columns, [e["fraction"] for e in entries])


@renderer("gpu-axis", "bench-gpu.json")
def gpu_axis(data: dict[str, Any], dtype: str = "float64") -> str:
    """Per-sample losses (``axis=-1``): fraction of the ceiling per shape."""
    entries = _gpu_entries(data, f"axis-{dtype}")
    return _by_key([shape(e["shape"]) for e in entries], [e["fraction"] for e in entries])


def _per_size(data: dict[str, Any], kind: str) -> tuple[list[str], list[dict[str, float]]]:
    """The ``{kind}-{dtype}`` tables of the GPU JSON, as (columns, values by N)."""
    columns, values = [], []
    for key in (k for k in data if k.startswith(f"{kind}-")):
        dtype = key.removeprefix(f"{kind}-")
        for n, v in data[key].items():
            columns.append(f"{size(int(n))} {dtype_short(dtype)}")
            values.append(v)
    if not values:
        raise ReportError(f"the GPU JSON has no {kind}-* tables")
    return columns, values


@renderer("gpu-kernels", "bench-gpu.json")
def gpu_kernels(data: dict[str, Any]) -> str:
    """The kernels the rule is made of, timed alone: GB/s moved, per N and dtype."""
    columns, values = _per_size(data, "parts")

    def label(key: str) -> str:  # "cupy sum(a*b)" -> CuPy, `sum(a*b)`
        library, _, kernel = key.partition(" ")
        return f"{LIBRARIES.get(library, library)}, `{kernel}`"

    return _by_key(columns, values, lambda x: f"{x:.0f}", label)


@renderer("gpu-tiles", "bench-gpu.json")
def gpu_tiles(data: dict[str, Any]) -> str:
    """The tile sweep: fraction of the ceiling per library and tile size (Mi items)."""
    columns, values = _per_size(data, "tiles")
    renamed = []
    for v in values:
        out = {}
        for key, x in v.items():
            library, _, tile = key.rpartition("-")
            items = int(tile)
            label = "untiled" if items >= UNTILED else f"{items // 2**20} Mi"
            out[f"{LIBRARIES.get(library, library)}, {label}"] = x
        renamed.append(out)
    return _by_key(columns, renamed, label=str)


@renderer("gpu-machine", "bench-gpu.json")
def gpu_machine(data: dict[str, Any]) -> str:
    """The GPU, the libraries' versions and the rounds of the GPU benchmark."""
    m = data["machine"]
    gpu_name = m["gpu"].split(",")[0]
    libraries = ", ".join(
        f"{label} {m[key]}"
        for key, label in (
            ("cupy_version", "CuPy"),
            ("torch_version", "PyTorch"),
            ("jax_version", "JAX"),
            ("numpy", "NumPy"),
            ("python", "Python"),
        )
        if m.get(key)
    )
    return (
        f"Measured on an {gpu_name} ({m['sms']} SMs, {m['l2_bytes'] / 2**20:.0f} MiB L2) "
        f"with {libraries}; medians of {data['rounds']} rounds, "
        f"{data['seconds']:.0f} s of benchmark."
    )


# -- blocks -------------------------------------------------------------------------

_START = re.compile(r"<!-- report: (?P<spec>[^>]*?) -->")


@dataclass(frozen=True)
class Block:
    """One generated block of a page: its spec, where its content lies, its line."""

    spec: str
    start: int  # offset just after the start marker
    end: int  # offset of the end marker
    line: int

    @property
    def name(self) -> str:
        return self.spec.split()[0]

    @property
    def args(self) -> dict[str, str]:
        pairs = [word.partition("=") for word in self.spec.split()[1:]]
        bad = [key for key, eq, _ in pairs if not eq]
        if bad:
            raise ReportError(f"block {self.spec!r}: arguments are KEY=VALUE, got {bad}")
        return {key: value for key, _, value in pairs}


def find_blocks(text: str, where: str = "<text>") -> list[Block]:
    """The generated blocks of a page, in order."""
    blocks = []
    for m in _START.finditer(text):
        line = text.count("\n", 0, m.start()) + 1
        name = m["spec"].split()[0] if m["spec"].split() else ""
        if not name:
            raise ReportError(f"{where}:{line}: a report block without a name")
        end = text.find(f"<!-- /report: {name} -->", m.end())
        if end < 0:
            raise ReportError(f"{where}:{line}: block {name!r} has no <!-- /report: {name} -->")
        if blocks and m.start() < blocks[-1].end:
            raise ReportError(f"{where}:{line}: block {name!r} starts inside another block")
        blocks.append(Block(m["spec"], m.end(), end, line))
    return blocks


def generate(block: Block, root: Path = ROOT, where: str = "<text>") -> str:
    """The content of ``block`` as its JSON gives it (blank lines around the Markdown)."""
    here = f"{where}:{block.line}: block {block.spec!r}"
    if block.name not in RENDERERS:
        raise ReportError(f"{here}: no renderer {block.name!r}; known: {sorted(RENDERERS)}")
    r = RENDERERS[block.name]
    path = root / STATIC / r.source
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ReportError(f"{here}: {STATIC / r.source} does not exist") from None
    try:
        args = block.args
        inspect.signature(r.render).bind(data, **args)
    except TypeError as e:
        raise ReportError(f"{here}: {e}") from None
    except ReportError as e:
        raise ReportError(f"{where}:{block.line}: {e}") from None
    try:
        markdown = r.render(data, **args)
    except ReportError as e:
        raise ReportError(f"{here}: {e}") from None
    except (KeyError, TypeError, ValueError) as e:
        raise ReportError(f"{here}: {STATIC / r.source} is not what it expects ({e!r})") from e
    return "\n\n" + markdown.strip() + "\n\n"


def render_page(text: str, root: Path = ROOT, where: str = "<text>") -> tuple[str, list[Block]]:
    """The page with every block regenerated, and the blocks that changed."""
    out, changed, pos = [], [], 0
    for block in find_blocks(text, where):
        content = generate(block, root, where)
        out += [text[pos : block.start], content]
        if text[block.start : block.end] != content:
            changed.append(block)
        pos = block.end
    out.append(text[pos:])
    return "".join(out), changed


def pages(root: Path) -> list[Path]:
    """README.md and every page of the docs."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a block differs")
    p.add_argument("--list", action="store_true", help="list the renderers and exit")
    p.add_argument("--root", type=Path, default=ROOT, help="the repository (default: this one)")
    p.add_argument("files", nargs="*", type=Path, help="default: README.md and docs/*.md")
    args = p.parse_args(argv)
    if args.list:
        for name, r in RENDERERS.items():
            print(f"{name:<16} {r.source:<20} {r.summary}")
        return 0
    status, total, stale = 0, 0, 0
    for path in args.files or pages(args.root):
        where = str(path.relative_to(args.root) if path.is_relative_to(args.root) else path)
        text = path.read_text(encoding="utf-8")
        try:
            new, changed = render_page(text, args.root, where)
        except ReportError as e:
            print(f"error: {e}", file=sys.stderr)
            status = 1
            continue
        total += len(find_blocks(text, where))
        stale += len(changed)
        for block in changed:
            source = STATIC / RENDERERS[block.name].source
            verb = "differs from" if args.check else "rewritten from"
            print(f"{where}:{block.line}: block {block.spec!r} {verb} {source}")
        if changed and not args.check:
            path.write_text(new, encoding="utf-8")
    if args.check and stale:
        print("run `python benchmarks/report.py` to regenerate them", file=sys.stderr)
        status = 1
    if not status:
        done = "match their JSON" if args.check else f"generated, {stale} rewritten"
        print(f"{total} report block(s) {done}")
    return status


if __name__ == "__main__":
    sys.exit(main())
