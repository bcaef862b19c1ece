"""Swagger UI served from the package's own files, with a working Authorize button.

FastAPI's ``/docs`` loads Swagger UI from a CDN, which a closed network (a CI machine, many
production hosts) cannot reach. ``serve_swagger_ui`` serves the files of the
``swagger-ui-bundle-v2`` package instead (``pip install swagger-ui-bundle-v2``: Swagger UI 5,
which renders FastAPI's OpenAPI 3.1; the older ``swagger-ui-bundle`` ships Swagger UI 4,
which refuses it), under ``/docs/assets``, and ``/docs/*`` is a public path, so the page
loads without a token.

    RESOURCE_GUARD_ISSUER=https://idp.example.com/oauth2/default \\
    RESOURCE_GUARD_AUDIENCE=api://orders \\
    uvicorn examples.swagger_ui:create_app --factory

Open ``/docs``, press Authorize, give a client id and secret: Swagger UI gets a token with
the client-credentials grant at the issuer's token endpoint (``install_openapi``), and
"Try it out" sends it. The issuer must allow the page's origin (CORS); the bundled
``FakeIssuer`` does, for tests (tests/e2e/test_swagger_ui.py clicks through it in Chromium).
"""

from __future__ import annotations

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from swagger_ui_bundle import swagger_ui_path

from resource_guard import TokenVerifier
from resource_guard.fastapi import install_openapi, require_scopes
from resource_guard.middleware import BearerAuthMiddleware

DOCS_URL = "/docs"
ASSETS_URL = DOCS_URL + "/assets"
PUBLIC_PATHS = ("/health", DOCS_URL + "/*", "/openapi.json")  # /docs/* covers /docs itself
SCOPES = {"orders:read": "List and read orders"}


def serve_swagger_ui(app: FastAPI, *, docs_url: str = DOCS_URL) -> None:
    """Serve Swagger UI at ``docs_url``, its assets under ``docs_url + "/assets"``.

    Create the app with ``FastAPI(docs_url=None)`` so that FastAPI's own CDN page does not
    take the path first, and make ``docs_url + "/*"`` public.
    """
    assets = docs_url + "/assets"
    redirect = docs_url + "/oauth2-redirect"
    app.mount(assets, StaticFiles(directory=str(swagger_ui_path)), name="swagger-ui-assets")
    openapi_url = app.openapi_url or "/openapi.json"

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=openapi_url,
            title=f"{app.title} - Swagger UI",
            swagger_js_url=f"{assets}/swagger-ui-bundle.js",
            swagger_css_url=f"{assets}/swagger-ui.css",
            swagger_favicon_url=f"{assets}/favicon-32x32.png",
            oauth2_redirect_url=redirect,
        )

    @app.get(redirect, include_in_schema=False)
    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()


def create_app(verifier: TokenVerifier | None = None) -> FastAPI:
    """A small orders API whose ``/docs`` works offline; ``verifier`` defaults to one
    configured from the environment."""
    verifier = verifier or TokenVerifier.from_env()
    app = FastAPI(title="Orders", docs_url=None, redoc_url=None)
    app.add_middleware(BearerAuthMiddleware, verifier=verifier, public_paths=PUBLIC_PATHS)
    install_openapi(app, verifier=verifier, scope_descriptions=SCOPES)
    serve_swagger_ui(app)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/orders", dependencies=[require_scopes("orders:read")])
    async def list_orders() -> list[dict[str, str]]:
        return [{"item": "coffee"}]

    return app
