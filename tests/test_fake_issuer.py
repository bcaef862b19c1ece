"""FakeIssuer: construction and the public names of resource_guard.testing (the examples of
docs/testing.md run once, in tests/test_docs.py).

The other tests/test_fake_issuer_*.py files test one part each: metadata, keys, tokens, the
token endpoint, faults, serving."""

from __future__ import annotations

import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from resource_guard.testing import FakeIssuer, generate_key, read_unverified
from tests.fake_issuer_support import FAKE_ISSUER

pytestmark = FAKE_ISSUER

# Construction ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error"),
    [
        ({"issuer": "issuer.example.test"}, ValueError),
        ({"issuer": "ftp://issuer.example.test"}, ValueError),
        ({"issuer": "https://issuer.example.test?x=1"}, ValueError),
        ({"issuer": "https://issuer.example.test#frag"}, ValueError),
        ({"issuer": ""}, ValueError),
        ({"audience": ""}, ValueError),
        ({"audience": ()}, ValueError),
        ({"audience": 5}, TypeError),
        ({"algorithm": "HS256"}, ValueError),
        ({"algorithm": "none"}, ValueError),
        ({"clock": 5}, TypeError),
        ({"jwks_max_age": -1}, ValueError),
        ({"jwks_max_age": 1.5}, TypeError),
    ],
    ids=[
        "issuer-no-scheme",
        "issuer-ftp",
        "issuer-query",
        "issuer-fragment",
        "issuer-empty",
        "audience-empty",
        "audience-empty-list",
        "audience-int",
        "alg-hmac",
        "alg-none",
        "clock-not-callable",
        "max-age-negative",
        "max-age-float",
    ],
)
def test_bad_construction_options_are_refused(options: dict[str, Any], error: type) -> None:
    with pytest.raises(error):
        FakeIssuer(**options)


def test_repr_names_issuer_and_algorithm() -> None:
    assert (
        repr(FakeIssuer()) == "FakeIssuer(issuer='https://issuer.example.test', algorithm='RS256')"
    )


# The argument rule: a wrong type raises TypeError, a wrong value ValueError ----------------

CIRCULAR: dict[str, object] = {"kty": "EC"}
CIRCULAR["self"] = CIRCULAR


def rule_case(
    case_id: str, target: str, *args: object, error: type[Exception], names: str, **kwargs: object
) -> Any:
    """``target`` is ``FakeIssuer``, ``generate_key``, ``set jwks_max_age`` or a method of
    the ``fake`` fixture; ``names`` must appear in the message (the argument to fix)."""
    return pytest.param(target, args, kwargs, error, names, id=case_id)


ARGUMENT_RULE = [
    rule_case("issuer-empty", "FakeIssuer", "", error=ValueError, names="issuer"),
    rule_case("issuer-int", "FakeIssuer", 5, error=TypeError, names="issuer"),
    rule_case("audience-empty", "FakeIssuer", audience="", error=ValueError, names="audience"),
    rule_case(
        "audience-list-with-empty",
        "FakeIssuer",
        audience=["api://a", ""],
        error=ValueError,
        names="audience",
    ),
    rule_case("algorithm-int", "FakeIssuer", algorithm=256, error=TypeError, names="algorithm"),
    rule_case(
        "max-age-float", "FakeIssuer", jwks_max_age=1.5, error=TypeError, names="jwks_max_age"
    ),
    rule_case("max-age-set-str", "set jwks_max_age", "300", error=TypeError, names="jwks_max_age"),
    rule_case("key-algorithm-int", "generate_key", 256, error=TypeError, names="^algorithm "),
    rule_case("key-kid-empty", "generate_key", "RS256", "", error=ValueError, names="kid"),
    rule_case(
        "key-size-str", "generate_key", "RS256", key_size="2048", error=TypeError, names="key_size"
    ),
    rule_case(
        "key-size-bool", "generate_key", "RS256", key_size=True, error=TypeError, names="key_size"
    ),
    rule_case("rotate-algorithm-int", "rotate_keys", 256, error=TypeError, names="^algorithm "),
    rule_case("raw-jwk-circular", "publish_raw_jwk", CIRCULAR, error=ValueError, names="jwk"),
    rule_case("mint-algorithm-int", "mint", algorithm=256, error=TypeError, names="^algorithm "),
    rule_case("mint-key-int", "mint", key=42, error=TypeError, names="^key "),
    rule_case(
        "mint-secret-algorithm-int",
        "mint",
        key="s",
        algorithm=256,
        error=TypeError,
        names="^algorithm ",
    ),
    rule_case("mint-audience-empty", "mint", audience="", error=ValueError, names="audience"),
    rule_case("mint-scope-int", "mint", scopes=["a", 5], error=TypeError, names="scopes"),
    rule_case("mint-time-nan", "mint", issued_at=float("nan"), error=ValueError, names="issued_at"),
    rule_case("mint-claims-str", "mint", claims="sub", error=TypeError, names="claims"),
    rule_case("mint-headers-str", "mint", headers="kid", error=TypeError, names="headers"),
    rule_case("client-id-empty", "register_client", "", "s", error=ValueError, names="client_id"),
    rule_case(
        "client-secret-empty",
        "register_client",
        "svc",
        "",
        error=ValueError,
        names="client_secret",
    ),
    rule_case(
        "client-lifetime-float",
        "register_client",
        "svc",
        "s",
        expires_in=1.5,
        error=TypeError,
        names="expires_in",
    ),
    rule_case(
        "client-scope-bytes",
        "register_client",
        "svc",
        "s",
        scopes=[b"a"],
        error=TypeError,
        names="scopes",
    ),
    rule_case("fault-kind-int", "fault", 5, error=TypeError, names="kind"),
    rule_case(
        "fault-endpoint-int", "fault", "status", endpoint=5, error=TypeError, names="endpoint"
    ),
    rule_case(
        "fault-location-empty", "fault", "redirect", location="", error=ValueError, names="location"
    ),
]


@pytest.mark.parametrize(("target", "args", "kwargs", "error", "names"), ARGUMENT_RULE)
def test_a_wrong_type_is_a_type_error_and_a_wrong_value_a_value_error(
    fake: FakeIssuer,
    target: str,
    args: tuple[object, ...],
    kwargs: dict[str, object],
    error: type[Exception],
    names: str,
) -> None:
    """The library's rule, with a message that names the argument to fix."""
    targets: dict[str, Callable[..., object]] = {
        "FakeIssuer": FakeIssuer,
        "generate_key": generate_key,
        "set jwks_max_age": lambda value: setattr(fake, "jwks_max_age", value),
    }
    with pytest.raises(error, match=names):
        (targets[target] if target in targets else getattr(fake, target))(*args, **kwargs)


# One name for one algorithm: algorithm=, with alg= as its deprecated spelling -------------


def _token_alg(token: str) -> str:
    return str(read_unverified(token)[0]["alg"])


ONE_ALGORITHM: dict[str, Callable[..., str]] = {
    "generate_key": lambda fake, **kw: generate_key(**kw).alg,
    "FakeIssuer.generate_key": lambda fake, **kw: fake.generate_key(**kw).alg,
    "add_key": lambda fake, **kw: fake.add_key(**kw).alg,
    "rotate_keys": lambda fake, **kw: fake.rotate_keys(**kw).alg,
    "mint": lambda fake, **kw: _token_alg(fake.mint(**kw)),
    "mint_expired": lambda fake, **kw: _token_alg(fake.mint_expired(**kw)),
    "mint_not_yet_valid": lambda fake, **kw: _token_alg(fake.mint_not_yet_valid(**kw)),
    "auth_headers": lambda fake, **kw: _token_alg(fake.auth_headers(**kw)["Authorization"][7:]),
}
"""Every call that takes one algorithm, and the ``alg`` of what it made."""

DEPRECATED_ALG = r"^alg= is deprecated, use algorithm=$"


@pytest.mark.parametrize("call", ONE_ALGORITHM.values(), ids=ONE_ALGORITHM.keys())
def test_algorithm_names_the_one_algorithm(fake: FakeIssuer, call: Callable[..., str]) -> None:
    assert call(fake, algorithm="EdDSA") == "EdDSA"


@pytest.mark.parametrize("call", ONE_ALGORITHM.values(), ids=ONE_ALGORITHM.keys())
def test_alg_still_works_with_a_deprecation_warning_at_the_caller(
    fake: FakeIssuer, call: Callable[..., str]
) -> None:
    """The warning points at the line that passed ``alg=``, not into resource_guard."""
    with pytest.warns(DeprecationWarning, match=DEPRECATED_ALG) as caught:
        assert call(fake, alg="EdDSA") == "EdDSA"
    assert [Path(warning.filename) for warning in caught] == [Path(__file__)]


@pytest.mark.parametrize("call", ONE_ALGORITHM.values(), ids=ONE_ALGORITHM.keys())
def test_algorithm_and_alg_together_are_a_type_error(
    fake: FakeIssuer, call: Callable[..., str]
) -> None:
    with pytest.raises(TypeError, match=r"both algorithm= and alg="):
        call(fake, algorithm="EdDSA", alg="EdDSA")


def test_add_key_takes_a_prepared_key_under_the_old_name_too(fake: FakeIssuer) -> None:
    prepared = generate_key("EdDSA", "prepared")
    with pytest.warns(DeprecationWarning, match=DEPRECATED_ALG):
        assert fake.add_key(alg=prepared) is prepared


def test_generate_key_needs_an_algorithm() -> None:
    with pytest.raises(TypeError, match="needs an algorithm"):
        generate_key()  # type: ignore[call-overload]


def test_fault_names_its_endpoint_with_endpoint(fake: FakeIssuer) -> None:
    fake.fault("status", endpoint="token", status=500)
    with fake.client() as client:
        assert client.post(fake.token_endpoint).status_code == 500
        assert client.get(fake.jwks_uri).status_code == 200


def test_fault_path_still_works_with_a_deprecation_warning_at_the_caller(
    fake: FakeIssuer,
) -> None:
    with pytest.warns(DeprecationWarning, match=r"^path= is deprecated, use endpoint=$") as caught:
        fake.fault("status", path="token", status=500)
    assert [Path(warning.filename) for warning in caught] == [Path(__file__)]
    with fake.client() as client:
        assert client.post(fake.token_endpoint).status_code == 500
        assert client.get(fake.jwks_uri).status_code == 200


@pytest.mark.parametrize("endpoint", ["jwks", "token"], ids=["default-value", "other-value"])
def test_fault_endpoint_and_path_together_are_a_type_error(fake: FakeIssuer, endpoint: str) -> None:
    """Even when ``endpoint=`` repeats the default: both spellings were passed."""
    with pytest.raises(TypeError, match=r"both endpoint= and path="):
        fake.fault("status", endpoint=endpoint, path="token")


# Exports ------------------------------------------------------------------------------------


def test_public_names_are_exported_once_and_importable() -> None:
    import resource_guard.testing as testing

    assert len(set(testing.__all__)) == len(testing.__all__)
    assert all(hasattr(testing, name) for name in testing.__all__)
    public = {
        name
        for name, value in vars(testing).items()
        if name[0].isalpha() and not isinstance(value, types.ModuleType)
    }
    assert public - set(testing.__all__) == set()
