"""The ASGI apps the HTTP benchmarks serve, each under uvicorn in its own process.

    python -m benchmarks.apps APP PORT      # APP: see APPS; configured by BENCH_* variables

Every app answers ``GET /health`` (public) and ``GET /orders`` (protected where the app
protects anything). ``BENCH_LAG=1`` adds an event-loop lag monitor read at ``/_bench/lag``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import jwt
import uvicorn
from fastapi import Depends, FastAPI
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

from resource_guard import BearerAuthMiddleware, TokenVerifier
from resource_guard.fastapi import require_scopes

PUBLIC_PATHS = ("/health", "/_bench/*")
LAG_INTERVAL = 0.005
ORDERS = {"orders": [{"id": 1, "item": "coffee"}]}


class LagMonitor:
    """Measures how late the event loop wakes a task that sleeps ``LAG_INTERVAL`` seconds."""

    def __init__(self) -> None:
        self.lags: list[float] = []

    async def run(self) -> None:
        clock = time.perf_counter  # not loop.time(): uvloop's clock ticks in milliseconds
        while True:
            start = clock()
            await asyncio.sleep(LAG_INTERVAL)
            self.lags.append(clock() - start - LAG_INTERVAL)
            if len(self.lags) > 100_000:
                del self.lags[:50_000]

    def take(self) -> dict[str, float]:
        """Max and p99 lag (ms) since the last call, and the number of samples."""
        lags, self.lags = sorted(self.lags), []
        if not lags:
            return {"samples": 0, "max_ms": 0.0, "p99_ms": 0.0}
        p99 = lags[min(len(lags) - 1, int(len(lags) * 0.99))]
        return {"samples": len(lags), "max_ms": lags[-1] * 1000, "p99_ms": p99 * 1000}


def starlette_app(lag: LagMonitor | None) -> Starlette:
    """The bare endpoint: ``/health`` and ``/orders`` return small JSON documents."""

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def orders(request: Request) -> Response:
        return JSONResponse(ORDERS)

    async def lag_report(request: Request) -> Response:
        return JSONResponse(lag.take() if lag else {})

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        task = asyncio.get_running_loop().create_task(lag.run()) if lag else None
        yield
        if task is not None:
            task.cancel()

    routes = [
        Route("/health", health),
        Route("/orders", orders, methods=["GET", "POST"]),
        Route("/_bench/lag", lag_report),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


def verifier(env: Mapping[str, str]) -> TokenVerifier:
    """A TokenVerifier of the benchmark issuer (its JWKS served on loopback by the parent)."""
    return TokenVerifier(
        env["BENCH_ISSUER"],
        env["BENCH_AUDIENCE"],
        jwks_uri=env["BENCH_JWKS_URI"],
        cache_size=int(env.get("BENCH_CACHE_SIZE", "4096")),
        cooldown=float(env.get("BENCH_COOLDOWN", "30")),
    )


class PassThroughMiddleware:
    """A pure-ASGI middleware that does nothing: the price of any middleware layer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app(scope, receive, send)


class NaivePyJWTMiddleware:
    """The baseline most services write: pure ASGI, ``jwt.decode`` with a preloaded key."""

    def __init__(self, app: ASGIApp, *, key: Any, issuer: str, audience: str) -> None:
        self.app = app
        self.key = key
        self.issuer = issuer
        self.audience = audience

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] == "/health":
            await self.app(scope, receive, send)
            return
        token = None
        for name, value in scope["headers"]:
            if name == b"authorization" and value[:7].lower() == b"bearer ":
                token = value[7:].decode("latin-1")
        try:
            if token is None:
                raise jwt.InvalidTokenError("no token")
            claims = jwt.decode(
                token,
                self.key,
                algorithms=["RS256"],
                audience=self.audience,
                issuer=self.issuer,
            )
        except jwt.InvalidTokenError:
            await send({"type": "http.response.start", "status": 401, "headers": []})
            await send({"type": "http.response.body", "body": b""})
            return
        scope["jwt.claims"] = claims
        await self.app(scope, receive, send)


async def nothing() -> None:
    """An empty FastAPI dependency: the price of any dependency at all."""


def fastapi_app(*, guarded: bool, empty_dependency: bool = False) -> FastAPI:
    """FastAPI with ``/orders``: bare, requiring the ``orders:read`` scope, or with an
    empty dependency (for reference)."""
    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    dependencies: list[Any] = [require_scopes("orders:read")] if guarded else []
    if empty_dependency:
        dependencies.append(Depends(nothing))

    @app.get("/orders", dependencies=dependencies)
    async def orders() -> dict[str, Any]:
        return ORDERS

    return app


def build(name: str, env: Mapping[str, str]) -> ASGIApp:
    """The app called ``name`` (one of APPS)."""
    lag = LagMonitor() if env.get("BENCH_LAG") == "1" else None
    if name == "starlette":
        return starlette_app(lag)
    if name == "starlette-guarded":
        return BearerAuthMiddleware(
            starlette_app(lag), verifier=verifier(env), public_paths=PUBLIC_PATHS
        )
    if name == "starlette-passthrough":
        return PassThroughMiddleware(starlette_app(lag))
    if name == "starlette-pyjwt":
        key = jwt.PyJWK.from_json(env["BENCH_PUBLIC_JWK"]).key
        return NaivePyJWTMiddleware(
            starlette_app(lag),
            key=key,
            issuer=env["BENCH_ISSUER"],
            audience=env["BENCH_AUDIENCE"],
        )
    if name == "fastapi":
        return fastapi_app(guarded=False)
    if name == "fastapi-empty-dependency":
        return fastapi_app(guarded=False, empty_dependency=True)
    if name == "fastapi-scopes":
        return BearerAuthMiddleware(
            fastapi_app(guarded=True), verifier=verifier(env), public_paths=PUBLIC_PATHS
        )
    raise ValueError(f"unknown app {name!r}; choose from {sorted(APPS)}")


APPS: tuple[str, ...] = (
    "starlette",
    "starlette-guarded",
    "starlette-passthrough",
    "starlette-pyjwt",
    "fastapi",
    "fastapi-empty-dependency",
    "fastapi-scopes",
)


def main(argv: list[str], serve: Callable[..., None] = uvicorn.run) -> None:
    """Serve app ``argv[0]`` on 127.0.0.1 port ``argv[1]`` until terminated."""
    name, port = argv[0], int(argv[1])
    serve(
        build(name, os.environ),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )


if __name__ == "__main__":
    main(sys.argv[1:])
