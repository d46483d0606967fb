"""Sessions: one per array backend, plus lint, typecheck, docs, dist and the benchmarks.

``nox`` runs every CPU backend's tests, lint, typecheck, the docs (which also run
every example and every code block of the docs) and dist, with the Python that runs
nox (any version l2loss supports). The backend sessions and the docs share one
environment, ``backends``: every CPU backend is tested against the same JAX and
PyTorch autodiff oracles, so one copy of them serves all. ``nox -s tests-cupy``
needs a CUDA device and skips cleanly without one.
"""

from __future__ import annotations

import os
import shutil
import sys
import tarfile
from pathlib import Path

import nox

# 2025.2.9: nox.project.dependency_groups.
nox.needs_version = ">=2025.2.9"
nox.options.default_venv_backend = "virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

PYPROJECT = nox.project.load_toml("pyproject.toml")
# The versions CI tests; quickstart checks each of them in a fresh environment.
SUPPORTED = ("3.11", "3.12", "3.13")


def _python() -> str | None:
    """The Python that runs nox when l2loss supports it (None tells nox so); else
    the newest supported one on PATH, else the oldest, which nox reports missing."""
    if sys.version_info >= (3, 11):  # noqa: UP036 (nox itself may run on an older Python)
        return None
    found = [v for v in SUPPORTED if shutil.which(f"python{v}")]
    return found[-1] if found else SUPPORTED[0]


PYTHON = _python()


def _group(*names: str) -> list[str]:
    """The requirements of dependency groups ``names``, each once."""
    return list(dict.fromkeys(nox.project.dependency_groups(PYPROJECT, *names)))


# The backends each test session selects (L2LOSS_BACKEND); all live in `backends`.
CPU_BACKENDS = ("numpy", "strict", "torch", "jax", "dask")
PYTEST_ENV = {"JAX_ENABLE_X64": "1"}


def _backends_pointer(session: nox.Session) -> Path:
    """The file where ``backends`` leaves its environment's location for the sessions
    that require it (one per Python: ``--force-python`` renames the sessions)."""
    return session.cache_dir / f"backends-env-{session.python or 'default'}"


@nox.session(python=PYTHON, default=False)
def backends(session: nox.Session) -> None:
    """The environment the backend test sessions and docs share (they require it)."""
    session.install("-e", ".", *_group("test", "backends", "docs"))
    _backends_pointer(session).write_text(session.virtualenv.location, encoding="utf-8")


def _in_backends(session: nox.Session, *args: str, env: dict[str, str] | None = None) -> None:
    """Run ``args`` in the environment of the ``backends`` session."""
    pointer = _backends_pointer(session)
    if not pointer.is_file():
        session.error("the backends environment is missing: run `nox -s backends`")
    location = Path(pointer.read_text(encoding="utf-8"))
    bindir = location / ("Scripts" if sys.platform == "win32" else "bin")
    path = os.pathsep.join([str(bindir), os.environ.get("PATH", "")])
    env = {"VIRTUAL_ENV": str(location), "PATH": path, **(env or {})}
    session.run(str(bindir / args[0]), *args[1:], env=env, external=True)


for _name in CPU_BACKENDS:

    @nox.session(name=f"tests-{_name}", python=PYTHON, venv_backend="none", requires=["backends"])
    def _tests(session: nox.Session, _name: str = _name) -> None:
        """The test suite on this backend, checked against the JAX and PyTorch oracles."""
        _in_backends(
            session,
            "python",
            "-m",
            "pytest",
            "-m",
            "not docs",
            *session.posargs,
            env={"L2LOSS_BACKEND": _name, **PYTEST_ENV},
        )


def _gpu_present() -> bool:
    return shutil.which("nvidia-smi") is not None


@nox.session(name="tests-cupy", python=PYTHON, default=False)
def tests_cupy(session: nox.Session) -> None:
    """CuPy's tests (a CUDA device; skips without one)."""
    if not _gpu_present():
        session.skip(
            "no CUDA device on this machine (nvidia-smi not found): CuPy is not tested here"
        )
    session.install("-e", ".", *_group("test", "oracles"), "cupy-cuda12x")
    session.run(
        "pytest", "-m", "not docs", *session.posargs, env={"L2LOSS_BACKEND": "cupy", **PYTEST_ENV}
    )


@nox.session(name="tests-torch-latest", python=PYTHON, default=False)
def tests_torch_latest(session: nox.Session) -> None:
    """PyTorch's tests on the newest torch the package index serves (a large download)."""
    session.install("-e", ".", *_group("test"), "jax>=0.4.30")
    session.install("--upgrade", "torch")
    session.run("python", "-c", "import torch; print('torch', torch.__version__)")
    session.run(
        "pytest", "-m", "not docs", *session.posargs, env={"L2LOSS_BACKEND": "torch", **PYTEST_ENV}
    )


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    """ruff check and ruff format --check."""
    session.install(*_group("lint"))
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    """mypy --strict on src/."""
    session.install("-e", ".", *_group("typecheck"))
    session.run("mypy")


@nox.session(python=PYTHON, venv_backend="none", requires=["backends"])
def docs(session: nox.Session) -> None:
    """Build the HTML docs (warnings are errors) and run every code block in them."""
    # The figures in the pages must be the ones their benchmark JSON gives.
    _in_backends(session, "python", "benchmarks/report.py", "--check")
    _in_backends(
        session, "sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html"
    )
    _in_backends(session, "python", "-m", "pytest", "-m", "docs", *session.posargs)


# What the sdist must hold to rebuild the package, test it and build its docs.
SDIST_NEEDS = (
    "pyproject.toml",
    "noxfile.py",
    "README.md",
    "CHANGELOG.md",
    "LICENSE",
    "src/l2loss/__init__.py",
    "src/l2loss/py.typed",
    "tests/conftest.py",
    "docs/conf.py",
    "examples",
    "benchmarks/report.py",
)


@nox.session(python=PYTHON)
def dist(session: nox.Session) -> None:
    """Build the sdist and the wheel, check them, and test the wheel installed alone."""
    session.install(*_group("dist"))
    tmp = Path(session.create_tmp()).resolve()
    for old in ("dist", "sdist", "venv"):
        shutil.rmtree(tmp / old, ignore_errors=True)
    # With no --sdist/--wheel, build makes the sdist and then the wheel from it,
    # so the wheel proves the sdist can rebuild the package.
    if not session.run("python", "-m", "build", "--outdir", str(tmp / "dist")):
        return  # --install-only: nothing is built, so nothing more to set up
    (sdist,) = (tmp / "dist").glob("l2loss-*.tar.gz")
    (wheel,) = (tmp / "dist").glob("l2loss-*.whl")
    session.run("twine", "check", "--strict", str(sdist), str(wheel))

    with tarfile.open(sdist) as tar:
        tar.extractall(tmp / "sdist", filter="data")
    (root,) = (tmp / "sdist").iterdir()
    missing = [p for p in SDIST_NEEDS if not (root / p).exists()]
    if missing:
        session.error(f"the sdist lacks {missing}")
    # The sdist's tests must import the installed wheel: with src/ gone, its
    # pytest configuration (pythonpath = ["src"]) can add no copy of the code.
    shutil.rmtree(root / "src")

    venv = tmp / "venv"
    session.run("python", "-m", "venv", str(venv))
    python = str(venv / ("Scripts" if sys.platform == "win32" else "bin") / "python")
    env = {"VIRTUAL_ENV": str(venv), "PYTHONPATH": None}
    with session.chdir(root):
        session.run(python, "-m", "pip", "install", "--quiet", str(wheel), env=env, external=True)
        session.run(python, "-m", "l2loss", env=env, external=True)
        session.run(
            python,
            "-c",
            "import importlib.metadata as m, l2loss; "
            "assert 'site-packages' in l2loss.__file__, l2loss.__file__; "
            "assert m.version('l2loss') == l2loss.__version__; "
            "print('l2loss', l2loss.__version__, 'from', l2loss.__file__)",
            env=env,
            external=True,
        )
        session.run(
            python, "-m", "pip", "install", "--quiet", *_group("test"), env=env, external=True
        )
        session.run(
            python,
            "-m",
            "pytest",
            "-m",
            "not docs",
            "-p",
            "no:cacheprovider",
            *session.posargs,
            env={**env, "L2LOSS_BACKEND": "numpy"},
            external=True,
        )


@nox.session(python=list(SUPPORTED), reuse_venv=False, default=False)
def quickstart(session: nox.Session) -> None:
    """The README's quickstart in a fresh environment: install, the main job, nox --list."""
    session.run("pip", "install", ".")
    session.run("python", "-m", "l2loss")
    session.run("pip", "install", "nox")
    session.run("nox", "--list")


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Benchmark against peers and the read-bandwidth ceiling (``-- --quick``: < 1 min)."""
    session.install("-e", ".", *_group("bench"))
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session(python=PYTHON, default=False)
def scale(session: nox.Session) -> None:
    """The large Dask run: about 3e8 float64 per input on a LocalCluster."""
    session.install("-e", ".", *_group("scale"))
    session.run("python", "examples/dask_scale.py", *session.posargs)
