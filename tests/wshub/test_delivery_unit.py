"""Delivery without sockets or PostgreSQL: real events, a real Registry, real connections whose
frames are read in memory."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import datetime, timezone

import pytest

from db.events import Event, PushType
from tests.wshub.memory import MemorySocket, make_connection, serve, settle
from tests.wshub.test_codec import FOLDER_UPDATE_VECTOR, VECTOR_DATE
from wshub.codec import MessagePackProtocol
from wshub.connection import Connection
from wshub.delivery import Delivery
from wshub.framing import frame
from wshub.metrics import HubMetrics
from wshub.notifications import receive_message
from wshub.registry import Registry
from wshub.session import CloseReason, State

USER = "8e6d2f1a-3b4c-4d5e-8f6a-7b8c9d0e1f2a"
OTHER_USER = str(uuid.uuid4())
FOLDER = "0b7c1c3e-2f4a-4b8e-9d3f-6a5e4c3b2a10"
DEVICE = "4f1b2a9e-5d2c-4e8a-9a59-0c6f3b7f9d11"


def _event(push_type: PushType, user: str | None = USER, item: str | None = None, device: str | None = None,
           org: str | None = None) -> Event:
    # positional: type, user, organization, item, date, acting device
    return Event(push_type, user, org, item, datetime.now(timezone.utc), device)


class Hub:
    """A Registry and a Delivery, and the connections added to them, each with its socket."""

    def __init__(self) -> None:
        self.metrics = HubMetrics()
        self.registry = Registry(max_connections=100, max_anonymous=100, max_per_user=100, max_per_ip=100)
        self.delivery = Delivery(self.registry, self.metrics)
        self.sockets: dict[Connection, MemorySocket] = {}
        self.served: list[asyncio.Task[None]] = []

    def connect(self, user_id: str | None = USER, *, protocol: str = "messagepack", device: str | None = None,
                auth_request_id: str | None = None, send_buffer: int = 4096, stalled: bool = False) -> Connection:
        ws = MemorySocket(stalled=stalled)
        connection = make_connection(user_id, protocol=protocol, device=device, auth_request_id=auth_request_id,
                                     ws=ws, send_buffer=send_buffer)
        self.registry.add(connection)
        self.sockets[connection] = ws
        self.served.append(asyncio.create_task(serve(connection)))
        return connection

    def socket(self, connection: Connection) -> MemorySocket:
        return self.sockets[connection]

    async def stop(self) -> None:
        for connection in self.sockets:
            connection.lost()
        await asyncio.gather(*self.served)


@pytest.fixture
async def memory_hub() -> AsyncIterator[Hub]:
    hub = Hub()
    yield hub
    await hub.stop()


async def test_event_reaches_every_connection_of_its_user_as_the_vector(memory_hub: Hub) -> None:
    phone, laptop = memory_hub.connect(), memory_hub.connect()
    browser = memory_hub.connect(protocol="json")
    stranger = memory_hub.connect(OTHER_USER)
    event = Event(PushType.SYNC_FOLDER_UPDATE, USER, None, FOLDER, VECTOR_DATE, DEVICE)
    assert memory_hub.delivery.deliver(event) == 3
    await settle()
    assert memory_hub.socket(phone).frames == memory_hub.socket(laptop).frames == [FOLDER_UPDATE_VECTOR]
    [[argument]] = [message["arguments"] for message in memory_hub.socket(browser).messages("json")]
    assert argument == {"ContextId": DEVICE, "Type": 8,
                        "Payload": {"Id": FOLDER, "UserId": USER, "RevisionDate": "2025-11-28T16:00:00.123Z"}}
    assert memory_hub.socket(stranger).frames == []
    assert memory_hub.metrics.registry.get_sample_value("pgwarden_hub_events_total") == 1
    assert memory_hub.metrics.registry.get_sample_value("pgwarden_hub_event_latency_seconds_count") == 1


async def test_each_protocol_is_encoded_and_framed_once_for_all_its_connections(memory_hub: Hub) -> None:
    binary = [memory_hub.connect() for _ in range(3)]
    text = [memory_hub.connect(protocol="json") for _ in range(3)]
    memory_hub.delivery.deliver(_event(PushType.SYNC_VAULT))
    await settle()
    # the very same bytes object reaches each transport: one frame per protocol
    [first] = memory_hub.socket(binary[0]).writes
    assert all(memory_hub.socket(c).writes == [first] and memory_hub.socket(c).writes[0] is first for c in binary)
    [first_text] = memory_hub.socket(text[0]).writes
    assert all(memory_hub.socket(c).writes[0] is first_text for c in text)
    assert first != first_text and len(memory_hub.socket(text[0]).frames) == 1


async def test_events_of_nobody_connected_or_of_an_organization_reach_no_one(memory_hub: Hub) -> None:
    connection = memory_hub.connect()
    assert memory_hub.delivery.deliver(_event(PushType.SYNC_VAULT, user=OTHER_USER)) == 0
    assert memory_hub.delivery.deliver(_event(PushType.SYNC_ORG_KEYS, user=None, org=str(uuid.uuid4()))) == 0
    await settle()
    assert memory_hub.socket(connection).frames == []
    assert memory_hub.metrics.registry.get_sample_value("pgwarden_hub_events_total") == 2
    assert memory_hub.metrics.registry.get_sample_value("pgwarden_hub_event_latency_seconds_count") == 0


async def test_log_out_tells_every_session_then_closes_all_of_them_the_acting_device_too(memory_hub: Hub) -> None:
    acting = memory_hub.connect(device="device-a")
    other = memory_hub.connect(device="device-b")
    bystander = memory_hub.connect(OTHER_USER)
    assert memory_hub.delivery.deliver(_event(PushType.LOG_OUT, device="device-a")) == 2
    await asyncio.wait_for(asyncio.gather(*memory_hub.served[:2]), 1)
    for connection in (acting, other):
        [log_out, goodbye] = memory_hub.socket(connection).messages()
        assert log_out[3] == "ReceiveMessage" and log_out[4][0]["Type"] == 11
        assert log_out[4][0]["ContextId"] == "device-a"
        # the token this session was opened with is refused from now on: nobody reconnects with it
        assert goodbye == [7, "logged out", False]
        assert memory_hub.socket(connection).closed == (1008, "logged out")
    assert bystander.session.state is State.OPEN
    assert memory_hub.delivery.deliver(_event(PushType.SYNC_VAULT)) == 0


async def test_log_out_without_a_device_closes_every_session(memory_hub: Hub) -> None:
    sessions = [memory_hub.connect(device="device-a"), memory_hub.connect(device="device-b")]
    memory_hub.delivery.deliver(_event(PushType.LOG_OUT))
    await asyncio.wait_for(asyncio.gather(*memory_hub.served), 1)
    for connection in sessions:
        assert [m[0] for m in memory_hub.socket(connection).messages()] == [1, 7]
        assert connection.session.closing.reason is CloseReason.LOGGED_OUT


async def test_auth_request_response_reaches_only_the_device_waiting_for_it(memory_hub: Hub) -> None:
    request = str(uuid.uuid4())
    waiting = memory_hub.connect(None, auth_request_id=request)
    bystander = memory_hub.connect(None, auth_request_id=str(uuid.uuid4()))
    user_session = memory_hub.connect()
    assert memory_hub.delivery.deliver(_event(PushType.AUTH_REQUEST_RESPONSE, item=request)) == 2
    await settle()
    [message] = memory_hub.socket(waiting).messages()
    assert message == [1, {}, None, "AuthRequestResponseRecieved",
                       [{"Type": 16, "Payload": {"Id": request, "UserId": USER}, "UserId": USER}]]
    assert memory_hub.socket(bystander).frames == []
    assert memory_hub.socket(user_session).messages()[0][3] == "ReceiveMessage"


async def test_a_client_too_far_behind_is_closed_and_never_delays_the_others(memory_hub: Hub) -> None:
    frame_size = len(frame(MessagePackProtocol().encode(receive_message(_event(PushType.SYNC_SETTINGS)))))
    healthy = memory_hub.connect(send_buffer=16 * frame_size)
    stalled = memory_hub.connect(send_buffer=5 * frame_size, stalled=True)
    # the stalled client's transport is past its high-water mark: its frames wait in its overflow
    delivered = [memory_hub.delivery.deliver(_event(PushType.SYNC_SETTINGS)) for _ in range(7)]
    assert delivered == [2, 2, 2, 2, 2, 1, 1]  # five fit its buffer; the sixth closes it
    assert memory_hub.socket(stalled).failed == (1013, "too far behind; reconnect and sync")
    assert stalled.session.closing.reason is CloseReason.TOO_SLOW
    await settle()
    assert len(memory_hub.socket(healthy).frames) == 7
    assert healthy.session.state is State.OPEN
