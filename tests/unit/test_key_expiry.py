"""Expiring keys: a key's state, and the verdict cache, which never serves a key past its expiry."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from modelfleet.control.keys import VerdictCache
from schemas.keys import ApiKeyRecord, KeyCreate, KeyState, Principal, Role

T0 = datetime(2030, 1, 1, tzinfo=UTC)


def principal(expires_at: datetime | None) -> Principal:
    return Principal(key_id="mfk_k", project_id="p", roles=frozenset({Role.INFER}), expires_at=expires_at)


@given(
    expires_in=st.one_of(st.none(), st.integers(-86_400, 86_400)),
    asked_after=st.integers(-86_400, 86_400),
)
def test_a_cached_verdict_is_served_only_before_its_key_expires(
    expires_in: int | None, asked_after: int
) -> None:
    cache = VerdictCache(ttl_seconds=3600)
    expires_at = None if expires_in is None else T0 + timedelta(seconds=expires_in)
    cache.put("mfk_k:s", principal(expires_at))
    now = T0 + timedelta(seconds=asked_after)
    hit = cache.get("mfk_k:s", now)
    still_valid = expires_at is None or now < expires_at
    assert (hit is not None) == still_valid
    if not still_valid:  # dropped, not merely hidden: an earlier clock cannot bring it back
        assert cache.get("mfk_k:s", T0 - timedelta(days=2)) is None


def test_revocation_drops_every_cached_credential_of_the_key() -> None:
    cache = VerdictCache()
    cache.put("mfk_k:s", principal(None))
    cache.drop_key("mfk_k")
    assert cache.get("mfk_k:s", T0) is None


@pytest.mark.parametrize(
    ("expires_at", "revoked_at", "state"),
    [
        (None, None, KeyState.ACTIVE),
        (T0 + timedelta(seconds=1), None, KeyState.ACTIVE),
        (T0, None, KeyState.EXPIRED),  # expiry is exclusive: at the instant, the key is gone
        (T0 - timedelta(days=1), None, KeyState.EXPIRED),
        (T0 - timedelta(days=1), T0 - timedelta(days=2), KeyState.REVOKED),
        (None, T0, KeyState.REVOKED),
    ],
)
def test_key_state(expires_at: datetime | None, revoked_at: datetime | None, state: KeyState) -> None:
    rec = ApiKeyRecord(
        key_id="mfk_k",
        project_id="p",
        secret_sha256="0" * 64,
        roles=[Role.ADMIN],
        created_at=T0 - timedelta(days=3),
        expires_at=expires_at,
        revoked_at=revoked_at,
    )
    assert rec.state(T0) == state
    assert principal(expires_at).expired(T0) == (expires_at is not None and expires_at <= T0)


@pytest.mark.parametrize(
    "body",
    [
        {"roles": ["infer"], "expires_in_seconds": 60, "expires_at": "2030-01-01T00:00:00Z"},  # both
        {"roles": ["infer"], "expires_at": "2030-01-01T00:00:00"},  # no time zone
        {"roles": ["infer"], "expires_in_seconds": 0},
        {"roles": ["infer"], "expires_in_seconds": 11 * 365 * 86_400},
    ],
)
def test_key_expiry_requests_that_are_refused(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        KeyCreate.model_validate(body)


def test_an_expiry_is_either_relative_or_absolute() -> None:
    assert KeyCreate.model_validate({"roles": ["infer"], "expires_in_seconds": 1}).expires_in_seconds == 1
    absolute = KeyCreate.model_validate({"roles": ["infer"], "expires_at": "2030-01-01T01:00:00+01:00"})
    assert absolute.expires_at == T0
