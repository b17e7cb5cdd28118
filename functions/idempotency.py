"""Idempotent creates: a request with an `Idempotency-Key` header runs at most once.

The powertools idempotency utility keeps a record per (project, route, key) in the DynamoDB
`idempotency` table: the first request runs and its answer is stored; a replay gets that answer
again; a duplicate that arrives while the first is still running gets 409 (safe to retry); the
same key with a different body gets 422. A create that fails stores nothing, so it can be retried
with the same key. Requests without the header are not affected.

Some answers carry a secret shown once (a new API key, a new project's admin key). Only hashes of
secrets are ever stored, so those fields are sealed before the answer is stored: encrypted
(AES-GCM) under a key derived (HKDF) from the caller's Idempotency-Key, which the table never
holds (powertools stores a hash of it). A replay with the same key opens them again; someone
who reads the table cannot. Such creates need an Idempotency-Key of at least 16 characters (a
UUID), since it is the sealing key.
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from aws_lambda_powertools.event_handler.api_gateway import Router
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from modelfleet.adapters import aws
from modelfleet.config import Settings
from modelfleet.control.errors import Conflict, ControlError, InvalidRequest

HEADER = "idempotency-key"
KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces
EXPIRES_AFTER_SECONDS = 24 * 3600
MIN_SEALING_KEY_CHARS = 16
SEALED_PREFIX = "sealed:v1:"

_lock = threading.Lock()
_store: DynamoDBPersistenceLayer | None = None
CONFIG = IdempotencyConfig(
    event_key_jmespath="scope",
    payload_validation_jmespath="payload",
    raise_on_no_idempotency_key=True,
    expires_after_seconds=EXPIRES_AFTER_SECONDS,
)


class IdempotencyKeyReused(ControlError):
    status = 422
    code = "idempotency_key_reused"


def _persistence() -> DynamoDBPersistenceLayer:
    global _store
    with _lock:
        if _store is None:
            settings = Settings.from_env()
            _store = DynamoDBPersistenceLayer(
                table_name=settings.names.table("idempotency"),
                boto3_client=aws.client("dynamodb", settings),
            )
        return _store


def once(
    router: Router,
    project_id: str,
    route: str,
    payload: object,
    create: Callable[[], tuple[int, Any]],
    secrets: Sequence[Sequence[str]] = (),
) -> tuple[int, Any]:
    """Run `create` (returning status and a JSON-able body) at most once per Idempotency-Key.

    `secrets` are the paths (keys into nested objects) of answer fields that must never be stored
    in clear: they are sealed under the Idempotency-Key (see the module doc)."""
    key = router.current_event.headers.get(HEADER)
    if key is None:
        return create()
    if not KEY_PATTERN.match(key):
        raise InvalidRequest(
            "Idempotency-Key must be 1 to 255 printable ASCII characters", code="invalid_idempotency_key"
        )
    if secrets and len(key) < MIN_SEALING_KEY_CHARS:
        raise InvalidRequest(
            f"this create answers with a secret, so its Idempotency-Key must be at least "
            f"{MIN_SEALING_KEY_CHARS} characters (a UUID): the stored answer is sealed with it",
            code="invalid_idempotency_key",
        )
    scope = f"{project_id}|{route}|{key}"
    CONFIG.register_lambda_context(router.lambda_context)
    digest = hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()
    request = {"scope": scope, "payload": digest}
    sealer = _Sealer(key, scope)

    @idempotent_function(data_keyword_argument="request", persistence_store=_persistence(), config=CONFIG)
    def run(request: dict[str, str]) -> dict[str, Any]:
        status, body = create()
        for path in secrets:
            _replace(body, path, sealer.seal)
        return {"status": status, "body": body}

    try:
        out = run(request=request)
    except IdempotencyAlreadyInProgressError:
        raise Conflict(
            "a request with this Idempotency-Key is still in progress; retry shortly",
            code="idempotency_in_progress",
        ) from None
    except IdempotencyValidationError:
        raise IdempotencyKeyReused("this Idempotency-Key was used with a different request body") from None
    body = out["body"]
    for path in secrets:
        _replace(body, path, sealer.open)
    return int(out["status"]), body


class _Sealer:
    """AES-GCM under HKDF(Idempotency-Key), bound to the request's scope."""

    def __init__(self, key: str, scope: str) -> None:
        derived = HKDF(
            algorithm=hashes.SHA256(), length=32, salt=scope.encode(), info=b"modelfleet idempotent secret"
        ).derive(key.encode())
        self._aead = AESGCM(derived)
        self._aad = scope.encode()

    def seal(self, value: Any) -> str:
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, orjson.dumps(value), self._aad)
        return SEALED_PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()

    def open(self, value: Any) -> Any:
        if not (isinstance(value, str) and value.startswith(SEALED_PREFIX)):
            raise ValueError("an idempotent answer's secret field was stored unsealed")
        raw = base64.urlsafe_b64decode(value[len(SEALED_PREFIX) :])
        return orjson.loads(self._aead.decrypt(raw[:12], raw[12:], self._aad))


def _replace(body: Any, path: Sequence[str], change: Callable[[Any], Any]) -> None:
    for name in path[:-1]:
        body = body[name]
    body[path[-1]] = change(body[path[-1]])
