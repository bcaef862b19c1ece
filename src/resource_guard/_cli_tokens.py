"""``token mint`` and ``token inspect``."""

from __future__ import annotations

import argparse
import base64
import binascii
import json
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from ._cli_common import EXIT_INVALID, EXIT_OK, CLIError, format_time, read_token
from ._cli_keys import load_or_create_keys
from .testing import DEFAULT_AUDIENCE, FakeIssuer

__all__ = ["DEFAULT_CLI_ISSUER", "inspect_token", "mint_token", "parse_duration"]

DEFAULT_CLI_ISSUER = "http://127.0.0.1:9400"
"""Where ``issuer serve`` listens by default, and the ``iss`` ``token mint`` stamps."""

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


def split_words(values: Sequence[str] | None) -> list[str]:
    """Repeated options whose values may also hold several words (spaces or commas)."""
    words: list[str] = []
    for value in values or ():
        words.extend(part for part in value.replace(",", " ").split() if part)
    return list(dict.fromkeys(words))


def mint_token(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """Print a token signed with the key file's current key."""
    keys, created = load_or_create_keys(Path(args.key_file))
    try:
        fake = FakeIssuer(args.issuer, audience=DEFAULT_AUDIENCE, algorithm=keys[-1].alg)
    except (TypeError, ValueError) as exc:
        raise CLIError(f"--issuer: {exc}") from None
    for key in keys:
        fake.add_key(key, make_current=key is keys[-1])
    audiences = split_words(args.audience) or [DEFAULT_AUDIENCE]
    token = fake.mint(
        args.subject or None,
        scopes=split_words(args.scope),
        audience=audiences[0] if len(audiences) == 1 else audiences,
        expires_in=args.lifetime,
        client_id=args.client_id,
        claims=dict(args.claim or ()),
    )
    if created:
        print(f"resource-guard: created key file {args.key_file}", file=err)
    print(token, file=out)
    return EXIT_OK


def _segment(part: str, name: str) -> dict[str, Any]:
    try:
        raw = base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
        value = json.loads(raw)
    except (binascii.Error, ValueError):
        raise CLIError(
            f"not a JWT: the {name} is not base64url-encoded JSON", EXIT_INVALID
        ) from None
    if not isinstance(value, dict):
        raise CLIError(f"not a JWT: the {name} is not a JSON object", EXIT_INVALID)
    return value


def decode_unverified(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """Header and claims of a compact JWS, without checking anything."""
    parts = token.split(".")
    if len(parts) == 5:
        raise CLIError("this is an encrypted token (JWE): its claims cannot be read", EXIT_INVALID)
    if len(parts) != 3:
        raise CLIError(
            f"not a JWT: expected 3 dot-separated parts, found {len(parts)}", EXIT_INVALID
        )
    return _segment(parts[0], "header"), _segment(parts[1], "payload")


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
