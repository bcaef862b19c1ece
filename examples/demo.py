"""The resource-guard demo: a fake identity provider, a protected API, and callers.

1. Starts the bundled fake issuer as a real HTTP server on 127.0.0.1.
2. Starts the FastAPI orders example (examples/fastapi_app.py) under uvicorn, configured
   through RESOURCE_GUARD_* environment variables to trust that issuer.
3. Calls the API over HTTP as different callers and prints what each one gets. Real callers
   get their tokens with ClientCredentialsAuth (the client-credentials grant), asking for
   the API by its URL (an RFC 8707 ``resource``).
4. Shows the API's RFC 9728 protected-resource metadata, where clients discover the issuer
   and the scopes (every refusal's challenge points there).

Run it with ``make demo``. It exits 0 when every reply is the one expected.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from resource_guard.client import ClientCredentialsAuth
from resource_guard.testing import FakeIssuer

METADATA_PATH = "/.well-known/oauth-protected-resource"
ROOT = Path(__file__).resolve().parent.parent
STARTUP_SECONDS = 20.0


@dataclass(frozen=True)
class Case:
    """One call to the API and the status it must get."""

    caller: str
    method: str
    path: str
    expected: int
    send: Callable[[httpx.Client], httpx.Response]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def orders_api(issuer: FakeIssuer, port: int) -> Iterator[str]:
    """Run examples/fastapi_app.py under uvicorn in a child process; yield its base URL,
    which is also its audience and RFC 9728 resource identifier."""
    env = {
        **os.environ,
        "RESOURCE_GUARD_ISSUER": issuer.issuer,
        "RESOURCE_GUARD_AUDIENCE": f"http://127.0.0.1:{port}",
        "ORDERS_RESOURCE_URL": f"http://127.0.0.1:{port}",
        "PYTHONPATH": str(ROOT),
    }
    command = [
        sys.executable, "-m", "uvicorn", "examples.fastapi_app:create_app", "--factory",
        "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]  # fmt: skip
    server = subprocess.Popen(command, env=env, cwd=ROOT)
    base_url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(base_url, server)
        yield base_url
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)


def wait_until_ready(base_url: str, server: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the orders API exited early with status {server.returncode}")
        try:
            if httpx.get(base_url + "/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"the orders API did not answer within {STARTUP_SECONDS:.0f} s")


def cases(issuer: FakeIssuer, base_url: str) -> list[Case]:
    reader = ClientCredentialsAuth(
        token_url=issuer.token_endpoint,
        client_id="reporting",
        client_secret="reporting-secret",
        scopes=["orders:read"],
        extra_params={"resource": base_url},  # RFC 8707: a token for this API
    )
    writer = ClientCredentialsAuth(
        token_url=issuer.token_endpoint,
        client_id="checkout",
        client_secret="checkout-secret",
        scopes=["orders:read", "orders:write"],
    )
    forged = issuer.mint(
        scopes=["orders:read"], audience=base_url, key=issuer.generate_key("RS256")
    )
    expired = issuer.mint_expired(scopes=["orders:read"], audience=base_url)
    order = {"item": "coffee beans", "quantity": 2}

    def get(path: str, **options: Any) -> Callable[[httpx.Client], httpx.Response]:
        return lambda client: client.get(path, **options)

    def post(path: str, **options: Any) -> Callable[[httpx.Client], httpx.Response]:
        return lambda client: client.post(path, json=order, **options)

    def bearer(token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    return [
        Case("anyone", "GET", "/health", 200, get("/health")),
        Case("no token", "GET", "/orders", 401, get("/orders")),
        Case("forged token", "GET", "/orders", 401, get("/orders", headers=bearer(forged))),
        Case("expired token", "GET", "/orders", 401, get("/orders", headers=bearer(expired))),
        Case("reporting (orders:read)", "POST", "/orders", 403, post("/orders", auth=reader)),
        Case("checkout (orders:write)", "POST", "/orders", 201, post("/orders", auth=writer)),
        Case("reporting (orders:read)", "GET", "/orders", 200, get("/orders", auth=reader)),
    ]


def explain(response: httpx.Response) -> str:
    """The challenge of a refusal, else the start of the body."""
    challenge: str = response.headers.get("WWW-Authenticate", "")
    return challenge or response.text[:60]


def show_metadata(client: httpx.Client, issuer: FakeIssuer, base_url: str) -> bool:
    """Print the RFC 9728 metadata document; True when it names this API and the issuer."""
    response = client.get(METADATA_PATH)
    document = response.json() if response.status_code == 200 else {}
    ok = document.get("resource") == base_url and document.get("authorization_servers") == [
        issuer.issuer
    ]
    mark = "ok" if ok else "FAIL"
    print(f"\n  RFC 9728 metadata   GET {METADATA_PATH}  {response.status_code} {mark}")
    print(f"    {response.text}")
    return ok


def main() -> int:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    issuer = FakeIssuer(audience=base)
    issuer.register_client("reporting", "reporting-secret", scopes=["orders:read"])
    issuer.register_client("checkout", "checkout-secret", scopes=["orders:read", "orders:write"])
    failures = 0
    with issuer.serve(), orders_api(issuer, port) as base_url:
        print("resource-guard demo")
        print(f"  fake issuer  {issuer.issuer}  (JWKS {issuer.jwks_uri})")
        print(f"  orders API   {base_url}  (examples/fastapi_app.py under uvicorn)\n")
        print(f"  {'caller':<26}{'request':<14}{'want':>5}{'got':>5}   reply")
        with httpx.Client(base_url=base_url, timeout=10) as client:
            for case in cases(issuer, base_url):
                response = case.send(client)
                ok = response.status_code == case.expected
                failures += not ok
                mark = "ok  " if ok else "FAIL"
                request = f"{case.method} {case.path}"
                print(
                    f"  {case.caller:<26}{request:<14}{case.expected:>5}"
                    f"{response.status_code:>5} {mark} {explain(response)}"
                )
            failures += not show_metadata(client, issuer, base_url)
        print(f"\n  token requests made to the issuer: {issuer.counts['token']}")
        print(f"  JWKS fetches by the API: {issuer.counts['jwks']}")
    print("\nall replies as expected" if not failures else f"\n{failures} unexpected replies")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
