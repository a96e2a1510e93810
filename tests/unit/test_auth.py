import base64
import hashlib
import hmac
import json
import time

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from course_management.api.auth import AuthError, TokenVerifier, issue_token

SECRET = "s" * 40


def verifier(**kwargs) -> TokenVerifier:
    params = {"secret": SECRET, "public_key_pem": None, "issuer": None, "audience": None}
    params.update(kwargs)
    return TokenVerifier(**params)


def test_a_good_token_gives_the_principal() -> None:
    who = verifier().verify("Bearer " + issue_token(SECRET, "u1", ["instructor"], name="Ada"))
    assert (who.user_id, who.name, who.roles) == ("u1", "Ada", frozenset({"instructor"}))


def test_unknown_roles_are_ignored() -> None:
    who = verifier().verify("Bearer " + issue_token(SECRET, "u1", ["superuser", "student"]))
    assert who.roles == frozenset({"student"})


@pytest.mark.parametrize(
    "header",
    [
        None,
        "",
        "Basic abc",
        "Bearer ",
        "Bearer not.a.token",
        "Bearer " + issue_token("another-secret-of-enough-length-123", "u1", ["admin"]),
        "Bearer " + issue_token(SECRET, "u1", ["admin"], ttl_seconds=-120),
        "Bearer "
        + jwt.encode(
            {"sub": "u1", "exp": int(time.time()) + 60, "roles": ["admin"]},
            key=None,
            algorithm="none",
        ),
        "Bearer " + jwt.encode({"sub": "u1", "roles": ["admin"]}, SECRET, algorithm="HS256"),
    ],
    ids=[
        "missing",
        "empty",
        "basic",
        "no-token",
        "garbage",
        "wrong-signature",
        "expired",
        "alg-none",
        "no-exp",
    ],
)
def test_bad_tokens_are_refused(header: str | None) -> None:
    with pytest.raises(AuthError):
        verifier().verify(header)


def test_audience_and_issuer_are_checked_when_configured() -> None:
    strict = verifier(issuer="https://iss", audience="cms")
    good = issue_token(SECRET, "u1", ["student"], issuer="https://iss", audience="cms")
    assert strict.verify(f"Bearer {good}").user_id == "u1"
    for bad in (
        issue_token(SECRET, "u1", ["student"], issuer="https://iss", audience="other"),
        issue_token(SECRET, "u1", ["student"], issuer="https://evil", audience="cms"),
        issue_token(SECRET, "u1", ["student"]),
    ):
        with pytest.raises(AuthError):
            strict.verify(f"Bearer {bad}")


def test_a_small_clock_skew_is_tolerated() -> None:
    assert (
        verifier().verify("Bearer " + issue_token(SECRET, "u1", [], ttl_seconds=-10)).user_id
        == "u1"
    )


def test_rs256_with_a_public_key_and_no_algorithm_confusion() -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = (
        private.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    rs = verifier(secret=None, public_key_pem=pem)
    claims = {"sub": "u1", "exp": int(time.time()) + 60, "roles": ["service"]}
    assert rs.verify("Bearer " + jwt.encode(claims, private, algorithm="RS256")).user_id == "u1"

    # HS256 signed with the public key as the HMAC secret: the classic confusion attack.
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = (
        b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        + "."
        + b64(json.dumps(claims).encode())
    )
    signature = hmac.new(pem.encode(), signing_input.encode(), hashlib.sha256).digest()
    forged = f"{signing_input}.{b64(signature)}"
    with pytest.raises(AuthError):
        rs.verify(f"Bearer {forged}")
