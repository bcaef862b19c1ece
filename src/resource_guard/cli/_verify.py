"""``verify``: full verification of one token with :class:`~resource_guard.TokenVerifier`;
its options and what it does."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any, TextIO

from resource_guard import (
    AccessToken,
    InsufficientScopeError,
    InvalidTokenError,
    KeysUnavailableError,
    TokenVerifier,
)
from resource_guard.testing import DEFAULT_AUDIENCE

from ._common import (
    DEFAULT_CLI_ISSUER,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    CLIError,
    Commands,
    ListOption,
    format_time,
    formatter,
    read_token,
    seconds_value,
)

__all__ = ["add_verify_command", "verify_token"]


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


def add_verify_command(commands: Commands) -> None:
    """``verify``: every option is the :class:`~resource_guard.TokenVerifier` keyword of
    the same name (``--scope-claim`` and ``--algorithm`` name one item of a list)."""
    verify = commands.add_parser(
        "verify",
        help="verify a token against its issuer's live keys",
        formatter_class=formatter,
        description=(
            "Verify a token exactly as the middleware does: the issuer's keys are fetched\n"
            "(discovery, then the JWKS), then the signature, type and claims are checked.\n"
            "Exit status 0: valid (subject, scopes and expiry are printed); 1: invalid (the\n"
            "reason is printed); 3: the keys could not be fetched."
        ),
        epilog=(
            "examples:\n"
            "  resource-guard verify $TOKEN --issuer https://idp.example.com/oauth2/default \\\n"
            "      --audience api://orders\n"
            "  resource-guard token mint | resource-guard verify - \\\n"
            f"      --issuer {DEFAULT_CLI_ISSUER} --audience {DEFAULT_AUDIENCE}"
        ),
    )
    verify.add_argument("token", metavar="TOKEN", help="the token, or - to read it from stdin")
    verify.add_argument("--issuer", required=True, metavar="URL", help="the expected iss")
    verify.add_argument(
        "--audience",
        required=True,
        action=ListOption,
        metavar="AUD",
        help="accepted audiences (repeatable; comma- or space-separated)",
    )
    verify.add_argument("--jwks-uri", metavar="URL", help="skip discovery and use this JWKS")
    verify.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="accept plain-http URLs that are not loopback (trusted networks only)",
    )
    verify.add_argument(
        "--algorithm",
        action=ListOption,
        metavar="ALG",
        help="allowed algorithms (repeatable; comma- or space-separated; "
        "default: every asymmetric one)",
    )
    verify.add_argument(
        "--scope-claim",
        action=ListOption,
        metavar="CLAIM",
        help="claims read as scopes (repeatable; comma- or space-separated; "
        "default: scope and scp)",
    )
    verify.add_argument(
        "--require-scope",
        action=ListOption,
        metavar="SCOPE",
        help="fail unless the token holds all of these scopes (repeatable; comma- or "
        "space-separated)",
    )
    verify.add_argument(
        "--leeway",
        type=seconds_value,
        default=30,
        metavar="SECONDS",
        help="clock skew (default 30)",
    )
    verify.add_argument(
        "--timeout",
        type=seconds_value,
        default=5,
        metavar="SECONDS",
        help="fetch deadline (default 5)",
    )
    verify.add_argument("--json", action="store_true", help="print JSON instead of text")
    verify.set_defaults(handler=lambda args, streams: verify_token(args, streams[0], streams[2]))
