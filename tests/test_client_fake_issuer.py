"""ClientCredentialsAuth end to end against FakeIssuer: in process, over real loopback HTTP,
through a protected Starlette app, and across a process restart with the disk cache."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import parse_qsl

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from resource_guard import TokenVerifier
from resource_guard.client import ClientCredentialsAuth
from resource_guard.exceptions import TokenRequestError
from resource_guard.middleware import BearerAuthMiddleware
from resource_guard.testing import FakeIssuer

AUDIENCE = "api://orders"
CLIENT_ID = "billing:worker"
SECRET = "p@ss:wörd+/ &="


pytestmark = pytest.mark.fake_issuer(audience=AUDIENCE)


@pytest.fixture(autouse=True)
def registered_client(fake: FakeIssuer) -> None:
    """Every test's ``fake`` knows the billing worker (CLIENT_ID, SECRET)."""
    fake.register_client(CLIENT_ID, SECRET, scopes=("orders:read", "orders:write"))


def claims(token: str) -> dict[str, object]:
    """The payload, unverified: the verifier tests prove signatures; here we read claims."""
    payload: dict[str, object] = jwt.decode(token, options={"verify_signature": False})
    return payload


def in_process_auth(fake: FakeIssuer, **options: object) -> ClientCredentialsAuth:
    settings: dict[str, object] = {
        "token_url": fake.token_endpoint,
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "http_client": (fake.client(), fake.async_client()),
    }
    settings.update(options)
    return ClientCredentialsAuth(**settings)  # type: ignore[arg-type]


# -- in process -------------------------------------------------------------------------------


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
def test_both_auth_methods_get_a_token_carrying_the_requested_scope(
    fake: FakeIssuer, auth_method: str
) -> None:
    auth = in_process_auth(fake, auth_method=auth_method, scopes="orders:read")

    token = claims(auth.get_token())

    assert token["client_id"] == CLIENT_ID
    assert token["scope"] == "orders:read"
    assert token["aud"] == AUDIENCE
    assert fake.counts["token"] == 1


async def test_auth0_style_body_credentials_and_audience(fake: FakeIssuer) -> None:
    fake.register_client("m2m", "m2m-secret", audience=("https://orders.example.com/", AUDIENCE))
    auth = in_process_auth(
        fake,
        client_id="m2m",
        client_secret="m2m-secret",
        auth_method="client_secret_post",
        audience="https://orders.example.com/",
    )

    token = claims(await auth.aget_token())

    assert token["aud"] == "https://orders.example.com/"
    assert token["client_id"] == "m2m"


async def test_the_token_endpoint_is_discovered_from_the_issuer(fake: FakeIssuer) -> None:
    auth = in_process_auth(fake, token_url=None, issuer=fake.issuer)

    await auth.aget_token()
    await auth.aget_token()

    assert auth.token_url == fake.token_endpoint
    assert (fake.counts["discovery"], fake.counts["token"]) == (1, 1)


@pytest.mark.parametrize(
    ("options", "error", "status"),
    [
        ({"client_secret": "wrong"}, "invalid_client", 401),
        ({"client_id": "nobody"}, "invalid_client", 401),
        ({"scopes": "admin"}, "invalid_scope", 400),
    ],
    ids=["wrong-secret", "unknown-client", "scope-not-allowed"],
)
def test_refusals_carry_the_rfc_6749_error(
    fake: FakeIssuer, options: dict[str, object], error: str, status: int
) -> None:
    auth = in_process_auth(fake, **options)

    with pytest.raises(TokenRequestError) as caught:
        auth.get_token()

    assert (caught.value.error, caught.value.status_code) == (error, status)
    assert "wrong" not in str(caught.value)
    assert fake.counts["token"] == 1


async def test_a_token_endpoint_outage_is_retried_a_bounded_number_of_times(
    fake: FakeIssuer,
) -> None:
    fake.fault("status", endpoint="token", status=503)
    auth = in_process_auth(fake, retries=2, retry_backoff=0.0)

    with pytest.raises(TokenRequestError) as caught:
        await auth.aget_token()

    assert caught.value.status_code == 503
    assert fake.counts["token"] == 3


async def test_a_passing_outage_is_ridden_out(fake: FakeIssuer) -> None:
    fake.fault("status", endpoint="token", status=502, times=1)
    auth = in_process_auth(fake, retry_backoff=0.0)

    assert claims(await auth.aget_token())["client_id"] == CLIENT_ID
    assert fake.counts["token"] == 2


@pytest.mark.parametrize("kind", ["oversized", "gzip_bomb", "garbage", "not_object"])
def test_a_hostile_token_endpoint_reply_is_refused_once(fake: FakeIssuer, kind: str) -> None:
    fake.fault(kind, endpoint="token")

    with pytest.raises(TokenRequestError):
        in_process_auth(fake).get_token()

    assert fake.counts["token"] == 1


class Recording(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """The fake issuer's transport, keeping the form fields of every token request."""

    def __init__(self, fake: FakeIssuer) -> None:
        self.inner = fake.transport()
        self.forms: list[list[tuple[str, str]]] = []

    def _record(self, request: httpx.Request, body: bytes) -> None:
        if request.url.path.endswith("/token"):
            self.forms.append(parse_qsl(body.decode()))

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self._record(request, request.read())
        return self.inner.handle_request(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self._record(request, await request.aread())
        return await self.inner.handle_async_request(request)


def recorded_auth(
    fake: FakeIssuer, recording: Recording, **options: object
) -> ClientCredentialsAuth:
    clients = (httpx.Client(transport=recording), httpx.AsyncClient(transport=recording))
    return in_process_auth(fake, http_client=clients, **options)


async def test_a_one_item_resource_list_gets_a_token_from_the_fake_issuer(
    fake: FakeIssuer,
) -> None:
    recording = Recording(fake)
    auth = recorded_auth(fake, recording, extra_params={"resource": ["https://orders.test/"]})

    assert claims(await auth.aget_token())["client_id"] == CLIENT_ID
    assert recording.forms == [
        [("grant_type", "client_credentials"), ("resource", "https://orders.test/")]
    ]


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_several_resources_reach_the_fake_issuer_as_repeated_fields(
    fake: FakeIssuer, mode: str
) -> None:
    recording = Recording(fake)
    resources = ["https://orders.test/", "https://billing.test/"]
    auth = recorded_auth(fake, recording, extra_params={"resource": resources})

    try:
        token = auth.get_token() if mode == "sync" else await auth.aget_token()
    finally:
        assert recording.forms == [
            [("grant_type", "client_credentials"), *(("resource", r) for r in resources)]
        ]
    assert claims(token)["client_id"] == CLIENT_ID


# -- through a protected app ------------------------------------------------------------------


async def whoami(request: Request) -> JSONResponse:
    return JSONResponse({"scopes": sorted(request.auth.scopes)})


@pytest.fixture
async def protected(fake: FakeIssuer) -> AsyncIterator[Starlette]:
    async with fake.async_client() as keys_client:
        verifier = TokenVerifier(fake.issuer, AUDIENCE, http_client=keys_client)
        app = Starlette(routes=[Route("/whoami", whoami)])
        app.add_middleware(BearerAuthMiddleware, verifier=verifier, manage_verifier=False)
        yield app
        await verifier.aclose()


async def test_an_async_client_calls_a_protected_app(
    fake: FakeIssuer, protected: Starlette
) -> None:
    auth = in_process_auth(fake, scopes="orders:read")
    transport = httpx.ASGITransport(app=protected)
    async with httpx.AsyncClient(transport=transport, base_url="http://api", auth=auth) as client:
        responses = [await client.get("/whoami") for _ in range(20)]

    assert {response.status_code for response in responses} == {200}
    assert responses[0].json() == {"scopes": ["orders:read"]}
    assert fake.counts["token"] == 1


async def test_a_revoked_signing_key_costs_one_new_token_and_one_retry(
    fake: FakeIssuer, protected: Starlette
) -> None:
    """The token cached by the client was signed with a key the issuer has since dropped."""
    auth = in_process_auth(fake)
    await auth.aget_token()
    old_kid = fake.current_key.kid
    fake.rotate_keys()
    fake.remove_key(old_kid)
    transport = httpx.ASGITransport(app=protected)
    async with httpx.AsyncClient(transport=transport, base_url="http://api", auth=auth) as client:
        response = await client.get("/whoami")

    assert response.status_code == 200
    assert fake.counts["token"] == 2


# -- real loopback HTTP -----------------------------------------------------------------------


@pytest.fixture
def served(fake: FakeIssuer) -> Iterator[FakeIssuer]:
    with fake.serve():
        yield fake


def test_own_sync_clients_reach_a_real_loopback_issuer(served: FakeIssuer) -> None:
    auth = ClientCredentialsAuth(
        issuer=served.issuer, client_id=CLIENT_ID, client_secret=SECRET, scopes="orders:write"
    )

    assert claims(auth.get_token())["scope"] == "orders:write"
    assert auth.get_token() == auth.get_token()
    assert (served.counts["discovery"], served.counts["token"]) == (1, 1)


async def test_own_async_clients_reach_a_real_loopback_issuer(served: FakeIssuer) -> None:
    auth = ClientCredentialsAuth(
        token_url=served.token_endpoint, client_id=CLIENT_ID, client_secret=SECRET
    )

    token = await auth.aget_token()

    assert claims(token)["iss"] == served.issuer
    assert served.counts["token"] == 1


async def test_a_slow_loopback_token_endpoint_hits_the_deadline(served: FakeIssuer) -> None:
    served.fault("slow", endpoint="token", delay=2.0)
    auth = ClientCredentialsAuth(
        token_url=served.token_endpoint,
        client_id=CLIENT_ID,
        client_secret=SECRET,
        timeout=0.2,
        retries=0,
    )

    with pytest.raises(TokenRequestError, match=r"ReadTimeout|within 0\.2 s"):
        await auth.aget_token()


CHILD = """
import json
from resource_guard.client import ClientCredentialsAuth

auth = ClientCredentialsAuth.from_env()
print(json.dumps({"token": auth.get_token()}))
"""


def run_child(environ: dict[str, str]) -> str:
    """A fresh Python process that prints the token it gets."""
    completed = subprocess.run(
        [sys.executable, "-c", CHILD],
        env=environ,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    token: str = json.loads(completed.stdout)["token"]
    return token


def test_the_disk_cache_survives_a_process_restart(served: FakeIssuer, tmp_path: Path) -> None:
    cache_dir = tmp_path / "token-cache"
    environ = {
        **os.environ,
        "RESOURCE_GUARD_CLIENT_ID": CLIENT_ID,
        "RESOURCE_GUARD_CLIENT_SECRET": SECRET,
        "RESOURCE_GUARD_TOKEN_URL": served.token_endpoint,
        "RESOURCE_GUARD_SCOPES": "orders:read,orders:write",
        "RESOURCE_GUARD_TOKEN_CACHE_DIR": str(cache_dir),
    }

    first = run_child(environ)
    second = run_child(environ)

    assert first == second
    assert served.counts["token"] == 1
    (cache_file,) = cache_dir.iterdir()
    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(cache_file.stat().st_mode) == 0o600
    assert CLIENT_ID not in cache_file.name
