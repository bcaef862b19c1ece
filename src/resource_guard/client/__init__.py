"""The caller's side: :class:`ClientCredentialsAuth`, an ``httpx.Auth`` for the OAuth 2.0
client-credentials grant (RFC 6749 §4.4).

It obtains an access token, keeps it in memory (and optionally on disk), refreshes it before
it expires, lets concurrent requests share one token request, and answers a 401 from the
resource server with one new token and one retry::

    auth = ClientCredentialsAuth(
        token_url="https://idp.example.com/oauth2/token",
        client_id="orders-worker", client_secret=secret, scopes=["orders:read"],
    )
    with httpx.Client(auth=auth) as client:
        client.get("https://orders.example.com/orders")

Inside the package, one job per module: ``_auth`` (the ``httpx.Auth``: caching, locking,
401 handling), ``_options`` (checking options and reading the environment), ``_fetcher``
(getting one token: discovery, request, reply), ``_http`` (retries around the hardened
exchange that ``resource_guard._fetch`` shares with the key source), ``_token`` (the
sans-I/O grant: request fields, replies) and ``_cache`` (the on-disk token cache).
Discovery itself is ``resource_guard._discovery``, the same code the key source runs.
"""

from ._auth import ClientCredentialsAuth

__all__ = ["ClientCredentialsAuth"]
