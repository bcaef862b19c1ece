"""The stateless checks of a DPoP proof (RFC 9449 §4.3): one JWS signed by the key it names.

What needs state (a ``jti`` seen before, a server nonce, the key a token is bound to) is the
policy's job (:class:`~resource_guard.dpop.DPoPPolicy`); everything a proof can be judged on
by itself is here. Size and parsing cost are bounded before the signature is checked, and
nothing of the payload is parsed before the signature verified.
"""

from __future__ import annotations

import hashlib
import math
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa

from .. import _options as opt
from .._algorithms import ALGORITHMS, DEFAULT_ALGORITHMS
from .._b64 import b64url_encode
from .._jwk import jwk_thumbprint
from .._jws import TokenParser, decode_payload
from .._keyset import UnusableKeyError, VerificationKey, load_key
from ..exceptions import InvalidDPoPProofError, MalformedTokenError

__all__ = [
    "DEFAULT_MAX_PROOF_BYTES",
    "DPOP_TYPE",
    "MAX_JTI_LENGTH",
    "DPoPProof",
    "ProofVerifier",
    "access_token_hash",
    "check_algorithms",
    "normalize_htu",
]

DPOP_TYPE = "dpop+jwt"
"""The header ``typ`` of every DPoP proof (RFC 9449 §4.2)."""
DEFAULT_MAX_PROOF_BYTES = 8 * 1024
"""Longer proofs are refused before anything is decoded (an EC or OKP proof is < 1 KiB)."""
MAX_JTI_LENGTH = 256
"""Longest ``jti`` accepted: a random id needs far less, and the store keeps a digest."""
MAX_RSA_BITS = 8192
"""Largest RSA modulus a proof may carry: a bigger one only costs us time to verify."""
_MAX_RSA_EXPONENT = 1 << 64
_KEY_CACHE_SIZE = 1024
_MEMO_MAX_CHARS = 2048  # longer header segments and URIs are judged afresh, never kept
_DEFAULT_PORTS = {"http": "80", "https": "443"}
_HTTP_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}
_PERCENT = re.compile(r"%[0-9A-Fa-f]{2}")
_UNRESERVED = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")


def check_algorithms(value: object) -> frozenset[str]:
    """An allow-list of asymmetric JWS algorithms; ValueError names what is refused."""
    names = opt.strings("algorithms", value)
    for name in names:
        if name.lower() == "none" or name.upper().startswith("HS"):
            raise ValueError(
                f"algorithms may not include {name!r}: a DPoP proof is signed with the "
                "client's private key, so only asymmetric algorithms make sense"
            )
        if name not in ALGORITHMS:
            raise ValueError(f"unsupported algorithm {name!r}; choose from {sorted(ALGORITHMS)}")
    return frozenset(names)


def access_token_hash(access_token: str) -> str:
    """``ath``: the base64url SHA-256 of the access token's ASCII bytes (RFC 9449 §4.2)."""
    return b64url_encode(hashlib.sha256(access_token.encode("ascii", "replace")).digest())


def _percent(match: re.Match[str]) -> str:
    """One ``%XX``: the character itself when unreserved, else upper-case hex (RFC 3986
    §6.2.2.1 and §6.2.2.2)."""
    char = chr(int(match.group()[1:], 16))
    return char if char in _UNRESERVED else match.group().upper()


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4, on a path that starts with ``/``."""
    if "/." not in path:
        return path
    output: list[str] = []
    segments = path.split("/")[1:]
    for index, segment in enumerate(segments):
        last = index == len(segments) - 1
        if segment == "..":
            if output:
                output.pop()
            if last:
                output.append("")
        elif segment == ".":
            if last:
                output.append("")
        else:
            output.append(segment)
    return "/" + "/".join(output)


def normalize_htu(url: str) -> str | None:
    """``url`` without query and fragment, normalised for comparison (RFC 3986 §6.2.2-6.2.3):
    scheme and host in lower case, the scheme's default port dropped, an empty path as
    ``/``, percent-encodings in upper case, unreserved characters decoded, dot segments
    removed; ``ws``/``wss`` count as ``http``/``https`` (a WebSocket handshake is an HTTP
    GET). None when ``url`` is no absolute http(s) or ws(s) URL with a host and no
    user info."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = _HTTP_SCHEMES.get(parts.scheme.lower())
    host = parts.hostname
    if scheme is None or not host or "@" in parts.netloc:
        return None
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
    if port is not None and str(port) != _DEFAULT_PORTS[scheme]:
        host = f"{host}:{port}"
    path = _PERCENT.sub(_percent, parts.path) if "%" in parts.path else parts.path
    return f"{scheme}://{host}{_remove_dot_segments(path or '/')}"


@dataclass(frozen=True, slots=True)
class DPoPProof:
    """A DPoP proof that passed every stateless check of RFC 9449 §4.3."""

    jkt: str
    """The RFC 7638 thumbprint of the proof's ``jwk``: what ``cnf.jkt`` of a token names."""
    jti: str
    """The proof's unique id (the replay store remembers a digest of it with ``jkt``)."""
    iat: float
    """When the client made the proof (seconds since the epoch)."""
    nonce: str | None
    """The server nonce the proof carries, if any."""
    htm: str
    """The HTTP method the proof is for."""
    htu: str
    """The URI the proof is for, as the client wrote it."""
    ath: str | None
    """The access-token hash the proof carries, if any."""


def _refuse(reason: str) -> InvalidDPoPProofError:
    return InvalidDPoPProofError(reason)


class ProofVerifier:
    """Checks DPoP proofs by themselves: everything of RFC 9449 §4.3 that needs no state.

    Args:
        algorithms: the asymmetric algorithms a proof may be signed with (default: every
            one this library verifies; ``none`` and HMAC are refused at construction).
        max_age: seconds a proof stays acceptable after its ``iat`` (1 s to 1 h).
        leeway: seconds of clock skew tolerated on ``iat``, both ways (0-300).
        max_bytes: longer proofs are refused before anything is decoded (512 B to 64 KiB).
        clock: seconds since the epoch; injectable for tests.
    """

    __slots__ = ("_algorithms", "_clock", "_keys", "_parser", "_urls", "leeway", "max_age")

    def __init__(
        self,
        *,
        algorithms: Sequence[str] = DEFAULT_ALGORITHMS,
        max_age: float = 300,
        leeway: float = 5,
        max_bytes: int = DEFAULT_MAX_PROOF_BYTES,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._algorithms = check_algorithms(algorithms)
        self.max_age = opt.seconds("max_age", max_age, low=1, high=3600)
        self.leeway = opt.seconds("leeway", leeway, low=0, high=300)
        self._parser = TokenParser(opt.count("max_bytes", max_bytes, low=512, high=64 * 1024))
        if not callable(clock):
            raise TypeError("clock must be a callable returning seconds since the epoch")
        self._clock = clock
        # header segment -> (key, thumbprint): a client signs every proof with one key, so
        # its header repeats; bounded, emptied when full.
        self._keys: dict[str, tuple[VerificationKey, str]] = {}
        # URI -> its normal form: clients repeat their htu, servers their request URIs.
        self._urls: dict[str, str | None] = {}

    @property
    def algorithms(self) -> frozenset[str]:
        """The algorithms a proof may be signed with."""
        return self._algorithms

    @property
    def max_bytes(self) -> int:
        """The size limit of a proof."""
        return self._parser.max_length

    def verify(
        self, proof: str, *, method: str, url: str, access_token: str | None = None
    ) -> DPoPProof:
        """Check ``proof`` for a request ``method`` on ``url`` (query and fragment ignored),
        and its ``ath`` against ``access_token`` when one is given (then ``ath`` is
        required). Returns the :class:`DPoPProof`; raises
        :class:`~resource_guard.InvalidDPoPProofError` with a short reason."""
        try:
            header, payload_segment, signing_input, signature = self._parser.split(proof)
        except MalformedTokenError as exc:
            raise _refuse(exc.message.replace("token", "DPoP proof")) from None
        if header.typ != DPOP_TYPE:
            raise _refuse("the proof's header 'typ' is not 'dpop+jwt'")
        alg = header.alg
        if alg not in self._algorithms:
            raise _refuse(f"the proof's algorithm {alg!r:.24} is not accepted")
        key, jkt = self._key(proof[: proof.index(".")], header.fields)
        if not key.fits(alg):
            raise _refuse(f"the proof's jwk does not fit its algorithm {alg}")
        if not key.verify(alg, signing_input, signature):
            raise _refuse("the proof's signature does not verify with its jwk")
        try:
            claims = decode_payload(payload_segment)
        except MalformedTokenError:
            raise _refuse("the proof's payload is not a JSON object") from None
        return self._check_claims(claims, jkt, method, url, access_token)

    def _key(self, segment: str, fields: Mapping[str, Any]) -> tuple[VerificationKey, str]:
        """The proof's ``jwk`` as a verification key and its thumbprint (remembered by
        header segment), judged like a JWKS key: public members only, curve and size."""
        found = self._keys.get(segment)
        if found is not None:
            return found
        jwk = fields.get("jwk")
        if not isinstance(jwk, dict):
            raise _refuse("the proof's header has no 'jwk' object")
        try:
            key = load_key(jwk)
        except UnusableKeyError as exc:
            raise _refuse(f"the proof's jwk is unusable: {exc}") from None
        if isinstance(key.key, rsa.RSAPublicKey):
            numbers = key.key.public_numbers()
            if numbers.n.bit_length() > MAX_RSA_BITS or numbers.e >= _MAX_RSA_EXPONENT:
                raise _refuse(f"the proof's RSA key is over {MAX_RSA_BITS} bits (or 'e' is huge)")
        found = (key, jwk_thumbprint(jwk))
        if len(segment) <= _MEMO_MAX_CHARS:
            if len(self._keys) >= _KEY_CACHE_SIZE:
                self._keys.clear()
            self._keys[segment] = found
        return found

    def _check_claims(
        self,
        claims: Mapping[str, Any],
        jkt: str,
        method: str,
        url: str,
        access_token: str | None,
    ) -> DPoPProof:
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise _refuse("the proof has no 'jti' string")
        if len(jti) > MAX_JTI_LENGTH:
            raise _refuse(f"the proof's 'jti' is longer than {MAX_JTI_LENGTH} characters")
        htm = claims.get("htm")
        if not isinstance(htm, str) or htm != method:
            raise _refuse("the proof's 'htm' does not match the request method")
        htu = claims.get("htu")
        if not isinstance(htu, str):
            raise _refuse("the proof has no 'htu' string")
        expected = self._normal(url)
        if expected is None or self._normal(htu) != expected:
            raise _refuse("the proof's 'htu' does not match the request URI")
        iat = self._check_iat(claims.get("iat"))
        nonce = claims.get("nonce")
        if nonce is not None and not isinstance(nonce, str):
            raise _refuse("the proof's 'nonce' is not a string")
        ath = _check_ath(claims.get("ath"), access_token)
        return DPoPProof(jkt=jkt, jti=jti, iat=iat, nonce=nonce, htm=htm, htu=htu, ath=ath)

    def _normal(self, url: str) -> str | None:
        """:func:`normalize_htu`, remembered (bounded, emptied when full)."""
        urls = self._urls
        if url in urls:
            return urls[url]
        normal = normalize_htu(url)
        if len(url) <= _MEMO_MAX_CHARS:
            if len(urls) >= _KEY_CACHE_SIZE:
                urls.clear()
            urls[url] = normal
        return normal

    def _check_iat(self, iat: object) -> float:
        if isinstance(iat, bool) or not isinstance(iat, int | float) or not math.isfinite(iat):
            raise _refuse("the proof has no numeric 'iat'")
        now = self._clock()
        if iat > now + self.leeway:
            raise _refuse("the proof's 'iat' is in the future")
        if iat < now - self.max_age - self.leeway:
            raise _refuse("the proof is too old ('iat')")
        return iat


def _check_ath(ath: object, access_token: str | None) -> str | None:
    if ath is not None and not isinstance(ath, str):
        raise _refuse("the proof's 'ath' is not a string")
    if access_token is not None:
        if ath is None:
            raise _refuse("the proof has no 'ath' for the access token")
        if ath != access_token_hash(access_token):
            raise _refuse("the proof's 'ath' does not match the access token")
    return ath
