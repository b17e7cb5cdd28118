"""Pulumi's mocks run the program on the thread's current asyncio event loop
(`asyncio.get_event_loop()`). A test elsewhere in the session that ran `asyncio.run` leaves the
main thread with none, so each infra module gets a loop of its own (module-scoped, since the
graphs are built once per module), set again before each of its tests."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="module", autouse=True)
def pulumi_event_loop() -> Iterator[asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    yield loop
    asyncio.set_event_loop(None)
    loop.close()


@pytest.fixture(autouse=True)
def current_pulumi_loop(pulumi_event_loop: asyncio.AbstractEventLoop) -> None:
    asyncio.set_event_loop(pulumi_event_loop)
