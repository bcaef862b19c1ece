"""The fake issuer's published keys: which are in the JWKS, which one signs."""

from __future__ import annotations

import copy
import json
import threading
from typing import Any

from ._keys import SigningKey, generate_key

__all__ = ["KeyRing"]


def _kid(entry: object) -> object:
    if isinstance(entry, SigningKey):
        return entry.kid
    return entry.get("kid") if isinstance(entry, dict) else None


class KeyRing:
    """Published entries (signing keys and raw JWKs, in publishing order) and the current
    signing key. The first key, of ``default_algorithm``, is generated on first need."""

    def __init__(self, default_algorithm: str) -> None:
        self.default_algorithm = default_algorithm
        self._lock = threading.RLock()
        self._published: list[object] = []
        self._current: SigningKey | None = None
        self._started = False

    def _start(self) -> None:
        """Create the first key as if it had been published from the start."""
        if not self._started:
            self._current = generate_key(self.default_algorithm)
            self._published.insert(0, self._current)
            self._started = True

    @property
    def current(self) -> SigningKey:
        with self._lock:
            self._start()
            if self._current is None:
                signing = self.signing_keys()
                if not signing:
                    raise RuntimeError(
                        "no signing key is published: call add_key() or rotate_keys() first"
                    )
                self._current = signing[-1]
            return self._current

    def signing_keys(self) -> list[SigningKey]:
        with self._lock:
            self._start()
            return [entry for entry in self._published if isinstance(entry, SigningKey)]

    def add(self, key: SigningKey, *, make_current: bool) -> SigningKey:
        with self._lock:
            self._published.append(key)
            if make_current:
                self._current = key
                self._started = True
        return key

    def rotate(self, algorithm: str | None) -> SigningKey:
        with self._lock:
            if algorithm is None:
                current = self._current
                algorithm = current.alg if current is not None else self.default_algorithm
            return self.add(generate_key(algorithm), make_current=True)

    def newest_for(self, algorithm: str) -> SigningKey:
        """The current key if it signs ``algorithm``, else the newest published one for
        ``algorithm``, else a new key, published."""
        with self._lock:
            current = self.current
            if current.alg == algorithm:
                return current
            for key in reversed(self.signing_keys()):
                if key.alg == algorithm:
                    return key
            return self.add(generate_key(algorithm), make_current=False)

    def remove(self, kid: str) -> None:
        with self._lock:
            kept = [entry for entry in self._published if _kid(entry) != kid]
            if len(kept) == len(self._published):
                raise KeyError(kid)
            self._published = kept
            if self._current is not None and self._current.kid == kid:
                self._current = None

    def publish_raw(self, jwk: object) -> None:
        try:
            json.dumps(jwk)
        except TypeError as exc:
            raise TypeError(f"jwk must be JSON-serialisable: {exc}") from exc
        except ValueError as exc:  # a circular reference
            raise ValueError(f"jwk must be JSON-serialisable: {exc}") from exc
        with self._lock:
            self._published.append(copy.deepcopy(jwk))

    def jwks(self) -> dict[str, Any]:
        with self._lock:
            self._start()
            entries = list(self._published)
        return {
            "keys": [
                entry.public_jwk() if isinstance(entry, SigningKey) else copy.deepcopy(entry)
                for entry in entries
            ]
        }

    def algorithms(self) -> list[str]:
        """Algorithms of the published signing keys (the default one before any exists)."""
        with self._lock:
            keys = [entry for entry in self._published if isinstance(entry, SigningKey)]
        return list(dict.fromkeys(key.alg for key in keys)) or [self.default_algorithm]
