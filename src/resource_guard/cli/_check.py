"""``check``: diagnose a resource server's set-up against its issuer (and one token);
its options and what it prints. The diagnosis itself is ``resource_guard.diagnose``."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
from typing import Any, Final, TextIO

from resource_guard.diagnose import FAIL, IDP, TOKEN, WARN, Diagnosis, diagnose, options_from_env
from resource_guard.testing import DEFAULT_AUDIENCE

from ._common import (
    DEFAULT_CLI_ISSUER,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    CLIError,
    Commands,
    ListOption,
    formatter,
    read_token,
    seconds_value,
)

__all__ = ["EXIT_MISCONFIGURED", "EXIT_REFUSED", "add_check_command", "check"]

EXIT_MISCONFIGURED: Final = EXIT_UNAVAILABLE
"""A fail finding about the configuration or the issuer (discovery, issuer, JWKS, keys)."""
EXIT_REFUSED: Final = EXIT_INVALID
"""The set-up is sound but the token is refused."""

_LABELS = {"ok": "ok", "warn": "WARN", "fail": "FAIL"}
_INDENT = " " * 20


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """TokenVerifier keywords from the command line, or from RESOURCE_GUARD_* (``--env``)
    with the options given on the command line winning."""
    given: dict[str, Any] = {
        "issuer": args.issuer,
        "audience": args.audience or None,
        "jwks_uri": args.jwks_uri,
        "algorithms": args.algorithm or None,
        "leeway": args.leeway,
        "timeout": args.timeout,
        "allow_insecure_http": args.allow_insecure_http or None,
    }
    options = {name: value for name, value in given.items() if value is not None}
    try:
        if args.env:
            return options_from_env(os.environ, **options)
    except (TypeError, ValueError) as exc:
        raise CLIError(f"--env: {exc}") from None
    if "issuer" not in options or "audience" not in options:
        raise CLIError("--issuer and --audience are required (or --env to read RESOURCE_GUARD_*)")
    return options


def exit_status(result: Diagnosis) -> int:
    """3 when the set-up or the issuer is wrong, else 1 when the token is refused, else 0."""
    if result.failed(IDP):
        return EXIT_MISCONFIGURED
    return EXIT_REFUSED if result.failed(TOKEN) else EXIT_OK


def render(result: Diagnosis, options: dict[str, Any]) -> str:
    """The findings as text: one block per check, expected and actual when they matter."""
    audience = options["audience"]
    audiences = audience if isinstance(audience, str) else ", ".join(audience)
    lines = [f"checking issuer {options['issuer']} for audience {audiences}"]
    area = IDP
    for finding in result.findings:
        if finding.area != area:
            area = finding.area
            lines.append("token (header and claims read unverified; the signature is not shown)")
        label = _LABELS.get(finding.status, finding.status)
        lines.append(f"  {label:<4}  {finding.check:<11} {finding.actual}")
        if finding.status != "ok" or finding.area == TOKEN:
            lines.append(f"{_INDENT}expected: {finding.expected}")
        if finding.hint:
            lines.append(f"{_INDENT}hint: {finding.hint}")
    status = exit_status(result)
    summary = {
        EXIT_OK: "ok",
        EXIT_REFUSED: "the token is refused",
        EXIT_MISCONFIGURED: "the configuration or the issuer is wrong",
    }[status]
    counts = f"{result.count(FAIL)} failed, {result.count(WARN)} warnings"
    lines.append(f"result: {summary} ({counts}; exit status {status})")
    return "\n".join(lines)


def check(args: argparse.Namespace, out: TextIO, stdin: TextIO) -> int:
    """Run the diagnosis and print it; the exit status says what failed."""
    raw = read_token(args.token, stdin) if args.token is not None else None
    options = _options(args)
    # Everything happens in the coroutine: nothing follows asyncio.run() in this frame.
    return asyncio.run(_check(options, raw, args.json, out))


async def _check(options: dict[str, Any], raw: str | None, as_json: bool, out: TextIO) -> int:
    try:
        result = await diagnose(options, raw)
    except (TypeError, ValueError) as exc:  # options TokenVerifier refuses
        raise CLIError(str(exc)) from None
    status = exit_status(result)
    if as_json:
        document = {
            "ok": status == EXIT_OK,
            "exit_status": status,
            "findings": [finding.as_dict() for finding in result.findings],
        }
        print(json.dumps(document, indent=2), file=out)
    else:
        print(render(result, options), file=out)
    return status


def add_check_command(commands: Commands) -> None:
    """``check``: options are the TokenVerifier keywords of the same name (as ``verify``)."""
    parser = commands.add_parser(
        "check",
        help="diagnose the set-up against the issuer (and a token)",
        formatter_class=formatter,
        description=(
            "Diagnose a resource server's configuration against its issuer: discovery, the\n"
            "issuer name, every JWKS key (usable, or skipped and why), algorithms offered\n"
            "vs allowed, clock skew; with --token, every check of the token with expected\n"
            "vs actual (the signature is never shown).\n"
            "Exit status 0: all ok (warnings allowed); 1: the token is refused; 3: the\n"
            "configuration or the issuer is wrong; 2: usage errors."
        ),
        epilog=(
            "examples:\n"
            "  resource-guard check --issuer https://idp.example.com/oauth2/default \\\n"
            "      --audience api://orders\n"
            "  resource-guard token mint | resource-guard check --token - \\\n"
            f"      --issuer {DEFAULT_CLI_ISSUER} --audience {DEFAULT_AUDIENCE}\n"
            "  resource-guard check --env --token - < token.txt   # as TokenVerifier.from_env()"
        ),
    )
    parser.add_argument("--issuer", metavar="URL", help="the expected iss (required unless --env)")
    parser.add_argument(
        "--audience",
        action=ListOption,
        metavar="AUD",
        help="accepted audiences (repeatable; comma- or space-separated; required unless --env)",
    )
    parser.add_argument("--jwks-uri", metavar="URL", help="skip discovery and use this JWKS")
    parser.add_argument(
        "--algorithm",
        action=ListOption,
        metavar="ALG",
        help="allowed algorithms (repeatable; comma- or space-separated; "
        "default: every asymmetric one)",
    )
    parser.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="accept plain-http URLs that are not loopback (trusted networks only)",
    )
    parser.add_argument(
        "--leeway", type=seconds_value, metavar="SECONDS", help="clock skew tolerated (default 30)"
    )
    parser.add_argument(
        "--timeout", type=seconds_value, metavar="SECONDS", help="fetch deadline (default 5)"
    )
    parser.add_argument(
        "--token", metavar="TOKEN", help="also check this token (- reads it from stdin)"
    )
    parser.add_argument(
        "--env",
        action="store_true",
        help="read the RESOURCE_GUARD_* variables as TokenVerifier.from_env() does "
        "(options given here win)",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of text")
    parser.set_defaults(handler=lambda args, streams: check(args, streams[0], streams[2]))
