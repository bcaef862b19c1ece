"""The fixture of the middleware tests: the orders app behind BearerAuthMiddleware."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette

from resource_guard import TokenVerifier

from ._harness import protect


@pytest.fixture
def app(verifier: TokenVerifier) -> Starlette:
    """The orders app behind the middleware, ``/health`` and ``/docs/*`` public."""
    return protect(verifier, public_paths=("/health", "/docs/*"))
