"""The resource_guard.client package: one class, the same from the package and the client.

Its imports (the core only, no underscore names) are held by tests/test_architecture.py,
its ``__all__`` by tests/test_exports.py.
"""

from __future__ import annotations

import resource_guard
import resource_guard.client


def test_the_top_level_package_exports_the_same_class() -> None:
    assert resource_guard.ClientCredentialsAuth is resource_guard.client.ClientCredentialsAuth
