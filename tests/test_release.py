"""The release and CI files agree with the code they describe.

The public CI workflow cannot run here, so its sessions are checked against
``nox --list``; the pre-commit hook against the lint session's ruff; the Read
the Docs build against the docs group; the version against its one source; and
the pages against talk of how the project is made.
"""

from __future__ import annotations

import importlib.metadata
import itertools
import json
import re
import shlex
import subprocess
import sys
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest

import l2loss

yaml = pytest.importorskip("yaml", reason="needs PyYAML (the test dependency group)")
pytest.importorskip("nox", reason="needs nox (the test dependency group)")

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def _yaml(name: str) -> Any:
    return yaml.safe_load((ROOT / name).read_text(encoding="utf-8"))


@cache
def nox_list(*sessions: str) -> tuple[str, ...]:
    """The sessions ``nox`` runs (or, given names, those and what they require)."""
    argv = [sys.executable, "-m", "nox", "--list", "--json"]
    done = subprocess.run(
        [*argv, *(["-s", *sessions] if sessions else [])],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, f"nox --list -s {' '.join(sessions)}:\n{done.stderr}"
    return tuple(s["session"] for s in json.loads(done.stdout))


def _nox_sessions(command: str) -> list[str]:
    """The sessions a shell command names with ``nox -s A B ...`` (none: the default)."""
    words = shlex.split(command, comments=True)
    if "nox" not in words:
        return []
    names, after = [], words[words.index("nox") + 1 :]
    for flag, rest in zip(after, itertools.count(1), strict=False):
        if flag in ("-s", "--session", "--sessions"):
            names += list(itertools.takewhile(lambda w: not w.startswith("-"), after[rest:]))
    return names


def _expand(command: str, matrix: dict[str, list[Any]]) -> list[str]:
    """``command`` for every combination of the ``${{ matrix.KEY }}`` it uses."""
    keys = sorted(set(re.findall(r"\$\{\{\s*matrix\.(\w+)\s*\}\}", command)))
    out = []
    for values in itertools.product(*(matrix[k] for k in keys)):
        text = command
        for key, value in zip(keys, values, strict=True):
            text = re.sub(r"\$\{\{\s*matrix\." + key + r"\s*\}\}", str(value), text)
        out.append(text)
    return out


def ci_jobs() -> dict[str, dict[str, Any]]:
    jobs: dict[str, dict[str, Any]] = _yaml(".github/workflows/ci.yml")["jobs"]
    return jobs


def ci_sessions() -> dict[str, list[str]]:
    """Job name -> the nox sessions its steps run."""
    found: dict[str, list[str]] = {}
    for name, job in ci_jobs().items():
        matrix = job.get("strategy", {}).get("matrix", {})
        for step in job["steps"]:
            for command in _expand(step.get("run", ""), matrix):
                found.setdefault(name, []).extend(_nox_sessions(command))
    return found


# -- CI ---------------------------------------------------------------------------------


def test_ci_sessions_exist_and_cover_the_default_run() -> None:
    """Every session CI names exists; CI runs every session of ``nox`` (.ci/run)."""
    named = sorted({s for sessions in ci_sessions().values() for s in sessions})
    assert named, "the workflow runs no nox session"
    run_by_ci = set(nox_list(*named))  # fails, naming them, on unknown sessions
    missing = set(nox_list()) - run_by_ci
    assert not missing, f"sessions of the default run that CI does not run: {sorted(missing)}"


def test_ci_tests_every_supported_python() -> None:
    classifiers = PYPROJECT["project"]["classifiers"]
    supported = [c.rsplit(" :: ", 1)[1] for c in classifiers if re.search(r"3\.\d+$", c)]
    assert supported, "pyproject lists no Python version classifier"
    for job in ("tests", "quickstart"):
        assert ci_jobs()[job]["strategy"]["matrix"]["python"] == supported, job
    assert "tests-numpy" in ci_sessions()["tests"]


def test_ci_gpu_job_runs_the_gpu_script_on_a_gpu_runner() -> None:
    job = ci_jobs()["gpu"]
    assert job["runs-on"][0] == "self-hosted"
    assert "gpu" in job["runs-on"]
    commands = [step.get("run", "") for step in job["steps"]]
    assert any(shlex.split(c)[:2] == ["bash", "benchmarks/gpu.sh"] for c in commands if c)
    assert (ROOT / "benchmarks" / "gpu.sh").is_file()


def test_ci_script_runs_the_default_sessions() -> None:
    """.ci/run runs plain ``nox``: every default session, non-zero on a failure."""
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "set -euo pipefail" in script
    assert re.search(r"^python -m nox --non-interactive \"\$@\"$", script, re.M)
    assert {"tests-numpy", "lint", "typecheck", "docs"} <= set(nox_list())


# -- tools pinned in two places ---------------------------------------------------------


def test_pre_commit_runs_the_lint_sessions_ruff() -> None:
    (pin,) = [r for r in PYPROJECT["dependency-groups"]["lint"] if r.startswith("ruff")]
    assert re.fullmatch(r"ruff==[\w.]+", pin), f"the lint group must pin ruff exactly: {pin}"
    repos = _yaml(".pre-commit-config.yaml")["repos"]
    (ruff,) = [r for r in repos if r["repo"].endswith("/ruff-pre-commit")]
    assert ruff["rev"] == "v" + pin.removeprefix("ruff==")
    assert {h["id"] for h in ruff["hooks"]} == {"ruff-check", "ruff-format"}


def test_read_the_docs_builds_with_the_docs_group() -> None:
    config = _yaml(".readthedocs.yaml")
    install = " ".join(config["build"]["jobs"]["install"])
    assert "-e . --group docs" in install
    assert config["sphinx"] == {"configuration": "docs/conf.py", "fail_on_warning": True}
    assert "docs" in PYPROJECT["dependency-groups"]


# -- the version -----------------------------------------------------------------------


def test_version_has_one_source() -> None:
    project = PYPROJECT["project"]
    assert "version" not in project
    assert "version" in project["dynamic"]
    assert PYPROJECT["tool"]["hatch"]["version"]["path"] == "src/l2loss/__init__.py"
    assert re.fullmatch(r"\d+\.\d+\.\d+(?:\.dev\d+|(?:a|b|rc)\d+)?", l2loss.__version__)
    assert importlib.metadata.version("l2loss") == l2loss.__version__


KINDS = {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security", "Performance history"}


def test_changelog_has_unreleased_and_this_version() -> None:
    text = (ROOT / "CHANGELOG.md").read_text(encoding="utf-8")
    headings = re.findall(r"^## \[([^\]]+)\]", text, re.M)
    assert headings[0] == "Unreleased"
    assert l2loss.__version__ in headings
    # Each release: its date, and sections of Keep a Changelog's kinds.
    for heading, body in re.findall(r"^## \[([^\]]+)\](.*?)(?=^## |\Z)", text, re.M | re.S):
        if heading != "Unreleased":
            assert re.match(r" - \d{4}-\d{2}-\d{2}$", body.splitlines()[0]), heading
        kinds = re.findall(r"^### (.+)$", body, re.M)
        assert kinds, f"{heading} has no sections"
        assert set(kinds) <= KINDS, f"{heading}: {sorted(set(kinds) - KINDS)}"


# -- the pages -------------------------------------------------------------------------

PAGES = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").glob("*.md"))]


def test_commands_in_the_pages_name_real_sessions() -> None:
    """``nox -s NAME`` in the README, CONTRIBUTING and the docs names a session."""
    named = set()
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for command in re.findall(r"`([^`\n]*\bnox\b[^`\n]*)`|^\$ (.*nox.*)$", text, re.M):
            named.update(_nox_sessions(command[0] or command[1]))
    assert "tests-numpy" in named
    nox_list(*sorted(named))  # fails, naming them, on unknown sessions


# Pages being rewritten: until they are, these phrases may stay in them.
PENDING: set[str] = set()
PROCESS_TALK = re.compile(
    r"\b(?:this|that|previous|next|last|first|second|third|fourth|two|earlier|later)"
    r"\s+sessions?\b|\bsession's\b|\bthe issue\b|\bissue's\b|seed note|device tool"
    r"|closing note|the only way I see|previous run|lent through",
    re.I,
)


def test_pages_do_not_speak_of_how_the_project_is_made() -> None:
    """The docs are for users: no sessions, issues or tools of the project's making."""
    found = []
    for page in PAGES:
        name = page.relative_to(ROOT).as_posix()
        if name in PENDING:
            continue
        for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            found += [f"{name}:{number}: {m[0]!r}" for m in PROCESS_TALK.finditer(line)]
    assert not found, "\n".join(found)


def test_process_talk_is_recognised() -> None:
    assert PROCESS_TALK.search("the tables are the second session's last run")
    assert PROCESS_TALK.search("where the issue asked for 0.5")
    assert not PROCESS_TALK.search("`nox -s docs` is the docs session; sessions share one env")
