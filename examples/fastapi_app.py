"""An orders service protected by resource-guard (FastAPI).

Every route but ``/health`` and the API docs needs a bearer token from the configured
issuer: ``orders:read`` to list and read orders, ``orders:write`` to create them.

    RESOURCE_GUARD_ISSUER=https://idp.example.com/oauth2/default \\
    RESOURCE_GUARD_AUDIENCE=api://orders \\
    uvicorn examples.fastapi_app:create_app --factory

Swagger UI (``/docs``) offers an Authorize button for the client-credentials grant.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from resource_guard import AccessToken, TokenVerifier
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


def create_app(verifier: TokenVerifier | None = None) -> FastAPI:
    """The orders API; ``verifier`` defaults to one configured from the environment."""
    verifier = verifier or TokenVerifier.from_env()
    app = FastAPI(title="Orders")
    app.add_middleware(BearerAuthMiddleware, verifier=verifier, public_paths=PUBLIC_PATHS)
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
