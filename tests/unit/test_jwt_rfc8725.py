"""JWT per RFC 8725 (issue 12): `typ`, `iat` and `nbf`, headers that must never make the
service fetch anything, and keys from a JWKS document served on loopback by a real HTTP
server, through a key rotation."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from course_management.api.auth import AuthError, TokenVerifier, issue_token
from course_management.api.jwks import JwksKeys

SECRET = "s" * 40


def hs(**overrides: Any) -> TokenVerifier:
    params: dict[str, Any] = {
        "secret": SECRET,
        "public_key_pem": None,
        "issuer": None,
        "audience": None,
    }
    params.update(overrides)
    return TokenVerifier(**params)


def claims(**extra: Any) -> dict[str, Any]:
    return {"sub": "u1", "roles": ["student"], "exp": int(time.time()) + 60, **extra}


@pytest.mark.parametrize("typ", ["JWT", "jwt", "at+jwt", "application/at+jwt"])
def test_a_typ_that_says_jwt_is_accepted(typ: str) -> None:
    token = jwt.encode(claims(), SECRET, algorithm="HS256", headers={"typ": typ})
    assert hs().verify(f"Bearer {token}").user_id == "u1"


@pytest.mark.parametrize("typ", ["JOSE", "secevent+jwt", "dpop+jwt", "JWS"])
def test_any_other_typ_is_refused(typ: str) -> None:
    token = jwt.encode(claims(), SECRET, algorithm="HS256", headers={"typ": typ})
    with pytest.raises(AuthError, match="typ"):
        hs().verify(f"Bearer {token}")


@pytest.mark.parametrize("claim", ["iat", "nbf"])
def test_iat_or_nbf_beyond_the_leeway_is_refused(claim: str) -> None:
    soon = jwt.encode(claims(**{claim: int(time.time()) + 10}), SECRET, algorithm="HS256")
    assert hs().verify(f"Bearer {soon}").user_id == "u1"  # within the 30 s leeway
    later = jwt.encode(claims(**{claim: int(time.time()) + 3600}), SECRET, algorithm="HS256")
    with pytest.raises(AuthError):
        hs().verify(f"Bearer {later}")


@dataclass
class Provider:
    """A loopback JWKS endpoint whose keys a test can rotate; it counts every request."""

    keys: dict[str, Any] = field(default_factory=dict)  # kid -> private key
    hits: dict[str, int] = field(default_factory=dict)
    server: TestServer | None = None

    def url(self, path: str) -> str:
        assert self.server is not None
        return str(self.server.make_url(path))

    def document(self) -> dict[str, Any]:
        out = []
        for kid, private in self.keys.items():
            public = private.public_key()
            if isinstance(private, rsa.RSAPrivateKey):
                jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(public))
            else:
                jwk = json.loads(jwt.algorithms.ECAlgorithm.to_jwk(public))
            out.append({**jwk, "kid": kid, "use": "sig"})
        return {"keys": out}

    def sign(self, kid: str, **headers: Any) -> str:
        private = self.keys[kid]
        algorithm = "RS256" if isinstance(private, rsa.RSAPrivateKey) else "ES256"
        return jwt.encode(claims(), private, algorithm=algorithm, headers={"kid": kid, **headers})


@pytest.fixture
async def provider() -> AsyncIterator[Provider]:
    found = Provider()

    async def serve(request: web.Request) -> web.Response:
        found.hits[request.path] = found.hits.get(request.path, 0) + 1
        return web.json_response(found.document())

    app = web.Application()
    app.router.add_get("/{any:.*}", serve)
    found.server = TestServer(app)
    await found.server.start_server()
    try:
        yield found
    finally:
        await found.server.close()


def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


async def test_keys_come_from_the_jwks_and_follow_a_rotation(provider: Provider) -> None:
    provider.keys["k1"] = rsa_key()
    keys = JwksKeys(provider.url("/jwks"), min_refresh_s=0.0)
    verifier = hs(secret=None, jwks=keys)
    assert (await verifier.authenticate(f"Bearer {provider.sign('k1')}")).user_id == "u1"
    assert provider.hits["/jwks"] == 1
    assert (await verifier.authenticate(f"Bearer {provider.sign('k1')}")).user_id == "u1"
    assert provider.hits["/jwks"] == 1  # cached
    # The provider rotates: a new EC key k2 signs, k1 is withdrawn.
    old = provider.sign("k1")
    provider.keys = {"k2": ec.generate_private_key(ec.SECP256R1())}
    assert (await verifier.authenticate(f"Bearer {provider.sign('k2')}")).user_id == "u1"
    assert provider.hits["/jwks"] == 2  # fetched again for the unknown kid
    with pytest.raises(AuthError, match="key id"):  # withdrawn with the refresh
        await verifier.authenticate(f"Bearer {old}")


async def test_unknown_key_ids_refresh_at_a_bounded_rate(provider: Provider) -> None:
    provider.keys["k1"] = rsa_key()
    keys = JwksKeys(provider.url("/jwks"), min_refresh_s=60.0)
    verifier = hs(secret=None, jwks=keys)
    await verifier.authenticate(f"Bearer {provider.sign('k1')}")
    forger = rsa_key()
    for n in range(50):
        token = jwt.encode(claims(), forger, algorithm="RS256", headers={"kid": f"made-up-{n}"})
        with pytest.raises(AuthError, match="key id"):
            await verifier.authenticate(f"Bearer {token}")
    assert provider.hits["/jwks"] == 1  # 50 made-up key ids, no refetch within a minute


async def test_jku_and_x5u_headers_are_never_fetched(provider: Provider) -> None:
    """A token that points at its own keys (the attacker's) is checked against ours."""
    provider.keys["k1"] = rsa_key()
    attacker = rsa_key()
    provider.keys["attacker"] = attacker  # served only at the attacker's URL
    for verifier in (hs(), hs(secret=None, jwks=JwksKeys(provider.url("/jwks-of-ours")))):
        token = jwt.encode(
            claims(),
            attacker,
            algorithm="RS256",
            headers={
                "kid": "attacker-key",
                "jku": provider.url("/evil"),
                "x5u": provider.url("/x5u"),
            },
        )
        with pytest.raises(AuthError):
            await verifier.authenticate(f"Bearer {token}")
    assert provider.hits.get("/evil", 0) == 0 and provider.hits.get("/x5u", 0) == 0


async def test_a_provider_outage_keeps_the_keys_already_fetched(provider: Provider) -> None:
    provider.keys["k1"] = rsa_key()
    keys = JwksKeys(provider.url("/jwks"), min_refresh_s=0.0, timeout_s=0.5)
    verifier = hs(secret=None, jwks=keys)
    token = provider.sign("k1")
    await verifier.authenticate(f"Bearer {token}")
    assert provider.server is not None
    await provider.server.close()
    assert (await verifier.authenticate(f"Bearer {token}")).user_id == "u1"
    with pytest.raises(AuthError):
        await verifier.authenticate(f"Bearer {issue_token(SECRET, 'u1', [])}")  # no kid
