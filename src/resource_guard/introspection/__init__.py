"""Opaque access tokens (RFC 7662 introspection, RFC 9701 signed answers).

:class:`IntrospectionVerifier` is also importable from :mod:`resource_guard`.
"""

from ._cache import IntrospectionCache
from ._response import IntrospectedToken
from ._verifier import IntrospectionVerifier

__all__ = ["IntrospectedToken", "IntrospectionCache", "IntrospectionVerifier"]
