"""The ``resource-guard`` command (also ``python -m resource_guard``).

::

    resource-guard issuer serve [--port 9400] [--client ID:SECRET:SCOPES] [--config FILE]
    resource-guard token mint [--subject S] [--scope S] [--audience A] [--expires-in 15m]
    resource-guard token inspect TOKEN|-
    resource-guard verify TOKEN|- --issuer URL --audience A
    resource-guard check --issuer URL --audience A [--token TOKEN|-] [--env] [--json]

Each command owns its options and its handler in one module (``_serve``, ``_token``,
``_verify``, ``_check``; ``_keys`` is the key file they share, ``_common`` what all share);
this module assembles them. Option names are the keywords of ``FakeIssuer`` and ``TokenVerifier``;
list-valued options are repeatable and split on commas and spaces (docs/cli.md).

Exit status: 0 success, 1 invalid token, 2 usage or configuration error, 3 keys could not
be fetched. Errors are one line on stderr, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, TextIO

from resource_guard import __version__

from ._check import add_check_command
from ._common import EXIT_USAGE, CLIError, deprecation_notes, formatter
from ._serve import add_issuer_command
from ._token import add_token_command
from ._verify import add_verify_command

__all__ = ["build_parser", "main"]

PROG = "resource-guard"
_LOGGER = logging.getLogger("resource_guard")


class _Parser(argparse.ArgumentParser):
    """Usage errors in one line: ``resource-guard verify: error: ... (see --help)``."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``resource-guard`` command."""
    parser = _Parser(
        prog=PROG,
        formatter_class=formatter,
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
    add_issuer_command(commands)
    add_token_command(commands)
    add_verify_command(commands)
    add_check_command(commands)
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
    for note in deprecation_notes(args):
        print(f"{PROG}: warning: {note}", file=err)
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
