"""The attack suite: the known ways to get a bad token past a JWT resource server, over HTTP.

Each row builds one request from a good, validly signed token changed in exactly the way its
id says, sends it to the protected app and checks what the caller sees: the status, the
RFC 6750 challenge and JSON body, that the handler never ran, that nothing of the request is
echoed, and that the identity provider received no JWKS request (the attacker's own issuer,
on 127.0.0.1 too, must receive no request at all: the ``kit`` fixture checks that).

Sources, cited per section: RFC 8725 (JWT BCP), RFC 7515/7516/7517/7518/7519 (JOSE, JWT),
RFC 6750 (bearer usage), RFC 9068 (JWT access tokens), RFC 9449 (DPoP), and published
vulnerabilities of JWT libraries (CVE ids next to the rows they inspired).
"""

from __future__ import annotations

import base64
import datetime
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.x509.oid import NameOID

from resource_guard import InvalidTokenError, TokenVerifier
from resource_guard.testing import SigningKey

from ._harness import (
    AUDIENCE,
    DROP,
    Guarded,
    Kit,
    Req,
    assert_refused,
    assert_served,
    b64url,
    json_bytes,
    request_secrets,
    signed,
)

Build = Callable[[Kit], "Req | str"]

# (status, RFC 6750 error, the verifier's error code) a case expects.
Expect = tuple[int, str | None, str | None]
MALFORMED: Expect = (401, "invalid_token", "malformed_token")
ALGORITHM: Expect = (401, "invalid_token", "unsupported_algorithm")
UNKNOWN_KEY: Expect = (401, "invalid_token", "unknown_key")
SIGNATURE: Expect = (401, "invalid_token", "invalid_signature")
TYPE: Expect = (401, "invalid_token", "invalid_token_type")
CLAIM: Expect = (401, "invalid_token", "invalid_claim")
EXPIRED: Expect = (401, "invalid_token", "token_expired")
IMMATURE: Expect = (401, "invalid_token", "token_not_yet_valid")
ISSUER: Expect = (401, "invalid_token", "invalid_issuer")
AUD: Expect = (401, "invalid_token", "invalid_audience")
INVALID_REQUEST: Expect = (400, "invalid_request", None)
NO_CREDENTIALS: Expect = (401, None, None)
UNBOUND: Expect = (401, "invalid_token", None)  # a valid token, refused for its scheme
INSUFFICIENT_SCOPE: Expect = (403, "insufficient_scope", None)
SERVED: Expect = (200, None, None)

# P-256 group order: r or s equal to it (or 0) is never a valid ECDSA signature.
P256_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551
ED25519_L = 2**252 + 27742317777372353535851937790883648493
B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


@dataclass(frozen=True)
class Case:
    id: str
    build: Build
    expect: Expect


def cases(*rows: tuple[str, Build, Expect]) -> list[Any]:
    return [pytest.param(Case(*row), id=row[0]) for row in rows]


# -- helpers for building the odd ones --------------------------------------------------


def public_encodings(key: SigningKey) -> dict[str, bytes]:
    """The public key as an HMAC secret, in every encoding a confused library might use."""
    public = key.private_key.public_key()
    pem = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    encodings = {
        "spki-pem": pem,
        "spki-pem-no-newline": pem.rstrip(b"\n"),
        "spki-der": public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "openssh": public.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ),
        "jwk-json": json.dumps(key.public_jwk()).encode(),
    }
    if isinstance(public, rsa.RSAPublicKey):
        encodings["pkcs1-pem"] = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.PKCS1
        )
        encodings["pkcs1-der"] = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.PKCS1
        )
        n = public.public_numbers().n
        encodings["modulus"] = n.to_bytes((n.bit_length() + 7) // 8, "big")
    elif isinstance(public, ec.EllipticCurvePublicKey):
        encodings["point"] = public.public_bytes(
            serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint
        )
    return encodings


def hmac_confusion(alg: str, key_name: str, encoding: str) -> Build:
    def build(kit: Kit) -> str:
        key: SigningKey = getattr(kit.keys, key_name)
        secret = public_encodings(key)[encoding]
        return kit.hmac(secret, alg, header=kit.header(key, alg=alg))

    return build


def self_signed_cert(key: SigningKey) -> bytes:
    """A DER certificate for ``key`` that nobody trusts (for ``x5c``)."""
    private = key.private_key
    assert isinstance(private, rsa.RSAPrivateKey)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer.example.test")])
    start = datetime.datetime(2025, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
        .sign(private, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.DER)


def x5c_header(kit: Kit, **extra: Any) -> dict[str, Any]:
    der = self_signed_cert(kit.keys.rogue_rsa)
    changes = {"kid": DROP, "x5c": [base64.b64encode(der).decode("ascii")], **extra}
    return kit.header(kit.keys.rogue_rsa, **changes)


def ecdsa(r: int, s: int) -> Build:
    def build(kit: Kit) -> str:
        token = kit.token(key=kit.keys.ec)
        return kit.resigned(token, r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    return build


def with_signature(change: Callable[[bytes], bytes], key_name: str = "rsa") -> Build:
    def build(kit: Kit) -> str:
        token = kit.token(key=getattr(kit.keys, key_name))
        return kit.resigned(token, change(kit.signature(token)))

    return build


def ecdsa_der(kit: Kit) -> str:
    """A correct ECDSA signature, but DER-encoded as X.509 would have it, not R || S."""
    token = kit.token(key=kit.keys.ec)
    raw = kit.signature(token)
    der = encode_dss_signature(int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big"))
    return kit.resigned(token, der)


def ed25519_s_plus_l(kit: Kit) -> str:
    """Ed25519 malleability: S + L verifies in lax implementations (RFC 8032 §5.1.7)."""
    token = kit.token(key=kit.keys.ed)
    raw = kit.signature(token)
    s = int.from_bytes(raw[32:], "little") + ED25519_L
    return kit.resigned(token, raw[:32] + s.to_bytes(32, "little"))


def tamper_payload(**changes: Any) -> Build:
    def build(kit: Kit) -> str:
        header_segment, _, signature = kit.token().split(".")
        return f"{header_segment}.{b64url(json_bytes(kit.claims(**changes)))}.{signature}"

    return build


def relabel(alg: str) -> Build:
    """A good RS256 signature under a header that names another algorithm."""

    def build(kit: Kit) -> str:
        _, payload, signature = kit.token().split(".")
        return f"{b64url(json_bytes(kit.header(alg=alg)))}.{payload}.{signature}"

    return build


def swap_kid(kit: Kit) -> str:
    """A token of one published key, relabelled with the kid of another published key."""
    _, payload, signature = kit.token().split(".")
    return f"{b64url(json_bytes(kit.header(kit.keys.rsa2)))}.{payload}.{signature}"


def spaced_json(kit: Kit) -> str:
    """The signature was made over other bytes of the same JSON (with spaces)."""
    header = kit.header()
    spaced = json.dumps(kit.claims()).encode()  # json.dumps adds spaces
    good = signed(b64url(json_bytes(header)), b64url(spaced), kit.keys.rsa, "RS256")
    signature = good.rsplit(".", 1)[1]
    return f"{b64url(json_bytes(header))}.{b64url(json_bytes(kit.claims()))}.{signature}"


def jwe(segments: int, **header: Any) -> Build:
    def build(kit: Kit) -> str:
        first = b64url(json_bytes({"alg": "RSA-OAEP", "enc": "A256GCM", **header}))
        rest = [b64url(bytes([index]) * (16 + index)) for index in range(segments - 1)]
        return ".".join([first, *rest])

    return build


def deflate_bomb(kit: Kit) -> str:
    """CVE-2024-33664 (python-jose): a ``zip: DEF`` JWS whose payload inflates to 10 MB."""
    bomb = zlib.compress(b"\0" * 10_000_000, 9)
    header = b64url(json_bytes(kit.header(zip="DEF")))
    return signed(header, b64url(bomb), kit.keys.rsa, "RS256")


def pbes2(segments: int) -> Build:
    """A PBES2 JWE header asking for 2**31 - 1 PBKDF2 iterations (a CPU bomb)."""

    def build(kit: Kit) -> str:
        header = {"alg": "PBES2-HS512+A256KW", "enc": "A256GCM", "p2c": 2**31 - 1, "p2s": "AAAA"}
        first = b64url(json_bytes(header))
        return ".".join([first] + ["QUFBQQ"] * (segments - 1))

    return build


def _with_length_mod4(build_claims: Callable[[str], dict[str, Any]], remainders: set[int]) -> str:
    for size in range(64):
        segment = b64url(json_bytes(build_claims("x" * size)))
        if len(segment) % 4 in remainders:
            return segment
    raise AssertionError("no padding length gives the wanted remainder")  # pragma: no cover


def _set_trailing_bits(segment: str) -> str:
    """Same bytes for a lax decoder, but the unused low bits of the last character set."""
    last = B64URL.index(segment[-1])
    return segment[:-1] + B64URL[last + 1]


def trailing_bits(part: str) -> Build:
    """A signature made over a non-canonical spelling (RFC 7515 §2, RFC 4648 §3.5)."""

    def build(kit: Kit) -> str:
        header = b64url(json_bytes(kit.header()))
        payload = b64url(json_bytes(kit.claims()))
        if part == "header":
            header = _set_trailing_bits(_with_length_mod4(lambda pad: kit.header(x=pad), {2, 3}))
        elif part == "payload":
            payload = _set_trailing_bits(_with_length_mod4(lambda pad: kit.claims(x=pad), {2, 3}))
        token = signed(header, payload, kit.keys.rsa, "RS256")
        if part == "signature":  # 256 bytes: 342 characters, 4 unused bits
            head, signature = token.rsplit(".", 1)
            token = f"{head}.{_set_trailing_bits(signature)}"
        return token

    return build


def standard_alphabet(kit: Kit) -> str:
    """The payload in the standard base64 alphabet ("+" and "/"), validly signed."""
    for size in range(64):
        segment = b64url(json_bytes(kit.claims(note="?" * size + ">>~")))
        if "-" in segment or "_" in segment:
            standard = segment.replace("-", "+").replace("_", "/")
            return signed(b64url(json_bytes(kit.header())), standard, kit.keys.rsa, "RS256")
    raise AssertionError("no claim value gives '-' or '_'")  # pragma: no cover


def padded(part: int) -> Build:
    def build(kit: Kit) -> str:
        segments = kit.token().split(".")
        segments[part] += "=" * (-len(segments[part]) % 4 or 2)
        return ".".join(segments)

    return build


def raw_json(header: bytes | None = None, payload: bytes | None = None) -> Build:
    """Validly signed, over hand-written JSON (duplicates, odd encodings...)."""

    def build(kit: Kit) -> str:
        fill = {"ISS": kit.iss, "KID": kit.keys.rsa.kid, "EXP": str(int(kit.clock()) + 300)}
        h = header or b'{"alg":"RS256","kid":"KID","typ":"at+jwt"}'
        p = payload or b'{"iss":"ISS","aud":"api://orders","sub":"u","exp":EXP}'
        for name, value in fill.items():
            h = h.replace(name.encode(), value.encode())
            p = p.replace(name.encode(), value.encode())
        return signed(b64url(h), b64url(p), kit.keys.rsa, "RS256")

    return build


def oversized(size: int) -> Build:
    def build(kit: Kit) -> str:
        return kit.token(payload=kit.claims(pad="x" * size))

    return build


def iss(change: Callable[[str], object]) -> Build:
    def build(kit: Kit) -> str:
        return kit.token(payload=kit.claims(iss=change(kit.iss)))

    return build


def claims(**changes: Any) -> Build:
    return lambda kit: kit.token(payload=kit.claims(**changes))


def relative_claims(**offsets: float) -> Build:
    """Time claims at ``now + offset`` seconds."""

    def build(kit: Kit) -> str:
        now = kit.clock()
        return kit.token(payload=kit.claims(**{k: now + v for k, v in offsets.items()}))

    return build


def header(**changes: Any) -> Build:
    return lambda kit: kit.token(header=kit.header(**changes))


def signed_by(key_name: str, **changes: Any) -> Build:
    """Signed with the named key; the header's kid/alg changed as given."""

    def build(kit: Kit) -> str:
        key: SigningKey = getattr(kit.keys, key_name)
        return kit.token(header=kit.header(key, **changes), key=key)

    return build


# Cyrillic and Greek letters that look like Latin ones, and Unicode's look-alike hyphen.
_LOOKALIKES = dict(
    zip(
        "aceopxyABCEHIKMNOPTXY-",
        "\u0430\u0441\u0435\u043e\u0440\u0445\u0443\u0391\u0392\u0421\u0415\u041d"
        "\u0399\u039a\u041c\u039d\u041e\u0420\u0422\u0425\u03a5\u2010",
        strict=True,
    )
)


def lookalike(kid: str) -> str:
    """``kid`` with its first look-alike-able character swapped for its homoglyph (a kid
    with none at all gets a homoglyph 'a' in front: still a different, similar-looking kid)."""
    for index, char in enumerate(kid):
        if char in _LOOKALIKES:
            return kid[:index] + _LOOKALIKES[char] + kid[index + 1 :]
    return "\u0430" + kid


def homoglyph_kid(kit: Kit) -> str:
    return kit.token(header=kit.header(kid=lookalike(kit.keys.rsa.kid)))


def kid_suffix(suffix: str) -> Build:
    return lambda kit: kit.token(header=kit.header(kid=kit.keys.rsa.kid + suffix))


def with_request(
    *,
    authorization: bytes | None = None,
    headers: tuple[tuple[bytes, bytes], ...] = (),
    query: str = "",
    method: str = "GET",
    body: bytes = b"",
) -> Build:
    """A valid token sent some other way than a plain ``Authorization: Bearer``; the
    placeholder ``TOKEN`` in any part of the request becomes the token."""

    def build(kit: Kit) -> Req:
        token = kit.token()
        raw = token.encode()
        return Req(
            authorization=None if authorization is None else authorization.replace(b"TOKEN", raw),
            headers=[(name, value.replace(b"TOKEN", raw)) for name, value in headers],
            query=query.replace("TOKEN", token),
            method=method,
            body=body.replace(b"TOKEN", raw),
        )

    return build


def forged_on(path: str) -> Build:
    """A forged token (unpublished key) on ``path``."""
    return lambda kit: Req(token=kit.token(key=kit.keys.rogue_rsa), path=path)


def anonymous_on(path: str) -> Build:
    return lambda kit: Req(path=path)


def _jwk_token(kit: Kit, kid: str) -> str:
    rogue = kit.keys.rogue_rsa
    return kit.token(header=kit.header(rogue, kid=kid, jwk=rogue.public_jwk()), key=rogue)


def _jwk_ec_token(kit: Kit) -> str:
    rogue = kit.keys.rogue_ec
    return kit.token(header=kit.header(rogue, kid=DROP, jwk=rogue.public_jwk()), key=rogue)


def _remote_token(kit: Kit, field: str, kid: str | None) -> str:
    """Signed with the attacker's key, pointing at the attacker's JWKS on loopback."""
    key = kit.attacker.current_key
    header = kit.header(key, kid=DROP if kid is None else kid)
    if field != "kid":
        header[field] = kit.attacker.jwks_uri
    return kit.token(header=header, key=key)


def _rogue_with_legit_kid(kit: Kit) -> str:
    rogue = kit.keys.rogue_rsa
    return kit.token(header=kit.header(rogue, kid=kit.keys.rsa.kid), key=rogue)


def _two_headers(kit: Kit) -> Req:
    value = b"Bearer " + kit.token().encode()
    return Req(headers=[(b"authorization", value), (b"authorization", value)])


# -- the table --------------------------------------------------------------------------

ATTACKS = cases(
    # Controls: the harness sees a good token through, so a refusal below means something.
    ("control-valid-rs256", lambda kit: kit.token(), SERVED),
    ("control-valid-es256", signed_by("ec"), SERVED),
    ("control-valid-eddsa", signed_by("ed"), SERVED),
    ("control-es256-without-kid-one-ec-key", signed_by("ec", kid=DROP), SERVED),
    ("control-aud-list-with-ours", claims(aud=["api://billing", AUDIENCE]), SERVED),
    ("control-typ-jwt", header(typ="JWT"), SERVED),
    ("control-typ-application-at-jwt", header(typ="application/at+jwt"), SERVED),
    ("control-typ-absent", header(typ=DROP), SERVED),
    ("control-expired-within-leeway", relative_claims(exp=-29), SERVED),
    ("control-scheme-lowercase", with_request(authorization=b"bearer TOKEN"), SERVED),
    ("control-admin-scope", claims(scope="orders:read orders:admin"), SERVED),
    #
    # alg "none" (RFC 7518 §3.6, RFC 8725 §2.1/§3.1; CVE-2015-9235 node-jsonwebtoken,
    # CVE-2018-1000531 inversoft prime-jwt, Wycheproof AlgIsNone).
    *[
        (
            f"alg-{alg}-{'no-signature' if not sig else 'junk-signature'}",
            lambda kit, a=alg, s=sig: kit.unsigned({"alg": a}) + s,
            ALGORITHM if sig else MALFORMED,  # an empty third segment is not a JWS at all
        )
        for alg in ("none", "None", "NONE", "nOnE")
        for sig in ("", "AAAA")
    ],
    ("alg-none-with-kid-and-typ", lambda kit: kit.unsigned(kit.header(alg="none")), MALFORMED),
    (
        "alg-none-with-real-signature",
        lambda kit: kit.token(header=kit.header(alg="none"), alg="RS256"),
        ALGORITHM,
    ),
    ("alg-none-escaped", raw_json(header=b'{"alg":"\\u006eone","kid":"KID"}'), ALGORITHM),
    ("alg-none-nul-suffix", header(alg="none\x00"), ALGORITHM),
    ("alg-empty", header(alg=""), MALFORMED),
    ("alg-missing", header(alg=DROP), MALFORMED),
    ("alg-null", header(alg=None), MALFORMED),
    ("alg-list", header(alg=["RS256"]), MALFORMED),
    ("alg-number", header(alg=256), MALFORMED),
    ("alg-lowercase", header(alg="rs256"), ALGORITHM),
    ("alg-trailing-space", header(alg="RS256 "), ALGORITHM),
    ("alg-fullwidth", header(alg="\uff32\uff33256"), ALGORITHM),
    ("alg-es256k", signed_by("ec", alg="ES256K"), ALGORITHM),
    ("alg-rs1", header(alg="RS1"), ALGORITHM),
    #
    # HMAC keyed with the public key (RFC 8725 §2.1/§3.1/§3.2; CVE-2015-9235,
    # CVE-2016-10555 jwt-simple, CVE-2017-11424 and CVE-2022-29217 PyJWT, Wycheproof 31).
    *[
        (f"{alg}-keyed-with-rsa-{enc}", hmac_confusion(alg, "rsa", enc), ALGORITHM)
        for alg in ("HS256", "HS384", "HS512")
        for enc in (
            "spki-pem",
            "spki-pem-no-newline",
            "spki-der",
            "pkcs1-pem",
            "pkcs1-der",
            "openssh",
            "jwk-json",
            "modulus",
        )
    ],
    *[
        (f"HS256-keyed-with-ec-{enc}", hmac_confusion("HS256", "ec", enc), ALGORITHM)
        for enc in ("spki-pem", "spki-der", "jwk-json", "point")
    ],
    ("HS256-keyed-with-ed25519-jwk", hmac_confusion("HS256", "ed", "jwk-json"), ALGORITHM),
    (
        "HS256-with-the-published-oct-key",
        lambda kit: kit.hmac(kit.keys.oct_secret, header=kit.header(alg="HS256", kid="shared")),
        ALGORITHM,
    ),
    ("HS256-empty-secret", lambda kit: kit.hmac(b""), ALGORITHM),
    #
    # Keys from the token itself (RFC 8725 §3.10, RFC 7515 §4.1.2-§4.1.7; CVE-2018-0114
    # node-jose embedded jwk, Wycheproof 32; jku/x5u server-side request forgery).
    ("jwk-header-rogue-kid", lambda kit: _jwk_token(kit, kit.keys.rogue_rsa.kid), UNKNOWN_KEY),
    ("jwk-header-legit-kid", lambda kit: _jwk_token(kit, kit.keys.rsa.kid), SIGNATURE),
    ("jwk-header-no-kid-ec", lambda kit: _jwk_ec_token(kit), SIGNATURE),
    (
        "jku-attacker-attacker-kid",
        lambda kit: _remote_token(kit, "jku", kit.attacker.current_key.kid),
        UNKNOWN_KEY,
    ),
    (
        "jku-attacker-legit-kid",
        lambda kit: _remote_token(kit, "jku", kit.keys.rsa.kid),
        SIGNATURE,
    ),
    ("jku-attacker-no-kid", lambda kit: _remote_token(kit, "jku", None), UNKNOWN_KEY),
    (
        "x5u-attacker-attacker-kid",
        lambda kit: _remote_token(kit, "x5u", kit.attacker.current_key.kid),
        UNKNOWN_KEY,
    ),
    (
        "kid-is-attacker-url",
        lambda kit: _remote_token(kit, "kid", kit.attacker.jwks_uri),
        UNKNOWN_KEY,
    ),
    (
        "x5c-self-signed-no-kid",
        lambda kit: kit.token(header=x5c_header(kit), key=kit.keys.rogue_rsa),
        UNKNOWN_KEY,
    ),
    (
        "x5c-self-signed-legit-kid",
        lambda kit: kit.token(header=x5c_header(kit, kid=kit.keys.rsa.kid), key=kit.keys.rogue_rsa),
        SIGNATURE,
    ),
    (
        "x5t-of-rogue-cert",
        lambda kit: kit.token(
            header=kit.header(kit.keys.rogue_rsa, x5t="dGh1bWJwcmludA"), key=kit.keys.rogue_rsa
        ),
        UNKNOWN_KEY,
    ),
    ("kid-path-traversal", header(kid="../../../../../../dev/null"), UNKNOWN_KEY),
    (
        "kid-sql-injection-hs256",
        lambda kit: kit.hmac(b"k", header=kit.header(alg="HS256", kid="x' UNION SELECT 'k")),
        ALGORITHM,
    ),
    ("kid-empty", header(kid=""), UNKNOWN_KEY),
    ("kid-null", header(kid=None), MALFORMED),
    ("kid-number", header(kid=7), MALFORMED),
    ("kid-list", lambda kit: kit.token(header=kit.header(kid=[kit.keys.rsa.kid])), MALFORMED),
    #
    # Key selection (RFC 7517 §4.4/§4.5, RFC 8725 §3.1: the key fits the algorithm).
    ("no-kid-with-two-rsa-keys", header(kid=DROP), UNKNOWN_KEY),
    (
        "rs256-under-ec-kid",
        lambda kit: kit.token(header=kit.header(kid=kit.keys.ec.kid)),
        UNKNOWN_KEY,
    ),
    (
        "es256-under-eddsa-kid",
        lambda kit: kit.token(header=kit.header(kit.keys.ec, kid=kit.keys.ed.kid), key=kit.keys.ec),
        UNKNOWN_KEY,
    ),
    ("ps256-under-rs256-only-jwk", relabel("PS256"), UNKNOWN_KEY),
    ("unknown-kid-rogue-key", signed_by("rogue_rsa"), UNKNOWN_KEY),
    ("legit-kid-rogue-key", lambda kit: _rogue_with_legit_kid(kit), SIGNATURE),
    #
    # Signatures (CVE-2022-21449 "psychic signatures" in Java ECDSA, Wycheproof
    # SpecialCaseEs256, RFC 7518 §3.4 R || S encoding, RFC 8032 §5.1.7).
    ("ecdsa-r0-s0", ecdsa(0, 0), SIGNATURE),
    ("ecdsa-r0-s1", ecdsa(0, 1), SIGNATURE),
    ("ecdsa-r1-s0", ecdsa(1, 0), SIGNATURE),
    ("ecdsa-rn-sn", ecdsa(P256_N, P256_N), SIGNATURE),
    ("ecdsa-rn-s1", ecdsa(P256_N, 1), SIGNATURE),
    ("ecdsa-der-encoded", ecdsa_der, SIGNATURE),
    ("ecdsa-extra-zero-byte", with_signature(lambda s: s + b"\0", "ec"), SIGNATURE),
    ("ecdsa-truncated", with_signature(lambda s: s[:-1], "ec"), SIGNATURE),
    ("eddsa-zero-signature", with_signature(lambda s: bytes(64), "ed"), SIGNATURE),
    ("eddsa-s-plus-l", ed25519_s_plus_l, SIGNATURE),
    ("rsa-zero-signature", with_signature(lambda s: bytes(len(s))), SIGNATURE),
    ("rsa-leading-zero", with_signature(lambda s: b"\0" + s), SIGNATURE),
    ("rsa-truncated", with_signature(lambda s: s[:-1]), SIGNATURE),
    ("rsa-one-bit-flipped", with_signature(lambda s: s[:-1] + bytes([s[-1] ^ 1])), SIGNATURE),
    ("signature-stripped", lambda kit: kit.token().rsplit(".", 1)[0] + ".", MALFORMED),
    ("signature-missing", lambda kit: kit.token().rsplit(".", 1)[0], MALFORMED),
    ("payload-sub-changed", tamper_payload(sub="admin"), SIGNATURE),
    ("payload-scope-widened", tamper_payload(scope="orders:read orders:admin"), SIGNATURE),
    ("payload-exp-extended", tamper_payload(exp=4_000_000_000), SIGNATURE),
    ("header-kid-swapped", swap_kid, SIGNATURE),
    ("rs256-relabelled-rs512", relabel("RS512"), UNKNOWN_KEY),
    ("signed-over-other-json-bytes", spaced_json, SIGNATURE),
    #
    # crit and JWS extensions (RFC 7515 §4.1.11, RFC 7797 b64; RFC 8725 §3.1).
    ("crit-exp", header(crit=["exp"]), MALFORMED),
    ("crit-unknown-present", header(crit=["urn:x"], **{"urn:x": 1}), MALFORMED),
    ("crit-empty-list", header(crit=[]), MALFORMED),
    ("crit-string", header(crit="b64"), MALFORMED),
    ("crit-b64-false", header(crit=["b64"], b64=False), MALFORMED),
    ("b64-false-without-crit", header(b64=False), MALFORMED),
    #
    # JWE where a JWS belongs, and compression/iteration bombs (RFC 7516, RFC 8725 §3.6/§3.9;
    # CVE-2024-33663/33664 python-jose, CVE-2023-51775 jose4j p2c, Wycheproof JWE vectors).
    ("jwe-5-segments", jwe(5), MALFORMED),
    ("jwe-5-segments-zip", jwe(5, zip="DEF"), MALFORMED),
    ("jwe-4-segments", jwe(4), MALFORMED),
    ("jwe-6-segments", jwe(6), MALFORMED),
    ("two-segments", jwe(2), MALFORMED),
    ("empty-segments", lambda kit: "a....b", MALFORMED),
    ("jws-zip-deflate-bomb", deflate_bomb, MALFORMED),
    ("jws-with-enc", header(enc="A256GCM"), MALFORMED),
    ("pbes2-p2c-bomb-5-segments", pbes2(5), MALFORMED),
    ("pbes2-p2c-bomb-3-segments", pbes2(3), MALFORMED),
    (
        "json-serialization",
        lambda kit: Req(authorization=b'Bearer {"payload":"e30","signatures":[]}'),
        INVALID_REQUEST,
    ),
    #
    # Encoding: only canonical unpadded base64url (RFC 7515 §2, RFC 4648 §3.5, Wycheproof
    # base64 group) and strict UTF-8 JSON objects (RFC 7515 §5.2, RFC 8259).
    ("signature-padded", padded(2), MALFORMED),
    ("header-padded", padded(0), INVALID_REQUEST),  # "=" mid-token is not a b64token
    ("payload-padded", padded(1), INVALID_REQUEST),
    ("payload-standard-alphabet", standard_alphabet, MALFORMED),
    ("header-trailing-bits", trailing_bits("header"), MALFORMED),
    ("payload-trailing-bits", trailing_bits("payload"), MALFORMED),
    ("signature-trailing-bits", trailing_bits("signature"), MALFORMED),
    ("space-inside-token", with_request(authorization=b"Bearer TOKEN x"), INVALID_REQUEST),
    ("tab-before-token", with_request(authorization=b"Bearer\tTOKEN"), INVALID_REQUEST),
    ("newline-in-token", with_request(authorization=b"Bearer TO\nKEN"), INVALID_REQUEST),
    (
        "percent-encoded-dot",
        lambda kit: Req(token=kit.token().replace(".", "%2E", 1)),
        INVALID_REQUEST,
    ),
    ("header-utf8-bom", raw_json(header=b'\xef\xbb\xbf{"alg":"RS256","kid":"KID"}'), MALFORMED),
    (
        "header-utf16",
        raw_json(header='{"alg":"RS256","kid":"KID"}'.encode("utf-16")),
        MALFORMED,
    ),
    ("payload-invalid-utf8", raw_json(payload=b'{"iss":"ISS","sub":"\xff","exp":EXP}'), MALFORMED),
    (
        "payload-overlong-utf8",
        raw_json(payload=b'{"iss":"ISS","aud":"api:\xc0\xaf\xc0\xaforders","exp":EXP}'),
        MALFORMED,
    ),
    ("payload-nan", raw_json(payload=b'{"iss":"ISS","aud":"api://orders","exp":NaN}'), MALFORMED),
    (
        "payload-infinity",
        raw_json(payload=b'{"iss":"ISS","aud":"api://orders","exp":Infinity}'),
        MALFORMED,
    ),
    (
        "payload-exp-1e400",
        raw_json(payload=b'{"iss":"ISS","aud":"api://orders","exp":1e400}'),
        CLAIM,
    ),
    (
        "payload-trailing-garbage",
        raw_json(payload=b'{"iss":"ISS","aud":"api://orders","exp":EXP}x'),
        MALFORMED,
    ),
    (
        "payload-array",
        raw_json(payload=b'[{"iss":"ISS","aud":"api://orders","exp":EXP}]'),
        MALFORMED,
    ),
    ("payload-deep-nesting", raw_json(payload=b"[" * 5000 + b"]" * 5000), MALFORMED),
    ("header-lone-surrogate-kid", raw_json(header=b'{"alg":"RS256","kid":"\\ud800"}'), UNKNOWN_KEY),
    #
    # Duplicate members: parsers disagree on which one wins (RFC 7515 §5.2, RFC 7519 §4,
    # RFC 8259 §4; the "JSON interoperability" class of bugs).
    (
        "dup-header-alg-rs256-none",
        raw_json(header=b'{"alg":"RS256","alg":"none","kid":"KID"}'),
        MALFORMED,
    ),
    (
        "dup-header-alg-none-rs256",
        raw_json(header=b'{"alg":"none","alg":"RS256","kid":"KID"}'),
        MALFORMED,
    ),
    (
        "dup-header-alg-escaped",
        raw_json(header=b'{"alg":"RS256","\\u0061lg":"none","kid":"KID"}'),
        MALFORMED,
    ),
    ("dup-header-kid", raw_json(header=b'{"alg":"RS256","kid":"KID","kid":"other"}'), MALFORMED),
    (
        "dup-header-typ",
        raw_json(header=b'{"alg":"RS256","kid":"KID","typ":"at+jwt","typ":"dpop+jwt"}'),
        MALFORMED,
    ),
    (
        "dup-payload-sub",
        raw_json(payload=b'{"iss":"ISS","aud":"api://orders","sub":"u","sub":"admin","exp":EXP}'),
        MALFORMED,
    ),
    (
        "dup-payload-sub-escaped",
        raw_json(payload=b'{"iss":"ISS","aud":"api://orders","sub":"u","\\u0073ub":"a","exp":EXP}'),
        MALFORMED,
    ),
    (
        "dup-payload-iss",
        raw_json(payload=b'{"iss":"https://evil.test","iss":"ISS","aud":"api://orders","exp":EXP}'),
        MALFORMED,
    ),
    (
        "dup-payload-aud",
        raw_json(payload=b'{"iss":"ISS","aud":"api://billing","aud":"api://orders","exp":EXP}'),
        MALFORMED,
    ),
    (
        "dup-payload-exp",
        raw_json(payload=b'{"iss":"ISS","aud":"api://orders","exp":1,"exp":EXP}'),
        MALFORMED,
    ),
    (
        "dup-payload-scope",
        raw_json(
            payload=b'{"iss":"ISS","aud":"api://orders","exp":EXP,'
            b'"scope":"orders:read","scope":"orders:admin"}'
        ),
        MALFORMED,
    ),
    (
        "dup-payload-nested",
        raw_json(
            payload=b'{"iss":"ISS","aud":"api://orders","exp":EXP,'
            b'"realm_access":{"roles":["a"],"roles":["admin"]}}'
        ),
        MALFORMED,
    ),
    #
    # Claim types and values (RFC 7519 §2 NumericDate, §4.1; RFC 9068 §2.2; RFC 8725 §3.8-3.9;
    # CVE-2022-23540/23541 jsonwebtoken, exp-as-string acceptance in several libraries).
    ("exp-missing", claims(exp=DROP), CLAIM),
    ("exp-string", claims(exp="4000000000"), CLAIM),
    ("exp-bool", claims(exp=True), CLAIM),
    ("exp-null", claims(exp=None), CLAIM),
    ("exp-list", claims(exp=[4_000_000_000]), CLAIM),
    ("exp-object", claims(exp={"$date": 4_000_000_000}), CLAIM),
    ("exp-negative", claims(exp=-1), CLAIM),
    ("exp-beyond-year-9999", claims(exp=10**20), CLAIM),
    ("exp-expired-beyond-leeway", relative_claims(exp=-31), EXPIRED),
    ("nbf-future", relative_claims(nbf=60), IMMATURE),
    ("nbf-string", claims(nbf="0"), CLAIM),
    ("nbf-bool", claims(nbf=False), CLAIM),
    ("iat-future", relative_claims(iat=60), IMMATURE),
    ("iat-string", claims(iat="0"), CLAIM),
    ("sub-number", claims(sub=42), CLAIM),
    ("sub-list", claims(sub=["admin"]), CLAIM),
    ("sub-object", claims(sub={"id": "admin"}), CLAIM),
    ("sub-null", claims(sub=None), CLAIM),
    ("client-id-number", claims(client_id=7), CLAIM),
    ("azp-list", claims(client_id=DROP, azp=["orders-web"]), CLAIM),
    ("cid-bool", claims(client_id=DROP, cid=True), CLAIM),
    ("jti-number", claims(jti=1), CLAIM),
    ("scope-number", claims(scope=1), CLAIM),
    ("scope-object", claims(scope={"orders:admin": True}), CLAIM),
    ("scope-list-with-number", claims(scope=["orders:read", 1]), CLAIM),
    ("scp-number", claims(scp=1), CLAIM),
    #
    # Issuer tricks: exact string match only (RFC 7519 §4.1.1, RFC 8725 §3.8, RFC 9207).
    ("iss-missing", claims(iss=DROP), ISSUER),
    ("iss-null", claims(iss=None), ISSUER),
    ("iss-number", claims(iss=1), ISSUER),
    ("iss-list", iss(lambda i: [i]), ISSUER),
    ("iss-object", iss(lambda i: {"iss": i}), ISSUER),
    ("iss-trailing-slash", iss(lambda i: i + "/"), ISSUER),
    ("iss-prefix", iss(lambda i: i[:-1]), ISSUER),
    ("iss-suffix-domain", iss(lambda i: i + ".evil.test"), ISSUER),
    ("iss-suffix-path", iss(lambda i: i + "/evil"), ISSUER),
    ("iss-userinfo", iss(lambda i: i.replace("://", "://evil.test@")), ISSUER),
    ("iss-scheme-case", iss(lambda i: i.replace("http", "HTTP", 1)), ISSUER),
    ("iss-https", iss(lambda i: i.replace("http:", "https:", 1)), ISSUER),
    ("iss-localhost-alias", iss(lambda i: i.replace("127.0.0.1", "localhost")), ISSUER),
    ("iss-short-ip", iss(lambda i: i.replace("127.0.0.1", "127.1")), ISSUER),
    ("iss-leading-space", iss(lambda i: " " + i), ISSUER),
    ("iss-zero-width-space", iss(lambda i: i + "\u200b"), ISSUER),
    ("iss-fullwidth-digits", iss(lambda i: i.replace("127", "\uff11\uff12\uff17")), ISSUER),
    ("iss-percent-encoded", iss(lambda i: i.replace(":", "%3A", 2)), ISSUER),
    ("iss-fragment", iss(lambda i: i + "#"), ISSUER),
    #
    # Audience (RFC 7519 §4.1.3, RFC 9068 §4, RFC 8725 §3.9: reject tokens for others).
    ("aud-missing", claims(aud=DROP), AUD),
    ("aud-null", claims(aud=None), AUD),
    ("aud-empty-string", claims(aud=""), AUD),
    ("aud-empty-list", claims(aud=[]), AUD),
    ("aud-number", claims(aud=1), AUD),
    ("aud-list-of-number", claims(aud=[1]), AUD),
    ("aud-list-ours-and-number", claims(aud=[AUDIENCE, 1]), AUD),
    ("aud-object", claims(aud={"aud": AUDIENCE}), AUD),
    ("aud-nested-list", claims(aud=[[AUDIENCE]]), AUD),
    ("aud-other", claims(aud="api://billing"), AUD),
    ("aud-others-list", claims(aud=["api://billing", "api://admin"]), AUD),
    ("aud-trailing-slash", claims(aud=AUDIENCE + "/"), AUD),
    ("aud-prefix", claims(aud=AUDIENCE[:-1]), AUD),
    ("aud-suffix", claims(aud=AUDIENCE + ".evil"), AUD),
    ("aud-uppercase", claims(aud=AUDIENCE.upper()), AUD),
    ("aud-leading-space", claims(aud=" " + AUDIENCE), AUD),
    ("aud-comma-joined", claims(aud="api://billing," + AUDIENCE), AUD),
    ("aud-space-joined", claims(aud="api://billing " + AUDIENCE), AUD),
    ("aud-is-the-issuer", lambda kit: kit.token(payload=kit.claims(aud=kit.iss)), AUD),
    #
    # Token type confusion (RFC 8725 §3.11, RFC 9068 §2.1/§4, RFC 9449 dpop+jwt, OIDC
    # Back-Channel Logout logout+jwt, RFC 8417 secevent+jwt, OIDC ID tokens).
    *[
        (f"typ-{typ.replace('/', '-').strip() or 'empty'}", header(typ=typ), TYPE)
        for typ in (
            "dpop+jwt",
            "application/dpop+jwt",
            "logout+jwt",
            "application/logout+jwt",
            "secevent+jwt",
            "id_token",
            "JOSE",
            "JOSE+JSON",
            "at+jwtx",
            "",
        )
    ],
    ("typ-trailing-space", header(typ="at+jwt "), TYPE),
    ("typ-with-parameter", header(typ="at+jwt; charset=utf-8"), TYPE),
    ("typ-zero-width", header(typ="at\u200b+jwt"), TYPE),
    ("typ-number", header(typ=1), MALFORMED),
    (
        "id-token-for-a-client",
        lambda kit: kit.token(
            header=kit.header(typ="JWT"),
            payload=kit.claims(aud="spa-client", azp="spa-client", nonce="n-0S6", scope=DROP),
        ),
        AUD,
    ),
    (
        "logout-token-with-our-audience",
        lambda kit: kit.token(
            header=kit.header(typ="logout+jwt"),
            payload=kit.claims(events={"http://schemas.openid.net/event/backchannel-logout": {}}),
        ),
        TYPE,
    ),
    (
        "dpop-proof-as-access-token",
        lambda kit: kit.token(
            header=kit.header(typ="dpop+jwt", jwk=kit.keys.rsa.public_jwk()),
            payload=kit.claims(htm="GET", htu="http://api.test/orders"),
        ),
        TYPE,
    ),
    #
    # Size (RFC 8725 §3.? and DESIGN.md: refuse large tokens before decoding anything).
    ("token-over-16-kib", oversized(16 * 1024), MALFORMED),
    ("token-of-1-mib", lambda kit: "e" * (1 << 20) + ".e.e", MALFORMED),
    ("kid-of-8-kib", header(kid="k" * 8192), UNKNOWN_KEY),
    (
        "hundred-authorization-headers",
        lambda kit: Req(headers=[(b"authorization", b"Bearer " + kit.token().encode())] * 100),
        INVALID_REQUEST,
    ),
    #
    # Unicode in kid, typ and alg: exact code points, no normalisation, nothing reflected.
    ("kid-homoglyph", homoglyph_kid, UNKNOWN_KEY),
    ("kid-zero-width-suffix", kid_suffix("\u200b"), UNKNOWN_KEY),
    ("kid-rtl-override", kid_suffix("\u202egpj.exe"), UNKNOWN_KEY),
    ("kid-nul", kid_suffix("\x00"), UNKNOWN_KEY),
    ("kid-crlf-header-injection", kid_suffix("\r\nSet-Cookie: session=evil"), UNKNOWN_KEY),
    (
        "kid-fullwidth",
        lambda kit: kit.token(header=kit.header(kid="\uff4b\uff49\uff44")),
        UNKNOWN_KEY,
    ),
    #
    # How the token travels (RFC 6750 §2: header only here, one method only, §5.3; the
    # query string leaks to logs and Referer: a query token counts as no credentials).
    ("token-in-query-only", with_request(query="access_token=TOKEN"), NO_CREDENTIALS),
    (
        "token-in-query-and-header",
        with_request(authorization=b"Bearer TOKEN", query="access_token=TOKEN"),
        INVALID_REQUEST,
    ),
    (
        "token-in-query-percent-encoded-name",
        with_request(authorization=b"Bearer TOKEN", query="access%5Ftoken=TOKEN"),
        INVALID_REQUEST,
    ),
    (
        "token-in-form-body-only",
        with_request(
            method="POST",
            headers=((b"content-type", b"application/x-www-form-urlencoded"),),
            body=b"access_token=TOKEN",
        ),
        NO_CREDENTIALS,
    ),
    (
        "token-in-cookie",
        with_request(headers=((b"cookie", b"access_token=TOKEN"),)),
        NO_CREDENTIALS,
    ),
    (
        "token-in-custom-header",
        with_request(headers=((b"x-access-token", b"TOKEN"),)),
        NO_CREDENTIALS,
    ),
    ("two-authorization-headers", lambda kit: _two_headers(kit), INVALID_REQUEST),
    ("basic-scheme", with_request(authorization=b"Basic TOKEN"), NO_CREDENTIALS),
    ("token-scheme", with_request(authorization=b"Token TOKEN"), NO_CREDENTIALS),
    # RFC 9449 §7.1: the DPoP scheme carries DPoP-bound tokens only, with a proof.
    ("dpop-scheme-unbound-token", with_request(authorization=b"DPoP TOKEN"), UNBOUND),
    ("bearer-without-token", lambda kit: Req(authorization=b"Bearer"), INVALID_REQUEST),
    ("bearer-space-only", lambda kit: Req(authorization=b"Bearer    "), INVALID_REQUEST),
    ("bearer-joined-to-token", with_request(authorization=b"BearerTOKEN"), NO_CREDENTIALS),
    #
    # Public paths must not be reachable by spelling a protected path differently.
    *[
        (f"path-{name}", forged_on(path), UNKNOWN_KEY)
        for name, path in (
            ("health-slash", "/health/"),
            ("health-uppercase", "/HEALTH"),
            ("health-dotdot", "/health/../orders"),
            ("double-slash", "//health"),
            ("public-dotdot", "/public/../orders"),
            ("public-dot", "/public/./orders"),
            ("public-double-slash", "/public//orders"),
            ("health-semicolon", "/health;x"),
        )
    ],
    ("path-public-dotdot-anonymous", anonymous_on("/public/../orders"), NO_CREDENTIALS),
    #
    # Scopes (RFC 6750 §3.1 insufficient_scope, RFC 9068 §2.2.3): exact, case-sensitive.
    (
        "scope-missing-for-admin",
        lambda kit: Req(token=kit.token(), path="/admin"),
        INSUFFICIENT_SCOPE,
    ),
    (
        "scope-uppercase",
        lambda kit: Req(token=kit.token(payload=kit.claims(scope="ORDERS:ADMIN")), path="/admin"),
        INSUFFICIENT_SCOPE,
    ),
    (
        "scope-prefix-match",
        lambda kit: Req(
            token=kit.token(payload=kit.claims(scope="orders:admin:read")), path="/admin"
        ),
        INSUFFICIENT_SCOPE,
    ),
    (
        "scope-comma-joined",
        lambda kit: Req(
            token=kit.token(payload=kit.claims(scope="orders:read,orders:admin")), path="/admin"
        ),
        INSUFFICIENT_SCOPE,
    ),
    (
        "scope-in-unconfigured-claim",
        lambda kit: Req(token=kit.token(payload=kit.claims(roles=["orders:admin"])), path="/admin"),
        INSUFFICIENT_SCOPE,
    ),
)


@pytest.mark.parametrize("case", ATTACKS)
async def test_attack(case: Case, kit: Kit, guarded: Guarded) -> None:
    """Each attack is refused as a caller would see it; each control is served."""
    req = case.build(kit)
    seen = await guarded.send(req)
    status, error, code = case.expect
    if status == 200:
        assert_served(seen)
        assert seen.jwks_fetches == 0
        return
    # The 403 challenge names the scope the route needs; that one may come back.
    secrets = request_secrets(req) - {"orders:admin"}
    assert_refused(seen, status, error, fetches=0, secrets=secrets)
    if code is not None:  # refused for the reason the case names, not by accident
        token = req if isinstance(req, str) else req.token
        assert token is not None
        with pytest.raises(InvalidTokenError) as refused:
            await guarded.verifier.verify(token)
        assert refused.value.code == code, refused.value.message


def test_the_table_is_big_and_its_ids_are_unique() -> None:
    ids = [param.id for param in ATTACKS]
    assert len(ids) == len(set(ids))
    assert len(ids) >= 200


CASES_BY_ID = {row.id: row for row in (param.values[0] for param in ATTACKS)}


@pytest.mark.parametrize(
    "case_id",
    [
        "jws-zip-deflate-bomb",
        "pbes2-p2c-bomb-3-segments",
        "pbes2-p2c-bomb-5-segments",
        "token-of-1-mib",
        "payload-deep-nesting",
        "hundred-authorization-headers",
    ],
)
async def test_bombs_are_refused_without_doing_the_work(
    case_id: str, kit: Kit, guarded: Guarded
) -> None:
    """Nothing is inflated, derived or parsed deeply: the refusal comes at once."""
    seen = await guarded.send(CASES_BY_ID[case_id].build(kit))
    assert seen.status in (400, 401)
    assert seen.seconds < 0.5, f"{seen.seconds:.3f} s"


async def test_an_unknown_kid_reads_exactly_like_a_bad_signature(
    kit: Kit, guarded: Guarded
) -> None:
    """No key-id oracle: a caller cannot tell a kid we do not know from a wrong signature."""
    unknown = await guarded.send(kit.token(key=kit.keys.rogue_rsa))
    bad = await guarded.send(kit.token(header=kit.header(), key=kit.keys.rogue_rsa))
    assert (unknown.status, unknown.body, unknown.challenge) == (
        bad.status,
        bad.body,
        bad.challenge,
    )


async def test_an_unknown_kid_refetches_once_per_cooldown_and_never_asks_the_attacker(
    kit: Kit, guarded: Guarded
) -> None:
    token = _remote_token(kit, "jku", kit.attacker.current_key.kid)
    kit.clock.advance(31)  # past the cooldown of the start-up fetch
    first = await guarded.send(token)
    assert_refused(first, 401, "invalid_token", fetches=1, secrets=request_secrets(token))
    for _ in range(20):  # inside the new cooldown: refused at once, no fetch
        again = await guarded.send(_remote_token(kit, "x5u", f"kid-{_}"))
        assert_refused(again, 401, "invalid_token", fetches=0)
    assert sum(kit.attacker.counts.values()) == 0


async def test_a_restricted_allow_list_refuses_before_any_key_is_looked_up(
    kit: Kit, idp_client: Any
) -> None:
    verifier = TokenVerifier(
        kit.iss, AUDIENCE, algorithms=["ES256"], clock=kit.clock, http_client=idp_client
    )
    app = Guarded(verifier, kit.fake)  # not started: the first lookup would fetch keys
    try:
        seen = await app.send(kit.token(key=kit.keys.rogue_rsa))
        assert_refused(seen, 401, "invalid_token", fetches=0)
        assert_served(await app.send(kit.token(key=kit.keys.ec)))
    finally:
        await app.aclose()
        await verifier.aclose()


@pytest.mark.parametrize(
    ("typ", "status"),
    [("at+jwt", 200), ("application/at+jwt", 200), ("JWT", 401), (DROP, 401), ("jwt", 401)],
    ids=["at+jwt", "application-at+jwt", "JWT", "absent", "jwt"],
)
async def test_strict_mode_accepts_only_at_jwt(
    typ: Any, status: int, kit: Kit, idp_client: Any
) -> None:
    """RFC 9068 §4: a resource server that wants it can insist on ``typ: at+jwt``."""
    verifier = TokenVerifier(
        kit.iss, AUDIENCE, strict=True, clock=kit.clock, http_client=idp_client
    )
    app = Guarded(verifier, kit.fake)
    try:
        token = kit.token(header=kit.header(typ=typ))
        seen = await app.send(token)
        if status == 200:
            assert_served(seen)
        else:
            assert_refused(seen, 401, "invalid_token", fetches=None, secrets=request_secrets(token))
    finally:
        await app.aclose()
        await verifier.aclose()


@pytest.mark.parametrize("kid", ["orders-key", "ZZ9_", "0123456789", ""])
def test_lookalike_kids_always_differ(kid: str) -> None:
    """The homoglyph attack gets a forged kid whatever random kid the key was given."""
    forged = lookalike(kid)
    assert forged != kid
    assert len(forged) in (len(kid), len(kid) + 1)
    assert not forged.isascii()
