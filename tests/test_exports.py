"""The package's public face: a sorted __all__ that names exactly what it exports."""

from __future__ import annotations

import importlib
import importlib.metadata
import types

import pytest

import resource_guard
import resource_guard.exceptions


def test_every_error_is_exported_from_the_package() -> None:
    errors = set(resource_guard.exceptions.__all__)
    assert errors <= set(resource_guard.__all__)


def test_every_error_has_its_own_code() -> None:
    classes = {
        getattr(resource_guard.exceptions, name) for name in resource_guard.exceptions.__all__
    }
    codes = [cls.code for cls in classes]
    assert len(set(codes)) == len(codes)


def test_the_former_name_of_a_refused_algorithm_is_the_same_class() -> None:
    """Code catching UnsupportedAlgorithmError keeps working after the rename."""
    exceptions = resource_guard.exceptions
    assert exceptions.UnsupportedAlgorithmError is exceptions.AlgorithmNotAllowedError
    assert exceptions.AlgorithmNotAllowedError.code == "unsupported_algorithm"


def test_the_version_comes_from_the_package_metadata() -> None:
    assert resource_guard.__version__ == importlib.metadata.version("resource-guard")


@pytest.mark.parametrize(
    ("error", "description"),
    [
        (resource_guard.ExpiredTokenError(), "the token expired"),
        (
            resource_guard.InvalidSignatureError("bad signature for kid='k'"),
            "signature verification failed",
        ),
        (
            resource_guard.UnknownKeyError("no published key has kid 'k'"),
            "signature verification failed",
        ),
        (
            resource_guard.InvalidIssuerError("iss", "does not name the expected issuer"),
            "'iss' claim does not name the expected issuer",
        ),
    ],
    ids=["expired", "signature", "unknown-kid", "claim"],
)
def test_each_error_has_one_client_facing_description(
    error: resource_guard.InvalidTokenError, description: str
) -> None:
    assert error.description == description


FACADES = (
    "resource_guard",
    "resource_guard.client",
    "resource_guard.dpop",
    "resource_guard.introspection",
    "resource_guard.testing",
)
"""Modules that only re-export: every public attribute they hold is in ``__all__``."""
IMPLEMENTATIONS = (
    "resource_guard.cli",
    "resource_guard.dpop.redis",
    "resource_guard.exceptions",
    "resource_guard.fastapi",
    "resource_guard.mcp",
    "resource_guard.metadata",
    "resource_guard.middleware",
    "resource_guard.otel",
    "resource_guard.providers",
    "resource_guard.starlette",
    "resource_guard.testing.pytest_plugin",
)
"""Public modules with code of their own: what they define publicly is in ``__all__``."""


def isort_key(name: str) -> tuple[int, str]:
    """ruff's RUF022 order: CONSTANTS, then Classes, then the rest, each alphabetically."""
    if name.isupper():
        return (0, name)
    return (1, name) if name[0].isupper() else (2, name)


def public_names(module: types.ModuleType, *, defined_here: bool) -> set[str]:
    names = set()
    for name, value in vars(module).items():
        if name.startswith(("_", "pytest_")) or isinstance(value, types.ModuleType):
            continue  # private, a submodule, or a pytest hook (called by pytest, not users)
        if defined_here and getattr(value, "__module__", module.__name__) != module.__name__:
            continue  # imported for use, not offered
        if defined_here and not (isinstance(value, type) or callable(value)):
            continue  # module-level data is offered only when __all__ names it
        names.add(name)
    return names


@pytest.mark.parametrize("name", FACADES + IMPLEMENTATIONS)
def test_every_public_module_has_a_sorted_honest_all(name: str) -> None:
    """Sorted, nothing private, every name real, and every public definition listed."""
    module = importlib.import_module(name)
    exported: list[str] = module.__all__
    assert exported == sorted(exported, key=isort_key)
    assert [n for n in exported if n.startswith("_") and n != "__version__"] == []
    assert [n for n in exported if not hasattr(module, n)] == []
    public = public_names(module, defined_here=name not in FACADES)
    assert public - set(exported) - {"__version__"} == set()
