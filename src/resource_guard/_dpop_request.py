"""DPoP on the request side: the one ``DPoP`` proof header, and the request URI as the
client saw it (the ``htu`` a proof must name), behind proxies or not.

Pure functions over ASGI scopes; no I/O. Nothing of the request reaches an error message.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from urllib.parse import quote, unquote, urlsplit

from starlette.types import Scope

from .dpop._policy import NO_PROOF
from .exceptions import InvalidDPoPProofError

__all__ = ["SEVERAL_PROOFS", "RequestURL", "dpop_proof"]

_DPOP = b"dpop"
_HOST = b"host"
_FORWARDED = b"forwarded"
_X_FORWARDED_PROTO = b"x-forwarded-proto"
_X_FORWARDED_HOST = b"x-forwarded-host"
_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
# RFC 3986 pchar plus "/": what a path keeps unescaped when it is re-encoded.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"
# An RFC 3986 reg-name, IPv4 or bracketed IPv6 literal, with an optional port.
_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~:[]")

SEVERAL_PROOFS = "the request has more than one DPoP header"


def dpop_proof(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The value of the one ``DPoP`` header (RFC 9449 §4.3 points 1-2). Raises
    :class:`~resource_guard.InvalidDPoPProofError` for none, several, or a value that is
    not printable ASCII (the proof checks judge the rest)."""
    found: bytes | None = None
    for name, value in headers:
        if len(name) == 4 and name.lower() == _DPOP:
            if found is not None:
                raise InvalidDPoPProofError(SEVERAL_PROOFS)
            found = value
    if not found:
        raise InvalidDPoPProofError(NO_PROOF)
    try:
        return found.decode("ascii")
    except UnicodeDecodeError:
        raise InvalidDPoPProofError("the DPoP header is not ASCII") from None


def _header(headers: Iterable[tuple[bytes, bytes]], wanted: bytes) -> str | None:
    """The first value of header ``wanted`` (lower case), latin-1 decoded, or None."""
    for name, value in headers:
        if name.lower() == wanted:
            return value.decode("latin-1")
    return None


def _host_ok(host: str) -> bool:
    return bool(host) and all(char in _HOST_CHARS for char in host)


def _forwarded(value: str) -> tuple[str | None, str | None]:
    """``proto`` and ``host`` of the first element of a ``Forwarded`` header (RFC 7239):
    the one the proxy nearest the client wrote."""
    proto = host = None
    for pair in value.split(",", 1)[0].split(";"):
        name, _, raw = pair.strip().partition("=")
        raw = raw.strip().strip('"')
        if name.lower() == "proto":
            proto = raw
        elif name.lower() == "host":
            host = raw
    return proto, host


def _check_public_url(public_url: str) -> tuple[str, str]:
    parts = urlsplit(public_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(
            f"public_url must be the http(s) URL clients use, such as "
            f"'https://api.example.com', got {public_url!r:.100}"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment or "@" in parts.netloc:
        raise ValueError(
            "public_url names the scheme and host only (no path, query, fragment or user): "
            "the request's path, root_path included, follows it"
        )
    parts.port  # noqa: B018 - raises ValueError for a port out of range
    return parts.scheme, parts.netloc


def _check_proxies(trusted_proxies: Iterable[str]) -> frozenset[str]:
    if isinstance(trusted_proxies, str | bytes):
        raise TypeError('trusted_proxies must be a sequence of addresses, e.g. ("10.0.0.1",)')
    addresses: set[str] = set()
    for address in trusted_proxies:
        if not isinstance(address, str):
            raise TypeError(f"trusted_proxies entries must be str, got {type(address).__name__}")
        try:
            addresses.add(str(ipaddress.ip_address(address)))
        except ValueError:
            raise ValueError(
                f"trusted_proxies entries must be IP addresses, got {address!r:.60}"
            ) from None
    return frozenset(addresses)


class RequestURL:
    """The URI of a request as the client saw it, without query: what ``htu`` must name.

    Scheme and host come from ``public_url`` when given; else from ``Forwarded`` or
    ``X-Forwarded-Proto``/``X-Forwarded-Host`` when the ASGI ``client`` is one of
    ``trusted_proxies``; else from the ASGI scope's scheme and the ``Host`` header. The
    path is the request's, ``root_path`` included.
    """

    __slots__ = ("_proxies", "_public")

    def __init__(self, public_url: str | None = None, trusted_proxies: Iterable[str] = ()) -> None:
        if public_url is not None and not isinstance(public_url, str):
            raise TypeError("public_url must be a str such as 'https://api.example.com' (or None)")
        self._public = None if public_url is None else _check_public_url(public_url)
        self._proxies = _check_proxies(trusted_proxies)

    def origin(self, scope: Scope) -> tuple[str, str]:
        """``(scheme, host)`` of the request as the client addressed it (host ``""`` when
        the ``Host`` header is unusable: then no proof matches)."""
        if self._public is not None:
            return self._public
        headers: list[tuple[bytes, bytes]] = scope.get("headers") or []
        scheme = _SCHEMES.get(str(scope.get("scheme", "http")), "http")
        host = _header(headers, _HOST)
        if self._proxies and self._from_proxy(scope):
            proto, forwarded_host = self._forwarded_origin(headers)
            if proto is not None and proto.lower() in _SCHEMES:
                scheme = _SCHEMES[proto.lower()]
            if forwarded_host is not None and _host_ok(forwarded_host):
                host = forwarded_host
        if host is None:  # HTTP/1.0 without Host: where the server listens
            server = scope.get("server")
            host = f"{server[0]}:{server[1]}" if server else ""
        return scheme, host if _host_ok(host) else ""

    def _from_proxy(self, scope: Scope) -> bool:
        client = scope.get("client")
        if not isinstance(client, list | tuple) or not client:
            return False
        try:
            address = str(ipaddress.ip_address(str(client[0])))
        except ValueError:
            return False
        return address in self._proxies

    @staticmethod
    def _forwarded_origin(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, str | None]:
        forwarded = _header(headers, _FORWARDED)
        if forwarded is not None:
            return _forwarded(forwarded)
        return (
            _first(_header(headers, _X_FORWARDED_PROTO)),
            _first(_header(headers, _X_FORWARDED_HOST)),
        )

    def url(self, scope: Scope) -> str:
        """``scheme://host/path`` of the request (no query), path percent-encoded as sent."""
        scheme, host = self.origin(scope)
        return f"{scheme}://{host}{_path(scope)}"


def _first(value: str | None) -> str | None:
    """The first of comma-separated values: the one the proxy nearest the client wrote."""
    return None if value is None else value.split(",", 1)[0].strip()


def _path(scope: Scope) -> str:
    """The request path as the client sent it: ``root_path`` + ``path`` unless ``path``
    already starts with it; the raw bytes when they spell that path, else re-encoded."""
    path = str(scope.get("path") or "/")
    root = str(scope.get("root_path") or "")
    if root and not (path == root or path.startswith(root + "/")):
        path = root + path
    raw = scope.get("raw_path")
    if isinstance(raw, bytes):
        sent = raw.decode("latin-1")
        if unquote(sent) == path:
            return sent
    return quote(path, safe=_PATH_SAFE)
