"""The example apps (examples/*.py) work as their docstrings say, so they cannot rot."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest

from resource_guard import TokenVerifier
from resource_guard.testing import FakeIssuer

from .asgi_client import lifespan, websocket
from .loopback import load_example

AUDIENCE = "api://orders"

fastapi_example = load_example("fastapi_app")
starlette_example = load_example("starlette_app")
swagger_ui_example = load_example("swagger_ui")


@pytest.fixture(params=["fastapi", "starlette"])
async def app(request: pytest.FixtureRequest, verifier: TokenVerifier) -> AsyncIterator[Any]:
    module = fastapi_example if request.param == "fastapi" else starlette_example
    application = module.create_app(verifier)
    async with lifespan(application):
        yield application


def client(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test")


def auth(fake: FakeIssuer, *scopes: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {fake.mint('frank', scopes=scopes)}"}


async def test_health_is_public(app: Any) -> None:
    async with client(app) as http:
        response = await http.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_orders_need_a_token(app: Any) -> None:
    async with client(app) as http:
        response = await http.get("/orders")
    assert response.status_code == 401
    assert response.headers.get_list("www-authenticate")[0] == 'Bearer realm="api"'


async def test_listing_needs_orders_read(app: Any, fake: FakeIssuer) -> None:
    async with client(app) as http:
        refused = await http.get("/orders", headers=auth(fake, "orders:write"))
        allowed = await http.get("/orders", headers=auth(fake, "orders:read"))
    assert refused.status_code == 403
    assert 'scope="orders:read"' in refused.headers["www-authenticate"]
    assert allowed.status_code == 200
    assert allowed.json() == []


async def test_creating_needs_orders_write(app: Any, fake: FakeIssuer) -> None:
    order = {"item": "coffee", "quantity": 2}
    async with client(app) as http:
        refused = await http.post("/orders", json=order, headers=auth(fake, "orders:read"))
        created = await http.post("/orders", json=order, headers=auth(fake, "orders:write"))
        listed = await http.get("/orders", headers=auth(fake, "orders:read"))
    assert refused.status_code == 403
    assert created.status_code == 201
    assert created.json() == {"id": 1, "item": "coffee", "quantity": 2, "created_by": "frank"}
    assert listed.json() == [created.json()]


@pytest.mark.parametrize(
    "body",
    [{"item": "tea", "quantity": 0}, {"quantity": 1}, {"item": "tea", "quantity": "x"}],
    ids=["zero", "no-item", "bad-quantity"],
)
async def test_bad_orders_are_422(app: Any, fake: FakeIssuer, body: dict[str, Any]) -> None:
    async with client(app) as http:
        response = await http.post("/orders", json=body, headers=auth(fake, "orders:write"))
    assert response.status_code == 422


async def test_starlette_example_rejects_non_json(
    verifier: TokenVerifier, fake: FakeIssuer
) -> None:
    app = starlette_example.create_app(verifier)
    async with client(app) as http:
        response = await http.post("/orders", content=b"{", headers=auth(fake, "orders:write"))
    assert response.status_code == 422


async def test_fastapi_example_reads_one_order(verifier: TokenVerifier, fake: FakeIssuer) -> None:
    app = fastapi_example.create_app(verifier)
    async with client(app) as http:
        await http.post(
            "/orders", json={"item": "tea", "quantity": 1}, headers=auth(fake, "orders:write")
        )
        found = await http.get("/orders/1", headers=auth(fake, "orders:read"))
        missing = await http.get("/orders/2", headers=auth(fake, "orders:read"))
    assert found.json()["item"] == "tea"
    assert missing.status_code == 404


async def test_fastapi_example_documents_client_credentials(
    verifier: TokenVerifier, fake: FakeIssuer
) -> None:
    app = fastapi_example.create_app(verifier)
    async with lifespan(app), client(app) as http:
        docs = await http.get("/docs")
        document = (await http.get("/openapi.json")).json()
    assert docs.status_code == 200
    flow = document["components"]["securitySchemes"]["bearerAuth"]["flows"]["clientCredentials"]
    assert flow == {
        "tokenUrl": fake.token_endpoint,
        "scopes": {"orders:read": "List and read orders", "orders:write": "Create orders"},
    }


async def test_swagger_ui_example_serves_swagger_ui_itself(
    verifier: TokenVerifier, fake: FakeIssuer
) -> None:
    """No CDN: the page, its assets and the OAuth redirect page are local and public; the
    API stays protected (tests/e2e/test_swagger_ui.py clicks through it in Chromium)."""
    app = swagger_ui_example.create_app(verifier)
    assets = swagger_ui_example.ASSETS_URL
    async with lifespan(app), client(app) as http:
        docs = await http.get("/docs")
        script = await http.get(f"{assets}/swagger-ui-bundle.js")
        style = await http.get(f"{assets}/swagger-ui.css")
        redirect = await http.get("/docs/oauth2-redirect")
        document = (await http.get("/openapi.json")).json()
        refused = await http.get("/orders")
        allowed = await http.get("/orders", headers=auth(fake, "orders:read"))
    assert docs.status_code == 200
    for name in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon-32x32.png"):
        assert f'"{assets}/{name}"' in docs.text
    assert "://" not in docs.text  # no absolute URL: nothing from a CDN
    assert script.status_code == style.status_code == redirect.status_code == 200
    assert "SwaggerUIBundle" in script.text
    assert "/docs" not in document["paths"]
    flow = document["components"]["securitySchemes"]["bearerAuth"]["flows"]["clientCredentials"]
    assert flow["tokenUrl"] == fake.token_endpoint
    assert refused.status_code == 401
    assert allowed.json() == [{"item": "coffee"}]


async def test_starlette_example_feed_needs_orders_read(
    verifier: TokenVerifier, fake: FakeIssuer
) -> None:
    app = starlette_example.create_app(verifier)
    header = auth(fake, "orders:read")["Authorization"].encode()
    opened = await websocket(app, path="/orders/feed", headers=[(b"authorization", header)])
    refused = await websocket(app, path="/orders/feed")
    assert opened.texts() == [{"orders": 0}]
    assert refused.denial is not None
    assert refused.denial.status == 401


@pytest.fixture
def served() -> Iterator[FakeIssuer]:
    with FakeIssuer(audience=AUDIENCE, algorithm="ES256").serve() as fake:
        yield fake


@pytest.mark.parametrize(
    "module", [fastapi_example, starlette_example], ids=["fastapi", "starlette"]
)
async def test_examples_configure_themselves_from_the_environment(
    module: ModuleType, served: FakeIssuer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With only RESOURCE_GUARD_* set, the app fetches keys from the issuer over loopback."""
    monkeypatch.setenv("RESOURCE_GUARD_ISSUER", served.issuer)
    monkeypatch.setenv("RESOURCE_GUARD_AUDIENCE", AUDIENCE)
    app = module.create_app()
    async with lifespan(app), client(app) as http:
        response = await http.get("/orders", headers=auth(served, "orders:read"))
    assert response.status_code == 200
    assert served.counts["jwks"] == 1


# -- the docs pages' code blocks run as written -------------------------------------------------

DOCS = Path(__file__).resolve().parent.parent / "docs"
PAGES = ("quickstart.md", "fastapi.md", "starlette.md")
PYTHON_BLOCK = re.compile(r"^```python\n(.*?)^```", re.DOTALL | re.MULTILINE)


def python_blocks() -> list[tuple[str, str]]:
    blocks = []
    for page in PAGES:
        text = (DOCS / page).read_text(encoding="utf-8")
        for number, match in enumerate(PYTHON_BLOCK.finditer(text), start=1):
            blocks.append((f"{page}#{number}", match.group(1)))
    return blocks


@pytest.mark.parametrize(("where", "code"), python_blocks(), ids=[w for w, _ in python_blocks()])
def test_docs_code_block_runs(where: str, code: str) -> None:
    """Each block is self-contained: it imports what it uses and runs without a network."""
    namespace: dict[str, Any] = {"__name__": f"docs_{where}"}
    exec(compile(code, where, "exec"), namespace)
