"""A warm Lambda instance of the invoke router, for tests: reads a JSON list of API Gateway
(HTTP API, payload 2.0) events on stdin, passes them one after the other to
`functions.invoke.handler` in this one process, and prints the list of responses as JSON."""

from __future__ import annotations

import json
import sys
import uuid

from functions.invoke import handler
from modelfleet.gateway.lambda_bridge import LocalLambdaContext


def main() -> None:
    events = json.load(sys.stdin)
    responses = [
        handler(
            event, LocalLambdaContext(function_name="modelfleet-invoke", aws_request_id=str(uuid.uuid4()))
        )
        for event in events
    ]
    json.dump(responses, sys.stdout)


if __name__ == "__main__":
    main()
