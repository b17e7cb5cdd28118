"""The gateway → node data link: frames, pipelining over one connection, connection loss,
timeouts, and the gateway retrying another node when one is lost."""

from __future__ import annotations

import asyncio
import itertools
import socket
import threading
from collections.abc import Callable, Coroutine, Iterator, MutableMapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from modelfleet.core.lifecycle import DeploymentState, NodeState, RoutingState
from modelfleet.gateway.dataplane import DataPlane
from modelfleet.gateway.node_link import (
    NOT_SERVING_FIELD,
    REQUEST,
    RESPONSE,
    FrameError,
    FrameReader,
    NodeLink,
    NodeTimeout,
    NodeUnavailable,
    decode_frame,
    encode_fields,
    frame_head,
    join_fields,
)
from modelfleet.gateway.routing_table import RoutingTables
from modelfleet.worker.data_server import DataServer, OpRegistry, Responder
from schemas.deployments import DeploymentRecord, RouteRecord, VersionSpec
from schemas.keys import Principal, Role
from schemas.nodes import NodeKind, NodeRecord

T = TypeVar("T")
WAIT = 20.0
JSON = {"content-type": "application/json"}


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, WAIT))


def _frame(kind: int, request_id: int, status: int, fields: dict[str, str], body: bytes) -> bytes:
    encoded = encode_fields(fields)
    return frame_head(kind, request_id, status, encoded, len(body)) + body


# --- frames ---------------------------------------------------------------------------------------

field_text = st.text(st.characters(blacklist_characters="\0", blacklist_categories=["Cs"]), max_size=20)
frames = st.tuples(
    st.sampled_from([REQUEST, RESPONSE]),
    st.integers(0, 2**32 - 1),
    st.integers(0, 65535),
    st.dictionaries(field_text, field_text, max_size=6),
    st.binary(max_size=300),
)


@settings(max_examples=150, deadline=None)
@given(frame=frames)
def test_a_frame_round_trips(frame: tuple[int, int, int, dict[str, str], bytes]) -> None:
    kind, request_id, status, fields, body = frame
    decoded = decode_frame(memoryview(_frame(*frame))[4:])
    assert (decoded.kind, decoded.request_id, decoded.status) == (kind, request_id, status)
    assert decoded.fields == fields and bytes(decoded.body) == body


@settings(max_examples=100, deadline=None)
@given(stream=st.lists(frames, min_size=1, max_size=6), cuts=st.lists(st.integers(0, 2000), max_size=8))
def test_a_stream_cut_anywhere_gives_the_same_frames(
    stream: list[tuple[int, int, int, dict[str, str], bytes]], cuts: list[int]
) -> None:
    data = b"".join(_frame(*f) for f in stream)
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    reader = FrameReader()
    got = []
    for a, b in itertools.pairwise(points):
        got += reader.feed(data[a:b])
    assert [(f.kind, f.request_id, f.status, f.fields, f.body) for f in got] == list(stream)


def test_fields_can_be_joined_and_nul_is_refused() -> None:
    joined = join_fields(encode_fields({"op": "infer"}), encode_fields([("uid", "u")]))
    assert decode_frame(memoryview(frame_head(REQUEST, 1, 0, joined, 0))[4:]).fields == {
        "op": "infer",
        "uid": "u",
    }
    assert join_fields(b"", encode_fields({"a": "b"})) == encode_fields({"a": "b"})
    with pytest.raises(ValueError):
        encode_fields({"a": "b\0c"})


@pytest.mark.parametrize(
    "raw",
    [
        b"\x01\x00",  # shorter than the fixed header
        bytes([9]) + b"\0" * 8,  # unknown kind
        bytes([1]) + b"\0" * 6 + b"\xff\x00",  # fields longer than the frame
        bytes([1]) + b"\0" * 6 + b"\x01\x00" + b"a",  # a name without a value
        bytes([1]) + b"\0" * 6 + b"\x03\x00" + b"\xff\0b",  # not UTF-8
    ],
)
def test_malformed_frames_are_refused(raw: bytes) -> None:
    with pytest.raises(FrameError):
        decode_frame(raw)


def test_an_oversized_frame_is_refused_before_it_arrives() -> None:
    with pytest.raises(FrameError):
        FrameReader(max_frame_bytes=100).feed((101).to_bytes(4, "little"))


# --- a node's data port -----------------------------------------------------------------------------


class Parking:
    """An op that holds its requests until `count` arrived, then answers them in reverse order,
    each with its own body."""

    def __init__(self, count: int) -> None:
        self.count = count
        self.held: list[tuple[bytes, Responder]] = []
        self._cond = threading.Condition()

    def __call__(self, frame: Any, respond: Responder) -> None:
        with self._cond:
            self.held.append((bytes(frame.body), respond))
            self._cond.notify_all()
            if len(self.held) < self.count:
                return
            held, self.held = self.held, []
        for body, responder in reversed(held):
            responder(200, JSON, body)

    def wait_for(self, count: int) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.held) >= count, WAIT)


def _server(ops: dict[str, Callable[[Any, Responder], None]]) -> DataServer:
    registry = OpRegistry()
    for name, handler in ops.items():
        registry.register(name, handler)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = DataServer(sock, registry)
    server.start()
    return server


@pytest.fixture
def servers() -> Iterator[list[DataServer]]:
    started: list[DataServer] = []
    yield started
    for s in started:
        s.stop()


def echo(frame: Any, respond: Responder) -> None:
    respond(200, {**JSON, "seen-op": frame.fields["op"]}, bytes(frame.body))


def test_requests_are_pipelined_on_one_connection_and_answered_out_of_order(
    servers: list[DataServer],
) -> None:
    parking = Parking(16)
    server = _server({"park": parking})
    servers.append(server)

    async def go() -> list[bytes]:
        link = NodeLink(server.address, max_connections=1)
        fields = encode_fields({"op": "park"})
        frames = await asyncio.gather(*(link.call(fields, f"body-{i}".encode(), WAIT) for i in range(16)))
        assert link.connections == 1
        link.close()
        return [bytes(f.body) for f in frames]

    assert run(go()) == [f"body-{i}".encode() for i in range(16)]
    assert server.connection_count <= 1


def test_large_bodies_go_both_ways(servers: list[DataServer]) -> None:
    server = _server({"echo": echo})
    servers.append(server)
    bodies = [bytes(range(256)) * 4096, b"", b"x" * 70_000]  # 1 MiB, empty, just over SMALL_BODY

    async def go() -> list[bytes]:
        link = NodeLink(server.address)
        fields = encode_fields({"op": "echo"})
        answers = await asyncio.gather(*(link.call(fields, body, WAIT) for body in bodies))
        link.close()
        return [bytes(a.body) for a in answers]

    assert run(go()) == bodies


def test_a_busy_connection_spreads_to_a_second_one(servers: list[DataServer]) -> None:
    parking = Parking(12)
    server = _server({"park": parking, "echo": echo})
    servers.append(server)

    async def go() -> int:
        link = NodeLink(server.address, max_connections=2, spread_at=4)
        fields = encode_fields({"op": "park"})
        calls = []
        for i in range(12):
            calls.append(asyncio.ensure_future(link.call(fields, str(i).encode(), WAIT)))
            await asyncio.sleep(0)  # let each go out (and a second connection open)
        results = await asyncio.gather(*calls)
        assert [bytes(r.body) for r in results] == [str(i).encode() for i in range(12)]
        answer = await link.call(encode_fields({"op": "echo"}), b"x", WAIT)
        assert answer.fields["seen-op"] == "echo"
        count = link.connections
        link.close()
        return count

    assert run(go()) == 2


def test_a_lost_connection_fails_every_request_in_flight(servers: list[DataServer]) -> None:
    parking = Parking(1000)  # never answers
    server = _server({"park": parking})

    async def go() -> list[BaseException]:
        link = NodeLink(server.address)
        fields = encode_fields({"op": "park"})
        calls = [asyncio.ensure_future(link.call(fields, b"x", WAIT)) for _ in range(5)]
        assert await asyncio.to_thread(parking.wait_for, 5)
        server.stop()
        failures = await asyncio.gather(*calls, return_exceptions=True)
        with pytest.raises(NodeUnavailable):  # and the node is gone: nothing to connect to
            await link.call(fields, b"x", WAIT)
        return [f for f in failures if isinstance(f, BaseException)]

    failures = run(go())
    assert len(failures) == 5 and all(isinstance(f, NodeUnavailable) for f in failures)


def test_a_late_answer_is_dropped_and_the_connection_goes_on(servers: list[DataServer]) -> None:
    parking = Parking(1000)
    server = _server({"park": parking, "echo": echo})
    servers.append(server)

    async def go() -> bytes:
        link = NodeLink(server.address, max_connections=1)
        with pytest.raises(NodeTimeout):
            await link.call(encode_fields({"op": "park"}), b"slow", 0.05)
        assert await asyncio.to_thread(parking.wait_for, 1)
        body, respond = parking.held.pop()
        respond(200, JSON, body)  # too late: nobody waits for it
        answer = await link.call(encode_fields({"op": "echo"}), b"next", WAIT)
        link.close()
        return bytes(answer.body)

    assert run(go()) == b"next"


def test_unknown_ops_and_double_answers(servers: list[DataServer]) -> None:
    twice: list[BaseException] = []

    def answers_twice(frame: Any, respond: Responder) -> None:
        respond(200, JSON, b"first")
        try:
            respond(200, JSON, b"second")
        except RuntimeError as e:
            twice.append(e)

    def fails(frame: Any, respond: Responder) -> None:
        raise KeyError("boom")

    server = _server({"twice": answers_twice, "fails": fails})
    servers.append(server)

    async def go() -> None:
        link = NodeLink(server.address)
        unknown = await link.call(encode_fields({"op": "nope"}), b"", WAIT)
        assert unknown.status == 400 and orjson.loads(unknown.body)["code"] == "unknown_op"
        once = await link.call(encode_fields({"op": "twice"}), b"", WAIT)
        assert bytes(once.body) == b"first"
        failed = await link.call(encode_fields({"op": "fails"}), b"", WAIT)
        assert failed.status == 500 and "boom" in orjson.loads(failed.body)["error"]
        link.close()

    run(go())
    assert len(twice) == 1


def test_a_malformed_frame_closes_the_connection(servers: list[DataServer]) -> None:
    server = _server({"echo": echo})
    servers.append(server)
    host, port = server.address.removeprefix("tcp://").split(":")
    with socket.create_connection((host, int(port)), timeout=WAIT) as s:
        s.sendall(_frame(RESPONSE, 1, 200, {}, b""))  # a node only takes requests
        assert s.recv(100) == b""


# --- the gateway retries another node -------------------------------------------------------------

NOW = datetime(2026, 11, 22, tzinfo=UTC)


class Store:
    """The four reads of RoutingTables: deployment d (one version) started on two nodes."""

    def __init__(self, addresses: dict[str, str]) -> None:
        self.addresses = addresses

    def get_deployment(self, project_id: str, deployment_id: str) -> DeploymentRecord | None:
        if (project_id, deployment_id) != ("p", "d"):
            return None
        spec = VersionSpec(version_id="1", model_id="m", weight=100, allocations=1, threads_per_allocation=1)
        return DeploymentRecord(
            project_id="p",
            deployment_id="d",
            uid="u",
            state=DeploymentState.STARTED,
            versions=[spec],
            created_at=NOW,
            updated_at=NOW,
            state_since=NOW,
        )

    def routes(self, uid: str) -> list[RouteRecord]:
        return [
            RouteRecord(
                deployment_uid=uid,
                project_id="p",
                deployment_id="d",
                version_id="1",
                node_id=node,
                target_allocations=1,
                current_allocations=1,
                updated_at=NOW,
                routing_state=RoutingState.STARTED,
            )
            for node in self.addresses
        ]

    def list_nodes(self) -> list[NodeRecord]:
        return [
            NodeRecord(
                node_id=node,
                kind=NodeKind.CLOUD,
                processors=2,
                memory_bytes=2**30,
                url="http://127.0.0.1:9",
                data_url=address,
                state=NodeState.READY,
                registered_at=NOW,
                updated_at=NOW,
            )
            for node, address in self.addresses.items()
        ]

    def get_model(self, project_id: str, model_id: str) -> None:
        return None


class Allow:
    """Every caller may infer in project p."""

    async def authenticate(self, headers: Any) -> Principal:
        return Principal(key_id="k", project_id="p", roles=frozenset({Role.INFER}))


async def _infer(plane: DataPlane, body: bytes) -> tuple[int, dict[bytes, bytes], bytes]:
    sent: list[MutableMapping[str, Any]] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive() -> dict[str, Any]:
        return messages.pop(0)

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "method": "POST", "path": "/v2/models/d/infer", "headers": []}
    await plane.infer(scope, receive, send, "d", None)
    return sent[0]["status"], dict(sent[0]["headers"]), sent[1]["body"]


def test_the_gateway_retries_another_node_when_one_is_lost(servers: list[DataServer]) -> None:
    def named(name: str) -> Callable[[Any, Responder], None]:
        return lambda frame, respond: respond(200, JSON, name.encode() + b":" + bytes(frame.body))

    alive = _server({"infer": named("alive")})
    dead = _server({"infer": named("dead")})
    servers.append(alive)
    tables = RoutingTables(Store({"n-alive": alive.address, "n-dead": dead.address}))  # type: ignore[arg-type]
    plane = DataPlane(tables, Allow(), 1 << 20, WAIT)  # type: ignore[arg-type]

    async def go() -> list[tuple[int, bytes]]:
        first = await _infer(plane, b"warm")  # connects to one of them
        dead.stop()
        answers = [await _infer(plane, f"{i}".encode()) for i in range(6)]
        entry = await tables.get("p", "d")
        assert entry is not None and list(entry.versions[0].ready) == [alive.address]
        await plane.close()
        return [(status, body) for status, _, body in [first, *answers]]

    results = run(go())
    assert all(status == 200 for status, _ in results)
    assert [body for _, body in results[1:]] == [f"alive:{i}".encode() for i in range(6)]


def test_a_route_the_node_no_longer_serves_is_retried_elsewhere(servers: list[DataServer]) -> None:
    """A rollout unloaded a version before the gateway's table heard of it: the node answers that it
    does not serve it (the request did not run), and the gateway re-reads its table and answers
    from a route that still serves, instead of passing a 503 on."""

    def live(frame: Any, respond: Responder) -> None:
        respond(200, JSON, b"live:" + bytes(frame.body))

    def unloaded(frame: Any, respond: Responder) -> None:
        fields = {"content-type": "application/json", "retry-after": "1", NOT_SERVING_FIELD: "1"}
        respond(503, encode_fields(fields), b'{"error": "not loaded", "code": "not_loaded"}')

    serving = _server({"infer": live})
    gone = _server({"infer": unloaded})
    servers.extend([serving, gone])
    store = Store({"n-live": serving.address, "n-gone": gone.address})
    tables = RoutingTables(store)  # type: ignore[arg-type]
    plane = DataPlane(tables, Allow(), 1 << 20, WAIT)  # type: ignore[arg-type]

    async def go() -> list[tuple[int, bytes]]:
        stale = await tables.get("p", "d")  # both routes, round robin between them
        assert stale is not None and len(stale.versions[0].ready) == 2
        del store.addresses["n-gone"]  # the control plane retired that route
        answers = [await _infer(plane, f"{i}".encode()) for i in range(4)]
        await plane.close()
        return [(status, body) for status, _, body in answers]

    assert run(go()) == [(200, f"live:{i}".encode()) for i in range(4)]
