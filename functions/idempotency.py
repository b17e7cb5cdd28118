"""Idempotent creates: a request with an `Idempotency-Key` header runs at most once.

The powertools idempotency utility keeps a record per (project, route, key) in the DynamoDB
`idempotency` table: the first request runs and its answer is stored; a replay gets that answer
again; a duplicate that arrives while the first is still running gets 409 (safe to retry); the
same key with a different body gets 422. A create that fails stores nothing, so it can be retried
with the same key. Requests without the header are not affected.
"""

from __future__ import annotations

import hashlib
import re
import threading
from collections.abc import Callable
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

from modelfleet.adapters import aws
from modelfleet.config import Settings
from modelfleet.control.errors import Conflict, ControlError, InvalidRequest

HEADER = "idempotency-key"
KEY_PATTERN = re.compile(r"^[\x21-\x7e]{1,255}$")  # printable ASCII, no spaces
EXPIRES_AFTER_SECONDS = 24 * 3600

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
    router: Router, project_id: str, route: str, payload: object, create: Callable[[], tuple[int, Any]]
) -> tuple[int, Any]:
    """Run `create` (returning status and a JSON-able body) at most once per Idempotency-Key."""
    key = router.current_event.headers.get(HEADER)
    if key is None:
        return create()
    if not KEY_PATTERN.match(key):
        raise InvalidRequest(
            "Idempotency-Key must be 1 to 255 printable ASCII characters", code="invalid_idempotency_key"
        )
    CONFIG.register_lambda_context(router.lambda_context)
    digest = hashlib.sha256(orjson.dumps(payload, option=orjson.OPT_SORT_KEYS)).hexdigest()
    request = {"scope": f"{project_id}|{route}|{key}", "payload": digest}

    @idempotent_function(data_keyword_argument="request", persistence_store=_persistence(), config=CONFIG)
    def run(request: dict[str, str]) -> dict[str, Any]:
        status, body = create()
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
    return int(out["status"]), out["body"]
