"""JWT authentication (CONTRACT §2), as RFC 8725 asks: the algorithm comes from the
configuration (or, with a JWKS, from the key's type), never from the token; a `typ`, when
present, must say JWT; `iat` and `nbf` may not be in the future (beyond the leeway); no
header of the token (`kid` only picks a key of the configured set) makes the service
fetch anything."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from course_management.api.jwks import JwksKeys
from course_management.domain.commands import Actor

ROLES = frozenset({"student", "instructor", "admin", "service"})
LEEWAY_SECONDS = 30
# A token verified once is taken from memory for at most this long (and never past its
# `exp`): verifying the signature and claims again was a tenth of a cached read.
REMEMBER_SECONDS = 60.0
REMEMBERED_TOKENS = 10_000
# RFC 8725 3.11 / RFC 9068: a token that says what it is must say it is a JWT.
ACCEPTED_TYPES = frozenset({"jwt", "at+jwt", "application/jwt", "application/at+jwt"})


class AuthError(Exception):
    """The token is missing, expired, malformed or badly signed (401)."""


@dataclass(frozen=True)
class Principal:
    user_id: str
    roles: frozenset[str]
    name: str
    expires_at: float = float("inf")  # the token's `exp` (a live stream ends there)

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
        jwks: JwksKeys | None = None,
    ) -> None:
        self._key: Any = None
        self._algorithms: list[str] = []
        self._jwks = jwks
        if jwks is not None:
            pass  # each token's key (and so its algorithm) comes from the provider's set
        elif public_key_pem:
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
        # token -> (principal, until when it may be taken from here, its key id), oldest first
        self._verified: dict[str, tuple[Principal, float, str | None]] = {}

    async def authenticate(self, header: str | None) -> Principal:
        """`verify`, with the key from the provider's JWKS when one is configured. A token
        verified in the last REMEMBER_SECONDS is not verified again (up to its `exp`, and
        only while its JWKS key is still the provider's)."""
        token = _bearer(header)
        remembered = self._verified.get(token)
        if remembered is not None:
            principal, until, kid = remembered
            if time.time() < until and (self._jwks is None or self._jwks.holds(kid)):
                return principal
            del self._verified[token]
        kid = None
        if self._jwks is None:
            principal, expires = self._decode(token, self._key, self._algorithms)
        else:
            kid = _unverified_header(token).get("kid")
            found = await self._jwks.key_for(kid)
            if found is None:
                raise AuthError("invalid token: its key id is not one of the provider's keys")
            key, algorithm = found
            principal, expires = self._decode(token, key, [algorithm])
        if len(self._verified) >= REMEMBERED_TOKENS:
            del self._verified[next(iter(self._verified))]
        self._verified[token] = (principal, min(expires, time.time() + REMEMBER_SECONDS), kid)
        return principal

    def verify(self, header: str | None) -> Principal:
        """The principal of a bearer token signed with the configured key (RFC 8725:
        pinned algorithms, `typ` checked, `iat` and `nbf` not in the future)."""
        if self._jwks is not None:
            raise AuthError("tokens are checked against the provider's keys: use authenticate")
        return self._decode(_bearer(header), self._key, self._algorithms)[0]

    def _decode(self, token: str, key: Any, algorithms: list[str]) -> tuple[Principal, float]:
        """The token's principal and until when it is valid (`exp` plus the leeway)."""
        typ = _unverified_header(token).get("typ")
        if typ is not None and (not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYPES):
            raise AuthError("invalid token: its typ is not JWT")
        options: Any = {"require": ["sub", "exp"]}
        if self._audience is None:
            options["verify_aud"] = False
        try:
            claims = jwt.decode(
                token,
                key=key,
                algorithms=algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_SECONDS,
                options=options,
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("the token has expired") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError(f"invalid token: {exc}") from None
        now = time.time()
        for claim in ("iat", "nbf"):
            value = claims.get(claim)
            if value is not None and (
                not isinstance(value, int | float) or value > now + LEEWAY_SECONDS
            ):
                raise AuthError(f"invalid token: {claim} is in the future")
        sub = claims.get("sub")
        roles = claims.get("roles", [])
        if not isinstance(sub, str) or not sub:
            raise AuthError("invalid token: sub must be a non-empty string")
        if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
            raise AuthError("invalid token: roles must be a list of strings")
        name = claims.get("name")
        principal = Principal(
            user_id=sub,
            roles=frozenset(r for r in roles if r in ROLES),
            name=name if isinstance(name, str) and name else sub,
            expires_at=float(claims["exp"]) + LEEWAY_SECONDS,
        )
        return principal, principal.expires_at


def _bearer(header: str | None) -> str:
    if not header:
        raise AuthError("missing bearer token")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("the Authorization header must be 'Bearer <token>'")
    return token.strip()


def _unverified_header(token: str) -> dict[str, Any]:
    """The token's header, read only to choose the key and check `typ` (never trusted
    beyond that; `jku`, `x5u` and `x5c` are ignored)."""
    try:
        header: dict[str, Any] = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"invalid token: {exc}") from None
    return header


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
    now = int(time.time())
    claims: dict[str, Any] = {"sub": sub, "roles": roles, "iat": now, "exp": now + ttl_seconds}
    if name:
        claims["name"] = name
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm="HS256")
