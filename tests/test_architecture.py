"""The layout docs/architecture.md draws, held by the source: imports point one way, from
the framework edge to the core, and no module uses another module's underscore names."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import resource_guard

SRC = Path(resource_guard.__file__).parent
CORE = {
    "_algorithms",
    "_b64",
    "_claims",
    "_client_auth",
    "_decisions",
    "_hybrid",
    "introspection",
    "diagnose",
    "dpop",
    "_discovery",
    "_fetch",
    "_issuers",
    "_jwks",
    "_jwk",
    "_jws",
    "_keyset",
    "_models",
    "_options",
    "_protocol",
    "_scopes",
    "_token_cache",
    "_verifier",
    "exceptions",
    "providers",
}
"""The resource-server core: no HTTP framework, nothing of the edge, client, CLI or testing."""
EDGE = {
    "_access",
    "_bearer_reply",
    "_bearer_request",
    "_dpop_request",
    "middleware",
    "fastapi",
    "starlette",
    "otel",
    "metadata",
    "mcp",
}
"""The framework edge: ASGI, Starlette and FastAPI; never the client, the CLI or testing."""
FRAMEWORKS = ("starlette", "fastapi", "uvicorn")


def modules() -> list[Path]:
    return sorted(SRC.rglob("*.py"))


def dotted(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[str, list[str]]]:
    """(absolute module, imported names) of every import in ``path``."""
    package = dotted(path) if path.name == "__init__.py" else dotted(path).rpartition(".")[0]
    found: list[tuple[str, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.extend((alias.name, []) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - node.level + 1]
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.append((module, [alias.name for alias in node.names]))
    return found


def top_module(module: str) -> str:
    """``_jwks`` for ``resource_guard._jwks``, ``client`` for ``resource_guard.client._x``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "resource_guard" else ""


@pytest.mark.parametrize("path", modules(), ids=lambda path: dotted(path))
def test_no_module_imports_another_module_s_underscore_names(path: Path) -> None:
    private = [
        (module, name)
        for module, names in imports(path)
        if module.startswith("resource_guard")
        for name in names
        if name.startswith("_") and name != "__version__" and not is_module(f"{module}.{name}")
    ]
    assert private == []


def is_module(name: str) -> bool:
    """True for a module of the package (``from . import _options`` imports a module)."""
    relative = Path(*name.split(".")[1:])
    return (SRC / relative).with_suffix(".py").exists() or (SRC / relative).is_dir()


def sources(name: str) -> list[Path]:
    """The files of module ``name``: ``name.py``, or every file of subpackage ``name/``."""
    folder = SRC / name
    return sorted(folder.rglob("*.py")) if folder.is_dir() else [SRC / f"{name}.py"]


@pytest.mark.parametrize("name", sorted(CORE))
def test_the_core_imports_no_framework_and_nothing_above_it(name: str) -> None:
    found = {module for path in sources(name) for module, _ in imports(path)}
    assert {m for m in found if m.split(".")[0] in FRAMEWORKS} == set()
    assert {m for m in found if top_module(m) and top_module(m) not in CORE} == set()


@pytest.mark.parametrize("name", sorted(EDGE))
def test_the_edge_imports_the_core_and_the_edge_only(name: str) -> None:
    found = {top_module(module) for path in sources(name) for module, _ in imports(path)} - {""}
    assert found - CORE - EDGE == set()


@pytest.mark.parametrize("path", sorted((SRC / "client").glob("*.py")), ids=lambda p: p.name)
def test_the_client_uses_the_core_only(path: Path) -> None:
    """The caller's side needs no framework edge, no CLI and no testing code."""
    found = {top_module(module) for module, _ in imports(path)} - {"", "client"}
    assert found - CORE == set()


STDLIB_TYPES = {"zlib._Decompress", "argparse._SubParsersAction"}
"""Underscore names of the standard library that annotations must name (no public alias)."""


@pytest.mark.parametrize("path", modules(), ids=lambda path: dotted(path))
def test_no_module_reaches_into_another_object_s_underscore_attributes(path: Path) -> None:
    """``other._x`` is a back door; only an object's own ``self._x`` / ``cls._x`` is fine."""
    reached = [
        ast.unparse(node)
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Attribute)
        and node.attr.startswith("_")
        and not node.attr.startswith("__")
        and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))
    ]
    assert [name for name in reached if name not in STDLIB_TYPES] == []
