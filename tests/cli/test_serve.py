"""``issuer serve`` (``resource_guard.cli._serve``)."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from resource_guard import cli
from resource_guard.cli._keys import load_or_create_keys
from resource_guard.cli._serve import build_issuer, serve

from ._harness import FAKE_ISSUER, mint, one_line_error, run, unverified

pytestmark = FAKE_ISSUER

# -- issuer serve --------------------------------------------------------------------------------


class Lines:
    """A text stream whose lines another thread can wait for."""

    def __init__(self) -> None:
        self.lines: queue.Queue[str] = queue.Queue()
        self._partial = ""

    def write(self, text: str) -> int:
        self._partial += text
        *complete, self._partial = self._partial.split("\n")
        for line in complete:
            self.lines.put(line)
        return len(text)

    def flush(self) -> None:
        pass

    def wait_for(self, prefix: str, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            if line.startswith(prefix):
                return line
        raise AssertionError(f"no line starting with {prefix!r} within {timeout} s")


def serve_args(key_file: Path, *argv: str) -> Any:
    return cli.build_parser().parse_args(
        ["issuer", "serve", "--port", "0", "--key-file", str(key_file), *argv]
    )


@pytest.fixture
def serving(existing_key_file: Path) -> Iterator[Any]:
    """Start ``serve`` in a thread; yield a function that takes the options and returns
    the output stream once the banner is printed."""
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def start(*argv: str) -> Lines:
        out = Lines()
        options = serve_args(existing_key_file, *argv)
        thread = threading.Thread(target=serve, args=(options, out, stop))
        thread.start()
        threads.append(thread)
        return out

    yield start
    stop.set()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()


def issuer_url(out: Lines) -> str:
    return out.wait_for("  issuer ").split()[-1]


def test_serve_prints_its_urls_and_serves_them(serving: Any, key_file: Path) -> None:
    out = serving(
        "--client",
        "worker:s3cret-value:orders:read,orders:write",
        "--audience",
        "api://orders",
        "--path",
        "/oauth2/default",
    )
    assert out.wait_for("fake issuer listening on 127.0.0.1:")
    issuer = issuer_url(out)
    assert issuer.startswith("http://127.0.0.1:")
    assert issuer.endswith("/oauth2/default")
    discovery = out.wait_for("  discovery ").split()[-1]
    jwks_uri = out.wait_for("  JWKS ").split()[-1]
    token_endpoint = out.wait_for("  token endpoint ").split()[-1]
    assert out.wait_for("  audience ").split()[-1] == "api://orders"
    assert out.wait_for("  client ") == "  client          worker (orders:read orders:write)"
    metadata = httpx.get(discovery).json()
    assert (metadata["issuer"], metadata["jwks_uri"], metadata["token_endpoint"]) == (
        issuer,
        jwks_uri,
        token_endpoint,
    )
    reply = httpx.post(
        token_endpoint,
        data={"grant_type": "client_credentials", "scope": "orders:read"},
        auth=("worker", "s3cret-value"),
    )
    claims = unverified(reply.json()["access_token"])
    assert (claims["iss"], claims["aud"], claims["scope"]) == (
        issuer,
        "api://orders",
        "orders:read",
    )
    keys, _ = load_or_create_keys(key_file)
    assert httpx.get(jwks_uri).json() == {"keys": [keys[0].public_jwk()]}


def test_signal_handlers_are_only_installed_in_the_main_thread() -> None:
    from resource_guard.cli._serve import stop_on_signals

    seen = []

    def in_thread() -> None:
        with stop_on_signals(threading.Event()):
            seen.append(signal.getsignal(signal.SIGTERM))

    before = signal.getsignal(signal.SIGTERM)
    thread = threading.Thread(target=in_thread)
    thread.start()
    thread.join(5)
    assert seen == [before]


def test_clients_keep_their_secret_out_of_reprs() -> None:
    from resource_guard.cli._serve import parse_client

    client = parse_client("worker:hunter2:a,b")
    assert repr(client) == "Client('worker', scopes=('a', 'b'))"


def test_serve_splits_scopes_and_audiences_like_every_list_option(
    existing_key_file: Path,
) -> None:
    from resource_guard.cli._serve import parse_client

    assert parse_client("w:s:a,b c,a").scopes == ("a", "b", "c")
    fake, _, _ = build_issuer(serve_args(existing_key_file, "--audience", "api://a,api://b"))
    assert fake.audience == ("api://a", "api://b")


def test_serve_never_prints_client_secrets(serving: Any) -> None:
    out = serving("--client", "worker:very-secret-value")
    out.wait_for("press Ctrl-C")
    seen = []
    while not out.lines.empty():
        seen.append(out.lines.get())
    assert all("very-secret-value" not in line for line in seen)


def test_serve_and_mint_share_the_key_file(
    serving: Any, capsys: pytest.CaptureFixture[str], key_file: Path
) -> None:
    out = serving()
    issuer = issuer_url(out)
    token = mint(capsys, "--issuer", issuer, "--scope", "orders:read")
    status, text, err = run(
        capsys, "verify", token, "--issuer", issuer, "--audience", "api://default"
    )
    assert (status, err) == (0, "")
    assert "  scopes     orders:read" in text


def test_serve_reads_clients_and_audience_from_a_config_file(serving: Any, tmp_path: Path) -> None:
    config = tmp_path / "issuer.json"
    config.write_text(
        json.dumps(
            {
                "audience": ["api://a", "api://b"],
                "clients": [
                    {
                        "client_id": "w",
                        "client_secret": "se:cret",
                        "scopes": "x y",
                        "audience": "api://b",
                        "expires_in": 60,
                    },
                    {"client_id": "v", "client_secret": "s"},
                ],
            }
        )
    )
    out = serving("--config", str(config), "--client", "cli:secret:z")
    issuer = issuer_url(out)
    out.wait_for("  audience ")
    assert out.wait_for("  client ").split()[1:] == ["w", "(x", "y)"]
    assert out.wait_for("  client ").endswith("v (no scopes)")
    assert out.wait_for("  client ").endswith("cli (z)")
    reply = httpx.post(
        f"{issuer}/token", data={"grant_type": "client_credentials"}, auth=("w", "se:cret")
    )
    body = reply.json()
    assert body["expires_in"] == 60
    assert unverified(body["access_token"])["aud"] == "api://b"


def write_config(tmp_path: Path, document: Any) -> Path:
    path = tmp_path / "config.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    return path


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("{", "is not valid JSON (line 1)"),
        ([], "must hold an object"),
        ({"port": 1}, "unknown field(s) port"),
        ({"clients": {}}, "clients must be a list"),
        ({"clients": ["w:s"]}, "clients[0] must be an object"),
        ({"clients": [{"client_id": "w", "client_secret": "s", "x": 1}]}, "unknown field(s) x"),
        ({"clients": [{"client_secret": "s"}]}, "client_id must be a non-empty string"),
        ({"clients": [{"client_id": "w"}]}, "(w): client_secret must be a non-empty string"),
        (
            {"clients": [{"client_id": "w", "client_secret": "s", "expires_in": 0}]},
            "expires_in must be a positive whole number",
        ),
        (
            {"clients": [{"client_id": "w", "client_secret": "s", "scopes": [1]}]},
            "scopes must be a non-empty string or list of strings",
        ),
        ({"audience": []}, "audience must be a non-empty string or list"),
    ],
    ids=[
        "not-json",
        "not-object",
        "unknown-field",
        "clients-not-list",
        "client-not-object",
        "client-unknown-field",
        "no-client-id",
        "no-secret",
        "bad-expires-in",
        "bad-scopes",
        "empty-audience",
    ],
)
def test_a_bad_config_file_is_one_line(
    capsys: pytest.CaptureFixture[str],
    key_file: Path,
    tmp_path: Path,
    document: Any,
    expected: str,
) -> None:
    config = write_config(tmp_path, document)
    status, _, err = run(capsys, "issuer", "serve", "--port", "0", "--config", str(config))
    assert status == 2
    line = one_line_error(err)
    assert expected in line
    assert '"s"' not in line


def test_a_missing_config_file_is_one_line(
    capsys: pytest.CaptureFixture[str], key_file: Path, tmp_path: Path
) -> None:
    status, _, err = run(capsys, "issuer", "serve", "--config", str(tmp_path / "nope.json"))
    assert status == 2
    assert "cannot read config file" in one_line_error(err)


@pytest.mark.parametrize("path", ["oauth2", "/a?b=1", "/"], ids=["relative", "query", "root"])
def test_a_bad_issuer_path_is_refused(
    capsys: pytest.CaptureFixture[str], key_file: Path, path: str
) -> None:
    status, _, err = run(capsys, "issuer", "serve", "--path", path)
    assert status == 2
    assert "--path must start with '/'" in one_line_error(err)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_a_port_in_use_is_one_line(
    capsys: pytest.CaptureFixture[str], existing_key_file: Path
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, _, err = run(capsys, "issuer", "serve", "--port", str(port))
    assert status == 2
    assert f"cannot listen on 127.0.0.1:{port}" in one_line_error(err)


def test_build_issuer_with_defaults(key_file: Path) -> None:
    fake, clients, created = build_issuer(serve_args(key_file))
    assert (fake.issuer, fake.audience, clients, created) == (
        "http://127.0.0.1",
        "api://default",
        [],
        True,
    )


def test_main_serves_until_sigterm(
    capsys: pytest.CaptureFixture[str], existing_key_file: Path
) -> None:
    """The real entry point: signal handlers stop the server cleanly and are restored."""
    port = free_port()
    previous = signal.getsignal(signal.SIGTERM)
    served: list[int] = []

    def stop_when_up() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                served.append(httpx.get(f"http://127.0.0.1:{port}/jwks.json").status_code)
            except httpx.TransportError:
                time.sleep(0.05)
                continue
            os.kill(os.getpid(), signal.SIGTERM)  # our handler is installed before serving
            return

    stopper = threading.Thread(target=stop_when_up)
    stopper.start()
    status = cli.main(["issuer", "serve", "--port", str(port)])
    stopper.join(10)
    out = capsys.readouterr().out
    assert (status, served) == (0, [200])
    assert out.rstrip().endswith("fake issuer stopped")
    assert signal.getsignal(signal.SIGTERM) is previous
