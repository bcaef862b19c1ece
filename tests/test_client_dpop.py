"""ClientCredentialsAuth with DPoP (RFC 9449): key-bound tokens from the fake issuer, a fresh
proof with ``ath`` on every API request, server nonces from the token endpoint and from the
API, and what the disk cache does with bound tokens.

The API is an in-process resource server that checks every proof with the library's
:class:`~resource_guard.dpop.ProofVerifier` and refuses replays.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from resource_guard import BearerAuthMiddleware, TokenVerifier
from resource_guard.client import ClientCredentialsAuth
from resource_guard.client._dpop import DPoPSession
from resource_guard.dpop import DPoPKey, DPoPPolicy, NonceSource, ProofVerifier
from resource_guard.exceptions import InvalidDPoPProofError, TokenRequestError
from resource_guard.testing import FakeClock, FakeIssuer, read_unverified
from tests.client_support import StreamingTransport, json_reply
from tests.loopback import LoopbackServer

API = "https://api.test/orders"
CLIENT_ID, SECRET = "dpop-worker", "dpop-secret"


class Resource:
    """An API that wants ``Authorization: DPoP`` and a valid, unused proof bound to the
    token; optionally a nonce of its own (401 ``use_dpop_nonce``)."""

    def __init__(self, clock: FakeClock) -> None:
        self.proofs = ProofVerifier(clock=clock)
        self.seen: set[str] = set()
        self.nonce: str | None = None
        """Demanded in proofs when set."""
        self.announce: str | None = None
        """Sent as DPoP-Nonce on every 200 when set."""
        self.refused: set[str] = set()
        """Tokens answered with 401 invalid_token."""
        self.challenge = 'DPoP error="use_dpop_nonce", algs="ES256"'
        self.requests: list[httpx.Request] = []
        self.checked: list[dict[str, Any]] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme != "DPoP" or "dpop" not in request.headers:
            return httpx.Response(401, headers={"WWW-Authenticate": "DPoP"})
        try:
            proof = self.proofs.verify(
                request.headers["dpop"],
                method=request.method,
                url=str(request.url),
                access_token=token,
            )
        except InvalidDPoPProofError as exc:
            return self.refuse("invalid_dpop_proof", exc.message)
        if read_unverified(token)[1].get("cnf") != {"jkt": proof.jkt}:
            return self.refuse("invalid_token", "not bound to the proof's key")
        if proof.jti in self.seen:
            return self.refuse("invalid_dpop_proof", "replayed")
        self.seen.add(proof.jti)
        self.checked.append({"htu": proof.htu, "nonce": proof.nonce, "token": token})
        if self.nonce is not None and proof.nonce != self.nonce:
            return httpx.Response(
                401, headers={"WWW-Authenticate": self.challenge, "DPoP-Nonce": self.nonce}
            )
        if token in self.refused:
            return self.refuse("invalid_token", "revoked")
        headers = {} if self.announce is None else {"DPoP-Nonce": self.announce}
        return httpx.Response(200, json={"jkt": proof.jkt}, headers=headers)

    @staticmethod
    def refuse(error: str, description: str) -> httpx.Response:
        challenge = f'DPoP error="{error}", error_description="{description}"'
        return httpx.Response(401, headers={"WWW-Authenticate": challenge})


@pytest.fixture
def issuer(clock: FakeClock) -> FakeIssuer:
    fake = FakeIssuer(algorithm="ES256", clock=clock)
    fake.register_client(CLIENT_ID, SECRET, scopes=("orders:read",), expires_in=600)
    return fake


@pytest.fixture
def resource(clock: FakeClock) -> Resource:
    return Resource(clock)


@pytest.fixture
def make(issuer: FakeIssuer, clock: FakeClock) -> Iterator[Any]:
    """``make(**options)``: a DPoP ClientCredentialsAuth on ``issuer`` (in-process)."""
    clients: list[httpx.Client | httpx.AsyncClient] = []

    def build(**options: Any) -> ClientCredentialsAuth:
        sync_http, async_http = issuer.client(), issuer.async_client()
        clients.extend((sync_http, async_http))
        settings: dict[str, Any] = {
            "token_url": issuer.token_endpoint,
            "client_id": CLIENT_ID,
            "client_secret": SECRET,
            "clock": clock,
            "retry_backoff": 0.0,
            "http_client": (sync_http, async_http),
            "dpop": True,
        }
        settings.update(options)
        return ClientCredentialsAuth(**settings)

    yield build
    for client in clients:
        if isinstance(client, httpx.Client):
            client.close()


def send_sync(
    auth: ClientCredentialsAuth, transport: Any, method: str, url: str, **kwargs: Any
) -> httpx.Response:
    with httpx.Client(transport=transport, auth=auth) as client:
        return client.request(method, url, **kwargs)


async def send(
    mode: str,
    auth: ClientCredentialsAuth,
    transport: Any,
    method: str = "GET",
    url: str = API,
    **kwargs: Any,
) -> httpx.Response:
    if mode == "sync":
        return send_sync(auth, transport, method, url, **kwargs)
    async with httpx.AsyncClient(transport=transport, auth=auth) as client:
        return await client.request(method, url, **kwargs)


async def call(
    mode: str, auth: ClientCredentialsAuth, resource: Resource, **kwargs: Any
) -> httpx.Response:
    return await send(mode, auth, httpx.MockTransport(resource), **kwargs)


# -- the happy path ---------------------------------------------------------------------------


async def test_requests_carry_a_bound_token_and_a_fresh_proof(
    mode: str, make: Any, issuer: FakeIssuer, resource: Resource
) -> None:
    auth = make()
    for _ in range(3):
        response = await call(mode, auth, resource)
        assert response.status_code == 200, response.headers
        assert response.json() == {"jkt": auth.dpop_key.thumbprint}
    assert issuer.counts["token"] == 1
    assert len({request.headers["dpop"] for request in resource.requests}) == 3
    assert {check["token"] for check in resource.checked} == {auth.get_token()}
    assert resource.requests[0].headers["authorization"].startswith("DPoP ")


async def test_the_proof_names_the_method_and_the_url_without_query(
    mode: str, make: Any, resource: Resource
) -> None:
    auth = make()
    response = await call(mode, auth, resource, method="POST", url=API + "?page=2#x", json={})
    assert response.status_code == 200
    assert resource.checked[0]["htu"] == API


async def test_a_key_of_ones_own_is_used(mode: str, make: Any, resource: Resource) -> None:
    key = DPoPKey.generate("EdDSA")
    auth = make(dpop=key)
    assert auth.dpop_key is key
    response = await call(mode, auth, resource)
    assert response.json() == {"jkt": key.thumbprint}
    assert read_unverified(auth.get_token())[1]["cnf"] == {"jkt": key.thumbprint}


def test_without_dpop_nothing_changes(make: Any) -> None:
    auth = make(dpop=False)
    assert auth.dpop_key is None
    assert "cnf" not in read_unverified(auth.get_token())[1]
    assert "dpop=" not in repr(auth)


def test_repr_names_the_key_but_shows_nothing_private(make: Any) -> None:
    auth = make()
    assert repr(auth).endswith(f", dpop={auth.dpop_key!r})")
    assert "PRIVATE" not in repr(auth)


# -- nonces ---------------------------------------------------------------------------------


async def test_the_token_endpoint_nonce_is_answered_with_one_retry(
    mode: str, make: Any, issuer: FakeIssuer, resource: Resource
) -> None:
    issuer.dpop_nonce = True
    auth = make()
    response = await call(mode, auth, resource)
    assert response.status_code == 200
    assert issuer.counts["token"] == 2  # use_dpop_nonce, then the token


async def test_the_remembered_token_endpoint_nonce_is_used_next_time(
    make: Any, issuer: FakeIssuer, clock: FakeClock
) -> None:
    issuer.dpop_nonce = True
    auth = make()
    await auth.aget_token()
    clock.advance(575)  # a refresh is due; the nonce is the previous window's, still valid
    await auth.aget_token()
    assert issuer.counts["token"] == 3  # no second use_dpop_nonce round


def scripted_token_endpoint(*replies: httpx.Response) -> tuple[httpx.Client, list[httpx.Request]]:
    requests: list[httpx.Request] = []
    queue = list(replies)

    def handler(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return queue.pop(0)

    return httpx.Client(transport=httpx.MockTransport(handler)), requests


def nonce_error(nonce: str) -> httpx.Response:
    return json_reply(400, {"error": "use_dpop_nonce"}, **{"DPoP-Nonce": nonce})


def test_the_token_endpoint_is_retried_once_only(make: Any) -> None:
    http, requests = scripted_token_endpoint(nonce_error("n1"), nonce_error("n2"))
    auth = make(http_client=http)
    with pytest.raises(TokenRequestError) as caught:
        auth.get_token()
    assert caught.value.error == "use_dpop_nonce"
    assert len(requests) == 2
    proofs = [read_unverified(request.headers["dpop"])[1] for request in requests]
    assert "nonce" not in proofs[0]
    assert proofs[1]["nonce"] == "n1"


@pytest.mark.parametrize(
    "reply",
    [
        json_reply(400, {"error": "use_dpop_nonce"}),
        json_reply(400, {"error": "invalid_dpop_proof"}, **{"DPoP-Nonce": "n1"}),
        json_reply(400, {"error": "use_dpop_nonce"}, **{"DPoP-Nonce": "bad nonce"}),
        json_reply(401, {"error": "use_dpop_nonce"}, **{"DPoP-Nonce": "n1"}),
    ],
    ids=["no-nonce", "other-error", "malformed-nonce", "not-400"],
)
def test_other_token_endpoint_refusals_are_not_retried(make: Any, reply: httpx.Response) -> None:
    http, requests = scripted_token_endpoint(reply)
    auth = make(http_client=http)
    with pytest.raises(TokenRequestError):
        auth.get_token()
    assert len(requests) == 1


def test_the_nonce_just_sent_is_not_retried(make: Any, clock: FakeClock) -> None:
    """A challenge naming the nonce the proof already carried: asking again would loop."""
    token = json_reply(
        200,
        {"access_token": "a.b.c", "token_type": "DPoP", "expires_in": 60},
        **{"DPoP-Nonce": "n1"},
    )
    http, requests = scripted_token_endpoint(token, nonce_error("n1"))
    auth = make(http_client=http)
    assert auth.get_token() == "a.b.c"
    clock.advance(61)
    with pytest.raises(TokenRequestError) as caught:
        auth.get_token()
    assert caught.value.error == "use_dpop_nonce"
    assert len(requests) == 2
    assert read_unverified(requests[1].headers["dpop"])[1]["nonce"] == "n1"


def test_the_nonce_of_the_retried_token_reply_is_the_one_used_next(
    make: Any, clock: FakeClock
) -> None:
    """RFC 9449 §8.2: the latest DPoP-Nonce counts, the retried request's reply's too."""
    token = {"access_token": "a.b.c", "token_type": "DPoP", "expires_in": 60}
    http, requests = scripted_token_endpoint(
        nonce_error("n1"),
        json_reply(200, token, **{"DPoP-Nonce": "n2"}),
        json_reply(200, token),
    )
    auth = make(http_client=http)
    assert auth.get_token() == "a.b.c"
    clock.advance(61)
    assert auth.get_token() == "a.b.c"
    nonces = [read_unverified(request.headers["dpop"])[1].get("nonce") for request in requests]
    assert nonces == [None, "n1", "n2"]


def test_a_bearer_token_is_refused_when_dpop_was_asked(make: Any) -> None:
    bearer = json_reply(200, {"access_token": "a.b.c", "token_type": "Bearer", "expires_in": 60})
    http, _ = scripted_token_endpoint(bearer)
    auth = make(http_client=http)
    with pytest.raises(TokenRequestError, match="issued a Bearer token although"):
        auth.get_token()


def test_a_dpop_token_is_refused_when_dpop_was_not_asked(make: Any) -> None:
    bound = json_reply(200, {"access_token": "a.b.c", "token_type": "DPoP", "expires_in": 60})
    http, _ = scripted_token_endpoint(bound)
    auth = make(http_client=http, dpop=False)
    with pytest.raises(TokenRequestError, match="of type 'DPoP', not a Bearer token"):
        auth.get_token()


async def test_the_api_nonce_is_answered_with_one_retry_then_reused(
    mode: str, make: Any, resource: Resource, issuer: FakeIssuer
) -> None:
    resource.nonce = "api-nonce-1"
    auth = make()
    response = await call(mode, auth, resource)
    assert response.status_code == 200
    assert [check["nonce"] for check in resource.checked] == [None, "api-nonce-1"]
    again = await call(mode, auth, resource)
    assert again.status_code == 200
    assert resource.checked[-1]["nonce"] == "api-nonce-1"
    assert len(resource.requests) == 3
    assert issuer.counts["token"] == 1  # the token was never dropped


async def test_a_nonce_from_any_reply_is_used_for_that_origin_only(
    mode: str, make: Any, resource: Resource
) -> None:
    resource.announce = "fresh-1"
    auth = make()
    await call(mode, auth, resource)
    await call(mode, auth, resource)
    await call(mode, auth, resource, url="https://other.test/orders")
    assert [check["nonce"] for check in resource.checked] == [None, "fresh-1", None]


async def test_an_api_nonce_challenge_is_retried_once_only(
    mode: str, make: Any, resource: Resource
) -> None:
    resource.nonce = "wanted"
    resource.challenge = 'DPoP error="use_dpop_nonce"'
    auth = make()
    original = resource.__call__

    def rotating(request: httpx.Request) -> httpx.Response:
        resource.nonce = f"wanted-{len(resource.requests)}"  # never the one just sent
        return original(request)

    response = await send(mode, auth, httpx.MockTransport(rotating))
    assert response.status_code == 401
    assert len(resource.requests) == 2


@pytest.mark.parametrize(
    "challenge",
    ['Bearer error="use_dpop_nonce"', 'DPoP error="invalid_dpop_proof"', "DPoP"],
    ids=["bearer-scheme", "other-error", "no-error"],
)
async def test_a_401_that_is_no_dpop_nonce_challenge_drops_the_token(
    mode: str, make: Any, resource: Resource, issuer: FakeIssuer, challenge: str
) -> None:
    """The usual 401 path: a new token and one retry, whose proof carries the nonce the
    refusal brought (any reply's nonce is remembered)."""
    resource.nonce = "wanted"
    resource.challenge = challenge
    auth = make()
    response = await call(mode, auth, resource)
    assert response.status_code == 200
    assert issuer.counts["token"] == 2
    assert [check["nonce"] for check in resource.checked] == [None, "wanted"]
    assert len({check["token"] for check in resource.checked}) == 2


async def test_a_nonce_challenge_is_not_retried_with_a_streamed_body(
    mode: str, make: Any, resource: Resource
) -> None:
    resource.nonce = "wanted"
    auth = make()

    def body() -> Iterator[bytes]:
        yield b"{}"

    async def abody() -> Any:
        yield b"{}"

    content: Any = body() if mode == "sync" else abody()
    response = await send(mode, auth, StreamingTransport(resource), method="POST", content=content)
    assert response.status_code == 401
    assert len(resource.requests) == 1


async def test_a_refused_token_is_replaced_with_a_new_proof(
    mode: str, make: Any, resource: Resource, issuer: FakeIssuer
) -> None:
    auth = make()
    resource.refused.add(await auth.aget_token())
    response = await call(mode, auth, resource)
    assert response.status_code == 200
    assert issuer.counts["token"] == 2
    assert len({check["token"] for check in resource.checked}) == 2


# -- the disk cache -------------------------------------------------------------------------


def test_a_generated_key_refuses_the_disk_cache(make: Any, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cache_dir with dpop=True"):
        make(cache_dir=tmp_path)


def test_tokens_bound_to_ones_own_key_are_cached_without_the_key(
    make: Any, issuer: FakeIssuer, tmp_path: Path
) -> None:
    key = DPoPKey.generate()
    first = make(dpop=key, cache_dir=tmp_path)
    token = first.get_token()
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1
    stored = files[0].read_text()
    assert "PRIVATE" not in stored
    assert set(json.loads(stored)) == {"format", "key", "access_token", "obtained_at", "expires_at"}
    assert make(dpop=key, cache_dir=tmp_path).get_token() == token
    assert issuer.counts["token"] == 1
    other = make(dpop=DPoPKey.generate(), cache_dir=tmp_path).get_token()
    assert other != token
    assert make(dpop=False, cache_dir=tmp_path).get_token() not in (token, other)
    assert issuer.counts["token"] == 3


# -- options and the session ------------------------------------------------------------------


@pytest.mark.parametrize("value", ["yes", 1, None, object()], ids=["str", "int", "none", "obj"])
def test_dpop_must_be_a_bool_or_a_key(make: Any, value: object) -> None:
    with pytest.raises(TypeError, match="dpop must be True"):
        make(dpop=value)


def test_the_session_remembers_a_bounded_number_of_origins(
    monkeypatch: pytest.MonkeyPatch, clock: FakeClock
) -> None:
    monkeypatch.setattr("resource_guard.client._dpop.MAX_ORIGINS", 2)
    session = DPoPSession(DPoPKey.generate(), clock, generated=True)
    for host in ("a", "b"):
        session.remember(f"https://{host}.test/x", {"dpop-nonce": host})
    session.remember("https://b.test/y", {"dpop-nonce": "b2"})  # known origin: kept
    assert session.nonce_for("https://a.test/") == "a"
    session.remember("https://c.test/x", {"dpop-nonce": "c"})  # full: starts over
    assert session.nonce_for("https://a.test/") is None
    assert session.nonce_for("HTTPS://C.TEST/other") == "c"


@pytest.mark.parametrize(
    "nonce", ["", "has space", 'quote"d', "back\\slash", "x" * 1025], ids=str.__len__
)
def test_a_malformed_nonce_is_ignored(clock: FakeClock, nonce: str) -> None:
    session = DPoPSession(DPoPKey.generate(), clock, generated=True)
    assert session.remember("https://a.test/", {"dpop-nonce": nonce}) is None
    assert session.nonce_for("https://a.test/") is None


def test_nonce_retries_are_logged_without_the_nonce_or_the_token(
    make: Any, caplog: pytest.LogCaptureFixture
) -> None:
    token = json_reply(
        200, {"access_token": "tok.en.value", "token_type": "DPoP", "expires_in": 60}
    )
    http, _ = scripted_token_endpoint(nonce_error("nonce-value-1"), token)
    with caplog.at_level(logging.DEBUG, logger="resource_guard.client"):
        assert make(http_client=http).get_token() == "tok.en.value"
    messages = [record.getMessage() for record in caplog.records]
    assert any("asked for a DPoP nonce" in message for message in messages)
    assert not [m for m in messages if "nonce-value-1" in m or "tok.en.value" in m]


# -- end to end: the middleware over loopback HTTP ---------------------------------------------


async def test_end_to_end_with_nonces_on_both_sides(mode: str) -> None:
    """The fake issuer and the protected app, each on 127.0.0.1, both demanding nonces:
    the client gets a bound token and calls the app with one retry per side."""
    fake = FakeIssuer(audience="api://orders", algorithm="ES256", dpop_nonce=True)
    fake.register_client(CLIENT_ID, SECRET, scopes=("orders:read",))

    async def orders(request: Request) -> JSONResponse:
        return JSONResponse({"ok": True})

    with fake.serve():
        verifier = TokenVerifier(
            fake.issuer,
            "api://orders",
            dpop=DPoPPolicy("required", nonces=NonceSource()),
        )
        app = Starlette(routes=[Route("/orders", orders)])
        app.add_middleware(BearerAuthMiddleware, verifier=verifier)
        with LoopbackServer(app) as base:
            auth = ClientCredentialsAuth(
                token_url=fake.token_endpoint,
                client_id=CLIENT_ID,
                client_secret=SECRET,
                dpop=True,
            )
            first = await send(mode, auth, None, url=base + "/orders?x=1")
            second = await send(mode, auth, None, url=base + "/orders")
    assert (first.status_code, second.status_code) == (200, 200), first.headers
    assert fake.counts["token"] == 2  # use_dpop_nonce, then the token
