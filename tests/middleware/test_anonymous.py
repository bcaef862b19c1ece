"""allow_anonymous: credential-less requests pass, tokens are still checked."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from resource_guard import (
    TokenVerifier,
)
from resource_guard.middleware import get_access_token
from resource_guard.testing import FakeIssuer
from tests.asgi_client import call, scope
from tests.helpers import bearer

from ._harness import protect

# -- anonymous mode --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [[], [(b"authorization", b"Basic dXNlcjpwYXNz")]],
    ids=["no-header", "other-scheme"],
)
async def test_anonymous_mode_lets_credential_less_requests_through(
    verifier: TokenVerifier, headers: list[tuple[bytes, bytes]]
) -> None:
    result = await call(protect(verifier, allow_anonymous=True), headers=headers)
    assert result.status == 200
    assert result.json() == {
        "path": "/orders",
        "authenticated": False,
        "name": "",
        "scopes": [],
        "subject": None,
    }


async def test_anonymous_mode_still_authenticates_tokens(
    verifier: TokenVerifier, fake: FakeIssuer
) -> None:
    app = protect(verifier, allow_anonymous=True)
    result = await call(app, headers=bearer(fake.mint("bob")))
    assert result.json()["subject"] == "bob"


def test_get_access_token_without_middleware_fails_loudly() -> None:
    request = Request(scope("http"))
    with pytest.raises(RuntimeError, match=r"add app\.add_middleware"):
        get_access_token(request)
