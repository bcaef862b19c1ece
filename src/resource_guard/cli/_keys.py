"""The fake issuer's key file: a private JWKS kept on disk (mode 0600), made on first use.

``issuer serve`` and ``token mint`` read the same file (both take ``--key-file``, set up
here), so tokens minted from the command line verify against the served issuer, and a
restarted issuer keeps its keys.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import ECAlgorithm, OKPAlgorithm, RSAAlgorithm

from resource_guard.testing import SUPPORTED_ALGORITHMS, SigningKey, generate_key

from ._common import MAX_INPUT_BYTES, CLIError

__all__ = [
    "KEY_FILE_VARIABLE",
    "add_key_file_option",
    "default_key_file",
    "load_or_create_keys",
    "read_private_file",
]

KEY_FILE_VARIABLE = "RESOURCE_GUARD_KEY_FILE"
_KEY_FILE_NAME = "fake-issuer-keys.json"
_KEY_TYPES: dict[str, tuple[type[Any], tuple[type[Any], ...]]] = {
    "RSA": (RSAAlgorithm, (rsa.RSAPrivateKey,)),
    "EC": (ECAlgorithm, (ec.EllipticCurvePrivateKey,)),
    "OKP": (OKPAlgorithm, (ed25519.Ed25519PrivateKey,)),
}


def default_key_file(environ: Mapping[str, str] | None = None) -> Path:
    """``$RESOURCE_GUARD_KEY_FILE``, else ``$XDG_CONFIG_HOME/resource-guard/...``
    (``~/.config/resource-guard/fake-issuer-keys.json``)."""
    env = os.environ if environ is None else environ
    explicit = env.get(KEY_FILE_VARIABLE, "").strip()
    if explicit:
        return Path(explicit).expanduser()
    config_home = env.get("XDG_CONFIG_HOME", "").strip()
    base = Path(config_home) if config_home else Path.home() / ".config"
    return base / "resource-guard" / _KEY_FILE_NAME


def add_key_file_option(parser: argparse.ArgumentParser) -> None:
    """``--key-file PATH``, the same for every command that signs."""
    parser.add_argument(
        "--key-file",
        default=str(default_key_file()),
        metavar="PATH",
        help="the issuer's private keys (a JSON private JWKS, mode 0600), created on first "
        f"use; default: ${KEY_FILE_VARIABLE} or %(default)s",
    )


def _check_private(path: Path, info: os.stat_result, what: str, hint: str) -> None:
    if not stat.S_ISREG(info.st_mode):
        raise CLIError(f"{what} {path} is not a regular file")
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise CLIError(f"{what} {path} belongs to another user; use your own{hint}")
    if info.st_mode & 0o077:
        mode = stat.S_IMODE(info.st_mode)
        raise CLIError(
            f"{what} {path} is readable or writable by others (mode {mode:04o}); "
            f"run: chmod 600 {path}"
        )


def read_private_file(path: Path, what: str, limit: int, *, hint: str = "") -> bytes:
    """At most ``limit + 1`` bytes of ``path``, a file holding private keys (``what``
    names it in errors). CLIError unless it is a regular file (a symlink is not
    followed) of this user that nobody else may read or write; ``hint`` ends the
    other-user error."""
    try:
        descriptor = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError as exc:
        raise CLIError(f"cannot read {what} {path}: {exc.strerror}") from None
    try:
        _check_private(path, os.fstat(descriptor), what, hint)
    except CLIError:
        os.close(descriptor)
        raise
    with os.fdopen(descriptor, "rb") as file:
        return file.read(limit + 1)


def _signing_key(jwk: object, path: Path, index: int) -> SigningKey:
    where = f"key file {path}: key #{index + 1}"
    if not isinstance(jwk, dict):
        raise CLIError(f"{where} is not a JSON object")
    kid, alg, kty = jwk.get("kid"), jwk.get("alg"), jwk.get("kty")
    if not isinstance(kid, str) or not kid:
        raise CLIError(f"{where} has no 'kid'")
    if alg not in SUPPORTED_ALGORITHMS:
        raise CLIError(f"{where} has no supported 'alg' (one of {', '.join(SUPPORTED_ALGORITHMS)})")
    if kty not in _KEY_TYPES or "d" not in jwk:
        raise CLIError(f"{where} is not a private RSA, EC or OKP key")
    loader, types = _KEY_TYPES[kty]
    try:
        private_key = loader.from_jwk(jwk)
    except Exception:  # PyJWT raises several types for bad members; never echo them
        raise CLIError(f"{where} cannot be loaded (damaged key members)") from None
    if not isinstance(private_key, types) or not _fits(private_key, alg):
        raise CLIError(f"{where} is not a private key that can sign {alg}")
    return SigningKey(kid, alg, private_key)


_CURVES = {"ES256": "secp256r1", "ES384": "secp384r1", "ES512": "secp521r1"}


def _fits(key: object, alg: str) -> bool:
    """Whether ``key`` can sign ``alg`` (key type, and the curve for ECDSA)."""
    if alg[:2] in ("RS", "PS"):
        return isinstance(key, rsa.RSAPrivateKey)
    if alg == "EdDSA":
        return isinstance(key, ed25519.Ed25519PrivateKey)
    return isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == _CURVES[alg]


def _load(path: Path) -> list[SigningKey]:
    raw = read_private_file(path, "key file", MAX_INPUT_BYTES, hint=" --key-file")
    if len(raw) > MAX_INPUT_BYTES:
        raise CLIError(f"key file {path} is larger than 1 MiB")
    try:
        document = json.loads(raw)
    except ValueError:
        raise CLIError(f"key file {path} is not JSON (expected a private JWKS)") from None
    entries = document.get("keys") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise CLIError(f'key file {path} holds no keys (expected {{"keys": [...]}})')
    return [_signing_key(entry, path, index) for index, entry in enumerate(entries)]


def _create(path: Path, algorithm: str) -> tuple[list[SigningKey], bool]:
    """A new key file with one key; if another process made the file first, its keys."""
    key = generate_key(algorithm)
    payload = json.dumps({"keys": [key.private_jwk()]}, indent=2).encode() + b"\n"
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "wb") as file:
            file.write(payload)
        try:
            os.link(temporary, path)  # never replaces a file another process just made
        except FileExistsError:
            return _load(path), False
    except OSError as exc:
        raise CLIError(f"cannot create key file {path}: {exc.strerror}") from None
    finally:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
    return [key], True


def load_or_create_keys(
    path: Path, *, algorithm: str | None = None
) -> tuple[list[SigningKey], bool]:
    """The keys in ``path`` (the last one signs) and whether the file was just created.

    A missing file is created with one new key of ``algorithm`` (default RS256). For an
    existing file, ``algorithm`` must match its signing key.
    """
    if algorithm is not None and algorithm not in SUPPORTED_ALGORITHMS:
        raise CLIError(
            f"unsupported algorithm {algorithm!r}: use one of {', '.join(SUPPORTED_ALGORITHMS)}"
        )
    if os.path.lexists(path):
        keys = _load(path)
        created = False
    else:
        keys, created = _create(path, algorithm or "RS256")
    if algorithm is not None and keys[-1].alg != algorithm:
        raise CLIError(
            f"key file {path} signs with {keys[-1].alg}, not {algorithm}; "
            "drop --algorithm or use another --key-file"
        )
    return keys, created
