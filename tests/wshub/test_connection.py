"""A connection's outgoing side without sockets: frames written at once, held back while the
transport is full, bounded in bytes, and its one goodbye."""

from __future__ import annotations

import asyncio

import msgpack
import pytest

from tests.wshub.memory import MemorySocket, make_connection, serve, settle
from wshub.codec import encode_varint
from wshub.connection import Connection, close_all
from wshub.framing import frame
from wshub.session import CloseReason, Session, State

PING = bytes.fromhex("02 91 06")
PING_FRAME = frame(PING)
CLIENT_CLOSE = bytes.fromhex("04 93 07 c0 c2")


def _invocation(invocation_id: str | None) -> bytes:
    body = msgpack.packb([1, {}, invocation_id, "Send", []])
    return bytes([len(body)]) + body


def test_a_connection_needs_a_session_past_its_handshake() -> None:
    with pytest.raises(ValueError):
        Connection(MemorySocket(), Session(), ip="192.0.2.1", send_buffer=4096)


async def test_frames_sent_in_one_turn_are_written_together_at_its_end_in_order() -> None:
    ws = MemorySocket()
    connection = make_connection("u", ws=ws)
    assert connection.send(frame(b"first"))
    assert connection.send(PING_FRAME)
    assert ws.writes == []
    await asyncio.sleep(0)  # no task ran: the turn ended
    assert ws.writes == [frame(b"first") + PING_FRAME]  # one write, so one system call
    assert ws.frames == [b"first", PING]
    assert connection.send(PING_FRAME)
    await asyncio.sleep(0)
    assert ws.writes[1] is PING_FRAME  # a frame alone in its turn is written as it is, not copied
    assert connection.buffered == 0 and ws.closed is None
    connection.lost()
    await connection.finish()


async def test_frames_held_back_while_the_transport_is_full_go_out_in_order_when_it_drains() -> None:
    ws = MemorySocket(stalled=True)
    connection = make_connection("u", ws=ws, send_buffer=4096)
    assert connection.send(frame(b"1")) and connection.send(frame(b"2"))
    assert ws.frames == [] and connection.buffered == 2 * len(frame(b"1"))
    ws.resume()
    assert ws.frames == [b"1", b"2"] and connection.buffered == 0
    assert connection.send(frame(b"3"))
    await asyncio.sleep(0)
    assert ws.frames == [b"1", b"2", b"3"]
    connection.lost()
    await connection.finish()


async def test_close_sends_what_is_queued_then_a_signalr_close_then_the_close_code() -> None:
    ws = MemorySocket()
    connection = make_connection("u", ws=ws)
    served = asyncio.create_task(serve(connection))
    connection.send(PING_FRAME)
    connection.close(CloseReason.LOGGED_OUT)
    assert not connection.send(PING_FRAME)  # nothing after the goodbye
    await served
    assert ws.messages() == [[6], [7, "logged out", False]]
    assert ws.closed == (1008, "logged out") and ws.failed is None
    assert connection.session.state is State.CLOSED
    assert connection.session.closing.reason is CloseReason.LOGGED_OUT


async def test_a_second_close_changes_nothing() -> None:
    ws = MemorySocket()
    connection = make_connection("u", ws=ws)
    connection.close(CloseReason.LOGGED_OUT)
    connection.close(CloseReason.SHUTDOWN)
    await serve(connection)
    assert ws.messages() == [[7, "logged out", False]]
    assert ws.closed == (1008, "logged out")


async def test_client_frames_are_answered_at_once() -> None:
    ws = MemorySocket()
    connection = make_connection("u", ws=ws)
    connection.receive(PING)
    connection.receive(_invocation("7"))
    connection.receive(_invocation(None))
    assert ws.messages() == [[3, {}, "7", 1, "Unknown hub method"]]
    connection.lost()
    await connection.finish()


async def test_client_close_gets_no_signalr_close_only_the_normal_close() -> None:
    ws = MemorySocket()
    connection = make_connection("u", ws=ws)
    served = asyncio.create_task(serve(connection))
    connection.send(PING_FRAME)
    connection.receive(CLIENT_CLOSE)
    await served
    assert ws.frames == [PING]
    assert ws.closed == (1000, "closed by the client")


async def test_bad_bytes_get_a_signalr_close_with_the_error_then_1003() -> None:
    ws = MemorySocket()
    connection = make_connection("u", ws=ws)
    served = asyncio.create_task(serve(connection))
    connection.receive(b"\x03\xc1\xc1\xc1")
    await served
    [[kind, error, allow_reconnect]] = ws.messages()
    assert (kind, allow_reconnect) == (7, False) and error.startswith("invalid message: ")
    assert ws.closed[0] == 1003
    assert connection.session.closing.reason is CloseReason.INVALID_MESSAGE


async def test_client_too_far_behind_is_failed_1013_at_once_and_later_sends_are_refused() -> None:
    ws = MemorySocket(stalled=True)
    connection = make_connection("u", ws=ws, send_buffer=4 * len(PING_FRAME))
    served = asyncio.create_task(serve(connection))
    results = [connection.send(PING_FRAME) for _ in range(5)]
    assert results == [True, True, True, True, False]
    assert ws.failed == (1013, "too far behind; reconnect and sync") and ws.closed is None
    assert connection.session.closing.reason is CloseReason.TOO_SLOW
    assert not connection.send(PING_FRAME)
    await asyncio.wait_for(served, 1)  # no goodbye waits on a client that stopped reading
    assert connection.session.state is State.CLOSED


async def test_one_stalled_client_holds_back_no_other() -> None:
    stalled, reading = MemorySocket(stalled=True), MemorySocket()
    slow = make_connection("u", ws=stalled, send_buffer=4 * len(PING_FRAME))
    fast = make_connection("u", ws=reading, send_buffer=4 * len(PING_FRAME))
    for _ in range(10):
        slow.send(PING_FRAME)
        fast.send(PING_FRAME)
    await asyncio.sleep(0)
    assert reading.frames == [PING] * 10 and fast.session.state is State.OPEN
    assert slow.session.closing.reason is CloseReason.TOO_SLOW
    fast.lost()
    await asyncio.gather(serve(slow), serve(fast))


async def test_a_goodbye_that_does_not_fit_the_overflow_fails_the_socket_with_its_code() -> None:
    ws = MemorySocket(stalled=True)
    connection = make_connection("u", ws=ws, send_buffer=2 * len(PING_FRAME))
    connection.send(PING_FRAME)
    connection.send(PING_FRAME)
    connection.close(CloseReason.LOGGED_OUT)
    assert ws.failed == (1008, "logged out")
    assert connection.session.closing.reason is CloseReason.LOGGED_OUT


async def test_the_overflow_is_bounded_in_bytes_not_messages() -> None:
    ws = MemorySocket(stalled=True)
    big = frame(b"x" * 300)
    connection = make_connection("u", ws=ws, send_buffer=3 * len(big) + 10)
    served = asyncio.create_task(serve(connection))
    assert [connection.send(big) for _ in range(3)] == [True, True, True]
    assert connection.buffered == 3 * len(big)
    assert connection.send(PING_FRAME)  # a small frame still fits
    assert not connection.send(big)  # this one would pass the bound
    assert connection.session.closing.reason is CloseReason.TOO_SLOW
    await asyncio.wait_for(served, 1)
    assert connection.buffered == 0  # what was waiting is let go with the connection


async def test_a_goodbye_waits_for_what_is_held_back_then_closes() -> None:
    ws = MemorySocket(stalled=True)
    connection = make_connection("u", ws=ws)
    served = asyncio.create_task(serve(connection))
    connection.send(PING_FRAME)
    connection.close(CloseReason.LOGGED_OUT)
    await settle()
    assert ws.frames == [] and ws.closed is None
    ws.resume()
    await asyncio.wait_for(served, 1)
    assert ws.messages() == [[6], [7, "logged out", False]]
    assert ws.closed == (1008, "logged out") and ws.failed is None


async def test_answers_to_a_client_that_never_reads_stay_within_the_bound() -> None:
    ws = MemorySocket(stalled=True)
    connection = make_connection("u", ws=ws, send_buffer=2048)
    served = asyncio.create_task(serve(connection))
    big_target = "T" * 60000
    body = msgpack.packb([1, {}, "1", big_target, []])
    frame = encode_varint(len(body)) + body
    for _ in range(5):
        connection.receive(frame)
        assert connection.buffered <= 2048
    assert connection.session.state is State.OPEN  # a few short answers: nothing near the bound
    connection.lost()
    await asyncio.wait_for(served, 1)
    assert connection.buffered == 0


async def test_a_goodbye_not_taken_in_time_is_cut_short() -> None:
    ws = MemorySocket(stalled=True)
    connection = make_connection("u", ws=ws, close_timeout=0.05)
    served = asyncio.create_task(serve(connection))
    connection.send(PING_FRAME)
    connection.close(CloseReason.LOGGED_OUT)
    await asyncio.wait_for(served, 2)
    assert ws.failed == (1008, "logged out") and ws.frames == []
    assert connection.session.state is State.CLOSED


async def test_a_transport_that_breaks_under_a_write_ends_the_connection() -> None:
    ws = MemorySocket(broken=RuntimeError("the handler is closed"))
    connection = make_connection("u", ws=ws)
    served = asyncio.create_task(serve(connection))
    connection.send(PING_FRAME)
    await asyncio.wait_for(served, 1)
    assert connection.session.state is State.CLOSED
    assert connection.session.closing.reason is CloseReason.DISCONNECTED
    assert not connection.send(PING_FRAME)


async def test_nothing_is_written_once_a_close_frame_went_or_came() -> None:
    ws = MemorySocket()
    connection = make_connection("u", ws=ws)
    ws.state = ws.state.CLOSING  # the socket answered the client's close
    assert not connection.send(PING_FRAME)
    assert ws.writes == []
    connection.lost()
    await connection.finish()


async def test_a_client_gone_drops_what_is_queued() -> None:
    ws = MemorySocket(stalled=True)
    connection = make_connection("u", ws=ws)
    served = asyncio.create_task(serve(connection))
    connection.send(PING_FRAME)
    connection.send(PING_FRAME)
    connection.lost()
    await asyncio.wait_for(served, 1)
    assert ws.frames == [] and ws.closed is None and ws.failed is None
    assert connection.session.closing.reason is CloseReason.DISCONNECTED


async def test_close_all_says_goodbye_to_each_and_waits_for_them() -> None:
    sockets = [MemorySocket(), MemorySocket(), MemorySocket(stalled=True)]
    connections = [make_connection("u", ws=ws, protocol=p, close_timeout=0.1)
                   for ws, p in zip(sockets, ["messagepack", "json", "messagepack"], strict=True)]
    served = [asyncio.create_task(serve(c)) for c in connections]
    await asyncio.wait_for(close_all(connections, CloseReason.SHUTDOWN, timeout=2), 3)
    assert sockets[0].messages() == [[7, None, True]]
    assert sockets[1].frames == ['{"type":7,"allowReconnect":true}\x1e']
    assert sockets[0].closed == sockets[1].closed == (1001, "server shutting down")
    assert sockets[2].failed == (1001, "server shutting down")  # it stopped reading: cut short
    assert all(task.done() for task in served)
