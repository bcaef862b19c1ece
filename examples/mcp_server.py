"""An MCP server with one tool, protected by resource-guard (the official ``mcp`` SDK).

Every MCP request needs a bearer token from the configured issuer, issued for this
server (its ``aud`` is the server's URL, ``MCP_RESOURCE_URL``) and granting
``orders:read``; the SDK serves the RFC 9728 metadata that tells clients so.

    RESOURCE_GUARD_ISSUER=https://idp.example.com \\
    RESOURCE_GUARD_AUDIENCE=https://mcp.example.com/mcp \\
    MCP_RESOURCE_URL=https://mcp.example.com/mcp \\
    uvicorn examples.mcp_server:create_app --factory

``MCP_RESOURCE_URL`` defaults to the first audience. Clients discover the issuer from
``https://mcp.example.com/.well-known/oauth-protected-resource/mcp``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from urllib.parse import urlsplit

from mcp.server.auth.middleware.auth_context import get_access_token
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.transport_security import TransportSecuritySettings

from resource_guard import TokenVerifier
from resource_guard.mcp import MCPApp, MCPTokenVerifier

REQUIRED_SCOPES = ["orders:read"]
ORDERS = [{"id": 1, "item": "coffee", "quantity": 2}, {"id": 2, "item": "tea", "quantity": 1}]


def create_app(
    verifier: TokenVerifier | None = None, environ: Mapping[str, str] | None = None
) -> MCPApp:
    """The MCP server's ASGI app; ``verifier`` defaults to one configured from the
    environment, the resource URL to ``MCP_RESOURCE_URL``, else its first audience."""
    env = os.environ if environ is None else environ
    verifier = verifier or TokenVerifier.from_env(env)
    resource = env.get("MCP_RESOURCE_URL") or verifier.audiences[0]
    tokens = MCPTokenVerifier(verifier, resource=resource)
    server = MCPServer(
        "orders",
        token_verifier=tokens,
        auth=AuthSettings.model_validate(  # the URLs as given: no slash added
            {
                "issuer_url": verifier.issuer,
                "resource_server_url": resource,
                "required_scopes": REQUIRED_SCOPES,
                "validate_token_resource": True,  # the adapter reports the audience matched
            }
        ),
    )

    @server.tool()
    def list_orders() -> list[dict[str, object]]:
        """The orders, for the client the token names."""
        token = get_access_token()
        client = token.client_id if token is not None else ""
        return [{**order, "client": client} for order in ORDERS]

    host = urlsplit(resource).netloc
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True, allowed_hosts=[host], allowed_origins=[]
    )
    path = urlsplit(resource).path or "/mcp"
    return MCPApp(
        server.streamable_http_app(streamable_http_path=path, transport_security=security),
        tokens,
    )
