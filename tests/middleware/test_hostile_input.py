"""Hostile Authorization headers and query strings never raise or hang."""

from __future__ import annotations

import asyncio

from hypothesis import given, settings
from hypothesis import strategies as st

from resource_guard import (
    TokenVerifier,
)
from resource_guard.testing import FakeIssuer
from tests.asgi_client import Result, call
from tests.helpers import ORDERS_AUDIENCE as AUDIENCE

from ._harness import assert_refusal, protect

# -- hostile input never raises or hangs ------------------------------------------------------

HEADER_BYTES = st.binary(max_size=80) | st.sampled_from(
    [b"Bearer ", b"bearer a.b.c", b"Bearer \r\n", b"Basic x", b"Bearer " + b"A" * 20000]
)


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(HEADER_BYTES, max_size=3),
    query=st.binary(max_size=40) | st.just(b"access_token=x"),
)
def test_any_authorization_bytes_get_a_clean_reply(values: list[bytes], query: bytes) -> None:
    async def scenario() -> Result:
        fake = FakeIssuer(audience=AUDIENCE, algorithm="ES256")
        verifier = TokenVerifier(fake.issuer, AUDIENCE, http_client=fake.async_client())
        app = protect(verifier)
        headers = [(b"authorization", value) for value in values]
        return await call(app, headers=headers, query=query)

    result = asyncio.run(scenario())
    assert result.status in (400, 401)
    assert_refusal(result, result.status, result.json()["error"])
