"""Access tokens (JWT from an API key) and endpoint tokens (stored hashed)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import jwt
import pytest

from modelfleet.control.errors import Unauthorized
from modelfleet.faces.pipelines import tokens
from schemas.keys import Principal, Role

SECRET = "a-per-platform-secret-of-enough-length-0123456789"
NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
WHO = Principal(key_id="mfk_a", project_id="default", roles=frozenset({Role.MANAGE}))


def test_a_token_carries_iat_exp_and_the_principal() -> None:
    token = tokens.issue(WHO, SECRET, NOW, 3600)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3600
    back = tokens.verify(token, SECRET, NOW + timedelta(seconds=10))
    assert back.key_id == "mfk_a" and back.project_id == "default" and back.roles == frozenset({Role.MANAGE})


def test_expired_forged_and_garbage_tokens_are_refused() -> None:
    token = tokens.issue(WHO, SECRET, NOW, 600)
    with pytest.raises(Unauthorized, match="expired"):
        tokens.verify(token, SECRET, NOW + timedelta(seconds=601))
    with pytest.raises(Unauthorized, match="invalid access token"):
        tokens.verify(token, "another-secret-of-enough-length-0123456789", NOW)
    with pytest.raises(Unauthorized, match="invalid access token"):
        tokens.verify("not.a.jwt", SECRET, NOW)
    unsigned = jwt.encode(
        {"sub": "x", "project_id": "p", "iat": 1, "exp": 2**40, "iss": tokens.ISSUER},
        key=None,
        algorithm="none",
    )
    with pytest.raises(Unauthorized):
        tokens.verify(unsigned, SECRET, NOW)


def test_a_token_never_outlives_its_key() -> None:
    short = WHO.model_copy(update={"expires_at": NOW + timedelta(seconds=300)})
    claims = jwt.decode(tokens.issue(short, SECRET, NOW, 3600), options={"verify_signature": False})
    assert claims["exp"] == int((NOW + timedelta(seconds=300)).timestamp())


def test_endpoint_tokens_are_compared_by_hash() -> None:
    t = tokens.new_endpoint_token()
    stored = tokens.hash_endpoint_token(t)
    assert t not in stored and len(stored) == 64
    assert tokens.endpoint_token_matches(t, stored)
    assert not tokens.endpoint_token_matches(t + "x", stored)
    assert not tokens.endpoint_token_matches(None, stored)
    assert not tokens.endpoint_token_matches(t, None)
