"""A hub process stopped for a rolling restart (SIGTERM, as Kubernetes and `pgwarden up` send it):
it admits no new socket from the first moment, tells each client to reconnect, and exits cleanly."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
import websockets

from tests.support.processes import wait_until
from tests.support.stack import start_replica
from tests.wshub.support import HubClient, hub_config

CLOSE = 7


async def test_a_stopping_hub_refuses_new_sockets_and_tells_clients_to_reconnect(
    database_url: str, make_user, tmp_path: Path,
) -> None:
    # one worker: its stop is what is under test (each worker of a larger hub stops the same way;
    # with several, a new socket could meet a worker whose port is already closed, not refused)
    hub = start_replica("hub", database_url, hub_config().domain, tmp_path, extra_env={"HUB_WORKERS": "1"})
    user = await make_user()
    url = f"ws://{hub.address}/notifications/hub?access_token={user.token()}"
    polite = await HubClient.connect(url)
    # a client that reads nothing more: the hub waits for its goodbye (the shutdown grace), and a
    # socket admitted meanwhile would be cut without one
    stuck = await HubClient.connect(url)
    stuck.ws.transport.pause_reading()
    try:
        hub.process._signal(signal.SIGTERM)
        close = await polite.message()
        assert close[0] == CLOSE and close[2] is True, close  # allowReconnect
        with pytest.raises(websockets.InvalidStatus) as refused:
            await websockets.connect(url)
        assert refused.value.response.status_code == 503
        assert b"the hub is stopping" in refused.value.response.body
        wait_until(hub.process.exited, "the hub to exit")
        assert hub.process.process.returncode == 0
    finally:
        hub.process.stop()
        for client in (polite, stuck):
            await client.ws.close()
