"""The local stand-in for API Gateway: an HTTP request becomes an HTTP API v2 (payload 2.0)
event for the same handler functions that run on Lambda, and their result becomes a response."""

from __future__ import annotations

import base64
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

TEXT_TYPES = ("application/json", "text/", "application/x-www-form-urlencoded", "application/xml")


@dataclass
class LocalLambdaContext:
    """The attributes powertools reads from a Lambda context object."""

    function_name: str = "modelfleet-api"
    function_version: str = "$LATEST"
    memory_limit_in_mb: int = 1024
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    log_group_name: str = "/aws/lambda/modelfleet-api"
    log_stream_name: str = "local"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:us-east-1:000000000000:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


def to_event(
    request: Request, body: bytes, authorizer: dict[str, str] | None, request_id: str
) -> dict[str, Any]:
    headers: dict[str, str] = {}
    for k, v in request.headers.items():
        k = k.lower()
        headers[k] = f"{headers[k]},{v}" if k in headers else v
    query: dict[str, str] = {}
    for k, v in request.query_params.multi_items():
        query[k] = f"{query[k]},{v}" if k in query else v
    ctype = headers.get("content-type", "")
    is_text = not body or ctype.startswith(TEXT_TYPES) or "json" in ctype
    text: str | None
    if is_text:
        try:
            text = body.decode("utf-8")
            b64 = False
        except UnicodeDecodeError:
            text, b64 = base64.b64encode(body).decode(), True
    else:
        text, b64 = base64.b64encode(body).decode(), True
    now_ms = int(time.time() * 1000)
    client = request.client
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": request.url.path,
        "rawQueryString": request.url.query,
        "headers": headers,
        "requestContext": {
            "accountId": "000000000000",
            "apiId": "local",
            "domainName": headers.get("host", "localhost"),
            "domainPrefix": "local",
            "http": {
                "method": request.method,
                "path": request.url.path,
                "protocol": "HTTP/1.1",
                "sourceIp": client.host if client else "127.0.0.1",
                "userAgent": headers.get("user-agent", ""),
            },
            "requestId": request_id,
            "routeKey": "$default",
            "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now_ms / 1000)),
            "timeEpoch": now_ms,
        },
        "isBase64Encoded": b64,
        "stageVariables": {},
    }
    if query:
        event["queryStringParameters"] = query
    if text:
        event["body"] = text
    if authorizer is not None:
        event["requestContext"]["authorizer"] = {"lambda": authorizer}
    return event


def to_response(result: dict[str, Any], request_id: str) -> Response:
    body = result.get("body") or ""
    raw = base64.b64decode(body) if result.get("isBase64Encoded") else body.encode()
    headers = {k: str(v) for k, v in (result.get("headers") or {}).items()}
    for k, values in (result.get("multiValueHeaders") or {}).items():
        if values:
            headers[k] = ",".join(str(v) for v in values)
    headers.pop("content-length", None)
    headers.pop("Content-Length", None)
    headers["x-request-id"] = request_id
    return Response(content=raw, status_code=int(result.get("statusCode", 200)), headers=headers)
