"""The package's public face: a sorted __all__ that names exactly what it exports."""

from __future__ import annotations

import importlib.metadata
import types

import pytest

import resource_guard
import resource_guard.exceptions


def test_all_is_sorted_and_complete() -> None:
    public = {
        name
        for name, value in vars(resource_guard).items()
        if name[0].isalpha() and not isinstance(value, types.ModuleType)  # not submodules
    }
    assert sorted(resource_guard.__all__) == resource_guard.__all__
    assert set(resource_guard.__all__) - {"__version__"} == public


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
