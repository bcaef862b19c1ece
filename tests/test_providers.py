"""Identity-provider presets: each builds the right TokenVerifier, accepts a token of its
IdP's documented shape (minted by a FakeIssuer with that shape) and refuses the shape's
classic mistakes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
import pytest

from resource_guard import (
    AccessToken,
    InvalidAudienceError,
    InvalidClaimError,
    InvalidIssuerError,
    TokenVerifier,
    providers,
)
from resource_guard.testing import SHAPES, FakeClock, FakeIssuer

Preset = Callable[..., TokenVerifier]


async def verify(fake: FakeIssuer, preset: Preset, token: str, **values: Any) -> AccessToken:
    """``token`` verified by ``preset(**values)`` against ``fake``'s keys, in-process."""
    async with (
        fake.async_client() as client,
        preset(**values, http_client=client, clock=fake.clock) as verifier,
    ):
        return await verifier.verify(token)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# -- Okta -------------------------------------------------------------------------------------

OKTA = {"domain": "dev-123456.okta.com", "audience": "api://default"}


@pytest.mark.parametrize(
    ("server", "issuer"),
    [
        ("default", "https://dev-123456.okta.com/oauth2/default"),
        ("aus1a2b3c4d", "https://dev-123456.okta.com/oauth2/aus1a2b3c4d"),
        (None, "https://dev-123456.okta.com"),
    ],
    ids=["default-server", "custom-server", "org-server"],
)
def test_okta_issuer_per_authorization_server(server: str | None, issuer: str) -> None:
    verifier = providers.okta(**OKTA, authorization_server=server)
    assert (verifier.issuer, verifier.audiences) == (issuer, ("api://default",))
    assert verifier.scope_claims == ("scp",)


async def test_okta_token_grants_scp_and_names_cid(clock: FakeClock) -> None:
    fake = FakeIssuer(
        "https://dev-123456.okta.com/oauth2/default", audience="api://default", shape="okta"
    )
    fake.clock = clock
    token = fake.mint("00u1a2b3", scopes=["orders:read", "openid"], client_id="0oa1a2b3")
    assert "typ" not in jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["scp"], claims["cid"], claims["ver"]) == (
        ["orders:read", "openid"],
        "0oa1a2b3",
        1,
    )
    access = await verify(fake, providers.okta, token, **OKTA)
    assert access.scopes == {"orders:read", "openid"}
    assert access.client_id == "0oa1a2b3"


async def test_okta_org_server_token_is_refused_by_a_custom_server_preset(
    clock: FakeClock,
) -> None:
    fake = FakeIssuer("https://dev-123456.okta.com/oauth2/default", shape="okta")
    fake.clock = clock
    token = fake.mint(audience="api://default", claims={"iss": "https://dev-123456.okta.com"})
    with pytest.raises(InvalidIssuerError):
        await verify(fake, providers.okta, token, **OKTA)


# -- Auth0 ------------------------------------------------------------------------------------

AUTH0_ISSUER = "https://example.eu.auth0.com/"
AUTH0 = {"domain": "example.eu.auth0.com", "audience": "https://orders.example.com"}


def test_auth0_issuer_keeps_its_trailing_slash() -> None:
    verifier = providers.auth0(**AUTH0)
    assert verifier.issuer == AUTH0_ISSUER
    assert verifier.audiences == ("https://orders.example.com",)
    assert verifier.scope_claims == ("scope", "permissions")


@pytest.fixture
def auth0_issuer(clock: FakeClock) -> FakeIssuer:
    audiences = ["https://orders.example.com", AUTH0_ISSUER + "userinfo"]
    return FakeIssuer(AUTH0_ISSUER, audience=audiences, shape="auth0", clock=clock)


async def test_auth0_token_grants_scope_and_permissions(auth0_issuer: FakeIssuer) -> None:
    token = auth0_issuer.mint("auth0|123", scopes=["read:orders"], client_id="xyz")
    assert jwt.get_unverified_header(token)["typ"] == "JWT"
    access = await verify(auth0_issuer, providers.auth0, token, **AUTH0)
    assert (set(access.scopes), access.client_id) == ({"read:orders"}, "xyz")
    rbac_only = auth0_issuer.mint(claims={"permissions": ["write:orders"]}, omit=["scope"])
    assert (await verify(auth0_issuer, providers.auth0, rbac_only, **AUTH0)).scopes == {
        "write:orders"
    }


@pytest.mark.parametrize(
    ("claims", "error"),
    [
        ({"iss": AUTH0_ISSUER.rstrip("/")}, InvalidIssuerError),
        ({"aud": "xyz"}, InvalidAudienceError),  # an ID token's aud is the client id
    ],
    ids=["issuer-without-trailing-slash", "id-token-audience"],
)
async def test_auth0_classic_mistakes_are_refused(
    auth0_issuer: FakeIssuer, claims: dict[str, Any], error: type[Exception]
) -> None:
    with pytest.raises(error):
        await verify(auth0_issuer, providers.auth0, auth0_issuer.mint(claims=claims), **AUTH0)


# -- Microsoft Entra ID -----------------------------------------------------------------------

TENANT = "3f1c8a4e-1111-4d2b-9c3a-0123456789ab"
APP_ID = "6e74172b-be56-4843-9ff4-e66a39bb12e3"
V1_ISSUER = f"https://sts.windows.net/{TENANT}/"
V2_ISSUER = f"https://login.microsoftonline.com/{TENANT}/v2.0"


@pytest.mark.parametrize(("version", "issuer"), [(2, V2_ISSUER), (1, V1_ISSUER)], ids=["v2", "v1"])
def test_entra_issuer_per_token_version(version: int, issuer: str) -> None:
    verifier = providers.entra(tenant_id=TENANT, audience=[APP_ID, "api://orders"], version=version)
    assert verifier.issuer == issuer
    assert verifier.audiences == (APP_ID, "api://orders")
    assert verifier.scope_claims == ("scp", "roles")


def test_entra_v1_reads_the_tenant_keys() -> None:
    verifier = providers.entra(tenant_id=TENANT, audience=APP_ID, version=1)
    assert verifier.key_source._jwks_uri == (
        f"https://login.microsoftonline.com/{TENANT}/discovery/keys"
    )


@pytest.fixture
def entra_v2(clock: FakeClock) -> FakeIssuer:
    return FakeIssuer(V2_ISSUER, audience=APP_ID, shape="entra-v2", clock=clock)


@pytest.mark.parametrize(
    ("options", "scopes"),
    [
        ({"scopes": ["Orders.Read", "Orders.Write"]}, {"Orders.Read", "Orders.Write"}),
        ({"claims": {"roles": ["Orders.ReadWrite.All"]}}, {"Orders.ReadWrite.All"}),
    ],
    ids=["delegated-scp", "app-roles"],
)
async def test_entra_v2_token_grants_scp_and_roles(
    entra_v2: FakeIssuer, options: dict[str, Any], scopes: set[str]
) -> None:
    token = entra_v2.mint("aad-oid", client_id="client-app", **options)
    header = jwt.get_unverified_header(token)
    assert (header["typ"], header["x5t"]) == ("JWT", header["kid"])
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["ver"], claims["tid"], claims["azp"]) == ("2.0", TENANT, "client-app")
    access = await verify(entra_v2, providers.entra, token, tenant_id=TENANT, audience=APP_ID)
    assert (set(access.scopes), access.client_id) == (scopes, "client-app")


async def test_entra_v1_token_names_the_client_in_appid(clock: FakeClock) -> None:
    fake = FakeIssuer(V1_ISSUER, audience="api://orders", shape="entra-v1", clock=clock)
    token = fake.mint(scopes=["user_impersonation"], client_id="client-app")
    claims = jwt.decode(token, options={"verify_signature": False})
    assert (claims["ver"], claims["tid"], claims["appid"]) == ("1.0", TENANT, "client-app")
    access = await verify(
        fake,
        providers.entra,
        token,
        tenant_id=TENANT,
        audience=[APP_ID, "api://orders"],
        version=1,
        jwks_uri=fake.jwks_uri,
    )
    assert (set(access.scopes), access.client_id) == ({"user_impersonation"}, "client-app")


async def test_entra_v1_token_is_refused_by_a_v2_preset(
    entra_v2: FakeIssuer, clock: FakeClock
) -> None:
    """The app registration still issues v1 tokens (requestedAccessTokenVersion unset)."""
    v1 = FakeIssuer(V1_ISSUER, audience=APP_ID, shape="entra-v1", clock=clock)
    v1.add_key(entra_v2.current_key, make_current=True)  # Entra signs both with one key set
    with pytest.raises(InvalidIssuerError):
        await verify(entra_v2, providers.entra, v1.mint(), tenant_id=TENANT, audience=APP_ID)


@pytest.mark.parametrize(
    ("values", "error", "message"),
    [
        ({"tenant_id": "common"}, ValueError, "multi-tenant"),
        ({"tenant_id": "contoso.onmicrosoft.com"}, ValueError, "tenant_id"),
        ({"tenant_id": None}, TypeError, "tenant_id"),
        ({"version": 3}, ValueError, "version"),
        ({"version": True}, ValueError, "version"),
        ({"audience": []}, ValueError, "audience"),
    ],
    ids=["common", "domain", "none", "version-3", "version-bool", "no-audience"],
)
def test_entra_values_are_checked_at_once(
    values: dict[str, Any], error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        providers.entra(**{"tenant_id": TENANT, "audience": APP_ID, **values})


# -- Keycloak ---------------------------------------------------------------------------------

KC_ISSUER = "https://keycloak.example.com/realms/shop"
KEYCLOAK = {"base_url": "https://keycloak.example.com/", "realm": "shop", "audience": "orders-api"}
KC_ROLES = {
    "realm_access": {"roles": ["offline_access", "shopper"]},
    "resource_access": {
        "orders-api": {"roles": ["orders:read"]},
        "account": {"roles": ["manage-account"]},
    },
}


def test_keycloak_realm_issuer_and_bearer_type() -> None:
    verifier = providers.keycloak(**KEYCLOAK)
    assert (verifier.issuer, verifier.audiences) == (KC_ISSUER, ("orders-api",))
    assert verifier.scope_claims == ("scope", "realm_access.roles")
    assert dict(verifier.claim_values) == {"typ": "Bearer"}


@pytest.fixture
def keycloak_issuer(clock: FakeClock) -> FakeIssuer:
    return FakeIssuer(KC_ISSUER, audience=["orders-api", "account"], shape="keycloak", clock=clock)


async def test_keycloak_token_grants_scope_realm_roles_and_the_api_client_roles(
    keycloak_issuer: FakeIssuer,
) -> None:
    token = keycloak_issuer.mint(scopes=["profile", "email"], client_id="web", claims=KC_ROLES)
    assert jwt.decode(token, options={"verify_signature": False})["typ"] == "Bearer"
    access = await verify(keycloak_issuer, providers.keycloak, token, **KEYCLOAK)
    assert access.scopes == {"profile", "email", "offline_access", "shopper", "orders:read"}
    assert access.client_id == "web"


@pytest.mark.parametrize(
    "claims",
    [{}, {"resource_access": {"account": {"roles": ["manage-account"]}}}],
    ids=["no-resource-access", "only-other-clients"],
)
async def test_keycloak_roles_of_other_clients_grant_nothing(
    keycloak_issuer: FakeIssuer, claims: dict[str, Any]
) -> None:
    token = keycloak_issuer.mint(scopes="profile", claims=claims)
    access = await verify(keycloak_issuer, providers.keycloak, token, **KEYCLOAK)
    assert "manage-account" not in access.scopes
    assert "profile" in access.scopes


def test_keycloak_base_url_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="base_url must be a str"):
        providers.keycloak(
            base_url=b"https://keycloak.example.com",  # type: ignore[arg-type]
            realm="shop",
            audience="orders-api",
        )


async def test_keycloak_client_ids_may_hold_dots(keycloak_issuer: FakeIssuer) -> None:
    claims = {"resource_access": {"com.example.orders": {"roles": ["admin"]}}}
    token = keycloak_issuer.mint(audience="com.example.orders", claims=claims)
    values = {**KEYCLOAK, "audience": "com.example.orders"}
    assert (await verify(keycloak_issuer, providers.keycloak, token, **values)).scopes == {"admin"}


@pytest.mark.parametrize(
    ("options", "error", "claim"),
    [
        ({"audience": "account"}, InvalidAudienceError, "aud"),  # no Audience mapper
        ({"claims": {"typ": "ID"}}, InvalidClaimError, "typ"),  # an ID token
        ({"claims": {"typ": "Refresh"}}, InvalidClaimError, "typ"),
        ({"omit": ["typ"]}, InvalidClaimError, "typ"),
        ({"claims": {"resource_access": []}}, InvalidClaimError, "scope_mapper"),
        ({"claims": {"resource_access": {"orders-api": []}}}, InvalidClaimError, "scope_mapper"),
    ],
    ids=["aud-lacks-the-api", "id-token", "refresh-token", "no-typ", "bad-access", "bad-roles"],
)
async def test_keycloak_classic_mistakes_are_refused(
    keycloak_issuer: FakeIssuer, options: dict[str, Any], error: type[Exception], claim: str
) -> None:
    token = keycloak_issuer.mint(**options)
    with pytest.raises(error) as refused:
        await verify(keycloak_issuer, providers.keycloak, token, **KEYCLOAK)
    assert refused.value.claim == claim  # type: ignore[attr-defined]


# -- Amazon Cognito ---------------------------------------------------------------------------

POOL = "eu-west-1_AbCdEf123"
COGNITO_ISSUER = f"https://cognito-idp.eu-west-1.amazonaws.com/{POOL}"
APP_CLIENT = "1example23456789"
COGNITO: dict[str, Any] = {"user_pool_id": POOL, "client_id": [APP_CLIENT, "2another"]}


def test_cognito_checks_client_id_and_token_use() -> None:
    verifier = providers.cognito(**COGNITO)
    assert (verifier.issuer, verifier.audiences) == (COGNITO_ISSUER, (APP_CLIENT, "2another"))
    assert verifier.audience_claim == "client_id"
    assert dict(verifier.claim_values) == {"token_use": "access"}


@pytest.fixture
def cognito_issuer(clock: FakeClock) -> FakeIssuer:
    return FakeIssuer(COGNITO_ISSUER, shape="cognito", clock=clock)


async def test_cognito_access_token_without_aud_is_accepted(cognito_issuer: FakeIssuer) -> None:
    token = cognito_issuer.mint(APP_CLIENT, client_id=APP_CLIENT, scopes=["orders/read"])
    assert "typ" not in jwt.get_unverified_header(token)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert "aud" not in claims
    assert (claims["token_use"], claims["version"]) == ("access", 2)
    access = await verify(cognito_issuer, providers.cognito, token, **COGNITO)
    assert (set(access.scopes), access.client_id) == ({"orders/read"}, APP_CLIENT)


async def test_cognito_token_endpoint_tokens_have_the_shape_too(
    cognito_issuer: FakeIssuer,
) -> None:
    cognito_issuer.register_client(APP_CLIENT, "secret", scopes=["orders/read"])
    async with cognito_issuer.async_client() as client:
        reply = await client.post(
            cognito_issuer.token_endpoint,
            data={"grant_type": "client_credentials"},
            auth=(APP_CLIENT, "secret"),
        )
    token = reply.json()["access_token"]
    access = await verify(cognito_issuer, providers.cognito, token, **COGNITO)
    assert access.client_id == APP_CLIENT


@pytest.mark.parametrize(
    ("options", "error", "claim"),
    [
        (  # an ID token: aud is the app client, no client_id, token_use "id"
            {"client_id": None, "audience": APP_CLIENT, "claims": {"token_use": "id"}},
            InvalidAudienceError,
            "client_id",
        ),
        ({"client_id": APP_CLIENT, "claims": {"token_use": "id"}}, InvalidClaimError, "token_use"),
        ({"client_id": "3unknown"}, InvalidAudienceError, "client_id"),
        ({"client_id": APP_CLIENT, "omit": ["token_use"]}, InvalidClaimError, "token_use"),
    ],
    ids=["id-token", "token-use-id", "other-app-client", "no-token-use"],
)
async def test_cognito_classic_mistakes_are_refused(
    cognito_issuer: FakeIssuer, options: dict[str, Any], error: type[Exception], claim: str
) -> None:
    token = cognito_issuer.mint(**options)
    with pytest.raises(error) as refused:
        await verify(cognito_issuer, providers.cognito, token, **COGNITO)
    assert type(refused.value) is error
    assert refused.value.claim == claim  # type: ignore[attr-defined]


@pytest.mark.parametrize("pool", ["AbCdEf123", "eu-west-1", "eu_west_1_x", "EU-WEST-1_x"])
def test_cognito_pool_id_must_carry_its_region(pool: str) -> None:
    with pytest.raises(ValueError, match="user_pool_id"):
        providers.cognito(user_pool_id=pool, client_id=APP_CLIENT)


def test_cognito_needs_an_app_client() -> None:
    with pytest.raises(ValueError, match="client_id"):
        providers.cognito(user_pool_id=POOL, client_id=())


# -- Temporal-style ---------------------------------------------------------------------------

TEMPORAL = {"issuer": "https://idp.example.com", "audience": "temporal"}


async def test_temporal_permissions_become_scopes_as_they_are(clock: FakeClock) -> None:
    fake = FakeIssuer("https://idp.example.com", audience="temporal", shape="temporal", clock=clock)
    token = fake.mint(scopes=["orders:write", "system:admin"], claims={"scope": "billing:admin"})
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["permissions"] == ["orders:write", "system:admin"]
    access = await verify(fake, providers.temporal, token, **TEMPORAL)
    assert access.scopes == {"orders:write", "system:admin"}  # `scope` grants nothing here


# -- every preset -----------------------------------------------------------------------------

EVERY = [
    (providers.okta, OKTA),
    (providers.auth0, AUTH0),
    (providers.entra, {"tenant_id": TENANT, "audience": APP_ID}),
    (providers.keycloak, KEYCLOAK),
    (providers.cognito, COGNITO),
    (providers.temporal, TEMPORAL),
]
IDS = [preset.__name__ for preset, _ in EVERY]


@pytest.mark.parametrize(("preset", "values"), EVERY, ids=IDS)
def test_options_pass_through_and_may_replace_the_preset_s(
    preset: Preset, values: dict[str, Any]
) -> None:
    verifier = preset(**values, leeway=5, scope_claims=("scope",))
    assert (verifier._leeway, verifier.scope_claims) == (5, ("scope",))


@pytest.mark.parametrize(("preset", "values"), EVERY, ids=IDS)
def test_no_preset_verifies_without_an_audience(preset: Preset, values: dict[str, Any]) -> None:
    emptied = {name: () if name in ("audience", "client_id") else v for name, v in values.items()}
    with pytest.raises(ValueError, match="must not be empty"):
        preset(**emptied)
    missing = {name: v for name, v in values.items() if name not in ("audience", "client_id")}
    with pytest.raises(TypeError):
        preset(**missing)


@pytest.mark.parametrize(("preset", "values"), EVERY[:-1], ids=IDS[:-1])
def test_the_issuer_comes_from_the_preset_only(preset: Preset, values: dict[str, Any]) -> None:
    with pytest.raises(TypeError, match="set by the preset"):
        preset(**values, issuer="https://elsewhere.example.com")


@pytest.mark.parametrize(
    ("preset", "values", "message"),
    [
        (providers.okta, {**OKTA, "domain": "https://dev-1.okta.com"}, "https://"),
        (providers.okta, {**OKTA, "domain": "localhost"}, "domain"),
        (providers.okta, {**OKTA, "authorization_server": "a/b"}, "authorization_server"),
        (providers.auth0, {**AUTH0, "domain": "example.auth0.com/"}, "domain"),
        (providers.keycloak, {**KEYCLOAK, "base_url": "keycloak.example.com"}, "base_url"),
        (providers.keycloak, {**KEYCLOAK, "realm": "a/b"}, "realm"),
    ],
    ids=["okta-scheme", "okta-bare-host", "okta-server", "auth0-path", "kc-url", "kc-realm"],
)
def test_console_values_are_checked_at_once(
    preset: Preset, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        preset(**values)


def test_the_fake_issuer_knows_one_shape_per_preset() -> None:
    assert set(SHAPES) == {
        "okta",
        "auth0",
        "entra-v1",
        "entra-v2",
        "keycloak",
        "cognito",
        "temporal",
    }
    with pytest.raises(ValueError, match="unknown shape"):
        FakeIssuer(shape="okta-v2")
    assert FakeIssuer(shape="okta").shape == "okta"


def test_every_preset_has_a_section_in_the_docs() -> None:
    page = (Path(__file__).parent.parent / "docs" / "providers.md").read_text(encoding="utf-8")
    missing = [name for name in providers.__all__ if f"providers.{name}(" not in page]
    assert missing == []
