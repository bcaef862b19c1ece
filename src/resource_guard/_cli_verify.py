"""``verify``: full verification of one token with :class:`TokenVerifier`."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any, TextIO

from ._cli_common import (
    EXIT_INVALID,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    CLIError,
    format_time,
    read_token,
)
from ._models import AccessToken
from ._verifier import TokenVerifier
from .exceptions import InsufficientScopeError, InvalidTokenError, KeysUnavailableError

__all__ = ["verify_token"]


def _build(args: argparse.Namespace) -> TokenVerifier:
    options: dict[str, Any] = {
        "jwks_uri": args.jwks_uri,
        "allow_insecure_http": args.allow_insecure_http,
        "timeout": args.timeout,
        "leeway": args.leeway,
    }
    if args.algorithm:
        options["algorithms"] = args.algorithm
    if args.scope_claim:
        options["scope_claims"] = args.scope_claim
    try:
        return TokenVerifier(args.issuer, args.audience, **options)
    except (TypeError, ValueError) as exc:
        raise CLIError(str(exc)) from None


def _report(token: AccessToken, now: float) -> list[str]:
    audience = " ".join(token.audience) or "-"
    return [
        "valid token",
        f"  subject    {token.subject or '-'}",
        f"  client id  {token.client_id or '-'}",
        f"  scopes     {' '.join(sorted(token.scopes)) or '-'}",
        f"  audience   {audience}",
        f"  issuer     {token.issuer}",
        f"  key id     {token.key_id or '-'}",
        f"  expires    {format_time(token.expires_at.timestamp(), now)}",
    ]


def verify_token(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    """Verify a token against the issuer's live keys; 0 when valid, else 1 (or 3)."""
    raw = read_token(args.token, stdin)
    # Everything happens in the coroutine: nothing follows asyncio.run() in this frame.
    return asyncio.run(_verify(args, _build(args), raw, out))


async def _verify(args: argparse.Namespace, verifier: TokenVerifier, raw: str, out: TextIO) -> int:
    try:
        async with verifier:
            token = await verifier.verify(raw)
        if args.require_scope:
            token.require_scopes(args.require_scope)
    except (InvalidTokenError, InsufficientScopeError) as exc:
        if args.json:
            print(json.dumps({"valid": False, "error": exc.code, "message": exc.message}), file=out)
            return EXIT_INVALID
        raise CLIError(f"invalid token ({exc.code}): {exc.message}", EXIT_INVALID) from None
    except KeysUnavailableError as exc:
        raise CLIError(f"cannot verify: {exc.message}", EXIT_UNAVAILABLE) from None
    if args.json:
        document = {
            "valid": True,
            "subject": token.subject,
            "client_id": token.client_id,
            "scopes": sorted(token.scopes),
            "audience": list(token.audience),
            "issuer": token.issuer,
            "key_id": token.key_id,
            "expires_at": token.expires_at.isoformat(),
        }
        print(json.dumps(document, indent=2), file=out)
    else:
        print("\n".join(_report(token, time.time())), file=out)
    return EXIT_OK
