"""Sessions: one per array backend, plus lint, typecheck, docs, bench and scale.

``nox`` runs every CPU backend, lint, typecheck and docs (which also runs
every example and every code block of the docs); ``nox -s tests-cupy``
needs a CUDA device and skips cleanly without one.
"""

from __future__ import annotations

import shutil

import nox

nox.needs_version = ">=2024.3.2"
nox.options.default_venv_backend = "virtualenv"
nox.options.reuse_existing_virtualenvs = True
nox.options.error_on_missing_interpreters = True

PYTHON = "3.11"
PYPROJECT = nox.project.load_toml("pyproject.toml")


def _group(name: str) -> list[str]:
    return list(nox.project.dependency_groups(PYPROJECT, name))


# Extra packages each backend's session installs next to the test dependencies.
# torch is pinned to the CPU build that pip finds on local disk; an unpinned torch
# would pull a multi-GB CUDA build.
BACKENDS = {
    "numpy": [],
    "strict": ["array-api-strict>=2.3"],
    "torch": ["torch==2.13.0"],
    "jax": ["jax>=0.4.30"],
    "dask": ["dask[array]>=2024.8", "distributed>=2024.8"],
    "cupy": ["cupy-cuda12x"],
}
# The oracles: JAX and PyTorch autodiff check every backend's numbers.
ORACLES = ["jax>=0.4.30", "torch==2.13.0"]


def _install_tests(session: nox.Session, *extra: str) -> None:
    session.install("-e", ".", *_group("test"), *extra)


def _gpu_present() -> bool:
    return shutil.which("nvidia-smi") is not None


for _name, _deps in BACKENDS.items():

    @nox.session(
        name=f"tests-{_name}",
        python=PYTHON,
        default=_name != "cupy",
    )
    def _tests(session: nox.Session, _name: str = _name, _deps: list[str] = _deps) -> None:
        if _name == "cupy" and not _gpu_present():
            session.skip(
                "no CUDA device on this machine (nvidia-smi not found): CuPy is not tested here"
            )
        _install_tests(session, *_deps, *ORACLES)
        session.run(
            "pytest",
            "-m",
            "not docs",
            *session.posargs,
            env={"L2LOSS_BACKEND": _name, "JAX_ENABLE_X64": "1"},
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


@nox.session(python=PYTHON, default=False)
def bench(session: nox.Session) -> None:
    """Benchmark against peers and the read-bandwidth ceiling (``-- --quick``: < 1 min)."""
    session.install("-e", ".", *_group("bench"))
    session.run("python", "benchmarks/run.py", *session.posargs)


@nox.session(python=PYTHON)
def docs(session: nox.Session) -> None:
    """Build the HTML docs (warnings are errors) and run every code block in them."""
    session.install("-e", ".", *_group("docs"))
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")
    session.run("pytest", "-m", "docs", *session.posargs)


@nox.session(python=PYTHON, default=False)
def scale(session: nox.Session) -> None:
    """The large Dask run: about 3e8 float64 per input on a LocalCluster."""
    session.install("-e", ".", *_group("scale"))
    session.run("python", "examples/dask_scale.py", *session.posargs)
