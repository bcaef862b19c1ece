"""Pure key handling: a JWKS document becomes usable verification keys; pick one for a token.

Keys are judged one by one, so one odd key never spoils the set. Nothing here does I/O.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

from ._algorithms import ALGORITHMS, PublicKey
from ._b64 import b64url_decode
from .exceptions import UnknownKeyError

logger = logging.getLogger("resource_guard.keys")

MIN_RSA_BITS = 2048
MAX_JWKS_KEYS = 100
"""JWKS entries judged per fetch; later ones are ignored unread (real IdPs publish < 20)."""
_SUMMARY_REASONS = 5  # reasons named in the one log line per fetch; kids named per reason:
_SUMMARY_KIDS = 3
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth"})
_EC_CURVES: dict[str, tuple[ec.EllipticCurve, int]] = {
    "P-256": (ec.SECP256R1(), 32),
    "P-384": (ec.SECP384R1(), 48),
    "P-521": (ec.SECP521R1(), 66),
}
_OKP_CURVES: dict[str, tuple[Callable[[bytes], PublicKey], int]] = {
    "Ed25519": (ed25519.Ed25519PublicKey.from_public_bytes, 32),
    "Ed448": (ed448.Ed448PublicKey.from_public_bytes, 57),
}
# ROCA (CVE-2017-15361): moduli from a flawed Infineon key generator are built from powers
# of 65537, so modulo each of these small primes they fall in the subgroup that 65537
# generates. A sound modulus passes all of them about 4 times in 10**9.
_ROCA_SUBGROUPS = tuple(
    (prime, frozenset(pow(65537, power, prime) for power in range(prime)))
    for prime in range(3, 168)
    if all(prime % divisor for divisor in range(2, prime))  # the odd primes up to 167
)


def _has_roca_fingerprint(n: int) -> bool:
    return all(n % prime in subgroup for prime, subgroup in _ROCA_SUBGROUPS)


class UnusableKeyError(ValueError):
    """A JWK that cannot serve to verify signatures; the message says why."""


@dataclass(slots=True, eq=False)
class VerificationKey:
    """One public key ready to verify signatures.

    ``revoked`` turns true when a successful refresh no longer publishes the key; anything
    that remembered the key (the verified-token cache) must then stop trusting it.
    """

    kid: str | None
    kty: str
    crv: str | None
    alg: str | None
    key: PublicKey = field(repr=False)
    fingerprint: str = field(repr=False)
    revoked: bool = False

    def fits(self, alg: str) -> bool:
        """True when this key may verify a signature made with ``alg``."""
        algorithm = ALGORITHMS.get(alg)
        if algorithm is None or algorithm.kty != self.kty:
            return False
        if algorithm.curves and self.crv not in algorithm.curves:
            return False
        return self.alg is None or self.alg == alg

    def verify(self, alg: str, data: bytes, signature: bytes) -> bool:
        """Check ``signature`` over ``data``; the caller has already checked :meth:`fits`."""
        return ALGORITHMS[alg].verify(self.key, data, signature)


def _b64_member(jwk: Mapping[str, Any], name: str) -> bytes:
    value = jwk.get(name)
    if not isinstance(value, str) or not value:
        raise UnusableKeyError(f"member {name!r} is missing or not a string")
    try:
        return b64url_decode(value.rstrip("="))
    except ValueError as exc:
        raise UnusableKeyError(f"member {name!r} is not base64url") from exc


def _public_key(jwk: Mapping[str, Any], kty: str) -> tuple[PublicKey, str | None]:
    if kty == "RSA":
        n = int.from_bytes(_b64_member(jwk, "n"), "big")
        e = int.from_bytes(_b64_member(jwk, "e"), "big")
        if n.bit_length() < MIN_RSA_BITS:
            raise UnusableKeyError(f"RSA key of {n.bit_length()} bits is under {MIN_RSA_BITS}")
        if _has_roca_fingerprint(n):
            raise UnusableKeyError("RSA key has the ROCA weakness (CVE-2017-15361)")
        try:
            return rsa.RSAPublicNumbers(e, n).public_key(), None
        except ValueError as exc:
            raise UnusableKeyError("invalid RSA public numbers") from exc
    crv = jwk.get("crv")
    if kty == "EC":
        if not isinstance(crv, str) or crv not in _EC_CURVES:
            raise UnusableKeyError(f"unsupported EC curve {crv!r:.40}")
        curve, size = _EC_CURVES[crv]
        x, y = _b64_member(jwk, "x"), _b64_member(jwk, "y")
        if len(x) > size or len(y) > size:
            raise UnusableKeyError("EC coordinate longer than the curve size")
        # Shorter is the same number without its leading zero octets (authlib writes it so).
        point = b"\x04" + x.rjust(size, b"\0") + y.rjust(size, b"\0")
        try:
            return ec.EllipticCurvePublicKey.from_encoded_point(curve, point), crv
        except ValueError as exc:
            raise UnusableKeyError("EC point is not on the curve") from exc
    if kty == "OKP":
        if not isinstance(crv, str) or crv not in _OKP_CURVES:
            raise UnusableKeyError(f"unsupported OKP curve {crv!r:.40} for signatures")
        load, size = _OKP_CURVES[crv]
        x = _b64_member(jwk, "x")
        if len(x) != size:
            raise UnusableKeyError("OKP key has the wrong length")
        return load(x), crv
    raise UnusableKeyError(f"unsupported key type {kty!r}")


def load_key(jwk: object) -> VerificationKey:
    """Turn one JWK into a :class:`VerificationKey` or raise :class:`UnusableKeyError`."""
    if not isinstance(jwk, Mapping):
        raise UnusableKeyError("not a JSON object")
    kty = jwk.get("kty")
    if not isinstance(kty, str):
        raise UnusableKeyError("no 'kty' string")
    if kty == "oct":
        raise UnusableKeyError("symmetric keys are never used to verify")
    kid = jwk.get("kid")
    if kid is not None and not isinstance(kid, str):
        raise UnusableKeyError("'kid' is not a string")
    use = jwk.get("use")
    if use is not None and use != "sig":
        raise UnusableKeyError(f"'use' is {use!r:.40}, not 'sig'")
    key_ops = jwk.get("key_ops")
    if key_ops is not None and (not isinstance(key_ops, list) or "verify" not in key_ops):
        raise UnusableKeyError("'key_ops' does not allow 'verify'")
    alg = jwk.get("alg")
    if alg is not None and (
        not isinstance(alg, str) or alg not in ALGORITHMS or ALGORITHMS[alg].kty != kty
    ):
        raise UnusableKeyError(
            f"'alg' {alg!r:.40} is not a signature algorithm for {kty!r:.40} keys"
        )
    if _PRIVATE_MEMBERS.intersection(jwk):
        raise UnusableKeyError("the JWK contains private key material")
    key, crv = _public_key(jwk, kty)
    # The key itself, not its spelling: leading zero octets do not make another key.
    material = key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    fingerprint = hashlib.sha256(repr((kid, alg, crv)).encode() + material).hexdigest()
    return VerificationKey(kid=kid, kty=kty, crv=crv, alg=alg, key=key, fingerprint=fingerprint)


@dataclass(slots=True)
class _Skipped:
    """The JWKS entries one fetch left out, grouped by reason, for one log line."""

    judged: int = 0
    count: int = 0
    reasons: dict[str, list[object]] = field(default_factory=dict)
    identities: set[str] = field(default_factory=set)

    def add(self, jwk: object, reason: str) -> None:
        self.count += 1
        self.identities.add(hashlib.sha256(repr(jwk).encode()).hexdigest())
        kid = jwk.get("kid") if isinstance(jwk, Mapping) else None
        self.reasons.setdefault(reason, []).append(kid)

    def summary(self, total: int) -> str:
        """``skipped 3 of 5 JWKS keys: not a JSON object (2 keys), ...``."""
        groups = []
        for reason, kids in list(self.reasons.items())[:_SUMMARY_REASONS]:
            named = [f"kid={kid!r:.64}" for kid in kids if kid is not None][:_SUMMARY_KIDS]
            if len(named) < sum(kid is not None for kid in kids):
                named.append("...")
            count = f"{len(kids)} key" + ("s" if len(kids) > 1 else "")
            groups.append(f"{reason} ({count}{': ' + ', '.join(named) if named else ''})")
        if len(self.reasons) > _SUMMARY_REASONS:
            groups.append(f"{len(self.reasons) - _SUMMARY_REASONS} more reasons")
        text = f"skipped {self.count} of {total} JWKS keys: " + (", ".join(groups) or "none")
        if total > self.judged:
            text += f"; {total - self.judged} entries past the first {self.judged} "
            text += "were not examined"
        return text


class KeySet:
    """An immutable set of verification keys with selection by ``kid`` and ``alg``."""

    __slots__ = ("_by_kid", "_selected", "ignored", "keys", "skipped")

    def __init__(
        self,
        keys: Iterable[VerificationKey] = (),
        skipped: frozenset[str] = frozenset(),
        ignored: int = 0,
    ) -> None:
        self.keys: tuple[VerificationKey, ...] = tuple(keys)
        self.skipped = skipped
        """Identities of the unusable JWKs left out, so a refresh warns about changes only."""
        self.ignored = ignored
        """JWKS entries past :data:`MAX_JWKS_KEYS`, not examined."""
        self._by_kid: dict[str, list[VerificationKey]] = {}
        self._selected: dict[tuple[str | None, str], VerificationKey] = {}
        for key in self.keys:
            if key.kid is not None:
                self._by_kid.setdefault(key.kid, []).append(key)

    @classmethod
    def from_jwks(cls, document: object, previous: KeySet | None = None) -> KeySet:
        """Build a key set from a JWKS document, keeping each unusable key out.

        Only the first :data:`MAX_JWKS_KEYS` entries are judged. What was left out is
        logged in one line: at WARNING when it differs from ``previous``, else at DEBUG.
        Keys that ``previous`` already held are reused as the same objects, so whatever
        remembered them stays valid; raises ValueError if the document has no ``keys`` list.
        """
        if not isinstance(document, Mapping) or not isinstance(document.get("keys"), list):
            raise ValueError("the JWKS is not a JSON object with a 'keys' list")
        entries: list[object] = document["keys"]
        known = {key.fingerprint: key for key in previous.keys} if previous else {}
        keys: list[VerificationKey] = []
        skipped = _Skipped(judged=min(len(entries), MAX_JWKS_KEYS))
        for jwk in entries[:MAX_JWKS_KEYS]:
            try:
                loaded = load_key(jwk)
            except UnusableKeyError as exc:
                skipped.add(jwk, str(exc))
                continue
            keys.append(known.get(loaded.fingerprint, loaded))
        result = cls(keys, frozenset(skipped.identities), len(entries) - skipped.judged)
        if result.skipped or result.ignored:
            same = previous is not None and (previous.skipped, previous.ignored) == (
                result.skipped,
                result.ignored,
            )
            level = logging.DEBUG if same else logging.WARNING
            logger.log(level, "%s", skipped.summary(len(entries)))
        return result

    def revoke_missing_from(self, successor: KeySet) -> list[VerificationKey]:
        """Mark every key of this set that ``successor`` does not hold as revoked."""
        kept = {id(key) for key in successor.keys}
        dropped = [key for key in self.keys if id(key) not in kept]
        for key in dropped:
            key.revoked = True
        return dropped

    def __len__(self) -> int:
        return len(self.keys)

    def select(self, kid: str | None, alg: str) -> VerificationKey:
        """The one key that may verify a token with this ``kid`` and ``alg``.

        A token without ``kid`` is accepted only when exactly one key fits its algorithm.
        Raises UnknownKeyError otherwise. Successful selections are remembered (the set
        never changes; a refresh builds a new one): at most one per key and algorithm, so
        the memo is bounded by :data:`MAX_JWKS_KEYS` times the algorithms.
        """
        key = self._selected.get((kid, alg))
        if key is None:
            key = self._selected[kid, alg] = self._select(kid, alg)
        return key

    def _select(self, kid: str | None, alg: str) -> VerificationKey:
        if kid is not None:
            for key in self._by_kid.get(kid, ()):
                if key.fits(alg):
                    return key
            raise UnknownKeyError(f"no published key has kid {kid!r:.66} for {alg}")
        fitting = [key for key in self.keys if key.fits(alg)]
        if len(fitting) == 1:
            return fitting[0]
        if fitting:
            raise UnknownKeyError(f"the token has no kid and {len(fitting)} keys fit {alg}")
        raise UnknownKeyError(f"the token has no kid and no published key fits {alg}")
