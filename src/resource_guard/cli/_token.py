"""``token mint`` and ``token inspect``: their options and what they do.

``decode_unverified`` is the command line's one reader of a JWT's header and claims
without verification (for display only).
"""

from __future__ import annotations

import argparse
import json
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from resource_guard.exceptions import MalformedTokenError
from resource_guard.testing import DEFAULT_AUDIENCE, FakeIssuer, read_unverified

from ._common import (
    DEFAULT_CLI_ISSUER,
    EXIT_INVALID,
    EXIT_OK,
    CLIError,
    Commands,
    ListOption,
    StoreOption,
    format_time,
    formatter,
    read_token,
)
from ._dpop import add_dpop_key_option, add_proof_command, load_or_create_dpop_key
from ._keys import add_key_file_option, load_or_create_keys

__all__ = [
    "add_token_command",
    "decode_unverified",
    "inspect_token",
    "mint_token",
    "parse_claim",
    "parse_duration",
]

clock: Callable[[], float] = time.time
"""The time ``token inspect`` measures against (replaced by tests)."""

_DURATION = re.compile(r"^(-?\d+)\s*([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_TIME_CLAIMS = ("iat", "nbf", "auth_time", "exp")


def parse_duration(text: str) -> int:
    """``300``, ``90s``, ``15m``, ``2h``, ``1d`` (negative values allowed) -> seconds."""
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a duration: use seconds (300) or a number with s, m, h or d (15m)"
        )
    return int(match[1]) * _UNITS[match[2]]


def parse_claim(text: str) -> tuple[str, Any]:
    """``name=value``; the value is read as JSON when it parses (``5``, ``true``,
    ``["a","b"]``, ``{"k": 1}``), else taken as a string."""
    name, equals, raw = text.partition("=")
    if not equals or not name.strip():
        raise argparse.ArgumentTypeError("--claim takes NAME=VALUE, e.g. --claim tenant=acme")
    try:
        value: Any = json.loads(raw)
    except ValueError:
        value = raw
    return name.strip(), value


def mint_token(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Print a token signed with the key file's current key."""
    keys, created = load_or_create_keys(Path(args.key_file))
    try:
        fake = FakeIssuer(args.issuer, audience=DEFAULT_AUDIENCE, algorithm=keys[-1].alg)
    except (TypeError, ValueError) as exc:
        raise CLIError(f"--issuer: {exc}") from None
    for key in keys:
        fake.add_key(key, make_current=key is keys[-1])
    audiences = args.audience or [DEFAULT_AUDIENCE]
    dpop_key, dpop_created = (
        (None, False)
        if args.dpop_key is None
        else load_or_create_dpop_key(Path(args.dpop_key), args.dpop_algorithm)
    )
    token = fake.mint(
        args.subject or None,
        scopes=args.scope or (),
        audience=audiences[0] if len(audiences) == 1 else audiences,
        expires_in=args.expires_in,
        client_id=args.client_id,
        claims=dict(args.claim or ()),
        dpop_key=dpop_key,
    )
    if created:
        print(f"resource-guard: created key file {args.key_file}", file=err)
    if dpop_created:
        print(f"resource-guard: created DPoP key file {args.dpop_key}", file=err)
    print(token, file=out)
    return EXIT_OK


def decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, without checking anything."""
    try:
        return read_unverified(token)
    except MalformedTokenError as exc:
        raise CLIError(exc.message, EXIT_INVALID) from None


def inspect_token(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    """Show a token's header and claims, marked UNVERIFIED."""
    header, claims = decode_unverified(read_token(args.token, stdin))
    if args.json:
        document = {"verified": False, "header": header, "claims": claims}
        print(json.dumps(document, indent=2, sort_keys=False), file=out)
        return EXIT_OK
    now = clock()
    lines = [
        "UNVERIFIED: decoded only; the signature, issuer, audience and times are NOT checked",
        "header:",
        json.dumps(header, indent=2),
        "claims:",
        json.dumps(claims, indent=2),
    ]
    times = [
        (name, claims[name])
        for name in _TIME_CLAIMS
        if isinstance(claims.get(name), int | float) and not isinstance(claims[name], bool)
    ]
    if times:
        lines.append("times:")
        lines.extend(
            f"  {name:<9} {format_time(value, now, expiry=name == 'exp')}" for name, value in times
        )
    if "exp" not in claims:
        lines.append("  no 'exp' claim: resource-guard refuses tokens that never expire")
    print("\n".join(lines), file=out)
    return EXIT_OK


def _add_mint(token_commands: Commands) -> None:
    mint = token_commands.add_parser(
        "mint",
        help="print a signed access token (for curl and manual tests)",
        formatter_class=formatter,
        description=(
            "Print an RFC 9068 access token signed with the key file's current key, as\n"
            "`issuer serve` would issue it. Only a verifier that trusts the fake issuer\n"
            "accepts it."
        ),
        epilog=(
            "examples:\n"
            "  TOKEN=$(resource-guard token mint --scope orders:read)\n"
            '  curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/orders\n'
            "  resource-guard token mint --subject alice --scope orders:read,orders:write \\\n"
            "      --audience api://orders --expires-in 15m --claim tenant=acme \\\n"
            "      --claim 'roles=[\"admin\"]'\n"
            "  resource-guard token mint --expires-in=-1h     # already expired\n"
            "  resource-guard token mint --dpop-key dpop.pem  # DPoP-bound: see `token proof`"
        ),
    )
    mint.add_argument("--subject", default="user-123", help="the sub claim (default %(default)s)")
    mint.add_argument(
        "--scope",
        action=ListOption,
        metavar="SCOPE",
        help="the scope claim (repeatable; comma- or space-separated)",
    )
    mint.add_argument(
        "--audience",
        action=ListOption,
        metavar="AUD",
        help=f"the aud claim (repeatable; comma- or space-separated; default {DEFAULT_AUDIENCE})",
    )
    mint.add_argument(
        "--expires-in",
        "--lifetime",
        action=StoreOption,
        deprecated=("--lifetime",),
        dest="expires_in",
        type=parse_duration,
        default=300,
        metavar="DURATION",
        help="seconds until exp, or 90s, 15m, 2h, 1d; negative for an expired token "
        "(default 300; --lifetime is the deprecated spelling)",
    )
    mint.add_argument(
        "--claim",
        action="append",
        type=parse_claim,
        metavar="NAME=VALUE",
        help="add or override a claim; VALUE is read as JSON when it parses (5, true, "
        '["a"]), else as a string (repeatable)',
    )
    mint.add_argument("--client-id", metavar="ID", help="the client_id claim")
    mint.add_argument(
        "--issuer",
        default=DEFAULT_CLI_ISSUER,
        metavar="URL",
        help="the iss claim: the served issuer's URL (default %(default)s)",
    )
    add_key_file_option(mint)
    add_dpop_key_option(mint)
    mint.set_defaults(handler=lambda args, streams: mint_token(args, streams[0], streams[1]))


def _add_inspect(token_commands: Commands) -> None:
    inspect = token_commands.add_parser(
        "inspect",
        help="show a token's header and claims, UNVERIFIED",
        formatter_class=formatter,
        description=(
            "Decode a JWT and show its header, its claims and its times as dates. Nothing is\n"
            "verified, and the output says so (UNVERIFIED): use `resource-guard verify` to\n"
            "know whether the token is valid."
        ),
        epilog=(
            "examples:\n"
            "  resource-guard token inspect eyJhbGciOi...\n"
            "  echo $TOKEN | resource-guard token inspect -     # keeps it out of ps and history"
        ),
    )
    inspect.add_argument("token", metavar="TOKEN", help="the token, or - to read it from stdin")
    inspect.add_argument("--json", action="store_true", help="print JSON instead of text")
    inspect.set_defaults(handler=lambda args, streams: inspect_token(args, streams[0], streams[2]))


def add_token_command(commands: Commands) -> None:
    """``token mint``, ``token inspect`` and ``token proof``."""
    token = commands.add_parser(
        "token",
        help="mint or inspect tokens",
        description="Mint tokens with the fake issuer's keys, or look inside any JWT.",
        formatter_class=formatter,
    )
    token_commands = token.add_subparsers(dest="token_command", metavar="COMMAND", required=True)
    _add_mint(token_commands)
    _add_inspect(token_commands)
    add_proof_command(token_commands)
