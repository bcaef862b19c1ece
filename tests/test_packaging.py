"""What a newcomer installs: the sdist and wheel (license, metadata, no partial test suite),
the extras, and the Makefile that sets up .venv.

The packages are built once, offline, from a copy of the working tree with the venv's
setuptools (``python -m build --no-isolation``, as ``make dist`` does; about 2 s).
"""

from __future__ import annotations

import ast
import importlib.metadata
import importlib.util
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
PROJECT = PYPROJECT["project"]
LICENSE = ROOT / "LICENSE"
NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", "__pycache__", "*.egg-info", ".*_cache", ".hypothesis", ".coverage*",
    "build", "dist", "site", "htmlcov",
)  # fmt: skip


# -- the built packages ---------------------------------------------------------------------


@dataclass(frozen=True)
class Built:
    sdist: Path
    wheel: Path

    def sdist_names(self) -> list[str]:
        with tarfile.open(self.sdist) as archive:
            return [name.partition("/")[2] for name in archive.getnames()]

    def wheel_names(self) -> list[str]:
        with zipfile.ZipFile(self.wheel) as archive:
            return archive.namelist()

    def wheel_text(self, name: str) -> str:
        with zipfile.ZipFile(self.wheel) as archive:
            return archive.read(name).decode("utf-8")


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Built:
    """sdist, then the wheel built from that sdist (so the sdist must be complete)."""
    if importlib.util.find_spec("build") is None:  # pragma: no cover - dev extra missing
        pytest.skip("the build package is not installed: pip install -e '.[dev]'")
    base = tmp_path_factory.mktemp("packaging")
    tree, out = base / "tree", base / "dist"
    shutil.copytree(ROOT, tree, ignore=NOT_COPIED)
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(tree)],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    [sdist] = out.glob("*.tar.gz")
    [wheel] = out.glob("*.whl")
    return Built(sdist, wheel)


def test_the_sdist_ships_the_library_and_notices_and_no_tests(built: Built) -> None:
    names = set(built.sdist_names())
    for notice in ("LICENSE", "README.md", "CHANGELOG.md", "SECURITY.md", "pyproject.toml"):
        assert notice in names, f"the sdist lacks {notice}"
    sources = {path.relative_to(ROOT).as_posix() for path in (ROOT / "src").rglob("*.py")}
    assert sources <= names, f"the sdist lacks {sorted(sources - names)}"
    assert "src/resource_guard/py.typed" in names
    # all of the test suite or none of it: none (it needs examples/, docs/, benchmarks/)
    assert not [name for name in names if name.startswith("tests/") or "conftest" in name]


def test_the_wheel_carries_the_license_and_the_metadata(built: Built) -> None:
    names = built.wheel_names()
    [dist_info] = {name.split("/")[0] for name in names if ".dist-info/" in name}
    license_text = built.wheel_text(f"{dist_info}/licenses/LICENSE")
    assert license_text == LICENSE.read_text(encoding="utf-8")
    assert "resource_guard/py.typed" in names
    assert all(name.startswith(("resource_guard/", dist_info)) for name in names)

    metadata = built.wheel_text(f"{dist_info}/METADATA").split("\n\n")[0].splitlines()
    assert "License-Expression: Apache-2.0" in metadata
    assert "License-File: LICENSE" in metadata
    classifiers = {line.partition(": ")[2] for line in metadata if line.startswith("Classifier")}
    assert {
        "Development Status :: 3 - Alpha",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Programming Language :: Python :: 3.13",
        "Framework :: FastAPI",
        "Framework :: Pytest",
        "Framework :: AsyncIO",
        "Topic :: Security",
        "Typing :: Typed",
    } <= classifiers
    # setuptools refuses "License ::" classifiers beside a license expression (PEP 639)
    entry_points = built.wheel_text(f"{dist_info}/entry_points.txt")
    assert "resource-guard = resource_guard.cli:main" in entry_points
    assert "resource_guard = resource_guard.testing.pytest_plugin" in entry_points


@pytest.mark.parametrize("page", ["README.md", "docs/quickstart.md"])
def test_the_wheel_the_docs_install_is_the_one_make_dist_builds(built: Built, page: str) -> None:
    named = re.findall(r"dist/(\S+?\.whl)", (ROOT / page).read_text(encoding="utf-8"))
    assert named, f"{page} does not say how to install the wheel"
    assert set(named) == {built.wheel.name}


def test_the_license_is_the_full_apache_2_text() -> None:
    text = LICENSE.read_text(encoding="utf-8")
    assert text.lstrip().startswith("Apache License\n")
    assert "Version 2.0, January 2004" in text
    sections = re.findall(r"^\s+(\d)\. [A-Z][a-z]", text, re.MULTILINE)
    assert sections == [str(n) for n in range(1, 10)]
    assert "END OF TERMS AND CONDITIONS" in text
    assert "APPENDIX: How to apply the Apache License to your work." in text
    assert len(text) > 11000


# -- extras: what the code imports ----------------------------------------------------------


def _name(requirement: str) -> str:
    match = re.match(r"[A-Za-z0-9._-]+", requirement)
    assert match is not None, requirement
    return re.sub(r"[-_.]+", "-", match[0]).lower()


def _third_party_imports(paths: Iterable[Path]) -> set[str]:
    """Distributions (normalised names) of the top-level modules imported at run time."""
    modules: set[str] = set()
    for path in paths:
        tree = ast.parse(path.read_text(encoding="utf-8"))
        type_only = {
            id(child)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
            for child in ast.walk(node)
        }
        for node in ast.walk(tree):
            if id(node) in type_only:
                continue
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
                modules.add(node.module.split(".")[0])
    modules -= {*sys.stdlib_module_names, "resource_guard", "examples", "__future__"}
    distributions = importlib.metadata.packages_distributions()
    return {_name(distributions[module][0]) for module in modules}


def test_the_testing_extra_is_what_resource_guard_testing_imports() -> None:
    """Beyond the core dependencies, resource_guard.testing imports pytest (the plugin)
    and nothing else: the fake issuer's server is the standard library's."""
    imported = _third_party_imports((ROOT / "src" / "resource_guard" / "testing").glob("*.py"))
    core = {_name(requirement) for requirement in PROJECT["dependencies"]}
    extra = {_name(requirement) for requirement in PROJECT["optional-dependencies"]["testing"]}
    assert imported - core == extra


def _make_variable(name: str) -> str:
    match = re.search(rf"^{name} := (.*)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match is not None, f"the Makefile has no {name}"
    return match[1].strip()


def test_make_demo_installs_what_the_demo_needs_and_no_dev_tools() -> None:
    extras = _make_variable("DEMO_EXTRAS").split(",")
    requirements = [*_make_variable("DEMO_REQUIREMENTS").split(), *PROJECT["dependencies"]]
    for extra in extras:
        requirements += PROJECT["optional-dependencies"][extra]
    installed = {_name(requirement) for requirement in requirements}
    with_theirs = installed | {
        _name(requirement)
        for name in installed
        for requirement in importlib.metadata.requires(name) or ()
        if "extra ==" not in requirement
    }
    demo = ROOT / "examples" / "demo.py"
    needed = _third_party_imports([demo, ROOT / "examples" / "fastapi_app.py"])
    needed |= {_name(module) for module in re.findall(r'"-m", "(\w+)"', demo.read_text())}
    assert "uvicorn" in needed
    assert needed <= with_theirs, f"make demo does not install {needed - with_theirs}"
    assert not {"mypy", "ruff", "mkdocs", "pytest", "hypothesis"} & installed


# -- the Makefile ---------------------------------------------------------------------------

MAKE = shutil.which("make")
needs_make = pytest.mark.skipif(MAKE is None, reason="make is not installed")


def _phony() -> list[str]:
    match = re.search(r"^\.PHONY: (.*)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert match is not None
    return match[1].split()


def _make(directory: Path, *arguments: str) -> str:
    assert MAKE is not None
    result = subprocess.run(
        [MAKE, "--no-print-directory", *arguments],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


@needs_make
def test_every_phony_target_has_a_rule_and_a_help_line() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z]+):", makefile, re.MULTILINE))
    phony = _phony()
    assert {"demo", "test", "help", "dist"} <= set(phony)
    assert set(phony) == targets, "every phony target needs a rule, every rule a .PHONY entry"
    lines = _make(ROOT, "-s", "help").splitlines()
    described = {line.split()[0]: line.split(maxsplit=1)[1:] for line in lines[1:]}
    assert list(described) == phony
    assert all(described.values()), "each target gets one line of description"


@needs_make
def test_make_demo_and_make_test_install_into_one_venv_with_their_own_stamps(
    tmp_path: Path,
) -> None:
    """On a fresh clone (dry run): demo installs the package, FastAPI and uvicorn only;
    test installs the dev extra; each has its stamp, so demo-then-test installs both."""
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    demo, test = _make(tmp_path, "-n", "demo"), _make(tmp_path, "-n", "test")
    assert "-m venv .venv" in demo
    assert "-m venv .venv" in test
    assert "'.[fastapi]' 'uvicorn" in demo
    assert "[dev]" not in demo.replace("dev-installed", "")
    assert "-e '.[dev]'" in test
    assert "touch .venv/.demo-installed" in demo
    assert ".venv/bin/python examples/demo.py" in demo
    assert "touch .venv/.dev-installed" in test
    for command in ("ruff check", "ruff format --check", "mypy", "coverage run -m pytest"):
        assert command in test


def test_ci_runs_exactly_make_test() -> None:
    lines = (ROOT / ".ci" / "run").read_text().splitlines()
    commands = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    assert commands[-1] == "make test"
