"""``assert_status``: status assertions that explain an authorization refusal."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any, Protocol

from .._jws import read_unverified
from .._scopes import split_scope
from ..exceptions import MalformedTokenError

__all__ = ["assert_status", "explain_response"]

_PARAM = re.compile(r'([A-Za-z_]+)="((?:[^"\\]|\\.)*)"')
_BODY_PREVIEW = 200


class _Response(Protocol):
    """What is read from a response: httpx's and Starlette's TestClient's fit."""

    @property
    def status_code(self) -> int: ...

    @property
    def headers(self) -> Mapping[str, str]: ...

    @property
    def text(self) -> str: ...


def _challenge(headers: Mapping[str, str]) -> dict[str, str] | None:
    """The parameters of a ``Bearer`` challenge; None without one."""
    value = headers.get("www-authenticate") or ""
    if value[:6].lower() != "bearer":
        return None
    return {name.lower(): re.sub(r"\\(.)", r"\1", raw) for name, raw in _PARAM.findall(value)}


def _body_error(response: _Response) -> dict[str, Any]:
    try:
        body = json.loads(response.text)
    except ValueError:
        return {}
    if isinstance(body, dict) and isinstance(body.get("detail"), dict):
        body = body["detail"]  # FastAPI's HTTPException wrapper
    return body if isinstance(body, dict) else {}


def _sent_scopes(response: Any) -> str | None:
    """Scopes of the bearer token the request carried (read unverified), if any."""
    try:
        authorization = response.request.headers.get("authorization") or ""
    except (AttributeError, RuntimeError):  # httpx raises RuntimeError without a request
        return None
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return None
    try:
        _, claims = read_unverified(token.strip())
    except MalformedTokenError:
        return None
    scopes: list[str] = []
    for name in ("scope", "scp"):
        value = claims.get(name)
        if isinstance(value, str):
            scopes.extend(split_scope(value))
        elif isinstance(value, list):
            scopes.extend(str(item) for item in value)
    return " ".join(dict.fromkeys(scopes)) or "(none)"


def explain_response(response: _Response) -> str:
    """One line on why a response refused the request, from its challenge and body.

    For example ``403 insufficient_scope: the token lacks a required scope; the route
    needs scope "orders:write"; the token has scope "orders:read" (read unverified)``.
    """
    status = response.status_code
    challenge = _challenge(response.headers)
    bearer = challenge is not None
    challenge = challenge or {}
    body = _body_error(response)
    error = challenge.get("error") or body.get("error")
    description = challenge.get("error_description") or body.get("error_description")
    parts = [f"{status}"]
    if error:
        parts[0] += f" {error}" + (f": {description}" if description else "")
    elif status == 401 and bearer:
        parts[0] += " no credentials: send 'Authorization: Bearer <token>'"
    else:
        text = response.text
        if text:
            preview = text[:_BODY_PREVIEW] + ("..." if len(text) > _BODY_PREVIEW else "")
            parts.append(f"body {preview!r}")
    if "scope" in challenge:
        parts.append(f'the route needs scope "{challenge["scope"]}"')
    retry_after = response.headers.get("retry-after")
    if retry_after:
        parts.append(f"Retry-After: {retry_after}")
    if error == "insufficient_scope" or status == 403:
        sent = _sent_scopes(response)
        if sent is not None:
            parts.append(f'the token has scope "{sent}" (read unverified)')
    return "; ".join(parts)


def assert_status(response: _Response, expected: int) -> None:
    """Assert ``response.status_code == expected``; on failure, say why it was refused.

    Works with httpx responses and Starlette's (or FastAPI's) TestClient. The failure
    message reads like ``expected status 200, got 403 insufficient_scope: the token lacks
    a required scope; the route needs scope "orders:write"; the token has scope
    "orders:read" (read unverified)``.
    """
    __tracebackhide__ = True
    if isinstance(expected, bool) or not isinstance(expected, int):
        raise TypeError("expected must be an HTTP status code (int)")
    if response.status_code != expected:
        raise AssertionError(f"expected status {expected}, got {explain_response(response)}")
