"""The ``resource-guard`` command (also ``python -m resource_guard``).

::

    resource-guard issuer serve [--port 9400] [--client ID:SECRET:SCOPES] [--config FILE]
    resource-guard token mint [--subject S] [--scope S] [--audience A] [--lifetime 15m]
    resource-guard token inspect TOKEN|-
    resource-guard verify TOKEN|- --issuer URL --audience A

Exit status: 0 success, 1 invalid token, 2 usage or configuration error, 3 keys could not
be fetched. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, TextIO

from . import __version__
from ._cli_common import EXIT_USAGE, CLIError
from ._cli_keys import KEY_FILE_VARIABLE, default_key_file
from ._cli_serve import parse_client, run_serve
from ._cli_tokens import DEFAULT_CLI_ISSUER, inspect_token, mint_token, parse_claim, parse_duration
from ._cli_verify import verify_token
from .testing import DEFAULT_AUDIENCE, SUPPORTED_ALGORITHMS

__all__ = ["build_parser", "main"]

PROG = "resource-guard"
_LOGGER = logging.getLogger("resource_guard")


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line: ``resource-guard verify: error: ... (see --help)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535; 0: any free)")
    return port


def _seconds(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None


def _add_key_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key-file",
        default=str(default_key_file()),
        metavar="PATH",
        help="the issuer's private keys (a JSON private JWKS, mode 0600), created on first "
        f"use; default: ${KEY_FILE_VARIABLE} or %(default)s",
    )


def _formatter(prog: str) -> argparse.HelpFormatter:
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=30)


def _add_serve(commands: argparse._SubParsersAction[_Parser]) -> None:
    issuer = commands.add_parser(
        "issuer",
        help="run the fake issuer",
        description="Run the fake OAuth 2.0 issuer for development and tests.",
        formatter_class=_formatter,
    )
    issuer_commands = issuer.add_subparsers(dest="issuer_command", metavar="COMMAND", required=True)
    serve = issuer_commands.add_parser(
        "serve",
        help="serve discovery, JWKS and a token endpoint on 127.0.0.1",
        formatter_class=_formatter,
        description=(
            "Serve a fake issuer on 127.0.0.1 (never on other interfaces): OpenID discovery,\n"
            "RFC 8414 metadata, the JWKS and a client-credentials token endpoint. Its keys live\n"
            "in --key-file, so a restart keeps them and `token mint` signs with them. Runs\n"
            "until Ctrl-C. For development and tests only: anyone who can read the key file\n"
            "can mint tokens it accepts."
        ),
        epilog=(
            "examples:\n"
            "  resource-guard issuer serve\n"
            "  resource-guard issuer serve --port 9400 --audience api://orders \\\n"
            "      --client worker:s3cret:orders:read,orders:write\n"
            "  resource-guard issuer serve --config issuer.json\n\n"
            "config file (JSON):\n"
            '  {"audience": "api://orders",\n'
            '   "clients": [{"client_id": "worker", "client_secret": "s3cret",\n'
            '                "scopes": ["orders:read"], "expires_in": 600}]}\n\n'
            "Secrets given with --client show up in the process list; prefer --config."
        ),
    )
    serve.add_argument(
        "--port", type=_port, default=9400, help="TCP port; 0 picks a free one (default 9400)"
    )
    serve.add_argument(
        "--path",
        default="",
        metavar="PATH",
        help="issuer path after the origin, e.g. /oauth2/default (default: none)",
    )
    serve.add_argument(
        "--audience",
        action="append",
        metavar="AUD",
        help=f"audience of issued tokens (repeatable; default {DEFAULT_AUDIENCE})",
    )
    serve.add_argument(
        "--client",
        action="append",
        type=parse_client,
        metavar="ID:SECRET[:SCOPES]",
        help="register a client for the client-credentials grant; scopes comma-separated "
        "(repeatable)",
    )
    serve.add_argument("--config", metavar="FILE", help="JSON file with audience and clients")
    serve.add_argument(
        "--algorithm",
        choices=SUPPORTED_ALGORITHMS,
        metavar="ALG",
        help="algorithm of a newly created key file (default RS256; "
        f"one of {', '.join(SUPPORTED_ALGORITHMS)})",
    )
    _add_key_file(serve)
    serve.set_defaults(handler=lambda args, streams: run_serve(args, streams[0]))


def _add_token(commands: argparse._SubParsersAction[_Parser]) -> None:
    token = commands.add_parser(
        "token",
        help="mint or inspect tokens",
        description="Mint tokens with the fake issuer's keys, or look inside any JWT.",
        formatter_class=_formatter,
    )
    token_commands = token.add_subparsers(dest="token_command", metavar="COMMAND", required=True)
    mint = token_commands.add_parser(
        "mint",
        help="print a signed access token (for curl and manual tests)",
        formatter_class=_formatter,
        description=(
            "Print an RFC 9068 access token signed with the key file's current key, as\n"
            "`issuer serve` would issue it. Only a verifier that trusts the fake issuer\n"
            "accepts it."
        ),
        epilog=(
            "examples:\n"
            "  TOKEN=$(resource-guard token mint --scope orders:read)\n"
            '  curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:8000/orders\n'
            "  resource-guard token mint --subject alice --scope 'orders:read orders:write' \\\n"
            "      --audience api://orders --lifetime 15m --claim tenant=acme \\\n"
            "      --claim 'roles=[\"admin\"]'\n"
            "  resource-guard token mint --lifetime=-1h     # already expired"
        ),
    )
    mint.add_argument("--subject", default="user-123", help="the sub claim (default %(default)s)")
    mint.add_argument(
        "--scope",
        action="append",
        metavar="SCOPE",
        help="scopes, space- or comma-separated (repeatable)",
    )
    mint.add_argument(
        "--audience",
        action="append",
        metavar="AUD",
        help=f"the aud claim (repeatable; default {DEFAULT_AUDIENCE})",
    )
    mint.add_argument(
        "--lifetime",
        type=parse_duration,
        default=300,
        metavar="DURATION",
        help="seconds until exp, or 90s, 15m, 2h, 1d; negative for an expired token (default 300)",
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
    _add_key_file(mint)
    mint.set_defaults(handler=lambda args, streams: mint_token(args, streams[0], streams[1]))

    inspect = token_commands.add_parser(
        "inspect",
        help="show a token's header and claims, UNVERIFIED",
        formatter_class=_formatter,
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


def _add_verify(commands: argparse._SubParsersAction[_Parser]) -> None:
    verify = commands.add_parser(
        "verify",
        help="verify a token against its issuer's live keys",
        formatter_class=_formatter,
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
        action="append",
        metavar="AUD",
        help="an accepted audience (repeatable)",
    )
    verify.add_argument("--jwks-uri", metavar="URL", help="skip discovery and use this JWKS")
    verify.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="accept plain-http URLs that are not loopback (trusted networks only)",
    )
    verify.add_argument(
        "--algorithm",
        action="append",
        metavar="ALG",
        help="allowed algorithm (repeatable; default: every asymmetric one)",
    )
    verify.add_argument(
        "--scope-claim",
        action="append",
        metavar="CLAIM",
        help="claim read as scopes (repeatable; default: scope and scp)",
    )
    verify.add_argument(
        "--require-scope",
        action="append",
        metavar="SCOPE",
        help="fail unless the token holds this scope (repeatable: all of them)",
    )
    verify.add_argument(
        "--leeway", type=_seconds, default=30, metavar="SECONDS", help="clock skew (default 30)"
    )
    verify.add_argument(
        "--timeout", type=_seconds, default=5, metavar="SECONDS", help="fetch deadline (default 5)"
    )
    verify.add_argument("--json", action="store_true", help="print JSON instead of text")
    verify.set_defaults(handler=lambda args, streams: verify_token(args, streams[0], streams[2]))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``resource-guard`` command."""
    parser = _Parser(
        prog=PROG,
        formatter_class=_formatter,
        description=(
            "resource-guard: protect ASGI services as OAuth 2.0 resource servers.\n"
            "This command runs a fake issuer, mints and inspects tokens, and verifies them."
        ),
        epilog="Run `resource-guard COMMAND --help` for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument(
        "-v",
        "--verbose",
        action="count",
        default=0,
        help="log what resource-guard does (-vv: debug details)",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_serve(commands)
    _add_token(commands)
    _add_verify(commands)
    return parser


def _configure_logging(verbosity: int, err: TextIO) -> Callable[[], None]:
    """Library logs go to ``err`` with ``-v``, else nowhere; returns the undo."""
    if verbosity <= 0:
        if not any(isinstance(h, logging.NullHandler) for h in _LOGGER.handlers):
            _LOGGER.addHandler(logging.NullHandler())  # no "last resort" output
        return lambda: None
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter("resource-guard: %(levelname)s %(name)s: %(message)s"))
    old_level = _LOGGER.level
    _LOGGER.addHandler(handler)
    _LOGGER.setLevel(logging.DEBUG if verbosity > 1 else logging.INFO)

    def undo() -> None:
        _LOGGER.removeHandler(handler)
        _LOGGER.setLevel(old_level)

    return undo


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    out, err, stdin = sys.stdout, sys.stderr, sys.stdin
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version and usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    undo_logging = _configure_logging(args.verbose, err)
    try:
        status: int = args.handler(args, (out, err, stdin))
    except CLIError as exc:
        print(f"{PROG}: error: {exc.message}", file=err)
        return exc.code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=err)
        return 130
    except Exception as exc:  # a bug: still one line, never a traceback
        print(f"{PROG}: unexpected error: {type(exc).__name__}: {exc}", file=err)
        return 70
    finally:
        undo_logging()
    return status
