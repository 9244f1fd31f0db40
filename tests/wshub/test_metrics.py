"""Who may read the hub's /metrics: nobody unless METRICS_TOKEN is set, then its bearer alone."""

from __future__ import annotations

import httpx
import pytest

TOKEN = "a-long-random-metrics-token-0123"


async def test_metrics_are_not_served_without_a_token_setting(hub) -> None:
    async with httpx.AsyncClient() as http:
        reply = await http.get(f"http://{hub.base}/metrics")
        unknown = await http.get(f"http://{hub.base}/no-such-path")
        with_any_token = await http.get(f"http://{hub.base}/metrics", headers={"Authorization": "Bearer x"})
    assert reply.status_code == 404 and with_any_token.status_code == 404
    # indistinguishable from a path that does not exist
    assert reply.text == unknown.text.replace("/no-such-path", "/metrics")
    assert "pgwarden_hub" not in reply.text


@pytest.mark.parametrize("authorization", [
    None,
    "Bearer",
    "Bearer wrong-token",
    f"Bearer {TOKEN}x",
    f"Bearer {TOKEN[:-1]}",
    f"Basic {TOKEN}",
    TOKEN,
])
async def test_metrics_refuse_anything_but_the_token(start, authorization: str | None) -> None:
    hub = await start(metrics_token=TOKEN)
    headers = {"Authorization": authorization} if authorization is not None else {}
    async with httpx.AsyncClient() as http:
        reply = await http.get(f"http://{hub.base}/metrics", headers=headers)
    assert reply.status_code == 401
    assert reply.headers.get("www-authenticate", "").startswith("Bearer")
    assert "pgwarden_hub" not in reply.text


async def test_metrics_are_served_to_the_token_bearer_only_in_the_header(start) -> None:
    hub = await start(metrics_token=TOKEN)
    async with httpx.AsyncClient() as http:
        reply = await http.get(f"http://{hub.base}/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        # a token in the URL would end up in access logs: not accepted
        in_query = await http.get(f"http://{hub.base}/metrics", params={"access_token": TOKEN})
    assert reply.status_code == 200
    assert reply.headers["content-type"].startswith("text/plain")
    assert "pgwarden_hub_connections" in reply.text
    assert in_query.status_code == 401
