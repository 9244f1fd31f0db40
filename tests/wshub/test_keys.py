"""The hub verifies with the public keys alone, and learns a rotated key without a restart."""

from __future__ import annotations

import time
from datetime import timedelta

import httpx
import jwt

from core.keystore import load_signing_key, rotate
from tests.wshub.support import HubClient, HubUser, issuer_for


async def status_of(url: str) -> int:
    headers = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    async with httpx.AsyncClient() as http:
        return (await http.get(url.replace("ws://", "http://"), headers=headers)).status_code


async def test_hub_accepts_tokens_of_a_key_made_after_it_started(hub, make_user, db) -> None:
    user = await make_user()
    before = user.token()
    await rotate(db, grace=timedelta(hours=1))
    after = HubUser(user.id, await issuer_for(db, hub.config), user.security_stamp).token()
    assert jwt.get_unverified_header(after)["kid"] != jwt.get_unverified_header(before)["kid"]
    for token in (after, before):  # the new key is learned; the old one verifies until it retires
        client = await HubClient.connect(hub.ws_url(access_token=token))
        await client.close()


async def test_token_of_a_key_retired_at_once_is_401_after_a_refresh(hub, make_user, db) -> None:
    user = await make_user()
    before = user.token()
    await rotate(db, grace=timedelta(0))
    await hub.app.ctx.keys.refresh()
    assert await status_of(hub.ws_url(access_token=before)) == 401


async def test_token_without_a_key_id_is_401(hub, make_user, db) -> None:
    user = await make_user()
    key = await load_signing_key(db, None)
    now = int(time.time())
    token = jwt.encode({"sub": user.id, "sstamp": user.security_stamp, "device": "d", "nbf": now, "exp": now + 600,
                        "iss": hub.config.token_issuer}, key.private_key, algorithm="RS256")
    assert await status_of(hub.ws_url(access_token=token)) == 401
