"""The node's data port: the gateway's framed requests (the frame format is documented in
`modelfleet.gateway.node_link`), dispatched by op name through an `OpRegistry`.

Threads rather than an event loop: one reader thread per gateway connection reads and parses
frames and calls the op's handler; the handler answers through its `Responder`, from any thread,
exactly once. The `infer` op queues the request for the deployment's allocations, and the
allocation thread that ran it writes the response straight to the socket: no hop back to an
event loop, which on a small machine costs as much as running a small model. Writes to one
connection are serialised by a lock; a connection that breaks only loses its own answers (the
gateway retries those requests elsewhere).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import struct
import threading
from collections.abc import Callable, Mapping

import orjson

from modelfleet.gateway.node_link import (
    MAX_FRAME_BYTES,
    REQUEST,
    RESPONSE,
    Frame,
    FrameError,
    decode_frame,
    encode_fields,
    frame_head,
)

log = logging.getLogger(__name__)

Fields = Mapping[str, str] | bytes  # bytes: already encoded
JSON_FIELDS = encode_fields({"content-type": "application/json"})
SMALL_BODY = 64 * 1024
SEND_TIMEOUT_SECONDS = 30


class Responder:
    """Answers one request. Calling it a second time raises RuntimeError (a handler bug);
    answering on a connection that broke meanwhile is a no-op."""

    __slots__ = ("_answered", "_connection", "_lock", "request_id")

    def __init__(self, connection: _Connection, request_id: int) -> None:
        self._connection = connection
        self.request_id = request_id
        self._answered = False
        self._lock = threading.Lock()

    @property
    def answered(self) -> bool:
        return self._answered

    def __call__(self, status: int, fields: Fields, body: bytes | memoryview = b"") -> None:
        with self._lock:
            if self._answered:
                raise RuntimeError(f"request {self.request_id} was already answered")
            self._answered = True
        encoded = fields if isinstance(fields, bytes) else encode_fields(fields)
        self._connection.send(frame_head(RESPONSE, self.request_id, status, encoded, len(body)), body)

    def error(self, status: int, code: str, message: str) -> None:
        self(status, JSON_FIELDS, orjson.dumps({"error": message, "code": code}))


Handler = Callable[[Frame, Responder], None]


class OpRegistry:
    """Op name → handler. A handler gets the request frame (`fields`, `body`) and its Responder;
    it may answer before returning or later from another thread, but must answer once."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}

    def register(self, op: str, handler: Handler) -> None:
        self._handlers[op] = handler

    def get(self, op: str) -> Handler | None:
        return self._handlers.get(op)

    def names(self) -> list[str]:
        return sorted(self._handlers)


class _Connection:
    def __init__(self, sock: socket.socket, server: DataServer) -> None:
        self._sock = sock
        self._server = server
        self._write = threading.Lock()
        self.broken = False

    def send(self, head: bytes, body: bytes | memoryview) -> None:
        with self._write:
            if self.broken:
                return
            try:
                if len(body) <= SMALL_BODY:
                    self._sock.sendall(head + body)  # one small copy beats a scatter list
                else:
                    self._send_scattered(head, body)
            except OSError as e:  # the gateway went away, or stopped reading for SEND_TIMEOUT
                self.broken = True
                log.info("a gateway connection broke while answering: %s", e)

    def _send_scattered(self, head: bytes, body: bytes | memoryview) -> None:
        buffers = [memoryview(head), memoryview(body).cast("B")]
        while buffers:
            sent = self._sock.sendmsg(buffers)
            while sent:
                if sent >= len(buffers[0]):
                    sent -= len(buffers.pop(0))
                else:
                    buffers[0] = buffers[0][sent:]
                    sent = 0

    def serve(self) -> None:
        registry = self._server.ops
        limit = self._server.max_frame_bytes
        try:
            with self._sock.makefile("rb", buffering=1 << 16) as stream:
                while True:
                    head = stream.read(4)
                    if len(head) < 4:
                        return
                    length = int.from_bytes(head, "little")
                    if length > limit:
                        raise FrameError(f"a frame of {length} bytes is larger than the limit")
                    data = stream.read(length)
                    if len(data) < length:
                        return
                    frame = decode_frame(memoryview(data))
                    if frame.kind != REQUEST:
                        raise FrameError(f"a node only takes requests, not frames of kind {frame.kind}")
                    self._dispatch(registry, frame)
        except FrameError as e:
            log.warning("closing a gateway connection that sent a malformed frame: %s", e)
        except OSError:
            pass  # the gateway went away
        finally:
            self.close()

    def _dispatch(self, registry: OpRegistry, frame: Frame) -> None:
        respond = Responder(self, frame.request_id)
        op = frame.fields.get("op", "")
        handler = registry.get(op)
        if handler is None:
            respond.error(400, "unknown_op", f"this node has no op {op!r} (ops: {registry.names()})")
            return
        try:
            handler(frame, respond)
        except Exception as e:
            log.exception("op %s failed", op)
            if not respond.answered:
                respond.error(500, "internal_error", f"{type(e).__name__}: {e}")

    def close(self) -> None:
        with self._write:
            self.broken = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self._server._forget(self)


class DataServer:
    """Accepts gateway connections on `sock` (bound, not yet listening) and serves them."""

    def __init__(self, sock: socket.socket, ops: OpRegistry, max_frame_bytes: int = MAX_FRAME_BYTES) -> None:
        self._sock = sock
        self.ops = ops
        self.max_frame_bytes = max_frame_bytes
        self._connections: set[_Connection] = set()
        self._lock = threading.Lock()
        self._stopped = threading.Event()

    @property
    def address(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"tcp://{host}:{port}"

    def start(self) -> None:
        self._sock.listen(64)
        threading.Thread(target=self._accept, name="data-accept", daemon=True).start()

    def _accept(self) -> None:
        while not self._stopped.is_set():
            try:
                sock, _ = self._sock.accept()
            except OSError:
                return  # the listening socket was closed
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # A gateway that stops reading must not block an allocation thread for ever.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", SEND_TIMEOUT_SECONDS, 0))
            connection = _Connection(sock, self)
            with self._lock:
                self._connections.add(connection)
            threading.Thread(target=connection.serve, name="data-conn", daemon=True).start()

    def _forget(self, connection: _Connection) -> None:
        with self._lock:
            self._connections.discard(connection)

    @property
    def connection_count(self) -> int:
        return len(self._connections)

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        with self._lock:
            connections = list(self._connections)
        for c in connections:
            c.close()
