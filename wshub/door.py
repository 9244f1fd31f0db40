"""The hub's protocol on its port: where every connection comes in, and how most get past Sanic.

Once accepted a connection is paced by its address when the peer is the client itself (no
trusted proxy between): past the pace it gets a ready-made 429 and is closed before a byte of
it is read, the cheapest refusal there is. A connection that sends nothing is closed within the
request timeout (core/first_byte.py).

Its first bytes decide the rest. An upgrade as every client sends it (a complete GET request head
of at most ``MAX_HEAD`` bytes to the hub or the anonymous hub, HTTP/1.1, no body, an upgrade that
``_plain_upgrade`` accepts at a glance) is admitted here, by the same steps that admit a request
Sanic parsed (admission.py), in the same order, with the same answers, counts and log lines; the
token's stamp is read in the shared batch and the admission goes on from the future's callback.
Admitted, it gets its 101 and its transport goes to the hub's WebSocket (wire.py), as after
Sanic's upgrade; refused, it gets Sanic's answer and the connection is closed. No Sanic request,
middleware, route or task is made for it. Every step from the accept on waits its turn
(turns.py), so that a storm of connections does not hold up events for the clients already in:
what runs where a connection's bytes arrive is only their buffering.

Anything else (negotiate, /alive, /metrics, a head in several packets, larger, or not as clients
send it) goes to Sanic as it came, on Sanic's own protocol (:class:`SanicSide`), from the first
byte: Sanic answers it exactly as if the hub's protocol had not looked.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs

from sanic.compat import Header

from core import access_log
from core.access import Caller, bearer_token
from core.client_address import client_address, from_proxy
from core.first_byte import FirstByteDeadline
from wshub.admission import (PACED_OUT, Refusal, _plain_upgrade, anonymous_id, answer_bytes, check_token,
                             opening_refusal, pace, refused, take_slot, token_refusal)
from wshub.pump import serve_anonymous, serve_user
from wshub.registry import Slot
from wshub.wire import WireProtocol, hand_over

__all__ = ["HUB_PATH", "ANONYMOUS_HUB_PATH", "MAX_HEAD", "HubProtocol", "SanicSide"]

log = logging.getLogger("wshub")

HUB_PATH = "/notifications/hub"
ANONYMOUS_HUB_PATH = "/notifications/anonymous-hub"

#: The largest request head read here (a client's is well under 2 KiB, its token included);
#: a larger one is Sanic's to read (and to refuse, past its own limit of 8 KiB).
MAX_HEAD = 8192

#: What a WebSocket gets to close cleanly (Sanic's ``websocket_timeout``, which wire.py follows).
CLOSE_TIMEOUT = 10.0

#: Bytes that Sanic's parser refuses in a head (a tab only in the target): such a request is its
#: to answer.
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")

_PACED_OUT_ANSWER = answer_bytes(429, PACED_OUT)
_FAILED_ANSWER = answer_bytes(500, "Internal Server Error")

# a connection's states: accepted (its pace not checked yet), no byte yet, its head waiting for its
# turn, its token being checked, and past the hub's protocol (a WebSocket, refused, or Sanic's)
_ACCEPTED, _SILENT, _QUEUED, _CHECKING, _DONE = range(5)


class SanicSide(FirstByteDeadline, WireProtocol):
    """Sanic's protocol, for the connections the hub's protocol leaves to Sanic."""

    __slots__ = ()


@dataclass(slots=True)
class _Head:
    """A plain upgrade's request head, as Sanic would have parsed it."""

    path: str
    args: dict[str, str]
    headers: Header


def read_head(data: bytes | bytearray) -> tuple[_Head, bytes] | None:
    """The head of a plain upgrade to one of the hubs, and what came after it; None for anything
    else. Parsed as Sanic parses a head (http1.py: names lowercased, values left-stripped), over
    a subset of what Sanic takes: a request outside it goes to Sanic, never refused here."""
    end = data.find(b"\r\n\r\n", 0, MAX_HEAD + 3)  # Sanic answers 413 from MAX_HEAD on
    if end < 0 or not data.startswith(b"GET /notifications/"):
        return None
    head = bytes(data[:end])
    if not head.isascii() or _CONTROL.search(head.replace(b"\r\n", b"")):
        return None
    request_line, *lines = head.decode("ascii").split("\r\n")
    parts = request_line.split(" ")
    if len(parts) != 3 or parts[2] != "HTTP/1.1":
        return None
    path, _, query = parts[1].partition("?")
    if path not in (HUB_PATH, ANONYMOUS_HUB_PATH) or "#" in query or "\t" in query:
        return None
    headers = []
    for line in lines:
        name, colon, value = line.partition(":")
        if not colon:
            return None
        name = name.lower()
        if name in ("content-length", "transfer-encoding", "expect"):
            return None
        headers.append((name, value.lstrip()))
    parsed = Header(headers)
    if not _plain_upgrade(parsed):
        return None
    # as Sanic's request.args: blank values dropped, undecodable bytes replaced, the first of each
    args = {name: values[0] for name, values in parse_qs(query, errors="replace").items()}
    return _Head(path, args, parsed), bytes(data[end + 4:])


class HubProtocol(asyncio.Protocol):
    """One connection to the hub's port until it is a WebSocket, an answered refusal, or Sanic's;
    see the module docstring."""

    __slots__ = ("app", "transport", "paced", "_sanic", "_state", "_peer", "_received", "_deadline", "_head",
                 "_ip", "_started", "_caller")

    def __init__(self, **sanic: Any) -> None:
        #: what Sanic gives its protocols, for the one it may get (SanicSide)
        self._sanic = sanic
        self.app = sanic["app"]
        self.transport: asyncio.Transport | None = None
        self.paced = False
        self._state = _ACCEPTED
        self._received = bytearray()
        self._deadline: asyncio.TimerHandle | None = None
        self._head: _Head | None = None
        self._caller: asyncio.Future[Caller] | None = None

    # -- asyncio.Protocol -----------------------------------------------------------------------

    def connection_made(self, transport: Any) -> None:
        # as Sanic's protocol sets them: the WebSocket's flow control (websocket.py) follows them
        transport.set_write_buffer_limits(low=16384, high=65536)
        self.transport = transport
        self.app.ctx.turns.add(self._accepted)

    def data_received(self, data: bytes) -> None:
        if self._state is _DONE:
            return
        self._received += data
        if self._state is _SILENT:
            self._state = _QUEUED
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            self.app.ctx.turns.add(self._read)
        elif len(self._received) > MAX_HEAD and self.transport is not None:
            self.transport.pause_reading()  # whoever takes the connection reads on

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._state = _DONE
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    # Before the hand-over this protocol writes only an answer of a few hundred bytes, and then
    # closes: there is nothing to hold back while the client is slow to read it.
    def pause_writing(self) -> None:
        pass

    def resume_writing(self) -> None:
        pass

    # -- the steps, each in its turn --------------------------------------------------------------

    def _accepted(self) -> None:
        """The pace of the client's address, unless a proxy of ours is the peer (then the request
        names the client, and is paced by it)."""
        if self._state is _DONE:
            return
        app, config, transport = self.app, self.app.ctx.config, self.transport
        peer = transport.get_extra_info("peername")
        self._peer = peer = peer[0] if isinstance(peer, tuple) else None
        if not from_proxy(peer, config):
            if not pace(app, client_address(peer, {}, config)):
                self._state = _DONE
                app.ctx.metrics.refused.labels("rate").inc()
                transport.write(_PACED_OUT_ANSWER)
                transport.close()
                return
            self.paced = True
        if self._received:  # the request came before its turn
            self._state = _QUEUED
            self._read()
        else:
            self._state = _SILENT
            self._deadline = asyncio.get_running_loop().call_later(app.ctx.first_byte_timeout, self._silent)

    def _read(self) -> None:
        if self._state is _DONE:
            return
        read = read_head(self._received)
        if read is None:
            self._to_sanic()
            return
        self._head, unread = read
        self._received = bytearray(unread)
        self._started = time.perf_counter()
        self._ip = self._peer or "unknown"  # for a failure's log line, until the client's is known
        app, head = self.app, self._head
        try:
            self._ip = ip = client_address(self._peer, head.headers, app.ctx.config)
            refusal = opening_refusal(app, ip, self.paced, _plain)
            if refusal is not None:
                self._refuse(refusal)
            elif head.path == ANONYMOUS_HUB_PATH:
                found = anonymous_id(head.args)
                if isinstance(found, Refusal):
                    self._refuse(found)
                else:
                    self._admit(None, found)
            else:
                self._state = _CHECKING
                self._caller = check_token(app, bearer_token(head.args, head.headers, allow_query=True))
                self._caller.add_done_callback(self._checked)
        except Exception:
            self._failed()

    def _checked(self, caller: asyncio.Future[Caller]) -> None:
        if self._state is _DONE:
            if not caller.cancelled():
                caller.exception()  # retrieved: the client left, nobody answers it
            return
        self.app.ctx.turns.add(self._token_checked)

    def _token_checked(self) -> None:
        if self._state is _DONE:
            return
        assert self._caller is not None
        try:
            if self._caller.cancelled():  # the stamps' reader was stopped: the hub is going down
                self._refuse(Refusal.of(503, "unavailable", "temporarily unavailable"))
                return
            try:
                caller = self._caller.result()
            except Exception as error:
                self._refuse(token_refusal(error, self._ip))
                return
            self._admit(caller, None)
        except Exception:
            self._failed()

    def _admit(self, caller: Caller | None, auth_request_id: str | None) -> None:
        app, head, transport = self.app, self._head, self.transport
        assert head is not None and transport is not None
        slot = take_slot(app, self._ip, None if caller is None else str(caller.user_id))
        if isinstance(slot, Refusal):
            self._refuse(slot)
            return
        try:
            ws = hand_over(transport, head.headers["sec-websocket-key"], bytes(self._received),
                           max_size=app.config.WEBSOCKET_MAX_SIZE, close_timeout=CLOSE_TIMEOUT)
        except Exception:
            app.ctx.registry.release(slot)
            raise
        self._state = _DONE
        self._received = bytearray()
        self._log(101)
        self._serve(ws, slot, caller, auth_request_id)

    def _serve(self, ws: Any, slot: Slot, caller: Caller | None, auth_request_id: str | None) -> None:
        try:
            if caller is not None:
                serve_user(self.app, ws, slot, caller)
            else:
                assert auth_request_id is not None
                serve_anonymous(self.app, ws, slot, auth_request_id)
        except Exception:  # as Sanic ends a handler that failed: the socket goes, the slot with it
            log.error("GET %s failed", self._head.path if self._head else "?", exc_info=True)
            self.app.ctx.registry.release(slot)
            ws.fail(1011, "internal error")

    # -- the ends -----------------------------------------------------------------------------------

    def _refuse(self, refusal: Refusal) -> None:
        refused(self.app.ctx.metrics, refusal)
        self._log(refusal.status)
        self._close_with(answer_bytes(refusal.status, refusal.message))

    def _failed(self) -> None:
        """A bug in the hub's admission: answered as Sanic answers one, logged by the path alone."""
        log.error("GET %s failed", self._head.path if self._head else "?", exc_info=True)
        self._log(500)
        self._close_with(_FAILED_ANSWER)

    def _close_with(self, answer: bytes) -> None:
        self._state = _DONE
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(answer)
            self.transport.close()

    def _silent(self) -> None:
        self._deadline = None
        if self._state is _SILENT and self.transport is not None:
            log.debug("no request within the first-byte time: connection closed")
            self._state = _DONE
            self.transport.close()

    def _to_sanic(self) -> None:
        transport = self.transport
        assert transport is not None
        self._state = _DONE
        sanic = SanicSide(**self._sanic, websocket_max_size=self.app.config.WEBSOCKET_MAX_SIZE,
                          websocket_timeout=CLOSE_TIMEOUT)
        transport.set_protocol(sanic)
        sanic.connection_made(transport)
        if self.paced:
            sanic.conn_info.ctx.paced = True
        received, self._received = bytes(self._received), bytearray()
        sanic.data_received(received)  # Sanic resumes reading when it wants more

    def _log(self, status: int) -> None:
        assert self._head is not None
        access_log.line(self._ip, "GET", self._head.path, status, self._started)


def _plain() -> None:
    """The upgrade refusal of a head ``read_head`` took: none, its upgrade is plain."""
    return None
