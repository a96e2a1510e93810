"""JWT authentication (CONTRACT §2). The algorithm comes from configuration, never the token."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from course_management.domain.commands import Actor

ROLES = frozenset({"student", "instructor", "admin", "service"})
LEEWAY_SECONDS = 30


class AuthError(Exception):
    """The token is missing, expired, malformed or badly signed (401)."""


@dataclass(frozen=True)
class Principal:
    user_id: str
    roles: frozenset[str]
    name: str

    def has(self, *roles: str) -> bool:
        return bool(self.roles.intersection(roles))

    def actor(self) -> Actor:
        return Actor(self.user_id, self.name, tuple(sorted(self.roles)))


class TokenVerifier:
    def __init__(
        self,
        *,
        secret: str | None,
        public_key_pem: str | None,
        issuer: str | None,
        audience: str | None,
    ) -> None:
        self._key: Any
        if public_key_pem:
            key = load_pem_public_key(public_key_pem.encode())
            if isinstance(key, rsa.RSAPublicKey):
                self._algorithms = ["RS256"]
            elif isinstance(key, ec.EllipticCurvePublicKey):
                self._algorithms = ["ES256"]
            else:
                raise ValueError("JWT_PUBLIC_KEY must be an RSA or EC public key")
            self._key = key
        elif secret:
            self._algorithms = ["HS256"]
            self._key = secret
        else:
            raise ValueError("a JWT secret or public key is required")
        self._issuer = issuer
        self._audience = audience

    def verify(self, header: str | None) -> Principal:
        if not header:
            raise AuthError("missing bearer token")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("the Authorization header must be 'Bearer <token>'")
        options: Any = {"require": ["sub", "exp"]}
        if self._audience is None:
            options["verify_aud"] = False
        try:
            claims = jwt.decode(
                token.strip(),
                key=self._key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_SECONDS,
                options=options,
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("the token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        sub = claims.get("sub")
        roles = claims.get("roles", [])
        if not isinstance(sub, str) or not sub:
            raise AuthError("invalid token: sub must be a non-empty string")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise AuthError("invalid token: roles must be a list of strings")
        name = claims.get("name")
        return Principal(
            user_id=sub,
            roles=frozenset(r for r in roles if r in ROLES),
            name=name if isinstance(name, str) and name else sub,
        )


def issue_token(
    secret: str,
    sub: str,
    roles: list[str],
    *,
    name: str | None = None,
    ttl_seconds: int = 12 * 3600,
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    """A dev token (HS256) for the local stack, the tests and the README's curl examples."""
    import time

    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "roles": roles, "iat": now, "exp": now + ttl_seconds}
    if name:
        claims["name"] = name
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm="HS256")
