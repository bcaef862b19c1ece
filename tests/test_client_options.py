"""ClientCredentialsAuth configuration: eager validation, from_env, and keeping secrets out of
reprs, messages and logs."""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from resource_guard.client import ClientCredentialsAuth
from resource_guard.exceptions import TokenRequestError
from resource_guard.testing import FakeClock
from tests.client_support import CLIENT_ID, SECRET, TOKEN_URL, TokenServer, json_reply
from tests.helpers import START

REQUIRED: dict[str, Any] = {
    "token_url": TOKEN_URL,
    "client_id": CLIENT_ID,
    "client_secret": SECRET,
}


def build(**changes: Any) -> ClientCredentialsAuth:
    options = {**REQUIRED, **changes}
    return ClientCredentialsAuth(**{k: v for k, v in options.items() if v is not ...})


BAD_OPTIONS = [
    pytest.param(
        {"token_url": ...}, ValueError, "exactly one of token_url= or issuer=", id="no-url"
    ),
    pytest.param({"issuer": "https://idp.test"}, ValueError, "exactly one of", id="url-and-issuer"),
    pytest.param({"token_url": "http://idp.test/token"}, ValueError, "https", id="plain-http"),
    pytest.param({"token_url": "ftp://idp.test/t"}, ValueError, "absolute https", id="ftp"),
    pytest.param({"token_url": "/token"}, ValueError, "absolute https", id="relative"),
    pytest.param({"token_url": "https://u:p@idp.test/t"}, ValueError, "credentials", id="userinfo"),
    pytest.param({"token_url": 5}, ValueError, "non-empty URL", id="url-not-str"),
    pytest.param(
        {"token_url": ..., "issuer": "http://idp.test"}, ValueError, "https", id="http-issuer"
    ),
    pytest.param({"client_id": ""}, ValueError, "client_id must be a non-empty", id="empty-id"),
    pytest.param({"client_id": "a\nb"}, ValueError, "control characters", id="id-newline"),
    pytest.param({"client_id": None}, TypeError, "client_id must be a string", id="id-none"),
    pytest.param({"client_secret": ""}, ValueError, "client_secret must be", id="empty-secret"),
    pytest.param({"client_secret": b"x"}, TypeError, "client_secret must be", id="secret-bytes"),
    pytest.param({"scopes": "a b\\c"}, ValueError, "scope tokens", id="scope-backslash"),
    pytest.param({"scopes": ["a b"]}, ValueError, "scope tokens", id="scope-with-space"),
    pytest.param({"scopes": [""]}, ValueError, "scope tokens", id="empty-scope"),
    pytest.param({"scopes": [1]}, ValueError, "scope tokens", id="scope-not-str"),
    pytest.param({"scopes": 5}, TypeError, "scopes must be", id="scopes-int"),
    pytest.param({"scopes": {"a": 1}}, TypeError, "scopes must be", id="scopes-mapping"),
    pytest.param({"audience": ""}, ValueError, "audience must be", id="empty-audience"),
    pytest.param({"audience": ["a"]}, TypeError, "audience must be a string", id="audience-list"),
    pytest.param({"extra_params": [("a", "b")]}, TypeError, "mapping", id="params-list"),
    pytest.param({"extra_params": {"": "x"}}, ValueError, "non-empty strings", id="params-empty"),
    pytest.param({"extra_params": {"a": 1}}, TypeError, "must be a string", id="params-int"),
    pytest.param(
        {"extra_params": {"resource": []}}, ValueError, "must not be empty", id="params-empty-list"
    ),
    pytest.param(
        {"extra_params": {"resource": ["https://a.test", 5]}},
        TypeError,
        "extra_params['resource'] must be a string or a list of strings",
        id="params-list-int",
    ),
    pytest.param(
        {"extra_params": {"resource": {"https://a.test"}}},
        TypeError,
        "a list of strings",
        id="params-set-has-no-order",
    ),
    pytest.param(
        {"extra_params": {"resource": b"https://a.test"}},
        TypeError,
        "a list of strings",
        id="params-bytes",
    ),
    pytest.param(
        {"extra_params": {"resource": ["https://a.test", "https://a.test#part"]}},
        ValueError,
        "without a fragment",
        id="resource-fragment",
    ),
    pytest.param(
        {"extra_params": {"resource": "https://a.test/#"}},
        ValueError,
        "without a fragment",
        id="resource-string-fragment",
    ),
    *(
        pytest.param({"extra_params": {name: "x"}}, ValueError, hint, id=f"params-{name}")
        for name, hint in [
            ("grant_type", "always client_credentials"),
            ("client_secret", "use client_secret="),
            ("scope", "use scopes="),
            ("audience", "use audience="),
        ]
    ),
    pytest.param(
        {"auth_method": "private_key_jwt"}, ValueError, "auth_method must be", id="method"
    ),
    pytest.param({"timeout": 0}, ValueError, "timeout must be between", id="timeout-zero"),
    pytest.param({"timeout": "5"}, TypeError, "timeout must be a number", id="timeout-str"),
    pytest.param({"timeout": True}, TypeError, "timeout must be a number", id="timeout-bool"),
    pytest.param({"refresh_skew": -1}, ValueError, "refresh_skew", id="negative-skew"),
    pytest.param({"refresh_skew": float("nan")}, ValueError, "refresh_skew", id="nan-skew"),
    pytest.param({"retries": 1.5}, TypeError, "retries must be an int", id="retries-float"),
    pytest.param({"retries": 11}, ValueError, "retries must be between", id="retries-many"),
    pytest.param({"retry_backoff": -0.1}, ValueError, "retry_backoff", id="negative-backoff"),
    pytest.param({"cooldown": -1}, ValueError, "cooldown must be between", id="cooldown"),
    pytest.param({"clock": 5}, TypeError, "clock must be a callable", id="clock"),
    pytest.param({"allow_insecure_http": "yes"}, TypeError, "must be a bool", id="insecure-str"),
    pytest.param({"cache_dir": 5}, TypeError, "cache_dir must be a path", id="cache-dir-int"),
    pytest.param({"cache_dir": " "}, ValueError, "empty path", id="cache-dir-empty"),
    pytest.param({"http_client": object()}, TypeError, "http_client must be", id="client-object"),
    pytest.param(
        {"http_client": [httpx.Client(), httpx.Client()]},
        TypeError,
        "one of each",
        id="two-sync-clients",
    ),
]


@pytest.mark.parametrize(("changes", "error", "message"), BAD_OPTIONS)
def test_bad_options_fail_at_construction(
    changes: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=re.escape(message)) as caught:
        build(**changes)

    assert SECRET not in str(caught.value)


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/token", "http://localhost/token", "http://[::1]:9/token"],
    ids=["ipv4", "localhost", "ipv6"],
)
def test_plain_http_is_allowed_on_loopback(url: str) -> None:
    assert build(token_url=url).token_url == url


def test_plain_http_elsewhere_needs_the_explicit_opt_out() -> None:
    auth = build(token_url="http://idp.internal/token", allow_insecure_http=True)

    assert auth.token_url == "http://idp.internal/token"


@pytest.mark.parametrize(
    ("scopes", "expected"),
    [
        (None, ()),
        ("", ()),
        ("a  b a", ("a", "b")),
        (["orders:read", "orders:write"], ("orders:read", "orders:write")),
        (("x",), ("x",)),
    ],
    ids=["none", "empty", "space-delimited-deduplicated", "list", "tuple"],
)
def test_scopes_accept_a_string_or_a_sequence(scopes: Any, expected: tuple[str, ...]) -> None:
    assert build(scopes=scopes).scopes == expected


@pytest.mark.parametrize(
    "extra_params",
    [
        {"resource": ["https://a.test/orders", "api://billing", "urn:x:y"]},
        {"resource": ("https://a.test/?tenant=1",)},
        {"audience_hint": ["x", "y"], "organization": "org_1"},
        {"resource": "00000002-0000-0000-c000-000000000000"},
    ],
    ids=["resource-list", "resource-tuple-with-query", "other-names", "entra-v1-app-id"],
)
def test_extra_params_accept_strings_and_lists_of_strings(extra_params: dict[str, Any]) -> None:
    build(extra_params=extra_params)


def test_properties_report_the_configuration() -> None:
    auth = build(scopes="a", audience="api://orders")

    assert (auth.client_id, auth.scopes, auth.audience) == (CLIENT_ID, ("a",), "api://orders")


def test_one_http_client_of_either_kind_is_accepted() -> None:
    sync_client, async_client = httpx.Client(), httpx.AsyncClient()

    assert build(http_client=sync_client)._fetcher.sync_http is sync_client
    assert build(http_client=async_client)._fetcher.async_http is async_client
    both = build(http_client=[async_client, sync_client])
    assert (both._fetcher.sync_http, both._fetcher.async_http) == (sync_client, async_client)
    sync_client.close()


# -- from_env ---------------------------------------------------------------------------------

ENV = {
    "RESOURCE_GUARD_CLIENT_ID": CLIENT_ID,
    "RESOURCE_GUARD_CLIENT_SECRET": SECRET,
    "RESOURCE_GUARD_TOKEN_URL": TOKEN_URL,
}


def test_client_audience_variable_wins_over_the_shared_one() -> None:
    """A service that is protected and a caller keeps its own RESOURCE_GUARD_AUDIENCE."""
    environ = {
        **ENV,
        "RESOURCE_GUARD_AUDIENCE": "api://this-service",
        "RESOURCE_GUARD_CLIENT_AUDIENCE": "api://called-service",
    }
    assert ClientCredentialsAuth.from_env(environ).audience == "api://called-service"


def test_from_env_ignores_the_verifier_s_own_audience() -> None:
    """RESOURCE_GUARD_AUDIENCE names the protected service itself: a client asking the IdP
    for tokens addressed to it would call other services with the wrong audience."""
    environ = {**ENV, "RESOURCE_GUARD_AUDIENCE": "api://this-service"}

    assert ClientCredentialsAuth.from_env(environ).audience is None


def test_from_env_reads_every_variable(tmp_path: Path) -> None:
    environ = {
        **ENV,
        "RESOURCE_GUARD_CLIENT_AUDIENCE": "https://orders.example.com/",
        "RESOURCE_GUARD_SCOPES": "orders:read, orders:write  audit",
        "RESOURCE_GUARD_TOKEN_CACHE_DIR": str(tmp_path / "tokens"),
        "RESOURCE_GUARD_CLIENT_AUTH_METHOD": "client_secret_post",
    }

    auth = ClientCredentialsAuth.from_env(environ)

    assert auth.client_id == CLIENT_ID
    assert auth.token_url == TOKEN_URL
    assert auth.audience == "https://orders.example.com/"
    assert auth.scopes == ("orders:read", "orders:write", "audit")
    assert "auth_method='client_secret_post'" in repr(auth)
    assert (tmp_path / "tokens").is_dir()


def test_from_env_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)

    assert ClientCredentialsAuth.from_env().client_id == CLIENT_ID


def test_from_env_accepts_an_issuer_instead_of_a_token_url() -> None:
    environ = {**ENV, "RESOURCE_GUARD_TOKEN_URL": " ", "RESOURCE_GUARD_ISSUER": "https://idp.test"}

    auth = ClientCredentialsAuth.from_env(environ)

    assert auth.token_url is None
    assert "issuer='https://idp.test'" in repr(auth)


@pytest.mark.parametrize(
    ("removed", "named"),
    [
        (["RESOURCE_GUARD_CLIENT_ID"], "RESOURCE_GUARD_CLIENT_ID"),
        (["RESOURCE_GUARD_CLIENT_SECRET"], "RESOURCE_GUARD_CLIENT_SECRET"),
        (
            ["RESOURCE_GUARD_TOKEN_URL"],
            "RESOURCE_GUARD_TOKEN_URL (or RESOURCE_GUARD_ISSUER)",
        ),
        (
            list(ENV),
            "RESOURCE_GUARD_CLIENT_ID, RESOURCE_GUARD_CLIENT_SECRET, RESOURCE_GUARD_TOKEN_URL",
        ),
    ],
    ids=["id", "secret", "url", "all"],
)
def test_from_env_names_missing_variables(removed: list[str], named: str) -> None:
    environ = {name: value for name, value in ENV.items() if name not in removed}

    with pytest.raises(ValueError, match="missing environment variables") as caught:
        ClientCredentialsAuth.from_env(environ)

    assert named in str(caught.value)


def test_from_env_overrides_win_and_replace_the_url_variables() -> None:
    environ = {**ENV, "RESOURCE_GUARD_ISSUER": "https://other.test", "RESOURCE_GUARD_SCOPES": "a"}

    auth = ClientCredentialsAuth.from_env(
        environ, token_url="https://idp.test/v2/token", scopes=["b"]
    )

    assert auth.token_url == "https://idp.test/v2/token"
    assert auth.scopes == ("b",)


def test_from_env_lets_overrides_supply_missing_values() -> None:
    environ = {"RESOURCE_GUARD_TOKEN_URL": TOKEN_URL}

    auth = ClientCredentialsAuth.from_env(environ, client_id="x", client_secret="y")

    assert auth.client_id == "x"


def test_from_env_rejects_both_a_token_url_and_an_issuer() -> None:
    with pytest.raises(ValueError, match="exactly one of"):
        ClientCredentialsAuth.from_env({**ENV, "RESOURCE_GUARD_ISSUER": "https://idp.test"})


def test_from_env_keeps_the_secret_verbatim() -> None:
    environ = {**ENV, "RESOURCE_GUARD_CLIENT_SECRET": " padded secret "}

    assert ClientCredentialsAuth.from_env(environ)._credentials.client_secret == " padded secret "


# -- cooldown, the verifier's name; refetch_cooldown is its deprecated spelling ---------------

DEPRECATED_COOLDOWN = r"^refetch_cooldown= is deprecated, use cooldown=$"


def from_env(**overrides: Any) -> ClientCredentialsAuth:
    return ClientCredentialsAuth.from_env(ENV, **overrides)


BUILDERS = [pytest.param(build, id="constructor"), pytest.param(from_env, id="from_env")]


@pytest.mark.parametrize("make", BUILDERS)
def test_refetch_cooldown_still_works_with_a_deprecation_warning_at_the_caller(
    make: Callable[..., ClientCredentialsAuth],
) -> None:
    """The value still reaches the option (its range check here), and the warning points
    at the line that passed ``refetch_cooldown=``, not into resource_guard."""
    with (
        pytest.warns(DeprecationWarning, match=DEPRECATED_COOLDOWN) as caught,
        pytest.raises(ValueError, match="cooldown must be between"),
    ):
        make(refetch_cooldown=-1)
    assert [Path(warning.filename) for warning in caught] == [Path(__file__)]


@pytest.mark.parametrize("cooldown", [5, 10.0], ids=["other-value", "default-value"])
@pytest.mark.parametrize("make", BUILDERS)
def test_cooldown_and_refetch_cooldown_together_are_a_type_error(
    make: Callable[..., ClientCredentialsAuth], cooldown: float
) -> None:
    """Even when ``cooldown=`` repeats the default: both spellings were passed."""
    with pytest.raises(TypeError, match="both cooldown= and refetch_cooldown="):
        make(cooldown=cooldown, refetch_cooldown=5)


def test_the_cooldown_default_reads_as_a_plain_number() -> None:
    default = inspect.signature(ClientCredentialsAuth).parameters["cooldown"].default
    assert (default, repr(default)) == (10.0, "10.0")


# -- secrets stay secret ----------------------------------------------------------------------


def test_repr_shows_the_configuration_but_not_the_secret() -> None:
    auth = build(scopes="a b", audience="api://x")

    assert repr(auth) == (
        "ClientCredentialsAuth(token_url='https://idp.test/token', client_id='orders-worker', "
        "scopes=('a', 'b'), audience='api://x', auth_method='client_secret_basic')"
    )
    assert SECRET not in str(auth)
    assert repr(auth._credentials) == "Credentials(client_id='orders-worker')"


async def test_secrets_and_tokens_never_reach_logs_or_messages(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """Every logging path runs: discovery, retries, fetches, refresh failures, 401s, disk."""
    server = TokenServer()
    server.discovery["/.well-known/openid-configuration"] = {
        "issuer": "https://idp.test",
        "token_endpoint": TOKEN_URL,
    }
    clock = FakeClock(START)
    auth = ClientCredentialsAuth(
        issuer="https://idp.test",
        client_id=CLIENT_ID,
        client_secret=SECRET,
        clock=clock,
        retry_backoff=0.0,
        cache_dir=tmp_path / "cache",
        http_client=httpx.AsyncClient(transport=server.async_transport()),
    )
    server.script.append(httpx.Response(503))
    errors: list[str] = []

    with caplog.at_level(logging.DEBUG, logger="resource_guard"):
        async with httpx.AsyncClient(transport=server.async_transport(), auth=auth) as client:
            await client.get("https://api.test/a")
            server.accepted = {"tok-2"}
            await client.get("https://api.test/a")
            clock.advance(3590)
            server.script.append(
                json_reply(400, {"error": "invalid_client", "error_description": f"{SECRET}?"})
            )
            await client.get("https://api.test/a")
            clock.advance(60)
            server.script.append(
                json_reply(400, {"error": "invalid_client", "error_description": f"{SECRET}?"})
            )
            try:
                await client.get("https://api.test/a")
            except TokenRequestError as error:
                errors.append(str(error))
                errors.append(repr(error))
                errors.append(str(error.error_description))

    assert len(errors) == 3
    assert "[redacted]?" in errors[0]
    records = [record.getMessage() for record in caplog.records]
    assert len(records) >= 6
    seen = "\n".join(records + errors + [repr(auth)])
    assert SECRET not in seen
    for token in server.issued:
        assert token not in seen
