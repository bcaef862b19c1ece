"""ClientCredentialsAuth's disk cache: permissions, atomic files that name nothing, reuse
across instances, and files that must be ignored."""

from __future__ import annotations

import json
import logging
import os
import re
import stat
from pathlib import Path
from typing import Any

import httpx
import pytest

from resource_guard.client import ClientCredentialsAuth
from resource_guard.client._cache import DiskCache
from resource_guard.client._token import Token
from resource_guard.exceptions import TokenRequestError
from resource_guard.testing import FakeClock
from tests import client_support
from tests.client_support import API, CLIENT_ID, SECRET, TokenServer, json_reply

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


@pytest.fixture
def cache_dir(tmp_path: Path) -> Path:
    return tmp_path / "tokens"


def make_auth(
    server: TokenServer, clock: FakeClock, cache_dir: Path, **options: Any
) -> ClientCredentialsAuth:
    return client_support.make_auth(server, clock, cache_dir=cache_dir, **options)


def send_sync(auth: ClientCredentialsAuth, server: TokenServer) -> httpx.Response:
    with httpx.Client(transport=server.transport(), auth=auth) as client:
        return client.get(API)


async def send(mode: str, auth: ClientCredentialsAuth, server: TokenServer) -> httpx.Response:
    if mode == "sync":
        return send_sync(auth, server)
    async with httpx.AsyncClient(transport=server.async_transport(), auth=auth) as client:
        return await client.get(API)


def cache_files(directory: Path) -> list[Path]:
    return sorted(directory.iterdir())


def the_file(directory: Path) -> Path:
    files = cache_files(directory)
    assert len(files) == 1
    return files[0]


# -- layout -----------------------------------------------------------------------------------


def test_the_directory_is_0700_and_the_file_0600(
    server: TokenServer, clock: FakeClock, cache_dir: Path
) -> None:
    old_umask = os.umask(0)
    try:
        make_auth(server, clock, cache_dir).get_token()
    finally:
        os.umask(old_umask)

    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o700
    assert stat.S_IMODE(the_file(cache_dir).stat().st_mode) == 0o600


def test_the_file_reveals_neither_the_client_id_nor_the_url(
    server: TokenServer, clock: FakeClock, cache_dir: Path
) -> None:
    make_auth(server, clock, cache_dir).get_token()

    path = the_file(cache_dir)
    assert re.fullmatch(r"[0-9a-f]{64}\.json", path.name)
    content = path.read_text()
    assert CLIENT_ID not in content
    assert "idp.test" not in content
    assert SECRET not in content
    assert json.loads(content)["access_token"] == "tok-1"


async def test_no_temporary_files_are_left_behind(
    server: TokenServer, clock: FakeClock, cache_dir: Path
) -> None:
    auth = make_auth(server, clock, cache_dir)
    for _ in range(3):
        await auth.aget_token()
        clock.advance(3600)

    assert len(cache_files(cache_dir)) == 1
    assert json.loads(the_file(cache_dir).read_text())["access_token"] == "tok-3"


def test_an_existing_private_directory_is_used_as_it_is(
    server: TokenServer, clock: FakeClock, cache_dir: Path
) -> None:
    cache_dir.mkdir(mode=0o755)
    cache_dir.chmod(0o755)

    make_auth(server, clock, cache_dir).get_token()

    assert stat.S_IMODE(cache_dir.stat().st_mode) == 0o755


# -- reuse ------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_second_instance_reuses_the_token_on_disk(
    server: TokenServer, clock: FakeClock, cache_dir: Path, mode: str
) -> None:
    make_auth(server, clock, cache_dir).get_token()
    second = make_auth(server, clock, cache_dir)

    token = second.get_token() if mode == "sync" else await second.aget_token()

    assert token == "tok-1"
    assert len(server.token_requests) == 1


def test_a_token_on_disk_is_refreshed_when_due(
    server: TokenServer, clock: FakeClock, cache_dir: Path
) -> None:
    make_auth(server, clock, cache_dir).get_token()
    clock.advance(3570)

    assert make_auth(server, clock, cache_dir).get_token() == "tok-2"


@pytest.mark.parametrize(
    "changes",
    [
        {"scopes": "orders:read"},
        {"audience": "api://other"},
        {"client_id": "another-client"},
        {"token_url": "https://idp.test/token?tenant=b"},
        {"extra_params": {"resource": "https://orders.example.com"}},
    ],
    ids=["scopes", "audience", "client-id", "token-url", "extra-params"],
)
def test_a_different_cache_key_uses_another_file(
    server: TokenServer, clock: FakeClock, cache_dir: Path, changes: dict[str, Any]
) -> None:
    make_auth(server, clock, cache_dir).get_token()

    assert make_auth(server, clock, cache_dir, **changes).get_token() == "tok-2"
    assert len(cache_files(cache_dir)) == 2


def test_each_resource_list_has_its_own_cache_file(
    server: TokenServer, clock: FakeClock, cache_dir: Path
) -> None:
    """Different members or a different order ask for a different token (RFC 8707)."""
    lists = [
        ["https://a.example/", "https://b.example/"],
        ["https://b.example/", "https://a.example/"],
        ["https://a.example/"],
        ["https://a.example/", "https://c.example/"],
    ]
    tokens = [
        make_auth(server, clock, cache_dir, extra_params={"resource": resources}).get_token()
        for resources in lists
    ]
    again = make_auth(server, clock, cache_dir, extra_params={"resource": list(lists[0])})

    assert tokens == ["tok-1", "tok-2", "tok-3", "tok-4"]
    assert len(cache_files(cache_dir)) == 4
    assert again.get_token() == "tok-1"


def test_scope_order_does_not_change_the_key(
    server: TokenServer, clock: FakeClock, cache_dir: Path
) -> None:
    make_auth(server, clock, cache_dir, scopes="a b").get_token()

    assert make_auth(server, clock, cache_dir, scopes="b a").get_token() == "tok-1"


# -- files to ignore --------------------------------------------------------------------------


def rewrite(path: Path, **changes: Any) -> None:
    document = json.loads(path.read_text())
    document.update(changes)
    path.write_text(json.dumps(document))


TAMPERING = {
    "garbage": lambda path: path.write_bytes(b"\x00\xff not json"),
    "json-list": lambda path: path.write_text("[1, 2]"),
    "other-format": lambda path: rewrite(path, format="someone-else/1"),
    "foreign-key": lambda path: rewrite(path, key="0" * 64),
    "missing-token": lambda path: rewrite(path, access_token=None),
    "header-injection": lambda path: rewrite(path, access_token="a\r\nX: y"),
    "bool-expiry": lambda path: rewrite(path, expires_at=True),
    "text-expiry": lambda path: rewrite(path, expires_at="soon"),
    "infinite-expiry": lambda path: path.write_text(
        path.read_text().replace('"expires_at": ', '"expires_at": Infinity, "x": ')
    ),
    "expired": lambda path: rewrite(path, expires_at=1.0),
    "oversized": lambda path: path.write_text(" " * (64 * 1024 + 1)),
    "group-readable": lambda path: path.chmod(0o640),
}


@pytest.mark.parametrize("tamper", list(TAMPERING.values()), ids=list(TAMPERING))
def test_a_file_that_cannot_be_trusted_is_ignored_and_replaced(
    server: TokenServer, clock: FakeClock, cache_dir: Path, tamper: Any
) -> None:
    make_auth(server, clock, cache_dir).get_token()
    path = the_file(cache_dir)
    tamper(path)

    assert make_auth(server, clock, cache_dir).get_token() == "tok-2"
    assert json.loads(path.read_text())["access_token"] == "tok-2"


def test_a_file_copied_under_another_key_s_name_is_ignored(
    server: TokenServer, clock: FakeClock, cache_dir: Path
) -> None:
    make_auth(server, clock, cache_dir, client_id="admin-client").get_token()
    admin_file = the_file(cache_dir)
    make_auth(server, clock, cache_dir).get_token()
    mine = next(path for path in cache_files(cache_dir) if path != admin_file)
    os.replace(admin_file, mine)

    assert make_auth(server, clock, cache_dir).get_token() == "tok-3"


def test_a_symlinked_file_is_ignored(
    server: TokenServer, clock: FakeClock, cache_dir: Path, tmp_path: Path
) -> None:
    make_auth(server, clock, cache_dir).get_token()
    path = the_file(cache_dir)
    elsewhere = tmp_path / "planted.json"
    os.replace(path, elsewhere)
    path.symlink_to(elsewhere)

    assert make_auth(server, clock, cache_dir).get_token() == "tok-2"


@pytest.mark.skipif(not IS_ROOT, reason="changing a file's owner needs root")
def test_a_file_owned_by_another_user_is_ignored(
    server: TokenServer, clock: FakeClock, cache_dir: Path
) -> None:
    make_auth(server, clock, cache_dir).get_token()
    os.chown(the_file(cache_dir), 65534, 65534)

    assert make_auth(server, clock, cache_dir).get_token() == "tok-2"


# -- directories that cannot be used ----------------------------------------------------------


def test_a_cache_dir_below_a_file_fails_at_construction(
    server: TokenServer, clock: FakeClock, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("")

    with pytest.raises(ValueError, match=r"token cache directory .* cannot be used") as caught:
        make_auth(server, clock, tmp_path / "file" / "tokens")

    assert "point cache_dir at a writable directory" in str(caught.value)
    assert server.token_requests == []


def test_a_cache_dir_that_is_a_file_fails_at_construction(
    server: TokenServer, clock: FakeClock, tmp_path: Path
) -> None:
    (tmp_path / "file").write_text("")

    with pytest.raises(ValueError, match="is not a directory"):
        make_auth(server, clock, tmp_path / "file")


@pytest.mark.skipif(IS_ROOT, reason="root writes through directory permissions")
def test_a_read_only_cache_dir_fails_at_construction(
    server: TokenServer, clock: FakeClock, cache_dir: Path
) -> None:
    cache_dir.mkdir(mode=0o500)

    with pytest.raises(ValueError, match="cannot be used: Permission denied"):
        make_auth(server, clock, cache_dir)


def test_a_cache_dir_writable_by_others_is_refused(
    server: TokenServer, clock: FakeClock, cache_dir: Path
) -> None:
    cache_dir.mkdir()
    cache_dir.chmod(0o777)

    with pytest.raises(ValueError, match=r"is not private: .* \(chmod 700 it\)"):
        make_auth(server, clock, cache_dir)


@pytest.mark.skipif(not IS_ROOT, reason="changing a directory's owner needs root")
def test_a_cache_dir_owned_by_another_user_is_refused(
    server: TokenServer, clock: FakeClock, cache_dir: Path
) -> None:
    cache_dir.mkdir(mode=0o700)
    os.chown(cache_dir, 65534, 65534)

    with pytest.raises(ValueError, match="is not private"):
        make_auth(server, clock, cache_dir)


def replace_with_a_file(directory: Path) -> None:
    directory.rmdir()
    directory.write_text("")


async def test_a_write_failure_after_construction_is_logged_not_raised(
    server: TokenServer,
    clock: FakeClock,
    cache_dir: Path,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    auth = make_auth(server, clock, cache_dir)
    replace_with_a_file(cache_dir)  # the directory is gone: writes fail

    with caplog.at_level(logging.WARNING, logger="resource_guard.client"):
        assert await auth.aget_token() == "tok-1"
        assert auth.get_token() == "tok-1"

    assert "could not write the token cache file" in caplog.text
    assert "tok-1" not in caplog.text


def test_a_failed_replace_removes_the_temporary_file(
    cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cache = DiskCache.open(cache_dir, "k" * 64)
    cache.path.mkdir()  # os.replace cannot put a file over a directory

    with caplog.at_level(logging.WARNING, logger="resource_guard.client"):
        cache.store(Token.create("t", obtained_at=1.0, expires_at=100.0, skew=0))

    assert cache_files(cache_dir) == [cache.path]
    assert "could not write the token cache file" in caplog.text


# -- 401 and the disk -------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_token_refused_with_401_leaves_the_disk(
    server: TokenServer, clock: FakeClock, cache_dir: Path, mode: str
) -> None:
    auth = make_auth(server, clock, cache_dir)
    auth.get_token()
    server.accepted = set()
    server.script.append(json_reply(400, {"error": "invalid_client"}))

    with pytest.raises(TokenRequestError):
        await send(mode, auth, server)

    assert cache_files(cache_dir) == []


def test_discarding_keeps_a_newer_token_written_by_someone_else(cache_dir: Path) -> None:
    cache = DiskCache.open(cache_dir, "k" * 64)
    cache.store(Token.create("newer", obtained_at=1.0, expires_at=100.0, skew=0))

    cache.discard("older")

    stored = cache.load(skew=0)
    assert stored is not None
    assert stored.access_token == "newer"
    assert repr(stored) == "Token(obtained_at=1.0, expires_at=100.0)"
