"""The gateway → node data link: framed requests and responses over persistent TCP connections.

Inference is forwarded to a node over a few keep-alive connections per node instead of HTTP:
no header parsing, no per-request connection bookkeeping, and many requests in flight on one
connection (pipelined, answered in any order, matched by request id).

Frame format (integers little-endian)::

    offset  size  field
    0       4     u32   length of the rest of the frame (everything after this field)
    4       1     u8    kind: 1 = request, 2 = response
    5       4     u32   request id: chosen by the requester, unique among its in-flight requests
                        on the connection; the response carries the same id
    9       2     u16   status: an HTTP status code in responses, 0 in requests
    11      2     u16   F, the length of the fields
    13      F     fields: UTF-8 text `name NUL value NUL name NUL value ...` (no NUL inside)
    13+F    ...   body: the rest of the frame, raw bytes (an OIP body, forwarded untouched)

Request fields: `op` (required; the node dispatches on it through a registry, e.g. `infer`),
then the op's own: for `infer` `uid`, `version`, `timeout_ms` (how long the gateway waits; the
node does not start a request past it), and `content-type` and
`inference-header-content-length` when the client sent them. Response fields: `content-type`,
`inference-header-content-length` and `retry-after` when set. Every request gets exactly one
response; a node that cannot parse a frame closes the connection.

A connection that is lost fails every request in flight on it with `NodeUnavailable`, so the
caller can retry on another node; a late answer to a request the caller stopped waiting for
(timeout, client gone) is dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import cast

log = logging.getLogger(__name__)

REQUEST = 1
RESPONSE = 2
# A response field a node sets when it does not serve the (uid, version) asked for (not loaded yet,
# or unloaded by a rollout the gateway's table has not caught up with): the request did not run,
# so the gateway re-reads its table and tries another route instead of answering 503.
NOT_SERVING_FIELD = "not-serving"
MAX_FRAME_BYTES = 1 << 30
_LENGTH = struct.Struct("<I")
_HEAD = struct.Struct("<IBIHH")  # length, kind, request id, status, fields length
_AFTER_LENGTH = struct.Struct("<BIHH")
_FIXED = _AFTER_LENGTH.size  # bytes of a frame after its length field, before the fields


class FrameError(Exception):
    """A malformed frame: the connection carrying it cannot be trusted any further."""


class NodeUnavailable(Exception):
    """The node could not be reached, or the connection broke before the answer came."""


class NodeTimeout(Exception):
    """The node did not answer within the request's timeout."""


@dataclass(slots=True)
class Frame:
    kind: int
    request_id: int
    status: int
    fields: dict[str, str]
    body: bytes | memoryview


def encode_fields(fields: Mapping[str, str] | Iterable[tuple[str, str]]) -> bytes:
    """The encoded fields of a frame; a caller may keep them for frames that repeat them, and
    join two encodings with `join_fields`."""
    items = list(fields.items() if isinstance(fields, Mapping) else fields)
    text = "\0".join(f"{name}\0{value}" for name, value in items)
    if items and text.count("\0") != 2 * len(items) - 1:
        raise ValueError("frame field names and values may not contain NUL")
    encoded = text.encode()
    if len(encoded) > 0xFFFF:
        raise ValueError(f"frame fields of {len(encoded)} bytes are longer than 65535")
    return encoded


def join_fields(first: bytes, second: bytes) -> bytes:
    return first + b"\0" + second if first and second else first or second


def frame_head(kind: int, request_id: int, status: int, fields: bytes, body_length: int) -> bytes:
    """Everything of a frame before its body (send the body after it, uncopied)."""
    return _HEAD.pack(_FIXED + len(fields) + body_length, kind, request_id, status, len(fields)) + fields


def decode_frame(frame: bytes | memoryview) -> Frame:
    """A frame from its bytes after the length field. The body is a slice of `frame` (no copy
    when `frame` is a memoryview)."""
    size = len(frame)
    if size < _FIXED:
        raise FrameError(f"a frame of {size} bytes is shorter than its fixed header")
    kind, request_id, status, fields_length = _AFTER_LENGTH.unpack_from(frame, 0)
    if kind not in (REQUEST, RESPONSE):
        raise FrameError(f"unknown frame kind {kind}")
    end = _FIXED + fields_length
    if end > size:
        raise FrameError("the frame's fields run past its end")
    fields: dict[str, str] = {}
    if fields_length:
        try:
            parts = str(frame[_FIXED:end], "utf-8").split("\0")
        except UnicodeDecodeError as e:
            raise FrameError(f"the frame's fields are not UTF-8: {e}") from None
        if len(parts) % 2:
            raise FrameError("the frame's fields are not name/value pairs")
        names = iter(parts)
        fields = dict(zip(names, names, strict=False))
    return Frame(kind, request_id, status, fields, frame[end:])


class FrameReader:
    """Splits a byte stream into frames; bodies are `bytes` the reader no longer touches."""

    def __init__(self, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._buffer = bytearray()
        self._max = max_frame_bytes

    def feed(self, data: bytes) -> list[Frame]:
        buffer = self._buffer
        if buffer:
            buffer += data
            source: bytes | bytearray = buffer
        else:
            source = data  # the usual case: parse straight from what arrived
        frames = []
        pos = 0
        end = len(source)
        with memoryview(source) as view:
            while end - pos >= 4:
                (length,) = _LENGTH.unpack_from(view, pos)
                if length > self._max:
                    raise FrameError(f"a frame of {length} bytes is larger than the limit")
                if end - pos - 4 < length:
                    break
                frame = decode_frame(view[pos + 4 : pos + 4 + length])
                frame.body = bytes(frame.body)
                frames.append(frame)
                pos += 4 + length
        if source is buffer:
            del buffer[:pos]
        elif pos < end:
            buffer += data[pos:]
        return frames


class _Connection(asyncio.Protocol):
    def __init__(self, link: NodeLink) -> None:
        self._link = link
        self._reader = FrameReader()
        self._next_id = 0
        self.transport: asyncio.Transport | None = None
        self.pending: dict[int, asyncio.Future[Frame]] = {}
        self.closed = False
        self._out: list[bytes | memoryview] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            frames = self._reader.feed(data)
        except FrameError as e:
            log.warning("node %s sent a malformed frame (%s); closing the connection", self._link.address, e)
            self.abort()
            return
        pending = self.pending
        for frame in frames:
            future = pending.pop(frame.request_id, None)
            if future is not None and not future.done():
                future.set_result(frame)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._link._forget(self)
        pending, self.pending = self.pending, {}
        for future in pending.values():
            if not future.done():
                future.set_exception(NodeUnavailable(f"the connection to {self._link.address} was lost"))

    def write(self, head: bytes, body: bytes | memoryview) -> None:
        """Send a frame. Alone on the connection it leaves at once; under load, the frames queued
        while the loop runs its ready callbacks leave in one write, so a burst of requests costs
        the node one wake-up, not one each."""
        out = self._out
        if not out and len(self.pending) <= 1 and self.transport is not None:
            self.transport.writelines((head, body))
            return
        out.append(head)
        out.append(body)
        if len(out) == 2:
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        out, self._out = self._out, []
        transport = self.transport
        if transport is not None and not self.closed and not transport.is_closing():
            transport.writelines(out)  # else connection_lost fails their requests

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class NodeLink:
    """A small pool of connections to one node. Requests go to the least busy connection; a new
    one opens (up to `max_connections`) when that one has `spread_at` requests in flight."""

    def __init__(
        self,
        address: str,
        max_connections: int = 2,
        spread_at: int = 8,
        connect_timeout: float = 2.0,
    ) -> None:
        host, _, port = address.removeprefix("tcp://").rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"a node data address is tcp://host:port, not {address!r}")
        self.address = address
        self._host = host.strip("[]")
        self._port = int(port)
        self._max = max_connections
        self._spread_at = spread_at
        self._connect_timeout = connect_timeout
        self._connections: list[_Connection] = []
        self._connecting: asyncio.Task[_Connection] | None = None
        self._closed = False

    @property
    def connections(self) -> int:
        return len(self._connections)

    async def call(
        self,
        fields: bytes,
        body: bytes | memoryview,
        timeout: float,
    ) -> Frame:
        """Send one request (`fields` from `encode_fields`, `op` included) and wait for its answer.
        Raises NodeUnavailable (nothing or no answer came back: safe to retry elsewhere, the
        request has no effect but its result) or NodeTimeout."""
        connection = self._pick()
        if connection is None:
            connection = await self._connect()
        transport = connection.transport
        if transport is None or connection.closed or transport.is_closing():
            raise NodeUnavailable(f"the connection to {self.address} is closing")
        connection._next_id = request_id = (connection._next_id + 1) & 0xFFFFFFFF
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Frame] = loop.create_future()
        connection.pending[request_id] = future
        connection.write(frame_head(REQUEST, request_id, 0, fields, len(body)), body)
        timer = loop.call_later(timeout, _expire, future, self.address)
        try:
            return await future
        finally:
            timer.cancel()
            connection.pending.pop(request_id, None)

    def _pick(self) -> _Connection | None:
        best = None
        for c in self._connections:
            if best is None or len(c.pending) < len(best.pending):
                best = c
        if best is None:
            return None
        if (
            len(best.pending) >= self._spread_at
            and len(self._connections) < self._max
            and not self._connecting
        ):
            self._start_connecting()  # for the next requests; this one goes out now
        return best

    def _start_connecting(self) -> asyncio.Task[_Connection]:
        if self._connecting is None:
            task = asyncio.get_running_loop().create_task(self._open())
            task.add_done_callback(_retrieve)
            self._connecting = task
        return self._connecting

    async def _connect(self) -> _Connection:
        return await asyncio.shield(self._start_connecting())

    async def _open(self) -> _Connection:
        try:
            loop = asyncio.get_running_loop()
            _, connection = await asyncio.wait_for(
                loop.create_connection(lambda: _Connection(self), self._host, self._port),
                self._connect_timeout,
            )
        except (OSError, TimeoutError) as e:
            raise NodeUnavailable(f"cannot connect to {self.address}: {e}") from None
        finally:
            self._connecting = None
        if self._closed:
            connection.abort()
            raise NodeUnavailable(f"the link to {self.address} is closed")
        self._connections.append(connection)
        return connection

    def _forget(self, connection: _Connection) -> None:
        with contextlib.suppress(ValueError):
            self._connections.remove(connection)

    def close(self) -> None:
        """Close every connection; requests in flight fail with NodeUnavailable."""
        self._closed = True
        for c in list(self._connections):
            c.abort()


def _expire(future: asyncio.Future[Frame], address: str) -> None:
    if not future.done():
        future.set_exception(NodeTimeout(f"{address} did not answer in time"))


def _retrieve(task: asyncio.Task[_Connection]) -> None:
    if not task.cancelled():
        task.exception()  # a failed background connect is reported to the waiters, not logged


class NodeLinks:
    """The gateway's links, one per node data address."""

    def __init__(self, max_connections: int = 2, spread_at: int = 8, connect_timeout: float = 2.0) -> None:
        self._links: dict[str, NodeLink] = {}
        self._options = (max_connections, spread_at, connect_timeout)

    def get(self, address: str) -> NodeLink:
        link = self._links.get(address)
        if link is None:
            link = self._links[address] = NodeLink(address, *self._options)
        return link

    def drop(self, address: str) -> None:
        """Forget a node's link (it failed); a later request opens a fresh one."""
        link = self._links.pop(address, None)
        if link is not None:
            link.close()

    def close(self) -> None:
        for link in self._links.values():
            link.close()
        self._links.clear()
