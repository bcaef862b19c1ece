"""An orders service protected by resource-guard (FastAPI).

Every route but ``/health`` and the API docs needs a bearer token from the configured
issuer: ``orders:read`` to list and read orders, ``orders:write`` to create them.

    RESOURCE_GUARD_ISSUER=https://idp.example.com/oauth2/default \\
    RESOURCE_GUARD_AUDIENCE=api://orders \\
    uvicorn examples.fastapi_app:create_app --factory

Swagger UI (``/docs``) offers an Authorize button for the client-credentials grant.

With ``ORDERS_RESOURCE_URL`` (the API's own https URL, also its audience) the API serves
its RFC 9728 metadata at ``/.well-known/oauth-protected-resource`` (path-suffixed for a
URL with a path), and every challenge points there.
"""

from __future__ import annotations

import os
from typing import Annotated

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from resource_guard import AccessToken, ProtectedResourceMetadata, TokenVerifier
from resource_guard.fastapi import install_openapi, require_scopes
from resource_guard.middleware import BearerAuthMiddleware

PUBLIC_PATHS = ("/health", "/docs", "/docs/oauth2-redirect", "/openapi.json")
SCOPES = {"orders:read": "List and read orders", "orders:write": "Create orders"}


class NewOrder(BaseModel):
    item: str = Field(min_length=1, max_length=100)
    quantity: int = Field(gt=0, le=1000)


class Order(NewOrder):
    id: int
    created_by: str


def create_app(
    verifier: TokenVerifier | None = None, *, resource_url: str | None = None
) -> FastAPI:
    """The orders API; ``verifier`` defaults to one configured from the environment, and
    ``resource_url`` (serving the RFC 9728 metadata) to ``ORDERS_RESOURCE_URL``."""
    verifier = verifier or TokenVerifier.from_env()
    resource_url = resource_url or os.environ.get("ORDERS_RESOURCE_URL")
    metadata = None
    if resource_url:
        metadata = ProtectedResourceMetadata(
            resource_url, route_scopes=True, resource_name="Orders"
        )
    app = FastAPI(title="Orders")
    app.add_middleware(
        BearerAuthMiddleware,
        verifier=verifier,
        public_paths=PUBLIC_PATHS,
        resource_metadata=metadata,
    )
    install_openapi(app, verifier=verifier, scope_descriptions=SCOPES)
    orders: dict[int, Order] = {}

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/orders", dependencies=[require_scopes("orders:read")])
    async def list_orders() -> list[Order]:
        return list(orders.values())

    @app.get("/orders/{order_id}", dependencies=[require_scopes("orders:read")])
    async def get_order(order_id: int) -> Order:
        if order_id not in orders:
            raise HTTPException(status_code=404, detail="no such order")
        return orders[order_id]

    @app.post("/orders", status_code=201)
    async def create_order(
        new: NewOrder, token: Annotated[AccessToken, require_scopes("orders:write")]
    ) -> Order:
        order = Order(
            id=len(orders) + 1,
            item=new.item,
            quantity=new.quantity,
            created_by=token.subject or token.client_id or "unknown",
        )
        orders[order.id] = order
        return order

    return app
