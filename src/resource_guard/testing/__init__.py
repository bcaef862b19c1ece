"""Test helpers: :class:`FakeIssuer`, a real, standards-shaped OAuth 2.0 issuer.

```python
from resource_guard.testing import FakeIssuer

fake = FakeIssuer()                      # https://issuer.example.test, aud api://default
token = fake.mint(scopes=("orders:read",))
http_client = fake.async_client()        # in-process: no sockets
with fake.serve():                       # or real HTTP on 127.0.0.1
    ...
```
"""

from ._faults import ENDPOINTS, FAULT_KINDS
from ._issuer import DEFAULT_AUDIENCE, DEFAULT_ISSUER, FakeIssuer
from ._keys import SUPPORTED_ALGORITHMS, SigningKey, generate_key
from ._tokens import CURRENT
from ._transport import FakeIssuerTransport

__all__ = [
    "CURRENT",
    "DEFAULT_AUDIENCE",
    "DEFAULT_ISSUER",
    "ENDPOINTS",
    "FAULT_KINDS",
    "SUPPORTED_ALGORITHMS",
    "FakeIssuer",
    "FakeIssuerTransport",
    "SigningKey",
    "generate_key",
]
