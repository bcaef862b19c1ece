"""The resource_guard.client package: its public face, and imports that respect privacy."""

from __future__ import annotations

import ast
from pathlib import Path

import resource_guard
import resource_guard.client

PACKAGE = Path(resource_guard.client.__file__).parent

KNOWN_PRIVATE_IMPORTS: set[tuple[str, str]] = set()
"""Underscore names the client takes from a neighbour: none."""


def test_the_top_level_package_exports_the_same_class() -> None:
    assert resource_guard.ClientCredentialsAuth is resource_guard.client.ClientCredentialsAuth


def test_no_client_module_imports_a_neighbour_s_underscore_names() -> None:
    """What a module needs from outside the package is public API (DESIGN.md, Layout)."""
    found: set[tuple[str, str]] = set()
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.ImportFrom):
                continue
            module = node.module or ""
            outside = node.level >= 2 or (
                node.level == 0
                and module.startswith("resource_guard")
                and not module.startswith("resource_guard.client")
            )
            if outside:
                found |= {
                    (module.rpartition(".")[2], alias.name)
                    for alias in node.names
                    if alias.name.startswith("_")
                }

    assert found == KNOWN_PRIVATE_IMPORTS
