"""The on-disk token cache of :class:`~resource_guard.client.ClientCredentialsAuth`.

One small JSON file per cache key in a private directory (0700, files 0600), written
atomically (temporary file, then ``os.replace``). File names are a hash of the key, so they
reveal neither the client id nor the token URL. Anything unexpected on read (another
owner, loose permissions, a symlink, a foreign key, bad JSON, an expired token) is ignored:
the worst a bad file can cost is one token request.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import stat
import tempfile
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from ._token import ParamValue, Token, is_b64token

FORMAT = "resource-guard/token-cache/1"
MAX_FILE_BYTES = 64 * 1024

logger = logging.getLogger("resource_guard.client")


def cache_key(
    *,
    source: str,
    url: str,
    client_id: str,
    scopes: Iterable[str],
    audience: str | None,
    extra_params: Mapping[str, ParamValue],
    dpop_jkt: str | None = None,
) -> str:
    """A hex digest naming one (token URL or issuer, client, scopes, audience, params, and
    the DPoP key's thumbprint for tokens bound to a key).

    Parameter names are sorted; the values of a repeated parameter keep their order.
    """
    fields: list[object] = [
        FORMAT,
        source,
        url,
        client_id,
        sorted(scopes),
        audience,
        sorted(extra_params.items()),
    ]
    if dpop_jkt is not None:
        fields.append(["dpop", dpop_jkt])
    material = json.dumps(fields, separators=(",", ":"))
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


def _uid() -> int | None:
    getuid = getattr(os, "getuid", None)
    return getuid() if getuid is not None else None


def _seconds(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    # Plausible epoch seconds only: compared before float() (a huge int overflows it).
    return float(value) if -(2**53) < value < 2**53 else None


def _private(info: os.stat_result, *, loose_bits: int) -> bool:
    uid = _uid()
    return (uid is None or info.st_uid == uid) and not info.st_mode & loose_bits


class DiskCache:
    """Load, store and discard the token of one cache key in ``directory``."""

    def __init__(self, directory: Path, key: str) -> None:
        self.directory = directory
        self.key = key
        self.path = directory / f"{key}.json"

    @classmethod
    def open(cls, directory: str | os.PathLike[str], key: str) -> DiskCache:
        """Create or check ``directory`` and prove it writable; ValueError says what to fix."""
        path = Path(directory).expanduser()
        try:
            try:
                path.mkdir(mode=0o700, parents=True)
            except FileExistsError:
                pass
            else:
                path.chmod(0o700)
            info = path.stat()
            if not stat.S_ISDIR(info.st_mode):
                raise ValueError(f"token cache directory {str(path)!r} is not a directory")
            if not _private(info, loose_bits=stat.S_IWGRP | stat.S_IWOTH):
                raise ValueError(
                    f"token cache directory {str(path)!r} is not private: it must belong to "
                    "this user and not be writable by others (chmod 700 it)"
                )
            handle, probe = tempfile.mkstemp(dir=path, prefix=".probe-")
            os.close(handle)
            os.unlink(probe)
        except OSError as exc:
            raise ValueError(
                f"token cache directory {str(path)!r} cannot be used: "
                f"{exc.strerror or type(exc).__name__}; point cache_dir at a writable directory"
            ) from exc
        return cls(path, key)

    def load(self, *, skew: float) -> Token | None:
        """The stored token, or None when there is none we can trust."""
        try:
            document = self._read()
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            return None
        if document is None or document.get("format") != FORMAT or document.get("key") != self.key:
            return None
        access_token = document.get("access_token")
        obtained_at = _seconds(document.get("obtained_at"))
        expires_at = _seconds(document.get("expires_at"))
        if not is_b64token(access_token) or obtained_at is None or expires_at is None:
            return None
        return Token.create(access_token, obtained_at=obtained_at, expires_at=expires_at, skew=skew)

    def _read(self) -> dict[str, Any] | None:
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        fd = os.open(self.path, flags)
        with os.fdopen(fd, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode) or not _private(info, loose_bits=0o077):
                return None
            raw = handle.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            return None
        document = json.loads(raw.decode("utf-8"))
        return document if isinstance(document, dict) else None

    def store(self, token: Token) -> None:
        """Write ``token`` atomically; a failure is logged (never with the token), not raised."""
        document = {
            "format": FORMAT,
            "key": self.key,
            "access_token": token.access_token,
            "obtained_at": token.obtained_at,
            "expires_at": token.expires_at,
        }
        temporary: str | None = None
        try:
            handle, temporary = tempfile.mkstemp(dir=self.directory, prefix=".tmp-")
            with os.fdopen(handle, "wb") as file:
                file.write(json.dumps(document).encode("utf-8"))
                file.flush()
                os.fsync(file.fileno())
            os.replace(temporary, self.path)
            temporary = None
        except OSError as exc:
            logger.warning(
                "could not write the token cache file in %s: %s",
                self.directory,
                exc.strerror or type(exc).__name__,
            )
        finally:
            if temporary is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)

    def discard(self, access_token: str) -> None:
        """Remove the stored token if it is ``access_token`` (a newer one is kept)."""
        stored = self.load(skew=0.0)
        if stored is not None and stored.access_token == access_token:
            with contextlib.suppress(OSError):
                os.unlink(self.path)
