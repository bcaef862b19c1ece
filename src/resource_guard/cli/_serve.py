"""``issuer serve``: the fake issuer over HTTP on 127.0.0.1, with persistent keys; its
options and what it does."""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TextIO

from resource_guard.testing import DEFAULT_AUDIENCE, SUPPORTED_ALGORITHMS, FakeIssuer

from ._common import (
    EXIT_OK,
    MAX_INPUT_BYTES,
    CLIError,
    Commands,
    ListOption,
    formatter,
    split_words,
)
from ._keys import add_key_file_option, load_or_create_keys

__all__ = [
    "Client",
    "add_issuer_command",
    "build_issuer",
    "parse_client",
    "run_serve",
    "serve",
    "stop_on_signals",
]

_CLIENT_KEYS = frozenset({"client_id", "client_secret", "scopes", "audience", "expires_in"})
_CONFIG_KEYS = frozenset({"audience", "clients"})


@dataclass(frozen=True)
class Client:
    """A client the served issuer accepts for the client-credentials grant."""

    client_id: str
    client_secret: str
    scopes: tuple[str, ...] = ()
    audience: str | tuple[str, ...] | None = None
    expires_in: int = 300

    def __repr__(self) -> str:  # the secret stays out of reprs and logs
        return f"Client({self.client_id!r}, scopes={self.scopes!r})"


def parse_client(text: str) -> Client:
    """``ID:SECRET`` or ``ID:SECRET:SCOPE1,SCOPE2``: the secret ends at the second colon
    (scopes may hold colons, secrets may not); scopes split as every list value does."""
    client_id, colon, rest = text.partition(":")
    if not colon or not client_id or not rest:
        raise argparse.ArgumentTypeError(
            "--client takes ID:SECRET or ID:SECRET:SCOPE1,SCOPE2 (put secrets holding ':' "
            "in a --config file)"
        )
    secret, _, scopes = rest.partition(":")
    if not secret:
        raise argparse.ArgumentTypeError("--client: the secret is empty")
    return Client(client_id, secret, tuple(split_words([scopes])))


def _str_list(value: object, what: str) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if (
        not isinstance(items, list)
        or not items
        or not all(isinstance(item, str) and item for item in items)
    ):
        raise CLIError(f"{what} must be a non-empty string or list of strings")
    return tuple(items)


def _config_client(entry: object, where: str) -> Client:
    if not isinstance(entry, dict):
        raise CLIError(f"{where} must be an object with client_id and client_secret")
    unknown = sorted(set(entry) - _CLIENT_KEYS)
    if unknown:
        raise CLIError(f"{where} has unknown field(s) {', '.join(unknown)}")
    client_id, secret = entry.get("client_id"), entry.get("client_secret")
    if not isinstance(client_id, str) or not client_id:
        raise CLIError(f"{where}: client_id must be a non-empty string")
    if not isinstance(secret, str) or not secret:
        raise CLIError(f"{where} ({client_id}): client_secret must be a non-empty string")
    scopes = entry.get("scopes", [])
    scope_list = () if scopes in ([], "") else _str_list(scopes, f"{where}: scopes")
    audience = entry.get("audience")
    expires_in = entry.get("expires_in", 300)
    if isinstance(expires_in, bool) or not isinstance(expires_in, int) or expires_in <= 0:
        raise CLIError(f"{where} ({client_id}): expires_in must be a positive whole number")
    return Client(
        client_id,
        secret,
        tuple(split_words(scope_list)),
        None if audience is None else _str_list(audience, f"{where}: audience"),
        expires_in,
    )


def load_config(path: Path) -> tuple[tuple[str, ...] | None, list[Client]]:
    """(audience, clients) from a JSON config file."""
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_INPUT_BYTES + 1)
    except OSError as exc:
        raise CLIError(f"cannot read config file {path}: {exc.strerror}") from None
    try:
        document = json.loads(raw)
    except ValueError as exc:
        raise CLIError(f"config file {path} is not valid JSON (line {_line(exc)})") from None
    if not isinstance(document, dict):
        raise CLIError(f'config file {path} must hold an object: {{"clients": [...]}}')
    unknown = sorted(set(document) - _CONFIG_KEYS)
    if unknown:
        raise CLIError(f"config file {path} has unknown field(s) {', '.join(unknown)}")
    audience = document.get("audience")
    entries = document.get("clients", [])
    if not isinstance(entries, list):
        raise CLIError(f"config file {path}: clients must be a list")
    clients = [_config_client(entry, f"{path}: clients[{i}]") for i, entry in enumerate(entries)]
    return (None if audience is None else _str_list(audience, f"{path}: audience")), clients


def _line(exc: ValueError) -> object:
    return getattr(exc, "lineno", "?")


def _audience(values: tuple[str, ...]) -> str | tuple[str, ...]:
    return values[0] if len(values) == 1 else values


def build_issuer(args: argparse.Namespace) -> tuple[FakeIssuer, list[Client], bool]:
    """The configured FakeIssuer (not serving yet), its clients, and whether keys are new."""
    path = args.path or ""
    if path and (not path.startswith("/") or "?" in path or "#" in path or path == "/"):
        raise CLIError("--path must start with '/' and hold no query, e.g. /oauth2/default")
    audience, clients = load_config(Path(args.config)) if args.config else (None, [])
    if args.audience:
        audience = tuple(args.audience)
    clients = [*clients, *(args.client or ())]
    keys, created = load_or_create_keys(Path(args.key_file), algorithm=args.algorithm)
    fake = FakeIssuer(
        f"http://127.0.0.1{path.rstrip('/')}",
        audience=_audience(audience or (DEFAULT_AUDIENCE,)),
        algorithm=keys[-1].alg,
    )
    for key in keys:
        fake.add_key(key, make_current=key is keys[-1])
    for client in clients:
        fake.register_client(
            client.client_id,
            client.client_secret,
            scopes=client.scopes,
            audience=None if client.audience is None else _audience(tuple(client.audience)),
            expires_in=client.expires_in,
        )
    return fake, clients, created


def _banner(
    args: argparse.Namespace, fake: FakeIssuer, clients: list[Client], created: bool
) -> str:
    audience = fake.audience if isinstance(fake.audience, str) else " ".join(fake.audience)
    key = fake.current_key
    lines = [
        f"fake issuer listening on 127.0.0.1:{fake.port} (for tests and development only)",
        f"  issuer          {fake.issuer}",
        f"  discovery       {fake.discovery_url}",
        f"  JWKS            {fake.jwks_uri}",
        f"  token endpoint  {fake.token_endpoint}",
        f"  audience        {audience}",
        f"  signing key     {key.alg} kid={key.kid}",
        f"  key file        {args.key_file}" + (" (created)" if created else ""),
    ]
    for client in clients:
        scopes = " ".join(client.scopes) or "no scopes"
        lines.append(f"  client          {client.client_id} ({scopes})")
    lines += [
        "mint a token:",
        f"  resource-guard token mint --issuer {fake.issuer} --key-file {args.key_file} "
        "--scope SCOPE",
        "verify one:",
        f"  resource-guard verify TOKEN --issuer {fake.issuer} --audience {audience.split()[0]}",
        "press Ctrl-C to stop",
    ]
    return "\n".join(lines)


def serve(args: argparse.Namespace, out: TextIO, stop: threading.Event) -> int:
    """Serve until ``stop`` is set."""
    fake, clients, created = build_issuer(args)
    try:
        context = fake.serve(port=args.port)
        with context:
            print(_banner(args, fake, clients, created), file=out, flush=True)
            while not stop.is_set():
                stop.wait(0.5)  # short waits: signal handlers run in between
    except OSError as exc:
        raise CLIError(
            f"cannot listen on 127.0.0.1:{args.port}: {exc.strerror}; pick another --port"
        ) from None
    print("fake issuer stopped", file=out, flush=True)
    return EXIT_OK


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT (Ctrl-C) and SIGTERM set ``stop``; handlers are restored afterwards."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous: dict[signal.Signals, Any] = {}
    for number in (signal.SIGINT, signal.SIGTERM):
        previous[number] = signal.signal(number, handler)
    try:
        yield
    finally:
        for number, old in previous.items():
            signal.signal(number, old)


def run_serve(args: argparse.Namespace, out: TextIO) -> int:
    """``issuer serve``: runs until Ctrl-C or SIGTERM."""
    stop = threading.Event()
    with stop_on_signals(stop):
        return serve(args, out, stop)


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number (0-65535; 0: any free)")
    return port


def add_issuer_command(commands: Commands) -> None:
    """``issuer serve``."""
    issuer = commands.add_parser(
        "issuer",
        help="run the fake issuer",
        description="Run the fake OAuth 2.0 issuer for development and tests.",
        formatter_class=formatter,
    )
    issuer_commands = issuer.add_subparsers(dest="issuer_command", metavar="COMMAND", required=True)
    serve_parser = issuer_commands.add_parser(
        "serve",
        help="serve discovery, JWKS and a token endpoint on 127.0.0.1",
        formatter_class=formatter,
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
    serve_parser.add_argument(
        "--port", type=_port, default=9400, help="TCP port; 0 picks a free one (default 9400)"
    )
    serve_parser.add_argument(
        "--path",
        default="",
        metavar="PATH",
        help="issuer path after the origin, e.g. /oauth2/default (default: none)",
    )
    serve_parser.add_argument(
        "--audience",
        action=ListOption,
        metavar="AUD",
        help="audience of issued tokens (repeatable; comma- or space-separated; "
        f"default {DEFAULT_AUDIENCE})",
    )
    serve_parser.add_argument(
        "--client",
        action="append",
        type=parse_client,
        metavar="ID:SECRET[:SCOPES]",
        help="register a client for the client-credentials grant; SCOPES comma- or "
        "space-separated (repeatable)",
    )
    serve_parser.add_argument(
        "--config", metavar="FILE", help="JSON file with audience and clients"
    )
    serve_parser.add_argument(
        "--algorithm",
        choices=SUPPORTED_ALGORITHMS,
        metavar="ALG",
        help="algorithm of a newly created key file (default RS256; "
        f"one of {', '.join(SUPPORTED_ALGORITHMS)})",
    )
    add_key_file_option(serve_parser)
    serve_parser.set_defaults(handler=lambda args, streams: run_serve(args, streams[0]))
