"""Webhook secrets at rest (decision 63): sealed with AES-256-GCM under the deployment's
`WEBHOOK_SEALING_KEY` before they reach a topic, bound to their subscription's id (the
associated data), so that a dump of the topics or of the mirror does not reveal one, and
a sealed secret copied onto another subscription does not open."""

from __future__ import annotations

import base64
import binascii
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

VERSION = "v1"
NONCE_BYTES = 12


class SealError(ValueError):
    """A sealed secret that does not open with this key (another key, or altered)."""


class Sealer:
    def __init__(self, key: bytes) -> None:
        self._aead = AESGCM(key)

    def seal(self, secret: str, subscription_id: str) -> str:
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, secret.encode(), subscription_id.encode())
        return f"{VERSION}.{base64.b64encode(nonce + sealed).decode()}"

    def open(self, sealed: str, subscription_id: str) -> str:
        version, _, body = sealed.partition(".")
        if version != VERSION:
            raise SealError("not a sealed secret of this service")
        try:
            raw = base64.b64decode(body, validate=True)
            plain = self._aead.decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], subscription_id.encode()
            )
        except (InvalidTag, binascii.Error, ValueError):
            raise SealError("the secret does not open with WEBHOOK_SEALING_KEY") from None
        return plain.decode()
