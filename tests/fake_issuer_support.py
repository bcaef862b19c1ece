"""What the tests/test_fake_issuer*.py files share: the ``call`` fixture, the issuer they
test (``FAKE_ISSUER``), a PyJWT cross-check and the client-credentials form.

Test modules set ``pytestmark = FAKE_ISSUER`` so the suite's ``fake`` fixture is a default
ES256 FakeIssuer, and import ``call`` with a redundant alias (``call as call``), which marks
it as used on purpose.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import jwt
import pytest

from resource_guard.testing import FakeIssuer

__all__ = ["FAKE_ISSUER", "GOOD", "MODES", "TLS", "Call", "call", "verify"]

Call = Callable[..., httpx.Response]
"""Type of the ``call`` fixture: ``call(method, url, raw=False, **httpx_options)``."""

MODES = ("transport-sync", "transport-async", "loopback")
"""The three ways ``call`` reaches the fake: sync transport, async transport, loopback HTTP."""

TLS = ssl.create_default_context()  # built once: every httpx client would build its own

GOOD = {"grant_type": "client_credentials"}
"""The form of a well-formed client-credentials token request."""


FAKE_ISSUER = pytest.mark.fake_issuer(algorithm="ES256")
"""The issuer under test: FakeIssuer's defaults, with ES256 keys (quick to generate)."""


def _raw(reply: httpx.Response, wire: bytes) -> httpx.Response:
    """The reply with its body exactly as sent (not decompressed)."""
    headers = [(k, v) for k, v in reply.headers.multi_items() if k != "content-encoding"]
    raw = httpx.Response(reply.status_code, headers=headers, content=wire)
    raw.extensions["content-encoding"] = reply.headers.get("content-encoding")
    return raw


@pytest.fixture(params=MODES)
def call(request: pytest.FixtureRequest, fake: FakeIssuer) -> Iterator[Call]:
    """``call(method, url, raw=False, **kw)`` over the sync transport, the async one or
    loopback HTTP; ``raw=True`` returns the body as sent on the wire."""

    def sync_call(client: httpx.Client) -> Call:
        def call(method: str, url: str, raw: bool = False, **options: Any) -> httpx.Response:
            with client.stream(method, url, **options) as reply:
                if raw:
                    return _raw(reply, b"".join(reply.iter_raw()))
                reply.read()
                return reply

        return call

    if request.param == "transport-sync":
        with fake.client() as client:
            yield sync_call(client)
    elif request.param == "transport-async":

        def call_async(method: str, url: str, raw: bool = False, **options: Any) -> httpx.Response:
            async def run() -> httpx.Response:
                async with (
                    fake.async_client() as client,
                    client.stream(method, url, **options) as reply,
                ):
                    if raw:
                        return _raw(reply, b"".join([chunk async for chunk in reply.aiter_raw()]))
                    await reply.aread()
                    return reply

            return asyncio.run(run())

        yield call_async
    else:
        with fake.serve(), httpx.Client(verify=TLS) as client:
            yield sync_call(client)


def verify(fake: FakeIssuer, token: str, **options: Any) -> dict[str, Any]:
    """Verify ``token`` with PyJWT against the published JWKS."""
    header = jwt.get_unverified_header(token)
    key = jwt.PyJWKSet.from_dict(fake.jwks())[header["kid"]]
    options.setdefault("audience", fake.audience)
    decoded: dict[str, Any] = jwt.decode(
        token, key, algorithms=[header["alg"]], issuer=fake.issuer, **options
    )
    return decoded
