"""Every face's credential header maps onto one `id:secret` API key."""

from __future__ import annotations

import base64

import pytest

from modelfleet.control.errors import Unauthorized
from modelfleet.control.keys import credential_from_headers, hash_secret, new_credential, split_credential


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"authorization": "Bearer mfk_a:s3cret"}, "mfk_a:s3cret"),
        ({"authorization": "bearer mfk_a:s3cret"}, "mfk_a:s3cret"),
        ({"authorization": "ApiKey " + base64.b64encode(b"mfk_a:s3cret").decode()}, "mfk_a:s3cret"),
        ({"authorization": "ApiKey mfk_a:s3cret"}, "mfk_a:s3cret"),
        ({"x-api-key": "mfk_a:s3cret"}, "mfk_a:s3cret"),
        ({"x-auth-token": " mfk_a:s3cret "}, "mfk_a:s3cret"),
        ({"authorization": "Basic dXNlcjpwdw=="}, None),
        ({}, None),
    ],
)
def test_credential_from_each_face_header(headers: dict[str, str], expected: str | None) -> None:
    assert credential_from_headers(headers) == expected


def test_keys_are_random_prefixed_and_only_hashed() -> None:
    (id1, s1), (id2, s2) = new_credential(), new_credential()
    assert id1.startswith("mfk_") and id1 != id2 and s1 != s2 and len(s1) >= 32
    assert hash_secret(s1) != s1 and len(hash_secret(s1)) == 64


@pytest.mark.parametrize("bad", ["", "nocolon", ":secret", "id:"])
def test_malformed_credentials_are_unauthorized(bad: str) -> None:
    with pytest.raises(Unauthorized):
        split_credential(bad)
