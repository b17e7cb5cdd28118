"""Handlers resolved concurrently in threads (as the local gateway runs them) each see their own
event: powertools alone keeps one event per process."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aws_lambda_powertools.event_handler.api_gateway import Router

from functions.resolver import ThreadSafeHttpResolver


def event(path: str, query: str) -> dict[str, Any]:
    return {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": f"q={query}",
        "queryStringParameters": {"q": query},
        "headers": {},
        "requestContext": {"http": {"method": "GET", "path": path}, "stage": "$default"},
        "isBase64Encoded": False,
    }


def test_concurrent_resolutions_keep_their_own_event() -> None:
    app = ThreadSafeHttpResolver()
    router = Router()
    both_inside = threading.Barrier(8, timeout=10)

    @router.get("/echo")
    def echo() -> dict[str, str]:
        mine = router.current_event.query_string_parameters["q"]
        both_inside.wait()  # every request has now set its event before any reads again
        return {"before": mine, "after": router.current_event.query_string_parameters["q"],
                "app": app.current_event.query_string_parameters["q"]}  # fmt: skip

    app.include_router(router)
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: app.resolve(event("/echo", str(i)), None), range(8)))
    import json

    bodies = [json.loads(r["body"]) for r in results]
    assert [b["before"] for b in bodies] == [str(i) for i in range(8)]
    assert all(b["before"] == b["after"] == b["app"] for b in bodies)


def test_clearing_context_in_one_thread_leaves_another_threads_context() -> None:
    """Each resolve clears the resolver's context at its end; a request still running in another
    thread keeps its matched route there (powertools alone shares one dict)."""
    app = ThreadSafeHttpResolver()
    app.context["_route"] = "mine"
    cleared = threading.Thread(target=app.clear_context)
    cleared.start()
    cleared.join(timeout=10)
    assert app.context.get("_route") == "mine"
