"""FakeIssuer: injected faults, one endpoint at a time."""

from __future__ import annotations

import json
import time
import zlib
from typing import Any

import pytest

from resource_guard.testing import ENDPOINTS, FAULT_KINDS, FakeIssuer
from tests.fake_issuer_support import FAKE_ISSUER, GOOD, Call
from tests.fake_issuer_support import call as call  # a fixture

pytestmark = FAKE_ISSUER

# Faults -----------------------------------------------------------------------------------


def test_status_fault(fake: FakeIssuer, call: Call) -> None:
    fake.fault("status", status=500)
    reply = call("GET", fake.jwks_uri)
    assert reply.status_code == 500
    assert reply.json()["error"] == "fault_injected"


def test_slow_fault_delays_the_normal_reply(fake: FakeIssuer, call: Call) -> None:
    fake.fault("slow", delay=0.05)
    start = time.perf_counter()
    reply = call("GET", fake.jwks_uri)
    assert time.perf_counter() - start >= 0.05
    assert reply.json() == fake.jwks()


def test_drip_fault_sends_the_normal_body_slowly(fake: FakeIssuer, call: Call) -> None:
    fake.fault("drip", delay=0.0005)
    expected = fake.jwks()
    start = time.perf_counter()
    reply = call("GET", fake.jwks_uri)
    elapsed = time.perf_counter() - start
    assert reply.json() == expected
    assert elapsed >= (len(reply.content) - 1) * 0.0005


def test_drip_fault_streams_one_byte_at_a_time_in_process(fake: FakeIssuer) -> None:
    fake.fault("drip", delay=0)
    with fake.client() as client, client.stream("GET", fake.jwks_uri) as reply:
        chunks = list(reply.iter_raw())
    assert {len(chunk) for chunk in chunks} == {1}
    assert json.loads(b"".join(chunks)) == fake.jwks()


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_garbage_fault_is_not_json(fake: FakeIssuer, call: Call, endpoint: str) -> None:
    fake.fault("garbage", endpoint=endpoint)
    url = {
        "discovery": fake.discovery_url,
        "oauth_metadata": fake.oauth_metadata_url,
        "jwks": fake.jwks_uri,
        "token": fake.token_endpoint,
        "introspection": fake.introspection_endpoint,
        "revocation": fake.revocation_endpoint,
    }[endpoint]
    posted = endpoint in ("token", "introspection", "revocation")
    reply = call("POST" if posted else "GET", url)
    assert reply.status_code == 200
    with pytest.raises((UnicodeDecodeError, json.JSONDecodeError)):
        json.loads(reply.content)


def test_not_object_fault_is_a_json_list(fake: FakeIssuer, call: Call) -> None:
    fake.fault("not_object", endpoint="discovery")
    reply = call("GET", fake.discovery_url)
    assert reply.status_code == 200
    assert reply.json() == [fake.metadata()]


def test_no_keys_fault_is_an_empty_object(fake: FakeIssuer, call: Call) -> None:
    fake.fault("no_keys")
    reply = call("GET", fake.jwks_uri)
    assert (reply.status_code, reply.json()) == (200, {})


def test_oversized_fault_is_valid_json_over_a_mebibyte(fake: FakeIssuer, call: Call) -> None:
    fake.fault("oversized")
    reply = call("GET", fake.jwks_uri)
    assert reply.status_code == 200
    assert len(reply.content) > 1 << 20
    assert reply.json()["keys"] == fake.jwks()["keys"]


def test_gzip_bomb_fault_is_small_on_the_wire(fake: FakeIssuer, call: Call) -> None:
    fake.fault("gzip_bomb")
    reply = call("GET", fake.jwks_uri, raw=True)
    assert reply.status_code == 200
    assert reply.extensions["content-encoding"] == "gzip"
    assert 50 * 1024 < len(reply.content) < 200 * 1024
    assert reply.content[:2] == b"\x1f\x8b"


def test_gzip_bomb_inflates_to_a_hundred_mebibytes(fake: FakeIssuer) -> None:
    fake.fault("gzip_bomb")
    with fake.client() as client, client.stream("GET", fake.jwks_uri) as reply:
        wire = b"".join(reply.iter_raw())
    inflater = zlib.decompressobj(wbits=31)
    total, pending = 0, wire
    for _ in range(10_000):  # bounded: 100 MiB in 1 MiB steps
        total += len(inflater.decompress(pending, 1 << 20))
        pending = inflater.unconsumed_tail
        if not pending:
            break
    assert inflater.eof
    assert total >= 100 << 20


def test_redirect_fault_points_at_the_same_document(fake: FakeIssuer, call: Call) -> None:
    fake.fault("redirect")
    reply = call("GET", fake.jwks_uri)
    assert reply.status_code == 302
    location = reply.headers["location"]
    assert location.endswith("/moved/jwks.json")
    followed = call("GET", location)
    assert (followed.status_code, followed.json()) == (200, fake.jwks())
    assert fake.jwks_fetches == 2


def test_redirect_fault_can_point_anywhere(fake: FakeIssuer) -> None:
    fake.fault("redirect", endpoint="discovery", location="https://evil.test/x")
    with fake.client() as client:
        assert client.get(fake.discovery_url).headers["location"] == "https://evil.test/x"


def test_fault_times_limits_the_hits(fake: FakeIssuer) -> None:
    fake.fault("status", times=2)
    with fake.client() as client:
        statuses = [client.get(fake.jwks_uri).status_code for _ in range(3)]
    assert statuses == [503, 503, 200]
    assert fake.jwks_fetches == 3


def test_fault_applies_to_its_path_only(fake: FakeIssuer) -> None:
    fake.fault("status", endpoint="token")
    with fake.client() as client:
        assert client.get(fake.jwks_uri).status_code == 200
        assert client.post(fake.token_endpoint, data=GOOD).status_code == 503


def test_a_new_fault_replaces_the_old_and_clear_faults_removes_all(fake: FakeIssuer) -> None:
    fake.fault("status", status=500)
    fake.fault("no_keys")
    fake.fault("status", endpoint="discovery")
    with fake.client() as client:
        assert client.get(fake.jwks_uri).json() == {}
        fake.clear_faults()
        assert client.get(fake.jwks_uri).json() == fake.jwks()
        assert client.get(fake.discovery_url).status_code == 200


@pytest.mark.parametrize(
    ("kind", "options", "error"),
    [
        ("explode", {}, ValueError),
        ("status", {"endpoint": "userinfo"}, ValueError),
        ("status", {"status": 99}, ValueError),
        ("status", {"status": 600}, ValueError),
        ("status", {"status": "503"}, TypeError),
        ("slow", {"delay": -1}, ValueError),
        ("slow", {"delay": float("inf")}, ValueError),
        ("slow", {"delay": "1"}, TypeError),
        ("status", {"times": 0}, ValueError),
        ("status", {"times": True}, TypeError),
        ("redirect", {"location": ""}, ValueError),
    ],
    ids=[
        "unknown-kind",
        "unknown-endpoint",
        "status-too-low",
        "status-too-high",
        "status-str",
        "negative-delay",
        "infinite-delay",
        "delay-str",
        "zero-times",
        "times-bool",
        "empty-location",
    ],
)
def test_bad_faults_are_refused(
    fake: FakeIssuer, kind: str, options: dict[str, Any], error: type
) -> None:
    with pytest.raises(error):
        fake.fault(kind, **options)


def test_every_fault_kind_is_tested() -> None:
    tested = {
        "status",
        "slow",
        "drip",
        "garbage",
        "not_object",
        "no_keys",
        "oversized",
        "gzip_bomb",
        "redirect",
        "active_string",  # tests/introspection/test_fake_issuer.py
    }
    assert set(FAULT_KINDS) == tested
