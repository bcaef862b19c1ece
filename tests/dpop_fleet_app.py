"""The app of the DPoP fleet test (tests/test_dpop_fleet.py): uvicorn runs it in processes
of their own, each configured by environment variables only.

- ``RESOURCE_GUARD_ISSUER``, ``_AUDIENCE``, ``_JWKS_URI``: the served fake issuer
  (``FakeIssuer.environ()``).
- ``FLEET_PUBLIC_URL``: the address clients use (a load balancer's), the same for every
  process, so that every process computes the same ``htu`` for a proof.
- ``FLEET_REDIS_URL`` and ``FLEET_REDIS_NAMESPACE``: the replay store the fleet shares.
  Unset, each process remembers proofs in memory, alone.
"""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from resource_guard import BearerAuthMiddleware, TokenVerifier
from resource_guard.dpop import DPoPPolicy, ReplayStore
from resource_guard.dpop.redis import RedisReplayStore


async def orders(request: Request) -> JSONResponse:
    return JSONResponse({"pid": os.getpid()})


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"ok": True})


def build() -> Starlette:
    redis_url = os.environ.get("FLEET_REDIS_URL")
    store: ReplayStore | None = None
    if redis_url:
        namespace = os.environ.get("FLEET_REDIS_NAMESPACE", "fleet:")
        store = RedisReplayStore(redis_url, namespace=namespace, timeout=0.5)
    verifier = TokenVerifier.from_env(dpop=DPoPPolicy("allowed", replay_store=store))
    app = Starlette(routes=[Route("/orders", orders), Route("/health", health)])
    app.add_middleware(
        BearerAuthMiddleware,
        verifier=verifier,
        public_paths=("/health",),
        public_url=os.environ["FLEET_PUBLIC_URL"],
    )
    return app


app = build()
