"""DPoP on the command line: ``token mint --dpop-key FILE`` binds a token to a key, and
``token proof`` signs the ``DPoP`` header for one curl request.

The key file is a PEM private key (PKCS#8, mode 0600), created on first use like the
issuer's key file; nothing here prints key material.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TextIO

from resource_guard.dpop import DPoPKey

from ._common import EXIT_OK, CLIError, Commands, formatter, read_token
from ._keys import read_private_file

__all__ = ["add_dpop_key_option", "add_proof_command", "load_or_create_dpop_key", "make_proof"]


def _load(path: Path) -> DPoPKey:
    data = read_private_file(path, "DPoP key file", 64 * 1024)
    try:
        return DPoPKey.from_pem(data)
    except ValueError:
        raise CLIError(
            f"DPoP key file {path} holds no usable unencrypted private key "
            "(EC P-256/P-384, Ed25519 or RSA, PEM)"
        ) from None


def load_or_create_dpop_key(path: Path, algorithm: str) -> tuple[DPoPKey, bool]:
    """The key in ``path``, and whether the file was just created (with a new key of
    ``algorithm``, mode 0600, never replacing a file)."""
    if os.path.lexists(path):
        return _load(path), False
    key = DPoPKey.generate(algorithm)
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        try:
            key.save(path)
        except FileExistsError:  # another process made it first: use its key
            return _load(path), False
    except OSError as exc:
        raise CLIError(f"cannot create DPoP key file {path}: {exc.strerror}") from None
    return key, True


def add_dpop_key_option(parser: argparse.ArgumentParser) -> None:
    """``--dpop-key FILE`` and ``--dpop-algorithm`` for ``token mint``."""
    parser.add_argument(
        "--dpop-key",
        metavar="FILE",
        help="bind the token to this DPoP key (cnf.jkt, RFC 9449): a PEM private key, "
        "created (mode 0600) when missing",
    )
    _add_algorithm(parser, "--dpop-algorithm")


def _add_algorithm(parser: argparse.ArgumentParser, flag: str) -> None:
    parser.add_argument(
        flag,
        dest="dpop_algorithm",
        choices=DPoPKey.ALGORITHMS,
        default="ES256",
        help="the algorithm of a DPoP key file created now (default %(default)s)",
    )


def make_proof(args: argparse.Namespace, out: TextIO, err: TextIO, stdin: TextIO) -> int:
    """Print a DPoP proof for one request, signed with the key file."""
    key, created = load_or_create_dpop_key(Path(args.key), args.dpop_algorithm)
    token = None if args.token is None else read_token(args.token, stdin)
    try:
        proof = key.proof(args.method, args.url, access_token=token, nonce=args.nonce)
    except (TypeError, ValueError) as exc:
        raise CLIError(str(exc)) from None
    if created:
        print(f"resource-guard: created DPoP key file {args.key}", file=err)
    print(proof, file=out)
    return EXIT_OK


def add_proof_command(token_commands: Commands) -> None:
    """``token proof``."""
    proof = token_commands.add_parser(
        "proof",
        help="print a DPoP proof for one request (the DPoP header, RFC 9449)",
        formatter_class=formatter,
        description=(
            "Print a DPoP proof signed with the key file's key, for one request: the value\n"
            "of its DPoP header. A proof is single-use: make a new one for every request.\n"
            "The key file is created (mode 0600) when it does not exist."
        ),
        epilog=(
            "examples:\n"
            "  TOKEN=$(resource-guard token mint --scope orders:read --dpop-key dpop.pem)\n"
            '  curl -H "Authorization: DPoP $TOKEN" \\\n'
            '       -H "DPoP: $(resource-guard token proof --key dpop.pem \\\n'
            '            --url http://127.0.0.1:8000/orders --token "$TOKEN")" \\\n'
            "       http://127.0.0.1:8000/orders"
        ),
    )
    proof.add_argument("--key", required=True, metavar="FILE", help="the DPoP key file (PEM)")
    proof.add_argument("--url", required=True, help="the request URL (query and fragment dropped)")
    proof.add_argument("--method", default="GET", help="the request method (default %(default)s)")
    proof.add_argument(
        "--token",
        metavar="TOKEN",
        help="the access token the request carries (adds ath); - reads it from stdin",
    )
    proof.add_argument("--nonce", help="the server's DPoP-Nonce, when it demands one")
    _add_algorithm(proof, "--algorithm")
    proof.set_defaults(
        handler=lambda args, streams: make_proof(args, streams[0], streams[1], streams[2])
    )
