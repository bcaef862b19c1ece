"""Test helpers: :class:`FakeIssuer`, a real, standards-shaped OAuth 2.0 issuer.

```python
from resource_guard.testing import FakeIssuer

fake = FakeIssuer()                      # https://issuer.example.test, aud api://default
token = fake.mint(scopes=("orders:read",))
http_client = fake.async_client()        # in-process: no sockets
with fake.serve():                       # or real HTTP on 127.0.0.1
    ...
```

The pytest plugin (:mod:`resource_guard.testing.pytest_plugin`) turns these into fixtures:
``fake_issuer``, ``fake_issuer_server``, ``token_verifier``, ``fake_issuer_env``,
``app_client``...
"""

from .._jws import read_unverified
from ._app_client import AppClient
from ._assertions import assert_status, explain_response
from ._clock import FakeClock
from ._faults import ENDPOINTS, FAULT_KINDS
from ._issuer import DEFAULT_AUDIENCE, DEFAULT_ISSUER, FakeIssuer
from ._keys import SUPPORTED_ALGORITHMS, SigningKey, generate_key
from ._shapes import SHAPES
from ._tokens import CURRENT
from ._transport import FakeIssuerTransport

__all__ = [
    "CURRENT",
    "DEFAULT_AUDIENCE",
    "DEFAULT_ISSUER",
    "ENDPOINTS",
    "FAULT_KINDS",
    "SHAPES",
    "SUPPORTED_ALGORITHMS",
    "AppClient",
    "FakeClock",
    "FakeIssuer",
    "FakeIssuerTransport",
    "SigningKey",
    "assert_status",
    "explain_response",
    "generate_key",
    "read_unverified",
]
