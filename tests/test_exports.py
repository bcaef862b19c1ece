"""The package's public face: a sorted __all__ that names exactly what it exports."""

from __future__ import annotations

import types

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
    classes = [
        getattr(resource_guard.exceptions, name) for name in resource_guard.exceptions.__all__
    ]
    codes = [cls.code for cls in classes]
    assert len(set(codes)) == len(codes)
