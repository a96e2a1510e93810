"""An identity provider's signing keys, from its JWKS document (`JWT_JWKS_URL`).

Keys are fetched once, cached, and fetched again when a token names a key id the cache
does not have (the provider rotated its keys), at most once per `min_refresh_s`, so that
tokens with made-up key ids cannot make the service hammer the provider. Only RSA and
EC signing keys are kept; each key's algorithm comes from its type (RS256, ES256), never
from the token. Nothing else in a token (its `jku`, `x5u` or `x5c` headers) is ever
fetched or trusted. Key parsing is PyJWT's (`PyJWK`); the fetch is aiohttp's.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import aiohttp
import jwt

log = logging.getLogger(__name__)

ALGORITHM_OF_KTY = {"RSA": "RS256", "EC": "ES256"}
MAX_DOCUMENT_BYTES = 256 * 1024


class JwksKeys:
    def __init__(self, url: str, *, min_refresh_s: float = 30.0, timeout_s: float = 3.0) -> None:
        self._url = url
        self._min_refresh_s = min_refresh_s
        self._timeout_s = timeout_s
        self._keys: dict[str, tuple[Any, str]] = {}  # kid -> (key, algorithm)
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        self.fetches = 0  # how many times the document was fetched (for tests and logs)

    async def key_for(self, kid: str | None) -> tuple[Any, str] | None:
        """(the key, its algorithm) for a token's `kid`, or None when the provider has none."""
        if not kid:
            return None
        if kid not in self._keys:
            await self._refresh()
        return self._keys.get(kid)

    def holds(self, kid: str | None) -> bool:
        """Whether the provider's set, as last fetched, still has the key `kid` (no fetch)."""
        return bool(kid) and kid in self._keys

    async def _refresh(self) -> None:
        async with self._lock:
            now = time.monotonic()
            if self._fetched_at is not None and now - self._fetched_at < self._min_refresh_s:
                return
            self._fetched_at = now
            self.fetches += 1
            try:
                timeout = aiohttp.ClientTimeout(total=self._timeout_s)
                async with (
                    aiohttp.ClientSession(timeout=timeout) as http,
                    http.get(self._url) as response,
                ):
                    response.raise_for_status()
                    raw = await response.content.read(MAX_DOCUMENT_BYTES + 1)
                if len(raw) > MAX_DOCUMENT_BYTES:
                    raise ValueError("the JWKS document is too large")
                self._keys = _keys_of(json.loads(raw))
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                # Keep the keys we have: a provider's outage must not log everyone out.
                log.warning("JWKS not refreshed", extra={"url": self._url, "error": str(exc)})


def _keys_of(document: Any) -> dict[str, tuple[Any, str]]:
    """The RSA and EC signing keys of a JWKS document, by key id (others are skipped)."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("not a JWKS document")
    keys: dict[str, tuple[Any, str]] = {}
    for data in document["keys"]:
        if not isinstance(data, dict) or data.get("use", "sig") != "sig":
            continue
        algorithm = ALGORITHM_OF_KTY.get(str(data.get("kty")))
        kid = data.get("kid")
        if algorithm is None or not isinstance(kid, str) or not kid:
            continue
        try:
            keys[kid] = (jwt.PyJWK({**data, "alg": algorithm}).key, algorithm)
        except jwt.PyJWKError:
            continue  # a key this service cannot use
    return keys
