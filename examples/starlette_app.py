"""An orders service protected by resource-guard (Starlette).

``/health`` is public; ``orders:read`` lists orders and opens the live feed (a WebSocket),
``orders:write`` creates orders.

    RESOURCE_GUARD_ISSUER=https://idp.example.com/oauth2/default \\
    RESOURCE_GUARD_AUDIENCE=api://orders \\
    uvicorn examples.starlette_app:create_app --factory
"""

from __future__ import annotations

import json
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket

from resource_guard import TokenVerifier
from resource_guard.middleware import BearerAuthMiddleware, get_access_token
from resource_guard.starlette import require_scopes


async def health(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok"})


@require_scopes("orders:read")
async def list_orders(request: Request) -> JSONResponse:
    return JSONResponse(request.app.state.orders)


@require_scopes("orders:write")
async def create_order(request: Request) -> JSONResponse:
    try:
        data: Any = json.loads(await request.body())
    except ValueError:
        data = None
    if not isinstance(data, dict) or not isinstance(data.get("item"), str):
        return JSONResponse({"detail": 'send {"item": "...", "quantity": n}'}, status_code=422)
    quantity = data.get("quantity", 1)
    if not isinstance(quantity, int) or not 0 < quantity <= 1000:
        return JSONResponse({"detail": "quantity must be 1-1000"}, status_code=422)
    token = get_access_token(request)
    orders: list[dict[str, Any]] = request.app.state.orders
    order = {
        "id": len(orders) + 1,
        "item": data["item"],
        "quantity": quantity,
        "created_by": token.subject if token else None,
    }
    orders.append(order)
    return JSONResponse(order, status_code=201)


@require_scopes("orders:read")
async def order_feed(websocket: WebSocket) -> None:
    await websocket.accept()
    await websocket.send_json({"orders": len(websocket.app.state.orders)})
    await websocket.close()


def create_app(verifier: TokenVerifier | None = None) -> Starlette:
    """The orders API; ``verifier`` defaults to one configured from the environment."""
    verifier = verifier or TokenVerifier.from_env()
    app = Starlette(
        routes=[
            Route("/health", health),
            Route("/orders", list_orders),
            Route("/orders", create_order, methods=["POST"]),
            WebSocketRoute("/orders/feed", order_feed),
        ],
        middleware=[Middleware(BearerAuthMiddleware, verifier=verifier, public_paths=("/health",))],
    )
    app.state.orders = []
    return app
